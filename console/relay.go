package console

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"
)

// handleRelay serves /api/v1.0/nodes/NODE/...: the same API on another
// node, so that a browser talks to one node only (SafeKit's proxy mode).
// The request goes to NODE's web service as the private user of
// distributed commands, with the user, role and address of the caller,
// which NODE believes from that user only. This node has already checked
// the caller's session (and CSRF token) and the Origin of websockets.
func (s *Server) handleRelay(w http.ResponseWriter, r *http.Request) {
	caller, _ := CallerFrom(r.Context())
	name := mux.Vars(r)["node"]
	rest := strings.TrimPrefix(r.URL.Path, "/api/v1.0/nodes/"+name)
	upgrade := websocket.IsWebSocketUpgrade(r)
	if upgrade && !s.originAllowed(r) {
		s.log.Warnf("refused websocket %s from %s: Origin %s is not this console's", r.URL.Path, r.RemoteAddr, r.Header.Get("Origin"))
		writeErr(w, http.StatusForbidden, fmt.Errorf("websocket from another site (Origin %s) refused", r.Header.Get("Origin")))
		return
	}
	if name == s.selfName(r.Context()) {
		local := r.Clone(r.Context())
		local.URL.Path, local.URL.RawPath = "/api/v1.0"+rest, ""
		s.router.ServeHTTP(w, local)
		return
	}
	n, err := s.node(name)
	if err != nil {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	if _, err := s.nodes.credential(); err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	target, err := url.Parse(n.URL)
	if err != nil {
		writeErr(w, http.StatusBadGateway, err)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
			pr.Out.URL.Path, pr.Out.URL.RawPath = "/api/v1.0"+rest, ""
			pr.Out.Host = ""
			h := pr.Out.Header
			for _, k := range []string{"Cookie", "Authorization", "Origin", csrfHeader, userHeader, roleHeader, addrHeader} {
				h.Del(k)
			}
			_ = s.nodes.authorize(h)
			h.Set(userHeader, caller.User)
			h.Set(roleHeader, caller.Role)
			h.Set(addrHeader, caller.Addr)
		},
		Transport:     s.nodes.http.Transport,
		FlushInterval: -1,
		// This node's cookies and security headers are the ones that count.
		ModifyResponse: func(resp *http.Response) error {
			for _, k := range []string{"Set-Cookie", "Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control"} {
				resp.Header.Del(k)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeErr(w, http.StatusBadGateway, fmt.Errorf("no reply of %s (%s): %v", n.Name, n.URL, err))
		},
	}
	if upgrade && caller.how == bySession {
		s.sessions.stream(caller.session.id, +1)
		defer s.sessions.stream(caller.session.id, -1)
	}
	rp.ServeHTTP(w, r)
}

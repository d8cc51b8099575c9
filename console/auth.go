package console

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/runtime/webauth"
)

// Caller is who sent a request, once authenticated.
type Caller struct {
	// User is the user name; "apikey:NAME" for an API key; for a request
	// relayed by another node, the user who sent it there.
	User string
	// Role is Admin, Control or Monitor ("" when the user has none).
	Role string
	// Addr is the IP address of the client: the browser's for a relayed
	// request.
	Addr string

	how     authKind
	session session // when how is bySession
}

// String is how commands and logs name the caller: "admin@10.0.0.5".
func (c Caller) String() string { return c.User + "@" + c.Addr }

// authKind is how a caller proved who it is.
type authKind int

const (
	bySession  authKind = iota + 1 // the cookie of POST /login
	byKey                          // Authorization: Bearer
	byPassword                     // HTTP basic authentication (safekit -H, scripts)
	byRelay                        // another node, for one of its callers
	byNothing                      // an unsecure node
)

type callerKey struct{}

// CallerFrom returns the caller of a request authenticated by the console.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// Cookie and headers.
const (
	sessionCookie = "sessionSK"
	csrfHeader    = "X-CSRF-Token"
	// A relayed request names the caller it is made for; only the private
	// user of distributed commands is believed.
	userHeader = "X-SafeKit-User"
	roleHeader = "X-SafeKit-Role"
	addrHeader = "X-SafeKit-Addr"
)

// setupHint tells how to make the first console user.
const setupHint = "no console user on this node yet: on the node, run safekit webservercfg -passwd <pwd> (user admin, role Admin)"

// require admits the callers that have at least role, and checks the CSRF
// token (or the Origin) of the requests that change something.
func (s *Server) require(role string, next http.Handler) http.Handler {
	return s.authenticated(func(w http.ResponseWriter, r *http.Request, c Caller) {
		if rank[c.Role] < rank[role] {
			s.log.Warnf("refused web request %s %s from %s: user %s has role %q, %s needed", r.Method, r.URL.Path, r.RemoteAddr, c.User, c.Role, role)
			writeErr(w, http.StatusForbidden, fmt.Errorf("user %s has the role %q: this needs %s", c.User, c.Role, role))
			return
		}
		if err := s.checkCSRF(r, c); err != nil {
			s.log.Warnf("refused web request %s %s from %s (user %s): %v", r.Method, r.URL.Path, r.RemoteAddr, c.User, err)
			writeErr(w, http.StatusForbidden, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	})
}

// authenticated finds the caller of a request and hands it to next, or
// answers 401 (403 for an impersonation, 429 after too many failures).
// An Authorization header wins over the session cookie.
func (s *Server) authenticated(next func(http.ResponseWriter, *http.Request, Caller)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conf, err := readWebConf(s.roots())
		if err != nil {
			s.log.Warnf("refused web request %s %s from %s: %v; every request is refused until httpd.conf is fixed", r.Method, r.URL.Path, r.RemoteAddr, err)
			writeErr(w, http.StatusInternalServerError, errors.New("the web service configuration of this node has errors (see its safekitd log)"))
			return
		}
		_, _, basic := r.BasicAuth()
		token, bearer := bearerToken(r)
		switch {
		case conf.Unsecure || basic:
			// Package webauth checks the password (and says loudly that an
			// unsecure node admits everybody).
			s.auth.Require(RoleMonitor, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				wc, _ := webauth.CallerFrom(r.Context())
				c, err := s.passwordCaller(r, wc)
				if err != nil {
					s.log.Warnf("refused web request %s %s from %s: %v", r.Method, r.URL.Path, r.RemoteAddr, err)
					writeErr(w, http.StatusForbidden, err)
					return
				}
				next(w, r, c)
			})).ServeHTTP(w, r)
		case bearer:
			c, code, err := s.keyCaller(r, token)
			if err != nil {
				s.log.Warnf("refused web request %s %s from %s: %v", r.Method, r.URL.Path, r.RemoteAddr, err)
				writeErr(w, code, err)
				return
			}
			next(w, r, c)
		default:
			ck, err := r.Cookie(sessionCookie)
			if err != nil || ck.Value == "" {
				// A page polling after its session ended is not news; a
				// request that would change something is (docs/cluster.md).
				if r.Method != http.MethodGet && r.Method != http.MethodHead {
					s.log.Warnf("refused web request %s %s from %s: no credentials", r.Method, r.URL.Path, r.RemoteAddr)
				}
				s.unauthorized(w, errors.New("not logged in: log in (POST /login), or send an API key (Authorization: Bearer) or a password"))
				return
			}
			sess, err := s.sessions.get(ck.Value, conf.SessionMaxAge, conf.SessionIdle)
			if err == nil {
				users, rerr := webauth.ReadUsers(webauth.UserFile(s.roots()))
				if rerr != nil || users[sess.user] != sess.hash {
					s.sessions.delete(sess.id)
					err = errors.New("the password of this user changed, or the user was removed: log in again")
				}
			}
			if err != nil {
				s.unauthorized(w, err)
				return
			}
			next(w, r, Caller{User: sess.user, Role: s.roleOf(sess.user), Addr: clientIP(r), how: bySession, session: sess})
		}
	})
}

// loginStatus is the body of a 401: what the login page needs.
type loginStatus struct {
	Error string `json:"error"`
	// ConsoleUser is false when no user can log in to the console yet:
	// Hint says how to make one.
	ConsoleUser bool   `json:"console_user"`
	Hint        string `json:"hint,omitempty"`
}

func (s *Server) unauthorized(w http.ResponseWriter, err error) {
	st := loginStatus{Error: err.Error(), ConsoleUser: s.hasConsoleUser()}
	if !st.ConsoleUser {
		st.Hint = setupHint
	}
	writeJSON(w, http.StatusUnauthorized, st)
}

// hasConsoleUser tells whether user.conf has a user besides the private
// user of distributed commands.
func (s *Server) hasConsoleUser() bool {
	users, err := webauth.ReadUsers(webauth.UserFile(s.roots()))
	if err != nil {
		return false
	}
	rcmd := s.rcmdUser()
	for u := range users {
		if u != rcmd {
			return true
		}
	}
	return false
}

// rcmdUser is the private user of distributed commands of this node.
func (s *Server) rcmdUser() string {
	if c, err := webauth.ReadRcmd(s.roots()); err == nil {
		return c.User
	}
	return webauth.DefaultRcmdUser
}

// roleOf is the role of a user: the private user of distributed commands is
// an Admin; the others have their role of group.conf, or Admin when there
// is no group.conf (as SafeKit).
func (s *Server) roleOf(user string) string {
	if user == s.rcmdUser() {
		return RoleAdmin
	}
	g, ok, err := webauth.ReadGroups(webauth.GroupFile(s.roots()))
	if err != nil {
		s.log.Warnf("%v", err)
		return ""
	}
	if !ok {
		return RoleAdmin
	}
	return g.Role(user)
}

// passwordCaller is the caller of a request that package webauth admitted:
// a user with its password, everybody on an unsecure node, or another node
// relaying a request of one of its callers.
func (s *Server) passwordCaller(r *http.Request, wc webauth.Caller) (Caller, error) {
	c := Caller{User: wc.User, Role: s.roleOf(wc.User), Addr: wc.Addr, how: byPassword}
	if wc.Unsecure {
		c.Role, c.how = RoleAdmin, byNothing
	}
	user := r.Header.Get(userHeader)
	if user == "" {
		return c, nil
	}
	if !wc.Unsecure && wc.User != s.rcmdUser() {
		return c, fmt.Errorf("user %s sent %s: only %s, the private user of distributed commands, acts for other users", wc.User, userHeader, s.rcmdUser())
	}
	role := r.Header.Get(roleHeader)
	if rank[role] == 0 {
		return c, fmt.Errorf("relayed request for user %s without a valid %s (%q)", user, roleHeader, role)
	}
	addr := r.Header.Get(addrHeader)
	if addr == "" {
		addr = wc.Addr
	}
	how := byRelay
	if wc.Unsecure {
		how = byNothing
	}
	return Caller{User: user, Role: role, Addr: addr, how: how}, nil
}

// bearerToken returns the token of "Authorization: Bearer <token>".
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

// keyCaller is the caller of an API key.
func (s *Server) keyCaller(r *http.Request, token string) (Caller, int, error) {
	ip := clientIP(r)
	if ok, wait := s.limiter.allow(ip); !ok {
		return Caller{}, http.StatusTooManyRequests, fmt.Errorf("too many refused credentials from %s: try again in %s", ip, wait.Round(time.Second))
	}
	k, err := s.lookupKey(token)
	if err != nil {
		s.limiter.fail(ip)
		s.log.Warnf("refused web request %s %s from %s: API key: %v", r.Method, r.URL.Path, r.RemoteAddr, err)
		return Caller{}, http.StatusUnauthorized, errors.New("unknown API key")
	}
	return Caller{User: "apikey:" + k.Name, Role: k.Role, Addr: ip, how: byKey}, 0, nil
}

// unsafeMethod tells whether a request may change something.
func unsafeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// checkCSRF refuses a request that changes something and may have been
// forged by another site: a session must send its token in X-CSRF-Token;
// a password or no authentication (an unsecure node) must not come from a
// foreign Origin. API keys are never sent by browsers on their own.
func (s *Server) checkCSRF(r *http.Request, c Caller) error {
	if !unsafeMethod(r.Method) {
		return nil
	}
	switch c.how {
	case byKey:
		return nil
	case bySession:
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(c.session.csrf)) != 1 {
			return fmt.Errorf("missing or wrong %s header: send the csrf of GET /api/v1.0/session", csrfHeader)
		}
		return nil
	}
	if !s.originAllowed(r) {
		return fmt.Errorf("request from another site (Origin %s) refused", r.Header.Get("Origin"))
	}
	return nil
}

// originAllowed tells whether the Origin of a request is the console's own
// (the host it was sent to) or one of httpd.conf's ConsoleOrigins. Clients
// that are not browsers send none, and are allowed.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	conf, _ := readWebConf(s.roots())
	o := strings.ToLower(strings.TrimRight(origin, "/"))
	for _, allowed := range conf.Origins {
		if o == allowed {
			return true
		}
	}
	return false
}

// Session is the answer of POST /login and GET /api/v1.0/session.
type Session struct {
	User string `json:"user"`
	Role string `json:"role"`
	// CSRF goes in the X-CSRF-Token header of every POST, PUT and DELETE.
	CSRF string `json:"csrf"`
	// Unsecure: this node does not authenticate (httpd.conf says "Define
	// unsecure"): everybody is Admin.
	Unsecure bool `json:"unsecure,omitempty"`
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	s.authenticated(func(w http.ResponseWriter, r *http.Request, c Caller) {
		writeJSON(w, http.StatusOK, s.sessionOf(c))
	}).ServeHTTP(w, r)
}

func (s *Server) sessionOf(c Caller) Session {
	out := Session{User: c.User, Role: c.Role, Unsecure: c.how == byNothing}
	if c.how == bySession {
		out.CSRF = c.session.csrf
	} else {
		out.CSRF = s.anonToken
	}
	return out
}

// loginChecks bounds the bcrypt checks of logins running at once.
var loginChecks = make(chan struct{}, 2)

var dummy struct {
	once sync.Once
	hash string
}

// checkLogin verifies the password of a console user and returns its hash.
func (s *Server) checkLogin(user, pwd string) (string, error) {
	users, err := webauth.ReadUsers(webauth.UserFile(s.roots()))
	if err != nil {
		return "", err
	}
	loginChecks <- struct{}{}
	defer func() { <-loginChecks }()
	hash, found := users[user]
	if !found || user == s.rcmdUser() {
		// The same work as a real check, so that the time of the answer
		// does not tell which users exist.
		dummy.once.Do(func() {
			pwd, _ := webauth.GeneratePassword()
			dummy.hash, _ = webauth.HashPassword(pwd)
		})
		_ = webauth.CheckPassword(dummy.hash, pwd)
		if found {
			return "", fmt.Errorf("%s is the private user of distributed commands: it cannot log in to the console", user)
		}
		return "", errors.New("unknown user")
	}
	return hash, webauth.CheckPassword(hash, pwd)
}

// loginRequest is the body of POST /login: a form, as SafeKit, or JSON.
type loginRequest struct {
	User     string `json:"httpd_username"`
	Password string `json:"httpd_password"`
}

func readLogin(w http.ResponseWriter, r *http.Request) (loginRequest, error) {
	var req loginRequest
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody)).Decode(&req)
		return req, err
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	if err := r.ParseForm(); err != nil {
		return req, err
	}
	return loginRequest{User: r.PostForm.Get("httpd_username"), Password: r.PostForm.Get("httpd_password")}, nil
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	ip := clientIP(r)
	if !s.originAllowed(r) {
		writeErr(w, http.StatusForbidden, fmt.Errorf("login from another site (Origin %s) refused", r.Header.Get("Origin")))
		return
	}
	if ok, wait := s.limiter.allow(ip); !ok {
		s.log.Warnf("console login from %s refused: too many failed logins", ip)
		w.Header().Set("Retry-After", fmt.Sprint(int(wait/time.Second)+1))
		writeErr(w, http.StatusTooManyRequests, fmt.Errorf("too many failed logins from %s: try again in %s", ip, wait.Round(time.Second)+time.Second))
		return
	}
	req, err := readLogin(w, r)
	if err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad login request (httpd_username and httpd_password): %w", err))
		return
	}
	conf, err := readWebConf(s.roots())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, errors.New("the web service configuration of this node has errors (see its safekitd log)"))
		return
	}
	if conf.Unsecure {
		user := req.User
		if user == "" {
			user = "anonymous"
		}
		writeJSON(w, http.StatusOK, Session{User: user, Role: RoleAdmin, CSRF: s.anonToken, Unsecure: true})
		return
	}
	if !s.hasConsoleUser() {
		s.unauthorized(w, errors.New("login impossible: "+setupHint))
		return
	}
	hash, err := s.checkLogin(req.User, req.Password)
	if err != nil {
		s.limiter.fail(ip)
		s.log.Warnf("failed console login of user %q from %s: %v", req.User, ip, err)
		s.unauthorized(w, errors.New("wrong user name or password"))
		return
	}
	role := s.roleOf(req.User)
	if role == "" {
		s.log.Warnf("console login of user %q from %s refused: no role in %s", req.User, ip, webauth.GroupFile(s.roots()))
		writeErr(w, http.StatusForbidden, fmt.Errorf("user %s has no role in group.conf (Admin, Control or Monitor)", req.User))
		return
	}
	sess, err := s.sessions.create(req.User, hash)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sess.id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(conf.SessionMaxAge / time.Second)})
	s.log.Infof("console login of %s (role %s) from %s", req.User, role, ip)
	writeJSON(w, http.StatusOK, Session{User: req.User, Role: role, CSRF: sess.csrf})
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.delete(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, http.StatusOK, done{OK: true})
}

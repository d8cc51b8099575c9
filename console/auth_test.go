package console

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/runtime/webauth"
)

// concrete turns a route of the table into a request path.
func concrete(rt route) string {
	p := docPath(rt.path, rt.prefix)
	return strings.NewReplacer(
		"{AM}", "m1", "{name}", "k1", "{role}", "Monitor", "{path}", "bin/start_both",
		"{file}", "userlog_2026-11-25T100000_start_both.ulog", "{section}", "generic",
		"{node}", "nowhere", "{page}", "en/monitoring",
	).Replace(p)
}

// TestRoles sends every route of the table as each role: anonymous callers
// get 401, a role below the route's gets 403, the others get through.
func TestRoles(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", lightModule, true)
	callers := map[string]*client{"anonymous": n.anonymous()}
	for u := range users {
		callers[users[u]] = n.login(u)
	}
	for _, rt := range n.srv.table() {
		methods := []string{rt.method}
		if rt.method == "" {
			methods = anyMethods
		}
		switch rt.path {
		case "/logout":
			continue // it would end the sessions of the callers
		case "/login", "/api/v1.0/session":
			continue // they check credentials themselves: TestLoginRateLimit, TestSessionExpiry
		}
		for _, m := range methods {
			p := concrete(rt)
			for who, c := range callers {
				code, body := c.do(m, p, map[string]any{})
				var want string
				switch {
				case rt.role == roleOpen:
					if code == http.StatusUnauthorized || code == http.StatusForbidden {
						want = "open"
					}
				case who == "anonymous":
					if code != http.StatusUnauthorized {
						want = "401"
					}
				case rank[who] < rank[rt.role]:
					if code != http.StatusForbidden {
						want = "403"
					}
				case code == http.StatusUnauthorized || code == http.StatusForbidden:
					want = "allowed"
				}
				if want != "" {
					t.Errorf("%s %s as %s (route for %q): %d %s, want %s", m, p, who, rt.role, code, body, want)
				}
			}
		}
	}
}

func TestCSRF(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", lightModule, true)
	admin := n.login("admin")
	cmd := Command{Action: "stop"}
	for _, tc := range []struct {
		name, token string
	}{{"missing", ""}, {"wrong", "not-the-token"}} {
		req := admin.request(http.MethodPost, "/api/v1.0/modules/m1/command", cmd)
		if tc.token == "" {
			req.Header.Del(csrfHeader)
		} else {
			req.Header.Set(csrfHeader, tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s CSRF token: %d, want 403", tc.name, resp.StatusCode)
		}
	}
	if got := n.commands(); len(got) != 0 {
		t.Errorf("a refused request ran %q", got)
	}
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/command", cmd, http.StatusOK, nil)
	if got := n.commands(); len(got) != 1 || strings.Join(got[0], " ") != "stop -m m1 admin@127.0.0.1" {
		t.Errorf("commands: %q", got)
	}

	// A password needs no token, but a browser's request from another site
	// is refused.
	basic := n.anonymous()
	basic.user, basic.pwd = "admin", password("admin")
	basic.json(http.MethodPost, "/api/v1.0/modules/m1/command", cmd, http.StatusOK, nil)
	basic.header.Set("Origin", "http://evil.example")
	if code, body := basic.do(http.MethodPost, "/api/v1.0/modules/m1/command", cmd); code != http.StatusForbidden {
		t.Errorf("password from another site: %d %s", code, body)
	}
	// Nor does an API key.
	var key NewKey
	admin.json(http.MethodPost, "/api/v1.0/apikey/Control/ci", nil, http.StatusOK, &key)
	bearer := n.anonymous()
	bearer.bearer = key.Token
	bearer.json(http.MethodPost, "/api/v1.0/modules/m1/command", cmd, http.StatusOK, nil)
	if !strings.Contains(n.log.String(), "missing or wrong X-CSRF-Token header") {
		t.Errorf("the refusals are not logged:\n%s", n.log)
	}
}

func TestWebsocketOrigin(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", lightModule, true)
	mon := n.login("mon")
	conn, resp, err := mon.dial("/api/v1.0/modules/m1/ws/log", "http://evil.example")
	if err == nil {
		conn.Close()
		t.Fatal("a websocket from another site was accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign Origin: %v %v", resp, err)
	}
	if !strings.Contains(n.log.String(), "refused websocket /api/v1.0/modules/m1/ws/log from 127.0.0.1:") {
		t.Errorf("the refusal is not logged:\n%s", n.log)
	}
	conn, _, err = mon.dial("/api/v1.0/modules/m1/ws/log", "")
	if err != nil {
		t.Fatalf("own Origin: %v", err)
	}
	conn.Close()
	// httpd.conf may allow other origins.
	writeTestFile(t, webauth.HTTPDFile(n.roots), "Define httpport 9010\nDefine ConsoleOrigins https://console.example.com\n")
	conn, _, err = mon.dial("/api/v1.0/modules/m1/ws/log", "https://console.example.com")
	if err != nil {
		t.Fatalf("allowed Origin: %v", err)
	}
	conn.Close()
	// The relay to another node checks the Origin too.
	if _, resp, err := mon.dial("/api/v1.0/nodes/node2/modules/m1/ws/log", "http://evil.example"); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("relayed websocket from another site: %v %v", resp, err)
	}
}

func TestSessionExpiry(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", lightModule, true)
	mon := n.login("mon")
	mon.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusOK, nil)

	// Idle for too long.
	n.clock.add(defaultSessionIdle - time.Second)
	mon.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusOK, nil)
	n.clock.add(defaultSessionIdle)
	var st loginStatus
	mon.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusUnauthorized, &st)
	if !st.ConsoleUser || !strings.Contains(st.Error, "log in again") {
		t.Errorf("after the idle time: %+v", st)
	}

	// An open websocket keeps a session in use, up to SessionMaxAge.
	mon = n.login("mon")
	conn, _, err := mon.dial("/api/v1.0/ws/events-local", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	eventually(t, "the websocket counted", func() bool {
		n.srv.sessions.mu.Lock()
		defer n.srv.sessions.mu.Unlock()
		return n.srv.sessions.m[mon.cookie.Value].streams == 1
	})
	n.clock.add(2 * defaultSessionIdle)
	mon.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusOK, nil)
	n.clock.add(defaultSessionMaxAge)
	mon.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusUnauthorized, nil)

	// A new password ends the sessions of the user.
	admin := n.login("admin")
	if err := webauth.SetPassword(webauth.UserFile(n.roots), "admin", "changed"); err != nil {
		t.Fatal(err)
	}
	admin.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusUnauthorized, nil)

	// Logout ends the session.
	ctl := n.login("ctl")
	ctl.json(http.MethodPost, "/logout", nil, http.StatusOK, nil)
	ctl.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusUnauthorized, nil)
}

func TestSessionMaxAge(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	writeTestFile(t, webauth.HTTPDFile(n.roots), "Define httpport 9010\nDefine SessionMaxAge 600\nDefine SessionIdleTimeout 3600\n")
	mon := n.login("mon")
	if mon.cookie.MaxAge != 600 || !mon.cookie.HttpOnly || mon.cookie.SameSite != http.SameSiteStrictMode || mon.cookie.Secure {
		t.Errorf("cookie over HTTP: %+v", mon.cookie)
	}
	n.clock.add(599 * time.Second)
	mon.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusOK, nil)
	n.clock.add(time.Second)
	mon.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusUnauthorized, nil)
}

func TestAPIKeys(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", lightModule, true)
	admin := n.login("admin")
	var key NewKey
	admin.json(http.MethodPost, "/api/v1.0/apikey/Monitor/dashboard", nil, http.StatusOK, &key)
	if !strings.HasPrefix(key.Token, tokenPrefix) || key.Role != RoleMonitor || key.Hash != "" {
		t.Fatalf("new key: %+v", key)
	}
	data, err := os.ReadFile(n.srv.keysFile())
	if err != nil || strings.Contains(string(data), key.Token) || !strings.Contains(string(data), "dashboard:Monitor:"+hashToken(key.Token)+":") {
		t.Fatalf("keys file: %v\n%s", err, data)
	}
	if st, _ := os.Stat(n.srv.keysFile()); st.Mode().Perm() != 0o600 {
		t.Errorf("keys file mode %v", st.Mode().Perm())
	}
	var keys []Key
	admin.json(http.MethodGet, "/api/v1.0/apikey", nil, http.StatusOK, &keys)
	if len(keys) != 1 || keys[0].Name != "dashboard" || keys[0].Hash != "" {
		t.Errorf("list: %+v", keys)
	}
	bearer := n.anonymous()
	bearer.bearer = key.Token
	var s Session
	bearer.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusOK, &s)
	if s.User != "apikey:dashboard" || s.Role != RoleMonitor {
		t.Errorf("session of the key: %+v", s)
	}
	bearer.json(http.MethodGet, "/api/v1.0/modules/m1/state", nil, http.StatusOK, nil)
	bearer.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "stop"}, http.StatusForbidden, nil)
	admin.json(http.MethodDelete, "/api/v1.0/apikey/dashboard", nil, http.StatusOK, nil)
	bearer.json(http.MethodGet, "/api/v1.0/modules/m1/state", nil, http.StatusUnauthorized, nil)
	admin.json(http.MethodDelete, "/api/v1.0/apikey/dashboard", nil, http.StatusNotFound, nil)
	// Made again, a key has a new token.
	var again NewKey
	admin.json(http.MethodPost, "/api/v1.0/apikey/Monitor/dashboard", nil, http.StatusOK, &again)
	if again.Token == key.Token {
		t.Error("the same token twice")
	}
	if !strings.Contains(n.log.String(), "API key: no key has this token") {
		t.Errorf("the refused key is not logged:\n%s", n.log)
	}
}

func TestLoginRateLimit(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	c := n.anonymous()
	login := func(pwd string) (int, string) {
		resp := c.post("/login", "application/json", `{"httpd_username":"admin","httpd_password":"`+pwd+`"}`)
		defer resp.Body.Close()
		var body struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Error
	}
	for i := range loginBurst {
		if code, msg := login("wrong"); code != http.StatusUnauthorized || msg != "wrong user name or password" {
			t.Fatalf("failed login %d: %d %s", i+1, code, msg)
		}
	}
	if code, msg := login(password("admin")); code != http.StatusTooManyRequests || !strings.Contains(msg, "too many failed logins from 127.0.0.1") {
		t.Errorf("after %d failures, even the right password: %d %s", loginBurst, code, msg)
	}
	if !strings.Contains(n.log.String(), `failed console login of user \"admin\" from 127.0.0.1: wrong password`) {
		t.Errorf("failed logins are not logged with the address:\n%s", n.log)
	}
	n.clock.add(loginRefill)
	if code, _ := login(password("admin")); code != http.StatusOK {
		t.Errorf("after %s: %d", loginRefill, code)
	}
	// Unknown users and the private user of distributed commands fail the
	// same way.
	n.clock.add(loginBurst * loginRefill)
	for _, u := range []string{"nobody", webauth.DefaultRcmdUser} {
		resp := c.post("/login", "application/x-www-form-urlencoded", "httpd_username="+u+"&httpd_password="+rcmdPassword)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("login of %s: %d", u, resp.StatusCode)
		}
	}
}

func TestNoConsoleUser(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{noUsers: true})
	c := n.anonymous()
	var st loginStatus
	c.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusUnauthorized, &st)
	if st.ConsoleUser || !strings.Contains(st.Hint, "safekit webservercfg -passwd <pwd>") {
		t.Errorf("session without console user: %+v", st)
	}
	resp := c.post("/login", "application/x-www-form-urlencoded", "httpd_username=rcmdadmin&httpd_password="+rcmdPassword)
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusUnauthorized || !strings.Contains(st.Error, "login impossible") {
		t.Errorf("login without console user: %d %+v %v", resp.StatusCode, st, err)
	}
	// The page says it too.
	code, body := c.do(http.MethodGet, "/console/en/monitoring", nil)
	if code != http.StatusOK || !strings.Contains(string(body), "safekit webservercfg -passwd &lt;pwd&gt;") {
		t.Errorf("console page: %d %s", code, body)
	}
}

func TestUnsecure(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", lightModule, true)
	if err := webauth.SetUnsecure(n.roots, true); err != nil {
		t.Fatal(err)
	}
	c := n.anonymous()
	var s Session
	c.json(http.MethodGet, "/api/v1.0/session", nil, http.StatusOK, &s)
	if s.User != "anonymous" || s.Role != RoleAdmin || !s.Unsecure {
		t.Errorf("unsecure session: %+v", s)
	}
	c.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "stop"}, http.StatusOK, nil)
	c.header.Set("Origin", "http://evil.example")
	c.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "stop"}, http.StatusForbidden, nil)
	if !strings.Contains(n.log.String(), "UNSECURE web service") {
		t.Error("an unsecure request is not logged")
	}
}

func TestSecureHeaders(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	for _, p := range []string{"/", "/console/en/monitoring", "/api/v1.0/session", "/api/v1.0/openapi.json"} {
		req := n.anonymous().request(http.MethodGet, p, nil)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "http") || h.Get("X-Frame-Options") != "DENY" ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") == "" {
			t.Errorf("%s: headers %v", p, h)
		}
		if p == "/" && (resp.StatusCode != http.StatusFound || h.Get("Location") != "/console/en/monitoring") {
			t.Errorf("/: %d %s", resp.StatusCode, h.Get("Location"))
		}
	}
}

// TestRelayedCallerOnlyFromRcmd: only the private user of distributed
// commands acts for another user; anybody else naming one is refused.
func TestRelayedCallerOnlyFromRcmd(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", lightModule, true)
	mon := n.anonymous()
	mon.user, mon.pwd = "mon", password("mon")
	mon.header.Set(userHeader, "admin")
	mon.header.Set(roleHeader, RoleAdmin)
	mon.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "stop"}, http.StatusForbidden, nil)
	mon.json(http.MethodGet, "/api/v1.0/modules/m1/state", nil, http.StatusForbidden, nil)
	if !strings.Contains(n.log.String(), "user mon sent X-SafeKit-User: only rcmdadmin") {
		t.Errorf("the impersonation is not logged:\n%s", n.log)
	}
	rcmd := n.anonymous()
	rcmd.user, rcmd.pwd = webauth.DefaultRcmdUser, rcmdPassword
	rcmd.header.Set(userHeader, "ctl")
	rcmd.header.Set(roleHeader, RoleControl)
	rcmd.header.Set(addrHeader, "10.0.0.5")
	rcmd.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "stop"}, http.StatusOK, nil)
	rcmd.json(http.MethodPost, "/api/v1.0/modules/m1/check", nil, http.StatusForbidden, nil)
	if got := n.commands(); len(got) != 1 || got[0][len(got[0])-1] != "ctl@10.0.0.5" {
		t.Errorf("commands: %q", got)
	}
	n.commands()
	if len(n.commands()) != 0 {
		t.Error("refused requests ran")
	}
}

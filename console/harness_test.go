package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

// The tests run the console in-process, on a node made of temporary SAFE
// and SAFEVAR roots and a fake daemon: its local API (node, level, module
// state, log with a real modlog store, log stream and events, as the module
// processes serve them) and a Runner that records the commands.

// Users of the test nodes, one per role.
var users = map[string]string{"admin": RoleAdmin, "ctl": RoleControl, "mon": RoleMonitor}

const rcmdPassword = "rc-secret"

func password(user string) string { return user + "-pw" }

// quickHashes are the bcrypt hashes of the users' passwords at the least
// cost, made once: the tests log in often, and bcrypt is slow by design
// (very slow under the race detector).
var quickHashes = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	for u := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(password(u)), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		out[u] = string(h)
	}
	return out
})

// syncLog is the daemon's log, read while it is written.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeModule is a module process: its state, log and subscribers.
type fakeModule struct {
	store *modlog.Store
	mu    sync.Mutex
	snap  module.Snapshot
	subs  map[chan module.Snapshot]bool
}

func (m *fakeModule) set(state, ready string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snap.State, m.snap.Ready = automaton.State(state), automaton.Readiness(ready)
	m.snap.Seq++
	for c := range m.subs {
		select {
		case <-c:
		default:
		}
		c <- m.snap
	}
}

// testNode is a node of the tests.
type testNode struct {
	t      *testing.T
	name   string
	roots  layout.Roots
	srv    *Server
	web    *httptest.Server
	local  *httptest.Server
	log    *syncLog
	clock  *clock
	mu     sync.Mutex
	mods   map[string]*fakeModule
	conns  map[net.Conn]bool // of the web service
	ran    [][]string        // commands run, with the caller last
	runner func(args []string, by string) Result
}

type nodeOptions struct {
	// addr is where the web service listens ("127.0.0.1:0" by default).
	addr string
	// noUsers leaves user.conf without console users.
	noUsers bool
}

func newTestNode(t *testing.T, name string, o nodeOptions) *testNode {
	t.Helper()
	dir := t.TempDir()
	n := &testNode{t: t, name: name, roots: layout.Roots{SAFE: filepath.Join(dir, "safe"), SAFEVAR: filepath.Join(dir, "var")},
		log: &syncLog{}, clock: &clock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}, mods: map[string]*fakeModule{}, conns: map[net.Conn]bool{}}
	if err := os.MkdirAll(n.roots.SAFEVAR, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := webauth.SetRcmdPassword(n.roots, webauth.DefaultRcmdUser, rcmdPassword); err != nil {
		t.Fatal(err)
	}
	if !o.noUsers {
		var lines, groups strings.Builder
		for u, role := range users {
			fmt.Fprintf(&lines, "%s:%s\n", u, quickHashes()[u])
			fmt.Fprintf(&groups, "%s : %s\n", role, u)
		}
		data, err := os.ReadFile(webauth.UserFile(n.roots))
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, webauth.UserFile(n.roots), string(data)+lines.String())
		writeTestFile(t, webauth.GroupFile(n.roots), groups.String())
	}
	n.local = httptest.NewServer(n.localAPI())
	t.Cleanup(n.local.Close)
	logger := logrus.New()
	logger.SetOutput(n.log)
	srv, err := New(Config{Backend: n, Log: logger, Now: n.clock.now, Remote: Remote{
		CLI: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := CallerFrom(r.Context())
			writeJSON(w, http.StatusOK, Result{Stdout: "cli by " + c.String()})
		}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	n.srv = srv
	n.web = httptest.NewUnstartedServer(srv.Handler())
	if o.addr != "" {
		l, err := net.Listen("tcp", o.addr)
		if err != nil {
			t.Fatal(err)
		}
		n.web.Listener.Close()
		n.web.Listener = l
	}
	n.web.Config.ConnState = func(c net.Conn, st http.ConnState) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if st == http.StateClosed {
			delete(n.conns, c)
		} else {
			n.conns[c] = true
		}
	}
	n.web.Start()
	t.Cleanup(n.web.Close)
	return n
}

// kill ends the web service of the node as the end of its daemon does:
// every connection closes, websockets included.
func (n *testNode) kill() {
	n.web.Listener.Close()
	n.mu.Lock()
	for c := range n.conns {
		c.Close()
	}
	n.mu.Unlock()
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Backend.
func (n *testNode) Roots() layout.Roots { return n.roots }

func (n *testNode) Local() *http.Client {
	addr := n.local.Listener.Addr().String()
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}}}
}

func (n *testNode) Run(args []string, by string) Result {
	n.mu.Lock()
	n.ran = append(n.ran, append(append([]string(nil), args...), by))
	run := n.runner
	n.mu.Unlock()
	if run != nil {
		return run(args, by)
	}
	return Result{Stdout: "ran " + strings.Join(args, " ") + "\n"}
}

// commands returns the commands run so far, and forgets them.
func (n *testNode) commands() [][]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.ran
	n.ran = nil
	return out
}

const lightModule = `<safe><service mode="light"><user/></service></safe>`

// addModule installs (and, running, configures and starts) a module.
func (n *testNode) addModule(name, userconfig string, running bool) *fakeModule {
	n.t.Helper()
	mod := n.roots.Module(name)
	writeTestFile(n.t, mod.Userconfig(), userconfig)
	m := &fakeModule{subs: map[chan module.Snapshot]bool{}, snap: module.Snapshot{Module: name, Mode: "light", State: "STOP", Ready: "NotReady", Node: n.name}}
	if err := os.MkdirAll(mod.UserVar(), 0o755); err != nil {
		n.t.Fatal(err)
	}
	s, err := modlog.Open(filepath.Join(mod.UserVar(), "log.db"), modlog.Options{NoSync: true})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { s.Close() })
	m.store = s
	if running {
		writeTestFile(n.t, filepath.Join(mod.UserConf(), "userconfig.xml"), userconfig)
		m.set("ALONE", "Ready")
	}
	n.mu.Lock()
	n.mods[name] = m
	n.mu.Unlock()
	return m
}

func (n *testNode) module(name string) *fakeModule {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mods[name]
}

// localAPI is the fake daemon's local API.
func (n *testNode) localAPI() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/v1/node", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, Node{Name: n.name, Addresses: map[string]string{}})
	})
	r.HandleFunc("/v1/level", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, Level{Host: "host-" + n.name, OS: "test", Version: "0.1.0", License: "open"})
	})
	withModule := func(f func(w http.ResponseWriter, r *http.Request, m *fakeModule)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			name := mux.Vars(r)["name"]
			m := n.module(name)
			if m == nil {
				writeErr(w, http.StatusNotFound, fmt.Errorf("module %s is not installed", name))
				return
			}
			f(w, r, m)
		}
	}
	running := func(f func(w http.ResponseWriter, r *http.Request, m *fakeModule)) http.HandlerFunc {
		return withModule(func(w http.ResponseWriter, r *http.Request, m *fakeModule) {
			if !n.roots.Module(mux.Vars(r)["name"]).Configured() {
				writeErr(w, http.StatusConflict, fmt.Errorf("module %s is not configured", mux.Vars(r)["name"]))
				return
			}
			f(w, r, m)
		})
	}
	r.HandleFunc("/v1/modules/{name}/state", running(func(w http.ResponseWriter, r *http.Request, m *fakeModule) {
		m.mu.Lock()
		s := m.snap
		m.mu.Unlock()
		writeJSON(w, http.StatusOK, s)
	}))
	r.HandleFunc("/v1/modules/{name}/log", withModule(func(w http.ResponseWriter, r *http.Request, m *fakeModule) {
		count, _ := strconv.Atoi(r.URL.Query().Get("n"))
		entries, err := m.store.Last(count, r.URL.Query().Get("verbose") == "1")
		if err != nil {
			writeErr(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, entries)
	}))
	r.HandleFunc("/v1/modules/{name}/log/stream", running(logStream))
	r.HandleFunc("/v1/modules/{name}/events", running(func(w http.ResponseWriter, r *http.Request, m *fakeModule) {
		c := make(chan module.Snapshot, 1)
		m.mu.Lock()
		m.subs[c] = true
		c <- m.snap
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.subs, c)
			m.mu.Unlock()
		}()
		w.Header().Set("Content-Type", "application/x-ndjson")
		for {
			select {
			case s := <-c:
				if json.NewEncoder(w).Encode(s) != nil {
					return
				}
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}))
	return r
}

// logStream is the module process's /log/stream.
func logStream(w http.ResponseWriter, r *http.Request, m *fakeModule) {
	q := r.URL.Query()
	verbose := q.Get("verbose") == "1"
	sub := m.store.Subscribe(verbose, 1024)
	defer sub.Close()
	var backlog []modlog.Entry
	if after, err := strconv.ParseUint(q.Get("after"), 10, 64); err == nil {
		backlog, _ = m.store.After(after, verbose, 100000)
	} else {
		count, _ := strconv.Atoi(q.Get("n"))
		backlog, _ = m.store.Last(count, verbose)
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	var last uint64
	for i := range backlog {
		last = backlog[i].Seq
		if enc.Encode(module.StreamEntry{Entry: &backlog[i]}) != nil {
			return
		}
	}
	w.(http.Flusher).Flush()
	for {
		select {
		case e, open := <-sub.C:
			if !open {
				return
			}
			if e.Seq <= last {
				continue
			}
			if k := sub.Missed(); k > 0 && enc.Encode(module.StreamEntry{Missed: k}) != nil {
				return
			}
			last = e.Seq
			if enc.Encode(module.StreamEntry{Entry: &e}) != nil {
				return
			}
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// client is a caller of a node's web service.
type client struct {
	t      *testing.T
	base   string
	cookie *http.Cookie
	csrf   string
	bearer string
	user   string // basic authentication, with pwd
	pwd    string
	header http.Header
}

func (n *testNode) anonymous() *client {
	return &client{t: n.t, base: n.web.URL, header: http.Header{}}
}

// login opens a session of user.
func (n *testNode) login(user string) *client {
	n.t.Helper()
	c := n.anonymous()
	resp := c.post("/login", "application/x-www-form-urlencoded", "httpd_username="+url.QueryEscape(user)+"&httpd_password="+url.QueryEscape(password(user)))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		n.t.Fatalf("login %s: %s %s", user, resp.Status, body)
	}
	var s Session
	if err := json.Unmarshal(body, &s); err != nil {
		n.t.Fatal(err)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			c.cookie = ck
		}
	}
	if c.cookie == nil || s.CSRF == "" || s.Role != users[user] {
		n.t.Fatalf("login %s: %+v %v", user, s, resp.Header)
	}
	c.csrf = s.CSRF
	return c
}

func (c *client) post(path, contentType, body string) *http.Response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

// request builds a request with the client's credentials; a body that is
// not a string or []byte is sent as JSON.
func (c *client) request(method, path string, body any) *http.Request {
	c.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ct = strings.NewReader(b), "application/octet-stream"
	case []byte:
		rd, ct = bytes.NewReader(b), "application/octet-stream"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd, ct = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
		if method != http.MethodGet {
			req.Header.Set(csrfHeader, c.csrf)
		}
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pwd)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	return req
}

// do sends a request and returns the status and body.
func (c *client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	resp, err := http.DefaultClient.Do(c.request(method, path, body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// json sends a request, wants status code and decodes the answer into out.
func (c *client) json(method, path string, body any, code int, out any) {
	c.t.Helper()
	got, data := c.do(method, path, body)
	if got != code {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, got, data, code)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// dial opens a websocket with the client's credentials and the console's
// own Origin unless origin says another.
func (c *client) dial(path, origin string) (*websocket.Conn, *http.Response, error) {
	u := "ws" + strings.TrimPrefix(c.base, "http") + path
	req := c.request(http.MethodGet, path, nil)
	h := req.Header.Clone()
	if origin == "" {
		origin = c.base
	}
	h.Set("Origin", origin)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	return d.Dial(u, h)
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

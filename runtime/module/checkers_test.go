package module

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/checkers"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/webauth"
	"github.com/safekit-oss/safekit/safe"
)

// TestBuiltinCheckerConfig: what each built-in checker of a userconfig.xml
// becomes in the automaton (resource, window, action, rule), with the
// defaults that safe applies, and where a <module> checker polls.
func TestBuiltinCheckerConfig(t *testing.T) {
	roots := layout.Roots{SAFE: t.TempDir(), SAFEVAR: t.TempDir()}
	if err := os.MkdirAll(webauth.ConfDir(roots), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(webauth.HTTPDFile(roots), []byte("Define httpport 9999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u := safe.ParseUserconfig([]byte(`<safe><service mode="light"><check>
  <tcp ident="web" when="both"><to addr="127.0.0.1" port="80"/></tcp>
  <tcp ident="db" when="pre"><to addr="10.0.0.5" port="5432" interval="2s" timeout="1s"/></tcp>
  <ping ident="gw"><to addr="10.0.0.1"/></ping>
  <ping ident="gw2" when="both" action="noaction"><to addr="10.0.0.2"/></ping>
  <intf ident="lan"><to local_addr="10.0.0.10"/></intf>
  <ip ident="vip"><to addr="10.0.0.100"/></ip>
  <module name="base"/>
  <module ident="leader" name="mirror"><to addr="10.0.0.129" port="9453" secure="on"/></module>
</check></service></safe>`), safe.Options{File: "userconfig.xml"})
	if err := u.Diags.Err(); err != nil {
		t.Fatal(err)
	}
	for _, d := range u.Diags {
		if strings.Contains(d.String(), "not run") {
			t.Errorf("%s", d)
		}
	}
	m := roots.Module("app")
	var got []string
	for _, c := range AutomatonConfig(m, u.Config, "", "").Checkers {
		got = append(got, fmt.Sprintf("%s %s %s %s", c.Resource(), c.When, c.Action, c.Rule()))
	}
	want := []string{
		"tcp.web both restart t_web",
		"tcp.db pre wait t_db",
		"ping.gw pre wait p_gw",
		"ping.gw2 both noaction p_gw2",
		"intf.lan pre wait interface_failure",
		"ip.vip both stopstart ip_failure",
		"module.base_127.0.0.1 pre wait module_failure",
		"module.leader pre wait module_failure",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("checkers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	whats := map[string]string{}
	for _, b := range builtinCheckers(m, u.Config) {
		whats[b.c.Resource()] = fmt.Sprintf("%s: %s (%s)", b.origin, b.what, b.interval)
	}
	for res, want := range map[string]string{
		"tcp.db":                "tcpcheck: connection to 10.0.0.5:5432 every 2s, timeout 1s (2s)",
		"module.base_127.0.0.1": "modulecheck: module base at http://127.0.0.1:9999 every 10s, timeout 5s (10s)",
		"module.leader":         "modulecheck: module mirror at https://10.0.0.129:9453 every 10s, timeout 5s (10s)",
		"intf.lan":              "intfcheck: link of the interface of 10.0.0.10 every 10s (10s)",
	} {
		if whats[res] != want {
			t.Errorf("%s: %q, want %q", res, whats[res], want)
		}
	}
}

// testDriver runs the driver of a module "app" with configuration cfg
// until the end of the test.
func testDriver(t *testing.T, cfg *safe.Config) (*Driver, *modlog.Store) {
	t.Helper()
	roots := layout.Roots{SAFE: t.TempDir(), SAFEVAR: t.TempDir()}
	m := roots.Module("app")
	if err := os.MkdirAll(m.UserVar(), 0o755); err != nil {
		t.Fatal(err)
	}
	return runDriver(t, m, cfg, "", "", automaton.DefaultPersisted())
}

// runDriver runs the driver of module m (node and peer, record p) with
// its module log until the end of the test, then closes the log.
func runDriver(t *testing.T, m layout.Module, cfg *safe.Config, node, peer string, p automaton.Persisted) (*Driver, *modlog.Store) {
	t.Helper()
	store, err := modlog.Open(filepath.Join(m.UserVar(), "log.db"), modlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := NewDriver(m, cfg, node, peer, p, store, modlog.NewLogger(m.Name, store, modlog.NopSyslog{}), false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		store.Close()
	})
	return d, store
}

func post(t *testing.T, d *Driver, ev automaton.Event) {
	t.Helper()
	if err := d.Post(t.Context(), ev); err != nil {
		t.Fatalf("%+v: %v", ev, err)
	}
}

// waitState polls the driver until the module is in state want ("UP
// Ready").
func waitState(t *testing.T, d *Driver, store *modlog.Store, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := d.Snapshot()
		if got := fmt.Sprintf("%s %s", s.State, s.Ready); got == want && !s.Busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("module is %s %s, want %s; its log:\n%s", s.State, s.Ready, want, logText(t, store))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func logLines(t *testing.T, store *modlog.Store) []string {
	t.Helper()
	es, err := store.Last(1000, true)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Origin+" "+e.Level+": "+e.Msg)
	}
	return out
}

func logText(t *testing.T, store *modlog.Store) string {
	return "\t" + strings.Join(logLines(t, store), "\n\t")
}

// wantLog checks that the module log holds each line (origin level
// message), in this order, after the line after, and returns the index of
// the last one.
func wantLog(t *testing.T, store *modlog.Store, after int, lines ...string) int {
	t.Helper()
	all := logLines(t, store)
	i := after
	for _, l := range lines {
		for i++; i < len(all) && all[i] != l; i++ {
		}
		if i >= len(all) {
			t.Fatalf("the log has no %q after line %d; it holds:\n%s", l, after, logText(t, store))
		}
	}
	return i
}

// countLog counts the lines of the module log that hold text.
func countLog(t *testing.T, store *modlog.Store, text string) int {
	n := 0
	for _, l := range logLines(t, store) {
		if strings.Contains(l, text) {
			n++
		}
	}
	return n
}

// noCheckerLoop fails if a built-in checker's loop still runs.
func noCheckerLoop(t *testing.T) {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "runtime/checkers.Run(") {
		t.Fatalf("a checker loop still runs:\n%s", b.String())
	}
}

// TestTCPCheckerRuns: a tcp checker (when="pre", action="wait") of a
// listener of the test holds the module in WAIT while the listener is
// closed and lets it start again once it listens; each change of its
// resource is logged once; `safekit checker off` ends its loop.
func TestTCPCheckerRuns(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	port := l.Addr().(*net.TCPAddr).Port
	fast := safe.Duration(50 * time.Millisecond)
	cfg := &safe.Config{Service: safe.Service{Mode: safe.ModeLight, MaxLoop: 3, LoopInterval: safe.Duration(24 * time.Hour)},
		Check: safe.Check{TCP: []safe.TCPCheck{{Ident: "web", When: "pre", Action: "wait",
			To: safe.Target{Addr: "127.0.0.1", Port: port, Interval: fast, Timeout: safe.Duration(time.Second)}}}},
		Failover: &safe.Failover{Period: fast, HandleTime: 2 * fast}}
	d, store := testDriver(t, cfg)

	post(t, d, automaton.Command{Action: "start"})
	waitState(t, d, store, "UP Ready")
	n := wantLog(t, store, -1, "tcpcheck I: Checker tcp.web started (connection to "+addr+" every 50ms, timeout 1s)",
		"tcpcheck I: Resource tcp.web set to up by tcpcheck", "heart E: Local state UP Ready")

	l.Close()
	waitState(t, d, store, "WAIT NotReady")
	n = wantLog(t, store, n, "tcpcheck C: Resource tcp.web set to down by tcpcheck",
		"heart E: Action wait from failover rule t_web", "heart E: Local state WAIT NotReady")
	time.Sleep(5 * time.Duration(fast)) // more probes, all down: no new line

	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	waitState(t, d, store, "UP Ready")
	wantLog(t, store, n, "tcpcheck I: Resource tcp.web set to up by tcpcheck",
		"heart E: Action wakeup from failover rule Implicit_wakeup", "heart E: Local state UP Ready")
	if up, down := countLog(t, store, "Resource tcp.web set to up"), countLog(t, store, "Resource tcp.web set to down"); up != 2 || down != 1 {
		t.Errorf("the resource was logged up %d times and down %d times, want 2 and 1:\n%s", up, down, logText(t, store))
	}

	post(t, d, automaton.Setting{Name: "checker", On: false, By: "root"})
	wantLog(t, store, -1, "tcpcheck I: Checker tcp.web stopped")
	noCheckerLoop(t)
	post(t, d, automaton.Command{Action: "stop"})
	waitState(t, d, store, "STOP NotReady")
}

// fakeNode answers GET .../modules/base/checkstate as a node's web
// service does.
type fakeNode struct {
	mu sync.Mutex
	st checkers.ModuleState
}

func (f *fakeNode) set(state, ready string, started time.Time) {
	f.mu.Lock()
	f.st = checkers.ModuleState{State: state, Ready: ready, Started: started}
	f.mu.Unlock()
}

func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1.0/modules/base/checkstate" {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(f.st)
}

// TestModuleCheckerRuns: module app depends on module base (User's Guide
// §4.4.6): it waits while base is stopped, starts once base is ready, and
// stops and starts again when base restarts, which only base's start date
// tells when the restart falls between two polls.
func TestModuleCheckerRuns(t *testing.T) {
	node := &fakeNode{}
	node.set("STOP", "NotReady", time.Time{})
	srv := httptest.NewServer(node)
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	fast := safe.Duration(50 * time.Millisecond)
	cfg := &safe.Config{Service: safe.Service{Mode: safe.ModeLight, MaxLoop: 3, LoopInterval: safe.Duration(24 * time.Hour)},
		Check: safe.Check{Module: []safe.ModuleCheck{{Name: "base",
			To: &safe.Target{Addr: "127.0.0.1", Port: port, Interval: fast, Timeout: safe.Duration(time.Second)}}}},
		Failover: &safe.Failover{Period: fast, HandleTime: 2 * fast}}
	d, store := testDriver(t, cfg)
	const res = "module.base_127.0.0.1"

	post(t, d, automaton.Command{Action: "start"})
	waitState(t, d, store, "WAIT NotReady")
	n := wantLog(t, store, -1, "modulecheck I: Checker "+res+": module base is STOP NotReady",
		"modulecheck C: Resource "+res+" set to down by modulecheck", "heart E: Action wait from failover rule module_failure")

	t1 := time.Now()
	node.set("UP", "Ready", t1)
	waitState(t, d, store, "UP Ready")
	n = wantLog(t, store, n, "modulecheck I: Resource "+res+" set to up by modulecheck",
		"heart E: Action wakeup from failover rule Implicit_wakeup", "heart E: Local state UP Ready")
	if got := countLog(t, store, "called by modulecheck"); got != 0 {
		t.Fatalf("base started while app waited: app must not stopstart:\n%s", logText(t, store))
	}

	node.set("UP", "Ready", t1.Add(time.Second))
	// The module log is written as the actions run, the state published
	// after them: wait for the second UP Ready in the log.
	waitLogCount(t, store, "heart E: Local state UP Ready", 2)
	wantLog(t, store, n, "heartplug U: Action stopstart called by modulecheck", "modulecheck I: Checker "+res+" stopped",
		"heart U: Action start called automatically", "modulecheck I: Resource "+res+" set to up by modulecheck",
		"heart E: Local state UP Ready")
	time.Sleep(5 * time.Duration(fast))
	if got := countLog(t, store, "called by modulecheck"); got != 1 {
		t.Errorf("%d stopstarts for one restart of base:\n%s", got, logText(t, store))
	}
	if p := d.Snapshot().Persisted; p.LoopCount != 1 {
		t.Errorf("maxloop count %d after the stopstart, want 1", p.LoopCount)
	}

	post(t, d, automaton.Command{Action: "stop"})
	waitState(t, d, store, "STOP NotReady")
	noCheckerLoop(t)
}

// waitLogCount polls the module log until it holds text n times.
func waitLogCount(t *testing.T, store *modlog.Store, text string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for countLog(t, store, text) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q is not %d times in the log:\n%s", text, n, logText(t, store))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

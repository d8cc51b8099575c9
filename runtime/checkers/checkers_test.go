package checkers

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/safekit-oss/safekit/internal/testenv"
)

// TestRun: the first result and each change are reported, a Restarted
// result even when it stays up; the probe runs every interval; once ctx
// ends nothing more is reported and Run returns, even from a probe that
// was running.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		seq := []Result{{}, {}, {Up: true}, {Up: true, Restarted: true}, {Up: true}, {}}
		start := time.Now()
		var at []time.Duration
		probe := func(ctx context.Context) Result {
			at = append(at, time.Since(start))
			r := seq[min(len(at)-1, len(seq)-1)]
			return r
		}
		var got []string
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			Run(ctx, 10*time.Second, probe, func(r Result) { got = append(got, fmt.Sprintf("%d:up=%v,restarted=%v", len(at)-1, r.Up, r.Restarted)) })
			close(done)
		}()
		time.Sleep(55 * time.Second)
		cancel()
		<-done
		if want := "[0s 10s 20s 30s 40s 50s]"; fmt.Sprint(at) != want {
			t.Errorf("probes at %v, want %s", at, want)
		}
		if want := "[0:up=false,restarted=false 2:up=true,restarted=false 3:up=true,restarted=true 5:up=false,restarted=false]"; fmt.Sprint(got) != want {
			t.Errorf("reports %v,\nwant %s", got, want)
		}
	})

	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		started := make(chan struct{})
		done := make(chan struct{})
		reported := false
		go func() {
			Run(ctx, time.Second, func(ctx context.Context) Result {
				close(started)
				<-ctx.Done()
				return Result{Up: true}
			}, func(Result) { reported = true })
			close(done)
		}()
		<-started
		cancel()
		<-done
		if reported {
			t.Error("a probe interrupted by the stop was reported")
		}
	})
}

// TestTCP connects to a listener of the test, then to its closed port.
func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	probe := TCP("127.0.0.1", port, time.Second)
	if r := probe(t.Context()); !r.Up || r.Err != nil {
		t.Fatalf("listening: %+v, want up", r)
	}
	l.Close()
	r := probe(t.Context())
	if r.Up || r.Err == nil || !strings.Contains(r.Err.Error(), "connection refused") {
		t.Fatalf("closed: %+v, want down with connection refused", r)
	}
	t.Logf("down: %v", r.Err)
}

// TestPing pings this node, then, in a network namespace of the test,
// an address that nothing answers and an unreachable one. No packet leaves
// the machine.
func TestPing(t *testing.T) {
	needPing(t)
	if r := Ping("127.0.0.1", time.Second)(t.Context()); !r.Up {
		t.Fatalf("ping 127.0.0.1: %+v, want up", r)
	}
	// A veth pair with an address on one end only: nobody answers the ARP
	// requests for 192.0.2.2; there is no route to anything else.
	ns := newNetns(t, "link set lo up", "link add skC type veth peer name skD", "addr add 192.0.2.1/24 dev skC", "link set skC up", "link set skD up")
	cases := []struct{ addr, want string }{
		{"192.0.2.2", "ping 192.0.2.2: no answer within 1s"},
		{"198.51.100.1", "ping 198.51.100.1: connect: Network is unreachable"},
		{"192.0.2.1", ""},
		{"127.0.0.1", ""},
	}
	for _, c := range cases {
		r := probeIn(t, ns, Ping(c.addr, 900*time.Millisecond))
		switch {
		case c.want == "" && !r.Up:
			t.Errorf("ping %s: %v, want up", c.addr, r.Err)
		case c.want != "" && (r.Up || r.Err == nil || r.Err.Error() != c.want):
			t.Errorf("ping %s: %+v, want down with %q", c.addr, r, c.want)
		}
	}
}

// TestInterfaceAndAddress follows the interface that holds 192.0.2.1 in a
// network namespace of the test: a veth whose peer is down has no carrier,
// then its link comes up, then it is set down, then loses the address.
// The address checker only cares for the address.
func TestInterfaceAndAddress(t *testing.T) {
	ns := newNetns(t, "link add skA type veth peer name skB", "addr add 192.0.2.1/24 dev skA", "link set skA up")
	intf, addr := Interface("192.0.2.1"), Address("192.0.2.1")
	check := func(what, wantIntf string, addrUp bool) {
		t.Helper()
		// Links change asynchronously: poll until the expected answer.
		deadline := time.Now().Add(5 * time.Second)
		for {
			ri, ra := probeIn(t, ns, intf), probeIn(t, ns, addr)
			gotIntf := ""
			if ri.Err != nil {
				gotIntf = ri.Err.Error()
			}
			if ri.Up == (wantIntf == "") && gotIntf == wantIntf && ra.Up == addrUp {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: interface %+v (want %q), address %+v (want up=%v)", what, ri, wantIntf, ra, addrUp)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	check("peer down", "interface skA (192.0.2.1) has no link (no carrier)", true)
	ip(t, "-n", ns, "link", "set", "skB", "up")
	check("peer up", "", true)
	ip(t, "-n", ns, "link", "set", "skA", "down")
	check("interface down", "interface skA (192.0.2.1) is down", true)
	ip(t, "-n", ns, "link", "set", "skA", "up")
	check("interface up again", "", true)
	ip(t, "-n", ns, "addr", "del", "192.0.2.1/24", "dev", "skA")
	check("address removed", "192.0.2.1 is not configured on any interface of this node", false)
}

// TestModule polls a web service that answers as a node's checkstate.
func TestModule(t *testing.T) {
	var mu sync.Mutex
	code, st := http.StatusOK, ModuleState{State: "STOP", Ready: "NotReady"}
	set := func(c int, s ModuleState) {
		mu.Lock()
		code, st = c, s
		mu.Unlock()
	}
	var paths atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths.Store(r.URL.Path)
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(code)
		if code != http.StatusOK {
			fmt.Fprint(w, `{"error":"module base is not installed"}`)
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	t1 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Minute)
	probe := Module(srv.URL, "base", time.Second)
	steps := []struct {
		code int
		st   ModuleState
		want string
	}{
		{200, ModuleState{State: "STOP", Ready: "NotReady"}, "down: module base is STOP NotReady"},
		{200, ModuleState{State: "ALONE", Ready: "Transient", Started: t1}, "down: module base is ALONE Transient"},
		{200, ModuleState{State: "ALONE", Ready: "Ready", Started: t1}, "up"},
		{200, ModuleState{State: "PRIM", Ready: "Ready", Started: t1}, "up"},
		// Restarted between two polls: only the date tells.
		{200, ModuleState{State: "PRIM", Ready: "Ready", Started: t2}, "up restarted"},
		{200, ModuleState{State: "PRIM", Ready: "Ready", Started: t2}, "up"},
		{200, ModuleState{State: "SECOND", Ready: "Ready", Started: t2}, "down: module base is SECOND Ready"},
		{200, ModuleState{State: "UP", Ready: "Ready", Started: t2}, "up"},
		{404, ModuleState{}, "down: GET " + srv.URL + "/api/v1.0/modules/base/checkstate: 404 Not Found: module base is not installed"},
		// A node that does not give the date: no restart can be told.
		{200, ModuleState{State: "UP", Ready: "Ready"}, "up"},
		{200, ModuleState{State: "UP", Ready: "Ready"}, "up"},
	}
	for i, s := range steps {
		set(s.code, s.st)
		r := probe(t.Context())
		got := "up"
		if !r.Up {
			got = "down: " + r.Err.Error()
		}
		if r.Restarted {
			got += " restarted"
		}
		if got != s.want {
			t.Errorf("step %d (%d %+v): %s, want %s", i, s.code, s.st, got, s.want)
		}
	}
	if p := paths.Load(); p != "/api/v1.0/modules/base/checkstate" {
		t.Errorf("path %v", p)
	}
	srv.Close()
	if r := probe(t.Context()); r.Up || !strings.Contains(r.Err.Error(), "connection refused") {
		t.Errorf("web service down: %+v", r)
	}
}

func needPing(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		testenv.Need(t, "ping (iputils-ping)")
	}
}

// newNetns creates a network namespace for the test: testenv.NewNetns.
func newNetns(t *testing.T, cmds ...string) string {
	t.Helper()
	return testenv.NewNetns(t, "skcheck", cmds...)
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	testenv.IP(t, args...)
}

// probeIn runs probe on a thread that has entered network namespace ns;
// the processes it starts (ping) are in it too.
func probeIn(t *testing.T, ns string, probe Probe) Result {
	t.Helper()
	r, err := testenv.InNetns(ns, func() (Result, error) { return probe(context.Background()), nil })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

package farm

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/safekit-oss/safekit/safe"
)

func TestShares(t *testing.T) {
	three := []Host{{"node1", 1}, {"node2", 1}, {"node3", 1}}
	for _, tc := range []struct {
		name  string
		hosts []Host
		up    []string
		want  map[string]int
	}{
		{"one node", nil, []string{"node1"}, map[string]int{"node1": 256}},
		{"two nodes", nil, []string{"node2", "node1"}, map[string]int{"node1": 128, "node2": 128}},
		// 256/3: one node gets the extra entry; which one depends on the
		// group's label, the same on every node.
		{"three nodes", nil, []string{"node1", "node2", "node3"}, map[string]int{"node1": 85, "node2": 86, "node3": 85}},
		{"three listed hosts", three, []string{"node1", "node2", "node3"}, map[string]int{"node1": 85, "node2": 86, "node3": 85}},
		// 256*3/5 = 153.6, 256/5 = 51.2: the largest remainder takes the last entry.
		{"powers 3/1/1", []Host{{"node1", 3}, {"node2", 1}, {"node3", 1}}, []string{"node1", "node2", "node3"},
			map[string]int{"node1": 154, "node2": 51, "node3": 51}},
		{"power 0", []Host{{"node1", 1}, {"node2", 0}, {"node3", 1}}, []string{"node1", "node2", "node3"},
			map[string]int{"node1": 128, "node2": 0, "node3": 128}},
		{"node down", three, []string{"node1", "node3"}, map[string]int{"node1": 128, "node2": 0, "node3": 128}},
		{"only power 0 up", []Host{{"node1", 0}, {"node2", 1}}, []string{"node1"}, map[string]int{"node1": 0, "node2": 0}},
		{"none up", three, nil, map[string]int{"node1": 0, "node2": 0, "node3": 0}},
		{"up but not in the group", []Host{{"node1", 1}}, []string{"node1", "node9"}, map[string]int{"node1": 256, "node9": 0}},
		{"duplicate up", nil, []string{"node1", "node1", "node2"}, map[string]int{"node1": 128, "node2": 128}},
		// Chain HA powers: proportional, the lowest power keeps a few entries.
		{"powers 1/64/4096", []Host{{"node1", 4096}, {"node2", 64}, {"node3", 1}}, []string{"node1", "node2", "node3"},
			map[string]int{"node1": 252, "node2": 4, "node3": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Shares("FarmProto", 0, tc.hosts, tc.up)
			if !maps.Equal(got, tc.want) {
				t.Errorf("Shares = %v, want %v", got, tc.want)
			}
			rev := slices.Clone(tc.up)
			slices.Reverse(rev)
			if again := Shares("FarmProto", 0, tc.hosts, rev); !maps.Equal(again, got) {
				t.Errorf("Shares depends on the order of up: %v then %v", got, again)
			}
		})
	}
}

// TestSharesProperties checks, over many power combinations, that the
// whole table is handed out and that more power never means fewer entries.
func TestSharesProperties(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	for n := 1; n <= len(names); n++ {
		for seed := range 200 {
			hosts := make([]Host, n)
			for i := range hosts {
				hosts[i] = Host{names[i], (seed*7 + i*13) % 9}
			}
			got := Shares(fmt.Sprintf("g%d", seed), seed%3, hosts, names[:n])
			sum, anyPower := 0, false
			for _, h := range hosts {
				sum += got[h.Name]
				anyPower = anyPower || h.Power > 0
				if h.Power == 0 && got[h.Name] != 0 {
					t.Fatalf("%v: power 0 host %s got %d", hosts, h.Name, got[h.Name])
				}
				for _, o := range hosts {
					if h.Power > o.Power && got[h.Name] < got[o.Name] {
						t.Fatalf("%v: %s (power %d) got %d < %s (power %d) %d", hosts, h.Name, h.Power, got[h.Name], o.Name, o.Power, got[o.Name])
					}
				}
			}
			if anyPower && sum != Entries || !anyPower && sum != 0 {
				t.Fatalf("%v: shares %v sum to %d", hosts, got, sum)
			}
		}
	}
}

// The extra entry of a three-node group moves with the group, so that
// several groups do not all load the same node.
func TestSharesRotateAcrossGroups(t *testing.T) {
	up := []string{"node1", "node2", "node3"}
	owners := map[string]bool{}
	for i := range 10 {
		for n, c := range Shares("web", i, nil, up) {
			if c == 86 {
				owners[n] = true
			}
		}
	}
	if len(owners) < 2 {
		t.Errorf("the extra entry of 10 groups always falls on %v", owners)
	}
}

func TestLogLines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []Host
		up    []string
		self  string
		want  []string
	}{
		{"two nodes", nil, []string{"node2", "node1"}, "node1", []string{
			"farm membership: node1 node2 (group FarmProto_0)",
			"farm load: 128/256 (group FarmProto_0)",
		}},
		{"alone", nil, []string{"node1"}, "node1", []string{
			"farm membership: node1 (group FarmProto_0)",
			"farm load: 256/256 (group FarmProto_0)",
		}},
		{"power 0 member", []Host{{"node1", 1}, {"node2", 0}}, []string{"node1", "node2"}, "node2", []string{
			"farm membership: node1 node2 (group FarmProto_0)",
			"farm load: 0/256 (group FarmProto_0)",
		}},
		{"nobody up", nil, nil, "node1", []string{
			"farm membership: (group FarmProto_0)",
			"farm load: 0/256 (group FarmProto_0)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LogLines("FarmProto", 0, tc.hosts, tc.up, tc.self); !slices.Equal(got, tc.want) {
				t.Errorf("LogLines =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestPercent(t *testing.T) {
	for n, want := range map[int]string{0: "0%", 128: "50%", 256: "100%", 86: "34%", 85: "33%", 64: "25%", 1: "0%", 2: "1%"} {
		if got := Percent(n); got != want {
			t.Errorf("Percent(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestGroups(t *testing.T) {
	implicit := []Group{{Name: "farm"}}
	if got := Groups("farm", nil); !slices.EqualFunc(got, implicit, groupEqual) || got[0].Label() != "farm_0" {
		t.Errorf("Groups without <vip> = %+v, want %+v labelled farm_0", got, implicit)
	}
	if got := Groups("farm", &safe.VIP{}); !slices.EqualFunc(got, implicit, groupEqual) {
		t.Errorf("Groups without <loadbalancing_list> = %+v, want %+v", got, implicit)
	}
	vip := &safe.VIP{Groups: []safe.LBGroup{
		{Name: "FarmProto"},
		{Name: "web", Hosts: []safe.LBHost{{Name: "node1", Power: 3}, {Name: "node2", Power: 1}}},
	}}
	want := []Group{{Name: "FarmProto"}, {Name: "web", Index: 1, Hosts: []Host{{"node1", 3}, {"node2", 1}}}}
	got := Groups("farm", vip)
	if !slices.EqualFunc(got, want, groupEqual) {
		t.Errorf("Groups = %+v, want %+v", got, want)
	}
	if got[1].Label() != "web_1" {
		t.Errorf("label %q, want web_1", got[1].Label())
	}
}

func groupEqual(a, b Group) bool {
	return a.Name == b.Name && a.Index == b.Index && (a.Hosts == nil) == (b.Hosts == nil) && slices.Equal(a.Hosts, b.Hosts)
}

// TestTimings pins the documented mapping of <farm> onto memberlist.
func TestTimings(t *testing.T) {
	c := memberlist.DefaultLANConfig()
	rejoin, update := applyTimings(c, DefaultPulse, DefaultMlostCount, DefaultSlostCount)
	got := fmt.Sprint(c.ProbeInterval, c.ProbeTimeout, c.GossipInterval, c.SuspicionMult, c.SuspicionMaxTimeoutMult,
		c.TCPTimeout, c.PushPullInterval, rejoin, update)
	if want := "100ms 50ms 100ms 10 2 2s 10s 2s 1s"; got != want {
		t.Errorf("timings for 100ms/20/10: %s, want %s", got, want)
	}
	applyTimings(c, 100*time.Millisecond, 80, 40)
	if c.SuspicionMult != 40 || c.SuspicionMaxTimeoutMult != 2 || c.TCPTimeout != 8*time.Second {
		t.Errorf("timings for 100ms/80/40: suspicion %d, max mult %d, tcp %s", c.SuspicionMult, c.SuspicionMaxTimeoutMult, c.TCPTimeout)
	}
}

func TestLogWriter(t *testing.T) {
	var got []string
	l := newLogger(func(level, format string, args ...any) { got = append(got, level+" "+fmt.Sprintf(format, args...)) })
	l.Printf("[WARN] memberlist: a")
	l.Printf("[ERR] memberlist: b")
	l.Printf("[DEBUG] memberlist: c")
	l.Printf("[INFO] memberlist: d")
	l.Printf("no level")
	want := []string{"W memberlist: a", "W memberlist: b", "D memberlist: c", "D memberlist: d", "D no level"}
	if !slices.Equal(got, want) {
		t.Errorf("log lines %q, want %q", got, want)
	}
}

// Membership tests run real memberlists on 127.0.0.1, .2, .3 (all on lo),
// with the same port as nodes of a farm would.

// fast timings: a probe every 50ms.
const testPulse = 50 * time.Millisecond

type testNode struct {
	name, addr string
	m          *Membership
	changes    chan []Member

	mu    sync.Mutex
	state string
	logs  []string
}

func (n *testNode) getState() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

func (n *testNode) setState(s string) {
	n.mu.Lock()
	n.state = s
	n.mu.Unlock()
	n.m.Update()
}

func (n *testNode) logged(substr string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.ContainsFunc(n.logs, func(l string) bool { return strings.Contains(l, substr) })
}

// startNode starts the membership of node nodeN on 127.0.0.N; peers are
// the other nodes' numbers.
func startNode(t *testing.T, cfg Config, n int, state string, peers ...int) *testNode {
	t.Helper()
	tn := &testNode{name: fmt.Sprintf("node%d", n), addr: fmt.Sprintf("127.0.0.%d", n), state: state, changes: make(chan []Member, 100)}
	cfg.Node, cfg.BindAddr = tn.name, tn.addr
	for _, p := range peers {
		cfg.Peers = append(cfg.Peers, fmt.Sprintf("127.0.0.%d", p))
	}
	cfg.Logf = func(level, format string, args ...any) {
		tn.mu.Lock()
		tn.logs = append(tn.logs, level+" "+fmt.Sprintf(format, args...))
		tn.mu.Unlock()
	}
	// Registered before Stop, so it runs after it: the log is complete.
	t.Cleanup(func() {
		if t.Failed() {
			tn.mu.Lock()
			t.Logf("log of %s:\n%s", tn.name, strings.Join(tn.logs, "\n"))
			tn.mu.Unlock()
		}
	})
	m, err := Start(cfg, tn.getState, tn.changes)
	if err != nil {
		t.Fatal(err)
	}
	tn.m = m
	t.Cleanup(func() { m.Stop() })
	return tn
}

// freePort returns a port free for UDP and TCP on 127.0.0.1 (and, in
// practice, on the rest of 127/8).
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return 0
}

// waitMembers reads the node's changes until a list satisfies want, or
// fails after d.
func waitMembers(t *testing.T, n *testNode, d time.Duration, what string, want func([]Member) bool) []Member {
	t.Helper()
	deadline := time.After(d)
	var last []Member
	for {
		select {
		case l := <-n.changes:
			if want(l) {
				return l
			}
			last = l
		case <-deadline:
			t.Fatalf("%s: %s not seen within %s; last list %v", n.name, what, d, last)
		}
	}
}

// waitLogged polls the node's log until it holds substr, or fails after d.
func waitLogged(t *testing.T, n *testNode, substr string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !n.logged(substr) {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: %q not logged within %s", n.name, substr, d)
		}
	}
}

func states(l []Member) string {
	var s []string
	for _, m := range l {
		s = append(s, m.Name+"="+m.State)
	}
	return strings.Join(s, " ")
}

func is(want string) func([]Member) bool {
	return func(l []Member) bool { return states(l) == want }
}

func TestMembershipJoinUpdateLeave(t *testing.T) {
	// A long suspicion timeout (100 pulses = 5s): a removal seen well
	// before it comes from the Leave.
	cfg := Config{Module: "farm", ID: 1, Port: freePort(t), Pulse: testPulse, MlostCount: 200, SlostCount: 100, Key: []byte("cluster key")}
	n1 := startNode(t, cfg, 1, "UP", 2, 3)
	n2 := startNode(t, cfg, 2, "UP", 1, 3)
	n3 := startNode(t, cfg, 3, "WAIT", 1, 2)

	all := "node1=UP node2=UP node3=WAIT"
	for _, n := range []*testNode{n1, n2, n3} {
		l := waitMembers(t, n, 5*time.Second, all, is(all))
		if l[2].Addr != "127.0.0.3" {
			t.Errorf("%s sees node3 at %q, want 127.0.0.3", n.name, l[2].Addr)
		}
	}
	if got := states(n1.m.Members()); got != all {
		t.Errorf("Members() = %s, want %s", got, all)
	}

	n3.setState("UP")
	up := "node1=UP node2=UP node3=UP"
	for _, n := range []*testNode{n1, n2, n3} {
		waitMembers(t, n, 3*time.Second, up, is(up))
	}

	start := time.Now()
	if err := n3.m.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	two := "node1=UP node2=UP"
	for _, n := range []*testNode{n1, n2} {
		waitMembers(t, n, 2*time.Second, two, is(two))
	}
	t.Logf("leave seen in %s", time.Since(start))
	if err := n3.m.Stop(); err != nil {
		t.Error(err)
	}
	if err := n3.m.Leave(time.Second); err == nil {
		t.Error("Leave after Stop succeeded")
	}
}

func TestMembershipKill(t *testing.T) {
	// Suspicion timeout: 10 pulses = 500ms.
	cfg := Config{Module: "farm", ID: 1, Port: freePort(t), Pulse: testPulse, MlostCount: 20, SlostCount: 10}
	n1 := startNode(t, cfg, 1, "UP", 2, 3)
	n2 := startNode(t, cfg, 2, "UP", 1, 3)
	n3 := startNode(t, cfg, 3, "UP", 1, 2)
	all := "node1=UP node2=UP node3=UP"
	for _, n := range []*testNode{n1, n2, n3} {
		waitMembers(t, n, 5*time.Second, all, is(all))
	}

	start := time.Now()
	if err := n3.m.Stop(); err != nil {
		t.Fatal(err)
	}
	two := "node1=UP node2=UP"
	for _, n := range []*testNode{n1, n2} {
		waitMembers(t, n, 5*time.Second, two, is(two))
	}
	took := time.Since(start)
	t.Logf("death seen in %s", took)
	if suspicion := 10 * testPulse; took < suspicion {
		t.Errorf("node3 removed after %s, before the suspicion timeout %s", took, suspicion)
	}
}

// A node whose key differs, or that has none, stays alone and the farm
// goes on.
func TestMembershipKeyMismatch(t *testing.T) {
	cfg := Config{Module: "farm", ID: 1, Port: freePort(t), Pulse: testPulse, Key: []byte("cluster key")}
	n1 := startNode(t, cfg, 1, "UP", 2)
	n2 := startNode(t, cfg, 2, "UP", 1)
	two := "node1=UP node2=UP"
	waitMembers(t, n1, 5*time.Second, two, is(two))

	other := cfg
	other.Key = []byte("another key")
	n3 := startNode(t, other, 3, "UP", 1, 2)
	none := cfg
	none.Key = nil
	n4 := startNode(t, none, 4, "UP", 1, 2)

	// Start makes its first join attempt before returning: it has failed.
	for _, n := range []*testNode{n3, n4} {
		if !n.logged("failed to join 127.0.0.1:") {
			t.Errorf("%s: no failed join in its log", n.name)
		}
		if got := states(n.m.Members()); got != n.name+"=UP" {
			t.Errorf("%s sees %s, want itself alone", n.name, got)
		}
	}
	n2.setState("WAIT")
	want := "node1=UP node2=WAIT"
	l := waitMembers(t, n1, 3*time.Second, want, is(want))
	if got := states(n1.m.Members()); got != want {
		t.Errorf("node1 sees %s after the strangers came, want %s (last change %s)", got, want, states(l))
	}
}

// A node of another module id on the same port and key is refused.
func TestMembershipOtherModule(t *testing.T) {
	cfg := Config{Module: "farm", ID: 1, Port: freePort(t), Pulse: testPulse, Key: []byte("cluster key")}
	n1 := startNode(t, cfg, 1, "UP", 2, 3)
	n2 := startNode(t, cfg, 2, "UP", 1, 3)
	two := "node1=UP node2=UP"
	waitMembers(t, n1, 5*time.Second, two, is(two))

	other := cfg
	other.Module, other.ID = "farm2", 2
	n3 := startNode(t, other, 3, "UP", 1, 2)
	if !n3.logged("runs module farm id 1, not module farm2 id 2") {
		t.Errorf("node3: no refusal in its log")
	}
	if got := states(n3.m.Members()); got != "node3=UP" {
		t.Errorf("node3 sees %s, want itself alone", got)
	}
	n2.setState("WAIT")
	want := "node1=UP node2=WAIT"
	waitMembers(t, n1, 3*time.Second, want, is(want))
	if got := states(n1.m.Members()); got != want {
		t.Errorf("node1 sees %s, want %s", got, want)
	}
	waitLogged(t, n1, "runs module farm2 id 2, not module farm id 1", 3*time.Second)
}

func TestStartErrors(t *testing.T) {
	_, err := Start(Config{Module: "farm"}, func() string { return "WAIT" }, nil)
	if err == nil {
		t.Fatal("Start with an empty config succeeded")
	}
	for _, want := range []string{"module id 0", "port 0", "no node name", "no address"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	port := freePort(t)
	cfg := Config{Module: "farm", ID: 1, Port: port, Node: "node1", BindAddr: "127.0.0.1"}
	m, err := Start(cfg, func() string { return "WAIT" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if _, err := Start(cfg, func() string { return "WAIT" }, nil); err == nil || !strings.Contains(err.Error(), "another module") {
		t.Errorf("second Start on the same port: %v", err)
	}
}

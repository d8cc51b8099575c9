package compattests

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
)

// testVIP: the published mirror with a virtual IP on the harness's
// network, as the User's Guide tests it (§4.2.6), from the host, which
// stands for a client on the LAN: a service that answers with the name of
// its node listens on every address of both nodes, and the VIP reaches the
// one of the primary. The VIP follows the primary on a failover (its
// connections reset), a swap and the crash of the primary's node; the
// crashed node, back, removes the VIP its crash left behind.
func testVIP(t *testing.T) {
	const am, port = "mirror", 18099
	c := newCluster(t, 2)
	n1, n2 := c.Node("node1"), c.Node("node2")
	vip := strings.TrimSuffix(n1.Addr("default"), ".11") + ".99"
	setupCluster(t, c)
	// arpreroute every second, so that the host's ARP cache follows even
	// when the crashed node, still holding the VIP, comes back.
	withVIP := func(conf string) string {
		return strings.Replace(conf, "</service>", fmt.Sprintf(`  <vip>
      <interface_list>
        <interface check="on" arpreroute="on" arpinterval="1" arpelapse="120">
          <real_interface>
            <virtual_addr addr="%s" where="one_side_alias" check="on"/>
          </real_interface>
        </interface>
      </interface_list>
    </vip>
  </service>`, vip), 1)
	}
	installModule(t, c, am, corpusMirror(t), shortHeartbeats, withVIP)
	for _, n := range c.Nodes {
		serveNameInNode(t, n, port)
	}
	name := "Virtual IP <" + vip + " of " + am + ">"
	network := strings.TrimSuffix(vip, ".99") + ".0"

	t0 := time.Now()
	must(t, n1, "prim", "-m", am)
	waitState(t, n1, am, "ALONE Ready")
	must(t, n2, "start", "-m", am)
	waitState(t, n2, am, "SECOND Ready")
	waitState(t, n1, am, "PRIM Ready")
	wantLogged(t, n1, am, t0, "Resource intf."+network+" set to up by intfcheck", name+" set", "Script start_prim",
		"Checker ip."+vip+" started", "Local state ALONE Ready")
	waitLogged(t, n1, am, t0, "Resource ip."+vip+" set to up by ipcheck")
	notLogged(t, n2, am, t0, "Virtual IP")
	wantVIP(t, c, vip, n1)
	answers(t, vip, port, "node1")

	t.Run("stop of the primary: the VIP moves, its connections reset", func(t *testing.T) {
		client, err := net.DialTimeout("tcp", net.JoinHostPort(vip, fmt.Sprint(port)), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		r := bufio.NewReader(client)
		if l, err := r.ReadString('\n'); l != "node1\n" {
			t.Fatalf("the service of the VIP says %q (%v), want node1", l, err)
		}
		t0 := time.Now()
		must(t, n1, "stop", "-m", am)
		waitState(t, n2, am, "ALONE Ready")
		waitState(t, n1, am, "STOP NotReady")
		wantLogged(t, n1, am, t0, "Script stop_prim", "TCP connections of virtual IP <"+vip+" of "+am+"> reset: ", name+" unset", "Local state STOP NotReady")
		wantLogged(t, n2, am, t0, "Action alone called by heart: remote stop", name+" set", "Script start_prim", "Local state ALONE Ready")
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("the client connected to the VIP on node1 reads %v, want its connection reset (tcpreset)", err)
		}
		wantVIP(t, c, vip, n2)
		answers(t, vip, port, "node2")
	})

	t.Run("swap: the VIP goes back to node1", func(t *testing.T) {
		must(t, n1, "start", "-m", am)
		waitState(t, n1, am, "SECOND Ready")
		waitState(t, n2, am, "PRIM Ready")
		t0 := time.Now()
		must(t, n2, "swap", "-m", am)
		waitState(t, n1, am, "PRIM Ready")
		waitState(t, n2, am, "SECOND Ready")
		wantLogged(t, n2, am, t0, "Begin of Swap", `Script stop_prim "force"`, name+" unset", "Local state SECOND Ready")
		wantLogged(t, n1, am, t0, name+" set", "Script start_prim", "Local state PRIM Ready")
		wantVIP(t, c, vip, n1)
		answers(t, vip, port, "node1")
	})

	t.Run("crash of the primary node", func(t *testing.T) {
		// A crashed server is silent on the network; here its network
		// namespace, with the VIP on it, outlives its processes: cut it.
		t0 := time.Now()
		if err := n1.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := n1.CutAll(); err != nil {
			t.Fatal(err)
		}
		waitState(t, n2, am, "ALONE Ready")
		wantLogged(t, n2, am, t0, "Action alone called by heart: no heartbeat", name+" set", "Script start_prim", "Local state ALONE Ready")
		answers(t, vip, port, "node2")

		// node1 boots again with the VIP still on its interface: its
		// module process removes it before it joins as SECOND.
		t1 := time.Now()
		if err := n1.RestoreAll(); err != nil {
			t.Fatal(err)
		}
		if err := n1.Start(); err != nil {
			t.Fatal(err)
		}
		waitState(t, n1, am, "SECOND Ready")
		waitState(t, n2, am, "PRIM Ready")
		wantLogged(t, n1, am, t1, "Module was PRIM when its process ended abnormally", `Script stop_prim "force"`, name+" unset",
			"Action start called at boot time", "Local state SECOND Ready")
		wantVIP(t, c, vip, n2)
		answers(t, vip, port, "node2")
	})
}

// wantVIP checks that `ip addr` shows vip in node holder and in no other
// node.
func wantVIP(t *testing.T, c *testcluster.Cluster, vip string, holder *testcluster.Node) {
	t.Helper()
	for _, n := range c.Nodes {
		out, _, err := n.Run("ip", "-o", "addr", "show")
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(out, " "+vip+"/"); has != (n == holder) {
			t.Errorf("%s: ip addr show: VIP %s there: %v, want %v:\n%s", n.Name, vip, has, n == holder, out)
		}
	}
}

// answers polls the service on vip:port from the host until the node
// that answers is want: the host's ARP cache may point to the former
// primary for a moment.
func answers(t *testing.T, vip string, port int, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	got := ""
	for {
		got = ask(vip, port)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s:%d answers %q, want %s", vip, port, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ask connects to addr:port and returns the line the service sends, or
// the error.
func ask(addr string, port int) string {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(addr, fmt.Sprint(port)), time.Second)
	if err != nil {
		return err.Error()
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	l, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err.Error()
	}
	return strings.TrimSuffix(l, "\n")
}

// serveNameInNode opens, in the network namespace of n, a TCP service on
// every address (0.0.0.0:port) that sends the node's name and keeps the
// connection until the client closes it. It runs until the end of the
// test.
func serveNameInNode(t *testing.T, n *testcluster.Node, port int) {
	t.Helper()
	l := listenIn(t, n, "tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if _, err := io.WriteString(conn, n.Name+"\n"); err == nil {
					_, _ = io.Copy(io.Discard, conn)
				}
			}()
		}
	}()
}

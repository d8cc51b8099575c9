package compattests

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/runtime/heart"
)

// testSecurity attacks a running PRIM/SECOND pair whose cluster has a key:
// heartbeats forged from the peer's own address without the key or with a
// wrong one, a genuine heartbeat replayed, a distributed command without
// credentials or with a wrong password, and a -G of a broken cluster.xml.
// Each is refused and logged, and changes nothing on the node: its module
// state, its files.
func testSecurity(t *testing.T) {
	const am = "mirror"
	archive := corpusMirror(t)
	c := newCluster(t, 2)
	n1, n2 := c.Node("node1"), c.Node("node2")
	setupCluster(t, c)
	// A new key, given to every node with -G.
	keyFile := filepath.Join(testcluster.NodeSAFEVAR, "cluster", "cluster.key")
	before := readFile(t, n1.HostPath(keyFile))
	must(t, n1, "cluster", "genkey")
	wantEachNode(t, c, must(t, n1, "-H", "*", "-G"), "this node is %s")
	key := strings.TrimSpace(readFile(t, n1.HostPath(keyFile)))
	if key == strings.TrimSpace(before) || len(key) != 64 || readFile(t, n2.HostPath(keyFile)) != readFile(t, n1.HostPath(keyFile)) {
		t.Fatalf("after genkey and -G: key %q on node1 (was %q), %q on node2", key, before, readFile(t, n2.HostPath(keyFile)))
	}
	id := installModule(t, c, am, archive, shortHeartbeats)
	port := modules.HeartPort(id)
	must(t, n1, "prim", "-m", am)
	waitState(t, n1, am, "ALONE Ready")

	// A genuine packet of node2 while its module is stopped, captured
	// where node1 receives it.
	stopped := capture(t, n1, n2.Addr("default"), port, []byte(`"state":"STOP"`))

	must(t, n2, "start", "-m", am)
	waitState(t, n2, am, "SECOND Ready")
	waitState(t, n1, am, "PRIM Ready")

	// Each packet below, if accepted, would tell node1 that its secondary
	// stopped: it would go ALONE.
	unchanged := func(t *testing.T, t0 time.Time) {
		t.Helper()
		holdState(t, n1, am, "PRIM Ready", 2*hbPulse)
		notLogged(t, n1, am, t0, "Remote state STOP")
		notLogged(t, n1, am, t0, "Action alone called")
	}
	forged := heart.Status{State: "STOP", Ready: "NotReady", UpToDate: true}
	seq := uint64(time.Now().UnixNano()) + uint64(time.Hour)

	t.Run("heartbeat without the key", func(t *testing.T) {
		t0 := time.Now()
		send(t, n2, n1.Addr("default"), port, heart.Encode(id, "node2", seq, time.Now(), forged, nil))
		waitLogged(t, n1, am, t0, fmt.Sprintf("Heartbeat packet from %s on default dropped: authentication failed", n2.Addr("default")))
		unchanged(t, t0)
	})

	t.Run("heartbeat with a wrong key", func(t *testing.T) {
		t0 := time.Now()
		wrong := sha256.Sum256([]byte("not the cluster key"))
		send(t, n2, n1.Addr("default"), port, heart.Encode(id, "node2", seq, time.Now(), forged, wrong[:]))
		// Refusals for one reason are logged once, then every hundredth:
		// the line of the packet above stands for this one too.
		unchanged(t, t0)
	})

	t.Run("heartbeat replayed", func(t *testing.T) {
		t0 := time.Now()
		send(t, n2, n1.Addr("default"), port, stopped)
		waitLogged(t, n1, am, t0, fmt.Sprintf("Heartbeat packet from %s on default dropped: replayed or out-of-date sequence number", n2.Addr("default")))
		unchanged(t, t0)
	})

	cmdlogBefore := must(t, n1, "cmdlog")
	t.Run("distributed command without credentials", func(t *testing.T) {
		t0 := time.Now()
		logFile := filepath.Join(n1.Dir, "safekitd.log")
		logged := len(readFile(t, logFile))
		for _, cred := range [][2]string{{}, {"rcmdadmin", "wrong password"}} {
			code, body := postCLI(t, n1.Addr("default"), cred, `{"args":["stop","-m","mirror"]}`)
			if code != http.StatusUnauthorized {
				t.Errorf("credentials %q: answered %d, want 401: %s", cred, code, body)
			}
		}
		unchanged(t, t0)
		// Each refusal is logged with the caller's address (docs/cluster.md).
		added := readFile(t, logFile)[logged:]
		if got := strings.Count(added, "refused web request POST /api/v1.0/cli from "+c.HostAddr("default")+":"); got != 2 {
			t.Errorf("node1's daemon log shows %d refused requests from %s, want 2:\n%s", got, c.HostAddr("default"), added)
		}
		if after := must(t, n1, "cmdlog"); after != cmdlogBefore {
			t.Errorf("the refused commands reached the command log:\n%s", strings.TrimPrefix(after, cmdlogBefore))
		}
	})

	t.Run("-G of a broken cluster.xml", func(t *testing.T) {
		xml := n1.HostPath(filepath.Join(testcluster.NodeSAFEVAR, "cluster", "cluster.xml"))
		good := readFile(t, xml)
		snap := map[*testcluster.Node]string{}
		sig := map[*testcluster.Node]string{}
		for _, n := range c.Nodes {
			snap[n] = clusterFiles(t, n)
			sig[n] = confSignature(t, n)
		}
		// A second lan without node2: an error of cluster.xml (every lan
		// lists the same nodes), whose first lan still names both nodes
		// for -H "*".
		broken := strings.Replace(good, "  </lans>", `    <lan name="repli">
      <node name="node1" addr="10.99.0.1"/>
    </lan>
  </lans>`, 1)
		if broken == good {
			t.Fatalf("cannot break:\n%s", good)
		}
		if err := os.WriteFile(xml, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		stdout, stderr, code := sk(t, n1, "-H", "*", "-G")
		if err := os.WriteFile(xml, []byte(good), 0o644); err != nil {
			t.Fatal(err)
		}
		if code == 0 || strings.Contains(stdout, "Success") || strings.Count(stderr, "nothing changed on this node") != 2 {
			t.Errorf("-G of a broken cluster.xml: exit %d\n%s%s", code, stdout, stderr)
		}
		if !strings.Contains(stderr, `lan "repli" has the nodes node1 but lan "default"`) {
			t.Errorf("-G does not say what is wrong:\n%s", stderr)
		}
		for _, n := range c.Nodes {
			if got := clusterFiles(t, n); got != snap[n] {
				t.Errorf("%s: SAFEVAR/cluster changed:\n%s\nwas:\n%s", n.Name, got, snap[n])
			}
			if got := confSignature(t, n); got != sig[n] {
				t.Errorf("%s: cluster signature %s, was %s", n.Name, got, sig[n])
			}
			if log := readFile(t, filepath.Join(n.Dir, "safekitd.log")); !strings.Contains(log, "cluster configuration from rcmdadmin@"+n1.Addr("default")+" rejected, nothing changed") {
				t.Errorf("%s: no rejection in the daemon log", n.Name)
			}
		}
		unchanged(t, t0)
		holdState(t, n2, am, "SECOND Ready", hbPulse)
	})
}

// clusterFiles describes SAFEVAR/cluster of n: each file with its digest.
func clusterFiles(t *testing.T, n *testcluster.Node) string {
	t.Helper()
	dir := n.HostPath(filepath.Join(testcluster.NodeSAFEVAR, "cluster"))
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // a directory
		}
		fmt.Fprintf(&b, "%s %x\n", e.Name(), sha256.Sum256(data))
	}
	return b.String()
}

// postCLI posts a distributed command to a node's web service from the
// host, with basic authentication when cred[0] is set.
func postCLI(t *testing.T, addr string, cred [2]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+":9010/api/v1.0/cli", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cred[0] != "" {
		req.SetBasicAuth(cred[0], cred[1])
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// inNetns runs f on an OS thread that entered the network namespace of
// node n: sockets it makes belong to the node. The thread stays locked, so
// that it ends with f's goroutine instead of going back, in the node's
// namespace, to the threads that run everything else.
func inNetns(n *testcluster.Node, f func() error) error {
	_, err := testenv.InNetns(n.Netns(), func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// send sends one UDP datagram from node n's address on the default lan.
func send(t *testing.T, n *testcluster.Node, to string, port int, pkt []byte) {
	t.Helper()
	err := inNetns(n, func() error {
		conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(n.Addr("default"))}, &net.UDPAddr{IP: net.ParseIP(to), Port: port})
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write(pkt)
		return err
	})
	if err != nil {
		t.Fatalf("send from %s to %s:%d: %v", n.Name, to, port, err)
	}
}

// capture returns the payload of the first UDP datagram from address from
// to port that node n receives and that holds marker, read with a raw
// socket in n's network namespace (a copy: the receiver gets it too).
func capture(t *testing.T, n *testcluster.Node, from string, port int, marker []byte) []byte {
	t.Helper()
	var payload []byte
	err := inNetns(n, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}); err != nil {
			return err
		}
		src := net.ParseIP(from).To4()
		buf := make([]byte, 65536)
		deadline := time.Now().Add(transitionTimeout)
		for time.Now().Before(deadline) {
			k, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // the receive timeout: look at the deadline
			}
			// IPv4 header, then the UDP header (ports, length, checksum).
			p := buf[:k]
			if len(p) < 20 {
				continue
			}
			ihl := int(p[0]&0x0f) * 4
			if len(p) < ihl+8 || !bytes.Equal(p[12:16], src) || int(binary.BigEndian.Uint16(p[ihl+2:])) != port {
				continue
			}
			if body := p[ihl+8:]; bytes.Contains(body, marker) {
				payload = bytes.Clone(body)
				return nil
			}
		}
		return fmt.Errorf("no datagram from %s to port %d holding %q within %v", from, port, marker, transitionTimeout)
	})
	if err != nil {
		t.Fatalf("capture in %s: %v", n.Name, err)
	}
	return payload
}

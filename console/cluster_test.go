package console

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/runtime/webauth"
)

// TestClusterDeconfig: DELETE /api/v1.0/cluster runs safekit cluster
// deconfig on the nodes asked, the others first (their -H needs this
// node's cluster.xml), and answers in the order asked.
func TestClusterDeconfig(t *testing.T) {
	n1, _ := twoNodes(t)
	admin := n1.login("admin")
	var res []NodeResult
	admin.json(http.MethodDelete, "/api/v1.0/cluster", Nodes{Nodes: []string{"node1", "node2"}}, http.StatusOK, &res)
	got := n1.commands()
	if len(got) != 2 || strings.Join(got[0], " ") != "-H node2 cluster deconfig admin@127.0.0.1" || strings.Join(got[1], " ") != "cluster deconfig admin@127.0.0.1" {
		t.Errorf("ran %q, want node2 first, then this node", got)
	}
	if len(res) != 2 || res[0].Node != "node1" || res[1].Node != "node2" || !res[0].OK || !res[1].OK || res[1].Output != "ran -H node2 cluster deconfig\n" {
		t.Errorf("results: %+v", res)
	}

	// ?nodes=, a failure, a node that is not in cluster.xml.
	n1.runner = func(args []string, by string) Result {
		return Result{Stderr: "Error: modules are configured\n", Code: 1}
	}
	admin.json(http.MethodDelete, "/api/v1.0/cluster?nodes=node9,node2", nil, http.StatusOK, &res)
	if len(res) != 2 || res[0].OK || !strings.Contains(res[0].Output, "node9 is not a node of cluster.xml") ||
		res[1].OK || res[1].Output != "Error: modules are configured\n" {
		t.Errorf("results: %+v", res)
	}
	if got := n1.commands(); len(got) != 1 || got[0][1] != "node2" {
		t.Errorf("ran %q", got)
	}

	// Without nodes: this node.
	n1.runner = nil
	admin.json(http.MethodDelete, "/api/v1.0/cluster", nil, http.StatusOK, &res)
	if got := n1.commands(); len(res) != 1 || res[0].Node != "node1" || len(got) != 1 || strings.Join(got[0][:2], " ") != "cluster deconfig" {
		t.Errorf("results %+v, ran %q", res, got)
	}

	// Admin only, and a session needs its CSRF token.
	n1.login("ctl").json(http.MethodDelete, "/api/v1.0/cluster", Nodes{Nodes: []string{"node1"}}, http.StatusForbidden, nil)
	req := admin.request(http.MethodDelete, "/api/v1.0/cluster", Nodes{Nodes: []string{"node1"}})
	req.Header.Del(csrfHeader)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("without CSRF token: %v %v", resp, err)
	}
	if got := n1.commands(); len(got) != 0 {
		t.Errorf("refused requests ran %q", got)
	}
}

// TestClusterProbe: the wizard asks which safekitd answers at an address
// that is not in cluster.xml yet.
func TestClusterProbe(t *testing.T) {
	n1, n2 := twoNodes(t)
	port := webauth.HTTPPort(n1.roots)
	// node1 without cluster.xml: the wizard runs before there is one.
	writeTestFile(t, n1.roots.ClusterXML(), "")
	admin := n1.login("admin")
	probe := func(addr string) ProbeResult {
		t.Helper()
		var p ProbeResult
		admin.json(http.MethodPost, "/api/v1.0/cluster/probe", Probe{Addr: addr}, http.StatusOK, &p)
		return p
	}
	if p := probe("127.0.0.2"); !p.OK || p.Node != "node2" || p.Host != "host-node2" || p.Version != "0.1.0" || p.URL != fmt.Sprintf("http://127.0.0.2:%d", port) || p.Error != "" {
		t.Errorf("probe of node2: %+v", p)
	}
	if p := probe(" 127.0.0.1 "); !p.OK || p.Node != "node1" {
		t.Errorf("probe of this node: %+v", p)
	}

	// Nothing there.
	if p := probe("127.0.0.3"); p.OK || !strings.Contains(p.Error, "no reply of 127.0.0.3:") {
		t.Errorf("probe of nothing: %+v", p)
	}
	// A listener that never answers: 2 s at most.
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.4:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	silent := make(chan struct{})
	defer close(silent)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { <-silent; c.Close() }()
		}
	}()
	start := time.Now()
	if p := probe("127.0.0.4"); p.OK || !strings.Contains(p.Error, "no reply of 127.0.0.4 within 2s") {
		t.Errorf("probe of a silent listener: %+v", p)
	}
	if d := time.Since(start); d > probeTimeout+time.Second {
		t.Errorf("the probe took %s", d)
	}
	// A safekitd with another password of distributed commands.
	if err := webauth.SetRcmdPassword(n2.roots, webauth.DefaultRcmdUser, "other"); err != nil {
		t.Fatal(err)
	}
	if p := probe("127.0.0.2"); p.OK || !strings.Contains(p.Error, "refuses the password of distributed commands") {
		t.Errorf("probe with another rcmd password: %+v", p)
	}

	for _, bad := range []string{"", "http://127.0.0.2", "127.0.0.2:9010", "a b", "node/2"} {
		admin.json(http.MethodPost, "/api/v1.0/cluster/probe", Probe{Addr: bad}, http.StatusBadRequest, nil)
	}
	n1.login("ctl").json(http.MethodPost, "/api/v1.0/cluster/probe", Probe{Addr: "127.0.0.2"}, http.StatusForbidden, nil)
}

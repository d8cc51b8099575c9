package console

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/runtime/webauth"
)

// twoNodes starts node1 on 127.0.0.1 and node2 on 127.0.0.2 (Linux routes
// 127/8 to lo), on the same port, with the cluster.xml and httpd.conf that
// say so: each reaches the other as the safekit -H of a real cluster does.
func twoNodes(t *testing.T) (*testNode, *testNode) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port)); err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	} else {
		l2.Close()
	}
	cluster := `<cluster><lans><lan name="default">
  <node name="node1" addr="127.0.0.1"/>
  <node name="node2" addr="127.0.0.2"/>
</lan></lans></cluster>
`
	var nodes []*testNode
	for i, name := range []string{"node1", "node2"} {
		n := newTestNode(t, name, nodeOptions{addr: fmt.Sprintf("127.0.0.%d:%d", i+1, port)})
		writeTestFile(t, n.roots.ClusterXML(), cluster)
		writeTestFile(t, webauth.HTTPDFile(n.roots), fmt.Sprintf("Define httpport %d\nDefine usefile\n", port))
		nodes = append(nodes, n)
	}
	return nodes[0], nodes[1]
}

func TestRelay(t *testing.T) {
	n1, n2 := twoNodes(t)
	n1.addModule("m1", lightModule, true)
	m2 := n2.addModule("m1", lightModule, true)
	ctl := n1.login("ctl")

	var l Level
	ctl.json(http.MethodGet, "/api/v1.0/nodes/node2/level", nil, http.StatusOK, &l)
	if l.Host != "host-node2" || l.Node != "node2" {
		t.Errorf("level of node2 through node1: %+v", l)
	}
	ctl.json(http.MethodGet, "/api/v1.0/nodes/node1/level", nil, http.StatusOK, &l)
	if l.Host != "host-node1" {
		t.Errorf("level of node1 through itself: %+v", l)
	}
	ctl.json(http.MethodGet, "/api/v1.0/nodes/node3/level", nil, http.StatusNotFound, nil)

	// The role of the caller goes with the request, and node2 applies it.
	ctl.json(http.MethodPost, "/api/v1.0/nodes/node2/modules/m1/command", Command{Action: "stop"}, http.StatusOK, nil)
	if got := n2.commands(); len(got) != 1 || strings.Join(got[0], " ") != "stop -m m1 ctl@127.0.0.1" {
		t.Errorf("node2 ran %q", got)
	}
	if code, body := ctl.do(http.MethodPost, "/api/v1.0/nodes/node2/modules/m1/check", nil); code != http.StatusForbidden || !strings.Contains(string(body), `user ctl has the role \"Control\"`) {
		t.Errorf("an Admin operation on node2 as Control: %d %s", code, body)
	}
	if !strings.Contains(n2.log.String(), "refused web request POST /api/v1.0/modules/m1/check from 127.0.0.1:") {
		t.Errorf("node2 does not log the refusal:\n%s", n2.log)
	}
	// node1 checks the CSRF token before relaying.
	req := ctl.request(http.MethodPost, "/api/v1.0/nodes/node2/modules/m1/command", Command{Action: "stop"})
	req.Header.Del(csrfHeader)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("relay without CSRF token: %v %v", resp, err)
	}
	if got := n2.commands(); len(got) != 0 {
		t.Errorf("node2 ran %q", got)
	}

	// Websockets too.
	appendLog(t, m2, "E", "on node2")
	conn, _, err := ctl.dial("/api/v1.0/nodes/node2/modules/m1/ws/log?n=1", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if e := nextEntry(t, conn); e.Msg != "on node2" {
		t.Errorf("node2's log through node1: %+v", e)
	}

	// A wrong password of distributed commands on node2 is reported.
	if err := webauth.SetRcmdPassword(n2.roots, webauth.DefaultRcmdUser, "other"); err != nil {
		t.Fatal(err)
	}
	if code, body := ctl.do(http.MethodGet, "/api/v1.0/nodes/node2/level", nil); code != http.StatusUnauthorized {
		t.Errorf("rcmd passwords differ: %d %s", code, body)
	}
}

func TestKeyPush(t *testing.T) {
	n1, n2 := twoNodes(t)
	n2.addModule("m1", lightModule, true)
	admin := n1.login("admin")
	var key NewKey
	admin.json(http.MethodPost, "/api/v1.0/apikey/Control/ci", nil, http.StatusOK, &key)
	var res []NodeResult
	admin.json(http.MethodPost, "/api/v1.0/apikey/push/ci", nil, http.StatusOK, &res)
	if len(res) != 1 || res[0].Node != "node2" || !res[0].OK {
		t.Fatalf("push: %+v", res)
	}
	direct := n2.anonymous()
	direct.bearer = key.Token
	direct.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "stop"}, http.StatusOK, nil)
	via := n1.anonymous()
	via.bearer = key.Token
	via.json(http.MethodPost, "/api/v1.0/nodes/node2/modules/m1/command", Command{Action: "start"}, http.StatusOK, nil)
	got := n2.commands()
	if len(got) != 2 || got[0][3] != "apikey:ci@127.0.0.1" || got[1][3] != "apikey:ci@127.0.0.1" {
		t.Errorf("node2 ran %q", got)
	}
}

func TestEventsOfTheCluster(t *testing.T) {
	n1, n2 := twoNodes(t)
	n1.addModule("m1", lightModule, true)
	m2 := n2.addModule("m1", lightModule, true)
	conn, _, err := n1.login("mon").dial("/api/v1.0/ws/events", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	state := map[string]string{}
	reachable := map[string]string{}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			var e Event
			readJSON(t, conn, &e)
			switch {
			case e.Module != "" && e.Snapshot != nil:
				state[e.Node+"/"+e.Module] = string(e.Snapshot.State)
			case e.Module == "" && e.Reachable != nil:
				reachable[e.Node] = fmt.Sprint(*e.Reachable, " ", e.Error)
			}
		}
	}
	waitFor("both nodes", func() bool {
		return state["node1/m1"] == "ALONE" && state["node2/m1"] == "ALONE" && reachable["node2"] == "true "
	})
	m2.set("STOP", "NotReady")
	waitFor("node2 stopped", func() bool { return state["node2/m1"] == "STOP" })
	n2.kill()
	waitFor("node2 unreachable", func() bool { return strings.HasPrefix(reachable["node2"], "false ") })
	if !strings.Contains(reachable["node2"], "no reply of node2") && !strings.Contains(reachable["node2"], "node2: ") {
		t.Errorf("unreachable: %q", reachable["node2"])
	}
}

func TestApplyOnNodes(t *testing.T) {
	n1, n2 := twoNodes(t)
	n1.addModule("m1", lightModule, false)
	m2 := n2.addModule("m1", lightModule, true)
	admin := n1.login("admin")
	var res []NodeResult
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/apply", Nodes{Nodes: []string{"node1", "node2"}}, http.StatusOK, &res)
	if len(res) != 2 || !res[0].OK || res[0].Node != "node1" || res[1].OK || res[1].Output != "m1 stop required on node2\n" {
		t.Errorf("apply with m1 running on node2: %+v", res)
	}
	if got := n1.commands(); len(got) != 1 || strings.Join(got[0], " ") != "config -m m1 admin@127.0.0.1" {
		t.Errorf("node1 ran %q", got)
	}
	m2.set("STOP", "NotReady")
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/apply", Nodes{Nodes: []string{"node1", "node2"}}, http.StatusOK, &res)
	if len(res) != 2 || !res[0].OK || !res[1].OK {
		t.Errorf("apply: %+v", res)
	}
	if got := n1.commands(); len(got) != 2 || strings.Join(got[1], " ") != "-H node2 -E m1 admin@127.0.0.1" {
		t.Errorf("node1 ran %q", got)
	}
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/deconfig", Nodes{Nodes: []string{"node2", "node1"}}, http.StatusOK, &res)
	if got := n1.commands(); len(got) != 2 || res[0].Node != "node2" || res[1].Node != "node1" {
		t.Errorf("deconfig: %+v, ran %q", res, got)
	}
	admin.json(http.MethodDelete, "/api/v1.0/modules/m1?nodes=node2", nil, http.StatusOK, &res)
	if got := n1.commands(); len(got) != 1 || strings.Join(got[0], " ") != "-H node2 module uninstall -m m1 admin@127.0.0.1" {
		t.Errorf("uninstall ran %q", got)
	}
	// A node that does not answer.
	n2.kill()
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/apply", Nodes{Nodes: []string{"node2"}}, http.StatusOK, &res)
	if len(res) != 1 || res[0].OK || !strings.Contains(res[0].Output, "no reply of 127.0.0.2:") {
		t.Errorf("apply on a node down: %+v", res)
	}
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/apply", Nodes{Nodes: []string{"node9"}}, http.StatusOK, &res)
	if len(res) != 1 || !strings.Contains(res[0].Output, "node9 is not a node of cluster.xml (nodes: node1, node2)") {
		t.Errorf("apply on an unknown node: %+v", res)
	}

	// The cluster configuration: here, then -G to the others.
	admin.json(http.MethodPost, "/api/v1.0/cluster/apply", nil, http.StatusOK, &res)
	if got := n1.commands(); len(res) != 2 || len(got) != 2 || strings.Join(got[0], " ") != "cluster config admin@127.0.0.1" || strings.Join(got[1], " ") != "-H node2 -G admin@127.0.0.1" {
		t.Errorf("cluster apply: %+v, ran %q", res, got)
	}
	n1.runner = func(args []string, by string) Result { return Result{Stderr: "Error: locked\n", Code: 1} }
	admin.json(http.MethodPost, "/api/v1.0/cluster/apply", nil, http.StatusOK, &res)
	if len(res) != 2 || res[0].OK || res[1].OK || !strings.Contains(res[1].Output, "not applied: the configuration failed on node1") {
		t.Errorf("cluster apply failing here: %+v", res)
	}
}

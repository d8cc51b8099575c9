package daemon

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/cmdlog"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

const goodCluster = `<cluster>
  <lans>
    <lan name="default">
      <node name="node1" addr="192.0.2.1"/>
      <node name="node2" addr="192.0.2.2"/>
    </lan>
  </lans>
</cluster>
`

// brokenCluster has one node.
const brokenCluster = `<cluster>
  <lans>
    <lan name="default">
      <node name="node1" addr="192.0.2.1"/>
    </lan>
  </lans>
</cluster>
`

// syncBuffer is a log output read while the daemon writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// webNode is a daemon's web service without its modules: the handlers of
// distributed commands, a fake Runner, a command log.
type webNode struct {
	roots layout.Roots
	log   *syncBuffer
	srv   *httptest.Server
	d     *Daemon
	ran   [][]string // the commands the Runner got, with the caller last
}

func newWebNode(t *testing.T) *webNode {
	t.Helper()
	dir := t.TempDir()
	n := &webNode{roots: layout.Roots{SAFE: filepath.Join(dir, "safe"), SAFEVAR: filepath.Join(dir, "var")}, log: &syncBuffer{}}
	if err := webauth.SetRcmdPassword(n.roots, webauth.DefaultRcmdUser, "secret"); err != nil {
		t.Fatal(err)
	}
	logger := logrus.New()
	logger.SetOutput(n.log)
	var mu sync.Mutex
	d, err := New(Options{Roots: n.roots, Exe: "/bin/false", Node: "node2", Log: logger,
		Runner: func(args []string, by string, stdout, stderr io.Writer) int {
			mu.Lock()
			n.ran = append(n.ran, append(append([]string(nil), args...), by))
			mu.Unlock()
			io.WriteString(stdout, "ran "+strings.Join(args, " ")+"\n")
			return 0
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(n.roots.SAFEVAR, 0o755); err != nil {
		t.Fatal(err)
	}
	if d.cmdlog, err = cmdlog.Open(filepath.Join(n.roots.SAFEVAR, "cmdlog.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cmdlog.Close() })
	n.d = d
	n.srv = httptest.NewServer(d.webAPI())
	t.Cleanup(n.srv.Close)
	return n
}

// do sends a request as rcmdadmin with pwd ("" for none) and decodes a
// RemoteResult when the status is 200.
func (n *webNode) do(t *testing.T, method, path, pwd string, body []byte) (int, RemoteResult, string) {
	t.Helper()
	req, _ := http.NewRequest(method, n.srv.URL+path, bytes.NewReader(body))
	if pwd != "" {
		req.SetBasicAuth(webauth.DefaultRcmdUser, pwd)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var res RemoteResult
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, &res); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode, res, string(data)
}

func (n *webNode) cmdlog(t *testing.T) string {
	t.Helper()
	recs, err := n.d.cmdlog.Last(100)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		b.WriteString(r.String() + "\n")
	}
	return b.String()
}

func bundle(t *testing.T, xml string) []byte {
	t.Helper()
	key, _ := clusterconf.NewKey()
	data, err := (&clusterconf.Bundle{XML: []byte(xml), Key: key}).Zip()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestClusterPush(t *testing.T) {
	n := newWebNode(t)
	good := bundle(t, goodCluster)
	code, res, body := n.do(t, http.MethodPut, "/api/v1.0/cluster", "secret", good)
	if code != http.StatusOK || res.Code != 0 || !strings.Contains(res.Stdout, "Cluster configuration applied (signature ") || !strings.Contains(res.Stdout, "this node is node2") {
		t.Fatalf("-G of a good cluster.xml: %d %s", code, body)
	}
	xml, _ := os.ReadFile(n.roots.ClusterXML())
	key, _ := os.ReadFile(clusterconf.KeyPath(n.roots))
	if string(xml) != goodCluster || len(key) != 65 {
		t.Fatalf("files after -G: %q %q", xml, key)
	}
	if got := n.d.node(); got.Name != "node2" || got.Addresses["default"] != "192.0.2.2" || got.Problem != "" || got.ClusterSignature == "" {
		t.Errorf("node after -G: %+v", got)
	}

	// A broken cluster.xml is rejected with its positioned errors, and
	// nothing changes.
	code, res, body = n.do(t, http.MethodPut, "/api/v1.0/cluster", "secret", bundle(t, brokenCluster))
	if code != http.StatusOK || res.Code != 1 || !strings.Contains(res.Stderr, "cluster.xml:3:5: ") || !strings.Contains(res.Stderr, "nothing changed on this node") {
		t.Errorf("-G of a broken cluster.xml: %d %s", code, body)
	}
	xml2, _ := os.ReadFile(n.roots.ClusterXML())
	key2, _ := os.ReadFile(clusterconf.KeyPath(n.roots))
	if !bytes.Equal(xml, xml2) || !bytes.Equal(key, key2) {
		t.Error("a rejected -G changed the files")
	}
	if !strings.Contains(n.log.String(), "cluster configuration from rcmdadmin@127.0.0.1 rejected, nothing changed") {
		t.Errorf("the rejection is not logged:\n%s", n.log)
	}

	// Wrong password: refused, logged, nothing changed.
	if code, _, _ := n.do(t, http.MethodPut, "/api/v1.0/cluster", "wrong", bundle(t, strings.ReplaceAll(goodCluster, "192.0.2.2", "192.0.2.3"))); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d", code)
	}
	if xml3, _ := os.ReadFile(n.roots.ClusterXML()); !bytes.Equal(xml, xml3) {
		t.Error("a refused -G changed cluster.xml")
	}
	if !strings.Contains(n.log.String(), "refused web request PUT /api/v1.0/cluster from 127.0.0.1:") {
		t.Errorf("the refusal is not logged:\n%s", n.log)
	}
	if got := n.cmdlog(t); strings.Count(got, "START | -G -u rcmdadmin@127.0.0.1") != 2 || !strings.Contains(got, "END | 1") {
		t.Errorf("command log:\n%s", got)
	}
}

func TestRemoteCLI(t *testing.T) {
	n := newWebNode(t)
	cmd := func(args ...string) []byte {
		b, _ := json.Marshal(RemoteCommand{Args: args})
		return b
	}
	code, res, body := n.do(t, http.MethodPost, "/api/v1.0/cli", "secret", cmd("webservercfg", "-rcmdpasswd", "hunter2"))
	if code != http.StatusOK || res.Code != 0 || res.Stdout != "ran webservercfg -rcmdpasswd hunter2\n" {
		t.Fatalf("remote command: %d %s", code, body)
	}
	if want := [][]string{{"webservercfg", "-rcmdpasswd", "hunter2", "rcmdadmin@127.0.0.1"}}; !reflect.DeepEqual(n.ran, want) {
		t.Errorf("runner got %q, want %q", n.ran, want)
	}
	if got := n.cmdlog(t) + n.log.String(); !strings.Contains(got, "START | webservercfg -rcmdpasswd ******** -u rcmdadmin@127.0.0.1") || strings.Contains(got, "hunter2") {
		t.Errorf("passwords must not reach the logs:\n%s", got)
	}
	for _, args := range [][]string{{"logview", "-m", "AM"}, {"-p"}, {"-r", "boundcmd", "1", "true"}} {
		code, _, body := n.do(t, http.MethodPost, "/api/v1.0/cli", "secret", cmd(args...))
		if code != http.StatusBadRequest || !strings.Contains(body, "not supported with -H") {
			t.Errorf("%v: %d %s", args, code, body)
		}
	}
	if code, _, _ := n.do(t, http.MethodPost, "/api/v1.0/cli", "", cmd("level")); code != http.StatusUnauthorized {
		t.Errorf("no password: %d", code)
	}
	if len(n.ran) != 1 {
		t.Errorf("refused commands ran: %q", n.ran)
	}
}

func TestRedact(t *testing.T) {
	got := Redact([]string{"webservercfg", "-passwd", "a", "-user", "bob", "-rcmdpasswd", "b"})
	if want := []string{"webservercfg", "-passwd", "********", "-user", "bob", "-rcmdpasswd", "********"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Redact = %q", got)
	}
}

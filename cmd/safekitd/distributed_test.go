package main

// Distributed commands between two real nodes on one machine: each node has
// its own SAFE and SAFEVAR and its own daemon, node1 on 127.0.0.1 and node2
// on 127.0.0.2 (Linux routes all of 127/8 to lo), both on the same web port
// as the httpd.conf of each says, so that -H "*" reaches both.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/safe/archive"
)

// binDir holds safekit and safekitd, built once.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "safekit-distributed-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, c := range []string{"safekit", "safekitd"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c), "./cmd/"+c)
		cmd.Dir = testenv.RepoRoot()
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", c, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testNode is one node: its roots, address and daemon.
type testNode struct {
	name, ip string
	port     int
	roots    layout.Roots
	log      string
	daemon   *exec.Cmd
	exited   chan struct{}
}

func newTestNode(t *testing.T, name, ip string, port int) *testNode {
	dir := filepath.Join(t.TempDir(), name)
	n := &testNode{name: name, ip: ip, port: port, roots: layout.Roots{SAFE: filepath.Join(dir, "safe"), SAFEVAR: filepath.Join(dir, "var")},
		log: filepath.Join(dir, "safekitd.log")}
	writeFile(t, filepath.Join(n.roots.SAFE, "web", "conf", "httpd.conf"), fmt.Sprintf("Define httpport %d\nDefine usefile\n", port))
	return n
}

func (n *testNode) env() []string {
	return []string{"PATH=" + binDir + ":/usr/sbin:/usr/bin:/sbin:/bin", "SAFE=" + n.roots.SAFE, "SAFEVAR=" + n.roots.SAFEVAR, "HOME=" + n.roots.SAFEVAR}
}

// safekit runs the CLI on this node.
func (n *testNode) safekit(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "safekit"), args...)
	cmd.Env = n.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// must runs the CLI and fails the test when it fails.
func (n *testNode) must(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := n.safekit(t, args...)
	if code != 0 {
		t.Fatalf("%s: safekit %s: exit %d\n%s%s", n.name, strings.Join(args, " "), code, out, errs)
	}
	return out
}

// start runs the daemon and waits until it answers the CLI.
func (n *testNode) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "safekitd"), "--listen", fmt.Sprintf("%s:%d", n.ip, n.port), "--node", n.name, "--syslog=false")
	cmd.Env = n.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.daemon, n.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(n.exited) }()
	t.Cleanup(func() { n.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := exec.Command(filepath.Join(binDir, "safekit"), "level")
		c.Env = n.env()
		if c.Run() == nil {
			return
		}
		select {
		case <-n.exited:
			t.Fatalf("%s: safekitd ended:\n%s", n.name, n.readLog(t))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: safekitd does not answer:\n%s", n.name, n.readLog(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the daemon (SIGTERM: it stops its modules first).
func (n *testNode) stop(t *testing.T) {
	if n.daemon == nil {
		return
	}
	_ = n.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(30 * time.Second):
		_ = n.daemon.Process.Kill()
		<-n.exited
		t.Errorf("%s: safekitd did not end on SIGTERM", n.name)
	}
	n.daemon = nil
}

func (n *testNode) readLog(t *testing.T) string {
	data, _ := os.ReadFile(n.log)
	return string(data)
}

func (n *testNode) url() string { return fmt.Sprintf("http://%s:%d", n.ip, n.port) }

func (n *testNode) read(t *testing.T, rel ...string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(rel...))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return data
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sharedPort returns a TCP port free on both addresses.
func sharedPort(t *testing.T, a, b string) int {
	t.Helper()
	for range 50 {
		l1, err := net.Listen("tcp", a+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l1.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("%s:%d", b, port))
		l1.Close()
		if err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no port free on both addresses")
	return 0
}

// post sends a distributed command to a node as rcmdadmin with pwd ("" for
// no credentials).
func post(t *testing.T, n *testNode, pwd string, args ...string) (int, daemon.RemoteResult) {
	t.Helper()
	body, _ := json.Marshal(daemon.RemoteCommand{Args: args})
	req, _ := http.NewRequest(http.MethodPost, n.url()+"/api/v1.0/cli", bytes.NewReader(body))
	if pwd != "" {
		req.SetBasicAuth("rcmdadmin", pwd)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res daemon.RemoteResult
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, res
}

// waitLog polls the daemon log of n until it contains s.
func waitLog(t *testing.T, n *testNode, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(n.readLog(t), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the daemon log does not say %q:\n%s", n.name, s, n.readLog(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const lightModule = `<!DOCTYPE safe>
<safe>
  <service mode="light" boot="off">
    <user>
      <var name="APP" value="exported"/>
    </user>
  </service>
</safe>
`

func TestDistributedCommands(t *testing.T) {
	port := sharedPort(t, "127.0.0.1", "127.0.0.2")
	node1, node2 := newTestNode(t, "node1", "127.0.0.1", port), newTestNode(t, "node2", "127.0.0.2", port)
	node1.must(t, "cluster", "create", "127.0.0.1", "127.0.0.2")
	node1.must(t, "cluster", "config")

	// The first start of a daemon makes the password of distributed
	// commands and says how to give it to the other nodes.
	node1.start(t)
	m := regexp.MustCompile(`safekit webservercfg -rcmdpasswd (\S+)`).FindStringSubmatch(node1.readLog(t))
	if m == nil {
		t.Fatalf("node1: no generated password in the log:\n%s", node1.readLog(t))
	}
	pwd := strings.Trim(m[1], `"`)
	node2.must(t, "webservercfg", "-rcmdpasswd", pwd)
	node2.start(t)

	banner1 := fmt.Sprintf("---------------- Server=http://127.0.0.1:%d ----------------\n", port)
	banner2 := fmt.Sprintf("---------------- Server=http://127.0.0.2:%d ----------------\n", port)

	t.Run("level everywhere", func(t *testing.T) {
		out := node1.must(t, "-H", "*", "level")
		i1, i2 := strings.Index(out, banner1), strings.Index(out, banner2)
		if i1 != 0 || i2 < 0 || strings.Count(out, "Success\n") != 2 || strings.Count(out, "SafeKit: ") != 2 || !strings.HasSuffix(out, "Success\n") {
			t.Errorf("safekit -H \"*\" level:\n%s", out)
		}
		if got := node2.must(t, "cmdlog"); !strings.Contains(got, "START | level -u rcmdadmin@127.0.0.1") {
			t.Errorf("node2's command log does not name the remote caller:\n%s", got)
		}
	})

	t.Run("-G copies the cluster configuration", func(t *testing.T) {
		node1.must(t, "-H", "*", "-G")
		for _, f := range []string{"cluster.xml", "cluster.key"} {
			a, b := node1.read(t, node1.roots.ClusterDir(), f), node2.read(t, node2.roots.ClusterDir(), f)
			if len(a) == 0 || !bytes.Equal(a, b) {
				t.Errorf("%s differs after -G:\n%s\n%s", f, a, b)
			}
		}
		info1, info2 := node1.must(t, "cluster", "confinfo"), node2.must(t, "cluster", "confinfo")
		sig := regexp.MustCompile(`\n(node\d) +([0-9a-f]{64}) `)
		m1, m2 := sig.FindStringSubmatch(info1), sig.FindStringSubmatch(info2)
		if m1 == nil || m2 == nil || m1[1] != "node1" || m2[1] != "node2" || m1[2] != m2[2] {
			t.Errorf("confinfo:\n%s%s", info1, info2)
		}
		waitLog(t, node2, "cluster configuration applied by rcmdadmin@127.0.0.1")
	})

	t.Run("-G of a broken cluster.xml changes nothing", func(t *testing.T) {
		good := node1.read(t, node1.roots.ClusterXML())
		xml2, key2 := node2.read(t, node2.roots.ClusterXML()), node2.read(t, node2.roots.ClusterDir(), "cluster.key")
		writeFile(t, node1.roots.ClusterXML(), strings.Replace(string(good), `<node name="node2" addr="127.0.0.2"/>`, "", 1))
		defer writeFile(t, node1.roots.ClusterXML(), string(good))
		code, out, errs := node1.safekit(t, "-H", fmt.Sprintf("[http:%d],127.0.0.2", port), "-G")
		if code == 0 || !strings.Contains(errs, `cluster.xml:4:5: <lan>: lan "default" has 1 node(s)`) || !strings.Contains(errs, "nothing changed on this node") || strings.Contains(out, "Success") {
			t.Errorf("-G of a broken cluster.xml: exit %d\n%s%s", code, out, errs)
		}
		if !bytes.Equal(xml2, node2.read(t, node2.roots.ClusterXML())) || !bytes.Equal(key2, node2.read(t, node2.roots.ClusterDir(), "cluster.key")) {
			t.Error("node2's cluster configuration changed")
		}
		waitLog(t, node2, "cluster configuration from rcmdadmin@127.0.0.1 rejected, nothing changed")
	})

	t.Run("-E installs and configures with the same id", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "light")
		writeFile(t, filepath.Join(src, "conf", "userconfig.xml"), lightModule)
		file := filepath.Join(t.TempDir(), "light.safe")
		if err := archive.WriteFile(file, src); err != nil {
			t.Fatal(err)
		}
		node1.must(t, "module", "install", "-m", "light", "-M", "7", file)
		node1.must(t, "config", "-m", "light")
		out := node1.must(t, "config", "-H", "node2", "-E", "light")
		if !strings.HasPrefix(out, banner2) || !strings.Contains(out, "Module light installed from") || !strings.HasSuffix(out, "Module light configured\nSuccess\n") {
			t.Errorf("-E:\n%s", out)
		}
		if got := node2.must(t, "module", "listid"); !regexp.MustCompile(`(?m)^light +7$`).MatchString(got) {
			t.Errorf("node2: module listid:\n%s", got)
		}
		if !node2.roots.Module("light").Configured() {
			t.Error("node2: light is not configured")
		}
		state := node1.must(t, "cluster", "state")
		rows := regexp.MustCompile(`(?m)^(node\d) +light +light +7 +\S+ +([0-9a-f]{64})$`).FindAllStringSubmatch(state, -1)
		if len(rows) != 2 || rows[0][1] != "node1" || rows[1][1] != "node2" || rows[0][2] != rows[1][2] {
			t.Errorf("cluster state:\n%s", state)
		}
	})

	t.Run("a wrong password is refused and changes nothing", func(t *testing.T) {
		before := node2.read(t, node2.roots.SAFE, "web", "conf", "httpd.conf")
		if code, _ := post(t, node2, "not-the-password", "webservercfg", "-unsecure"); code != http.StatusUnauthorized {
			t.Errorf("wrong password: HTTP %d", code)
		}
		if code, _ := post(t, node2, "", "webservercfg", "-unsecure"); code != http.StatusUnauthorized {
			t.Errorf("no password: HTTP %d", code)
		}
		if !bytes.Equal(before, node2.read(t, node2.roots.SAFE, "web", "conf", "httpd.conf")) {
			t.Error("a refused request changed httpd.conf")
		}
		waitLog(t, node2, "refused web request POST /api/v1.0/cli from 127.0.0.1:")
		// A node with another password: the others refuse it, by name.
		node1.must(t, "webservercfg", "-rcmdpasswd", "another")
		defer node1.must(t, "webservercfg", "-rcmdpasswd", pwd)
		code, out, errs := node1.safekit(t, "-H", "*", "level")
		if code == 0 || strings.Count(out, "Success") != 1 || !strings.Contains(errs, fmt.Sprintf("authentication refused by 127.0.0.2:%d", port)) {
			t.Errorf("-H with another password on node2: exit %d\n%s%s", code, out, errs)
		}
	})

	t.Run("unsecure accepts unauthenticated requests", func(t *testing.T) {
		node2.must(t, "webservercfg", "-unsecure")
		defer node2.must(t, "webservercfg", "-secure")
		code, res := post(t, node2, "", "module", "list")
		if code != http.StatusOK || res.Code != 0 || res.Stdout != "light\n" {
			t.Errorf("unsecure: HTTP %d %+v", code, res)
		}
		waitLog(t, node2, "UNSECURE web service")
	})

	t.Run("an unreachable node", func(t *testing.T) {
		node2.stop(t)
		code, out, errs := node1.safekit(t, "-H", "*", "level")
		if code == 0 || !strings.Contains(out, banner1+"Host: ") || !strings.Contains(out, banner2) ||
			!strings.Contains(errs, fmt.Sprintf("cannot reach 127.0.0.2:%d: connection refused", port)) {
			t.Errorf("-H with node2 down: exit %d\n%s%s", code, out, errs)
		}
	})
}

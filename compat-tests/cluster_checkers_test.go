package compattests

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/safe/archive"
)

// testCheckers runs two built-in checkers in a node, as the User's Guide
// tests them (§4.4.2, §4.4.6). Module app, the farm template, depends on
// module base (<module name="base">) and checks a TCP service of the node
// (<tcp when="both" action="restart">):
//
//   - base stopped: app waits (module_failure); base started: app starts;
//   - base restarted: app stops and starts again, called by modulecheck;
//   - the TCP service gone: app restarts (rule t_web); it comes back.
func testCheckers(t *testing.T) {
	c := newCluster(t, 2)
	setupCluster(t, c)
	n1 := c.Node("node1")
	farm := filepath.Join(binDir, "templates", "farm.safe")
	installModule(t, c, "base", farm)

	const port = 18080
	web := listenInNode(t, n1, port)
	defer func() { web.Close() }()
	checks := func(conf string) string {
		// A short failover period and handle_time (defaults 5 s and 15 s)
		// keep the scenario short; the checkers poll every second.
		return strings.Replace(conf, "</service>", fmt.Sprintf(`  <check>
      <tcp ident="web" when="both" action="restart">
        <to addr="127.0.0.1" port="%d" interval="1s" timeout="1s"/>
      </tcp>
      <module name="base">
        <to addr="127.0.0.1" port="9010" interval="1s" timeout="2s"/>
      </module>
    </check>
    <failover period="500ms" handle_time="2000ms"/>
  </service>`, port), 1)
	}
	installModule(t, c, "app", slowStop(t, farm), checks)
	const mod = "module.base_127.0.0.1"

	t0 := time.Now()
	must(t, n1, "start", "-m", "app")
	waitState(t, n1, "app", "WAIT NotReady")
	wantLogged(t, n1, "app", t0, "Resource "+mod+" set to down by modulecheck",
		"Action wait from failover rule module_failure", "Local state WAIT NotReady")
	notLogged(t, n1, "app", t0, "Script start_both")

	t1 := time.Now()
	must(t, n1, "start", "-m", "base")
	waitState(t, n1, "base", "UP Ready")
	waitLogged(t, n1, "app", t1, "Resource tcp.web set to up by tcpcheck")
	waitState(t, n1, "app", "UP Ready")
	wantLogged(t, n1, "app", t1, "Resource "+mod+" set to up by modulecheck",
		"Action wakeup from failover rule Implicit_wakeup", "Script start_both", "Local state UP Ready")

	t.Run("the module it depends on restarts", func(t *testing.T) {
		t0 := time.Now()
		must(t, n1, "restart", "-m", "base")
		// The module log is written before the state is published: wait
		// for the start that follows the stopstart in the log.
		waitLogged(t, n1, "app", t0, "Local state UP Ready")
		wantLogged(t, n1, "app", t0, "Action stopstart called by modulecheck", "Script stop_both",
			"Action start called automatically", "Resource "+mod+" set to up by modulecheck", "Script start_both", "Local state UP Ready")
		wantLogged(t, n1, "base", t0, "Action restart called by root", "Local state UP Ready")
		holdState(t, n1, "app", "UP Ready", 2*time.Second)
		if n := count(since(modLog(t, n1, "app", true), t0), "called by modulecheck"); n != 1 {
			t.Errorf("app was stopped and started %d times for one restart of base", n)
		}
	})

	t.Run("the TCP service stops", func(t *testing.T) {
		t0 := time.Now()
		web.Close()
		waitLogged(t, n1, "app", t0, "Action restart from failover rule t_web")
		web = listenInNode(t, n1, port)
		waitLogged(t, n1, "app", t0, "Local state UP Ready")
		wantLogged(t, n1, "app", t0, "Resource tcp.web set to down by tcpcheck", "Action restart from failover rule t_web",
			"Script stop_both", "Script start_both", "Local state UP Ready")
		waitLogged(t, n1, "app", t0, "Resource tcp.web set to up by tcpcheck")
		holdState(t, n1, "app", "UP Ready", 3*time.Second)
		lines := since(modLog(t, n1, "app", true), t0)
		if n := count(lines, "Action restart from failover rule t_web"); n != 1 {
			t.Errorf("%d restarts for one stop of the TCP service:\n%s", n, tail(lines, 30))
		}
		if n := count(lines, "Resource tcp.web set to down"); n != 1 {
			t.Errorf("the resource tcp.web was set down %d times (once per change, want 1):\n%s", n, tail(lines, 30))
		}
	})

	t0 = time.Now()
	must(t, n1, "stop", "-m", "app")
	waitState(t, n1, "app", "STOP NotReady")
	wantLogged(t, n1, "app", t0, "Checker tcp.web stopped", "Checker "+mod+" stopped", "Local state STOP NotReady")
}

// slowStop returns a copy of the module archive file whose stop_both
// first sleeps a second: a restart of the module then takes that long, so
// that the test can bring its TCP service back before the restart's
// start_both and the probe that follows it.
func slowStop(t *testing.T, file string) string {
	t.Helper()
	a, err := archive.ReadFile(file, archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range a.Files {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if f.Mode.IsDir() {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data := f.Data
		if f.Name == "bin/stop_both" {
			text := string(data)
			if !strings.Contains(text, "\nset -u\n") {
				t.Fatalf("%s: bin/stop_both has no 'set -u' line to put the sleep after:\n%s", file, text)
			}
			data = []byte(strings.Replace(text, "\nset -u\n", "\nset -u\nsleep 1\n", 1))
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, f.Mode.Perm()); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), filepath.Base(file))
	if err := archive.WriteFile(out, dir); err != nil {
		t.Fatal(err)
	}
	return out
}

// listenInNode opens a TCP service on 127.0.0.1:port in the network
// namespace of n, held by the test: closing it stops the service. It
// accepts connections and closes them at once.
func listenInNode(t *testing.T, n *testcluster.Node, port int) net.Listener {
	t.Helper()
	l := listenIn(t, n, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	return l
}

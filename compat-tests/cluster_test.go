package compattests

// The acceptance scenarios of the two-node mirror cluster (and of a farm)
// on the harness of internal/testcluster: each scenario gets its own
// cluster of nodes (network, PID and mount namespaces, one safekitd each)
// and drives it as an operator does (User's Guide ch. 4 and 5): the
// safekit command line inside the nodes, the module logs and the script
// logs. They need root; they fail instead of skipping when CI=true.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
)

// The heartbeats of every mirror these scenarios install: short, so that a
// lost node is noticed within seconds (the defaults are 700 ms and 30 s).
const (
	hbPulse   = 300 * time.Millisecond
	hbTimeout = 3000 * time.Millisecond
)

// transitionTimeout bounds a change of state that runs a few scripts, or
// waits for a heartbeat timeout: far above what a healthy node takes, so
// that only a broken behaviour reaches it.
const transitionTimeout = 30 * time.Second

// TestCluster runs the multi-node scenarios, each on its own cluster, all
// at once: they spend their time waiting for heartbeats and scripts, not
// computing. They run as parallel subtests of their own goroutines rather
// than with t.Parallel, whose limit (GOMAXPROCS) would serialise them on a
// two-core machine. -run TestCluster/Farm picks one.
func TestCluster(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(*testing.T)
	}{
		{"Walkthrough", testWalkthrough},
		{"FailoverOff", testFailoverOff},
		{"DefaultPrim", testDefaultPrim},
		{"BothStart", testBothStart},
		{"TwoLans", testTwoLans},
		{"Witness", testWitness},
		{"Checkers", testCheckers},
		{"VIP", testVIP},
		{"Farm", testFarm},
		{"K3sSequence", testK3sSequence},
		{"Security", testSecurity},
	}
	var wg sync.WaitGroup
	for _, s := range scenarios {
		wg.Go(func() { t.Run(s.name, s.run) })
	}
	wg.Wait()
}

// initBin builds, once, the init of the harness's nodes into binDir, so
// that the clusters made at the same time do not each build it.
var initBin = sync.OnceValues(func() (string, error) {
	dst := filepath.Join(binDir, "testcluster")
	cmd := exec.Command("go", "build", "-o", dst, "./internal/tools/testcluster")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./internal/tools/testcluster: %w\n%s", err, out)
	}
	return dst, nil
})

// newCluster makes a cluster of n nodes on lans (default: one, "default"),
// each running the safekitd built for these tests.
func newCluster(t *testing.T, nodes int, lans ...string) *testcluster.Cluster {
	t.Helper()
	testenv.NeedRoot(t)
	bin, err := initBin()
	if err != nil {
		t.Fatal(err)
	}
	return testcluster.New(t, testcluster.Options{Nodes: nodes, Lans: lans, Bin: binDir, InitBin: bin})
}

// sk runs safekit in node n and returns its output and exit code; only a
// failure to run it at all fails the test.
func sk(t testing.TB, n *testcluster.Node, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, err := n.Safekit(args...)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%v", err)
	}
	return stdout, stderr, code
}

// must runs safekit in n and fails the test unless it exits 0.
func must(t testing.TB, n *testcluster.Node, args ...string) string {
	t.Helper()
	stdout, stderr, code := sk(t, n, args...)
	if code != 0 {
		t.Fatalf("%s: safekit %s: exit code %d\n%s%s", n.Name, strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// lqCode is the exit code of `safekit state -m AM -lq` for each state
// (User's Guide §9.4).
var lqCode = map[string]int{"STOP": 0, "WAIT": 1, "ALONE": 2, "UP": 2, "PRIM": 3, "SECOND": 4}

// lqState is `safekit state -m AM -lq` in n ("PRIM Ready"); an error when
// it fails, or when its exit code is not the state's.
func lqState(t testing.TB, n *testcluster.Node, am string) (string, error) {
	t.Helper()
	out, errs, code := sk(t, n, "state", "-m", am, "-lq")
	st := strings.TrimSpace(out)
	want, ok := lqCode[strings.Fields(st + " ?")[0]]
	if !ok || code != want {
		return st, fmt.Errorf("%s: safekit state -m %s -lq printed %q and exited %d (want the state's code %d): %s", n.Name, am, st, code, want, strings.TrimSpace(errs))
	}
	return st, nil
}

// state is lqState, which must succeed.
func state(t testing.TB, n *testcluster.Node, am string) string {
	t.Helper()
	st, err := lqState(t, n, am)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitState polls the state of AM in n until it is want ("PRIM Ready").
// The module may not answer for a moment (its process starting after a
// boot of the node).
func waitState(t testing.TB, n *testcluster.Node, am, want string) {
	t.Helper()
	deadline := time.Now().Add(transitionTimeout)
	for {
		got, err := lqState(t, n, am)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("after %v: %v", transitionTimeout, err)
			}
			t.Fatalf("%s: module %s is %q after %v, want %q; its log ends with:\n%s", n.Name, am, got, transitionTimeout, want, tail(modLog(t, n, am, true), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdState checks that AM stays in state want in n for d: what a node
// must not do takes some time to prove.
func holdState(t testing.TB, n *testcluster.Node, am, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if got := state(t, n, am); got != want {
			t.Fatalf("%s: module %s went %q, want it to stay %q; its log ends with:\n%s", n.Name, am, got, want, tail(modLog(t, n, am, true), 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logLine is one line of `safekit log`.
type logLine struct {
	at                  time.Time
	origin, level, text string
}

func (l logLine) String() string {
	return fmt.Sprintf("%s %s %s %s", l.at.Format("15:04:05.000000"), l.origin, l.level, l.text)
}

// modLog returns the module log of AM in n (the verbose one when
// verbose), oldest first.
func modLog(t testing.TB, n *testcluster.Node, am string, verbose bool) []logLine {
	t.Helper()
	args := []string{"log", "-m", am, "-s", "5000"}
	if verbose {
		args = append(args, "-A")
	}
	var out []logLine
	for _, l := range strings.Split(must(t, n, args...), "\n") {
		// | 2026-11-25 22:38:21.804509 |        heart | E | Local state ALONE Ready
		f := strings.SplitN(l, "|", 5)
		if len(f) != 5 {
			continue
		}
		at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", strings.TrimSpace(f[1]), time.Local)
		if err != nil {
			t.Fatalf("%s: module log line %q: %v", n.Name, l, err)
		}
		out = append(out, logLine{at: at, origin: strings.TrimSpace(f[2]), level: strings.TrimSpace(f[3]), text: strings.TrimSpace(f[4])})
	}
	return out
}

// since keeps the lines logged at or after t0.
func since(lines []logLine, t0 time.Time) []logLine {
	var out []logLine
	for _, l := range lines {
		if !l.at.Before(t0) {
			out = append(out, l)
		}
	}
	return out
}

// find returns the first line holding text, or nil.
func find(lines []logLine, text string) *logLine {
	for i := range lines {
		if strings.Contains(lines[i].text, text) {
			return &lines[i]
		}
	}
	return nil
}

func count(lines []logLine, text string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l.text, text) {
			n++
		}
	}
	return n
}

// tail is the end of a log, for failure messages.
func tail(lines []logLine, n int) string {
	var b strings.Builder
	for _, l := range lines[max(0, len(lines)-n):] {
		b.WriteString("\t" + l.String() + "\n")
	}
	return b.String()
}

// wantLogged fails unless the log of AM in n, from t0 on, holds each text
// (in this order).
func wantLogged(t testing.TB, n *testcluster.Node, am string, t0 time.Time, texts ...string) {
	t.Helper()
	lines := since(modLog(t, n, am, true), t0)
	rest := lines
	for _, text := range texts {
		i := -1
		for j, l := range rest {
			if strings.Contains(l.text, text) {
				i = j
				break
			}
		}
		if i < 0 {
			t.Fatalf("%s: the log of %s since %s has no %q (after the lines before it); it holds:\n%s", n.Name, am, t0.Format("15:04:05.000"), text, tail(lines, 60))
		}
		rest = rest[i+1:]
	}
}

// notLogged fails if the log of AM in n, from t0 on, holds text.
func notLogged(t testing.TB, n *testcluster.Node, am string, t0 time.Time, text string) {
	t.Helper()
	lines := since(modLog(t, n, am, true), t0)
	if l := find(lines, text); l != nil {
		t.Fatalf("%s: the log of %s says %q: %s\n%s", n.Name, am, text, l, tail(lines, 40))
	}
}

// waitLogged polls the log of AM in n until, from t0 on, it holds text.
func waitLogged(t testing.TB, n *testcluster.Node, am string, t0 time.Time, text string) logLine {
	t.Helper()
	deadline := time.Now().Add(transitionTimeout)
	for {
		lines := since(modLog(t, n, am, true), t0)
		if l := find(lines, text); l != nil {
			return *l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q in the log of %s after %v; it holds:\n%s", n.Name, text, am, transitionTimeout, tail(lines, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// userlog returns the newest script log of script in n (SAFEVAR/modules/
// AM/userlog_<date>_<script>.ulog) written at or after t0 ("" when none).
func userlog(t testing.TB, n *testcluster.Node, am, script string, t0 time.Time) string {
	t.Helper()
	files, _ := filepath.Glob(n.HostPath(filepath.Join(testcluster.NodeSAFEVAR, "modules", am, "userlog_*_"+script+"*.ulog")))
	var newest string
	var newestAt time.Time
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil || st.ModTime().Before(t0.Truncate(time.Second)) || st.ModTime().Before(newestAt) {
			continue
		}
		newest, newestAt = f, st.ModTime()
	}
	if newest == "" {
		return ""
	}
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// shortHeartbeats gives the <heartbeat> of a userconfig.xml the pulse and
// timeout of these scenarios.
func shortHeartbeats(conf string) string {
	return strings.Replace(conf, `<heartbeat name="default"`, fmt.Sprintf(`<heartbeat name="default" pulse="%dms" timeout="%dms"`, hbPulse.Milliseconds(), hbTimeout.Milliseconds()), 1)
}

// serviceAttr adds an attribute to <service mode="...">.
func serviceAttr(attr string) func(string) string {
	return func(conf string) string {
		return regexp.MustCompile(`<service mode="(\w+)"`).ReplaceAllString(conf, `<service mode="$1" `+attr)
	}
}

var rcmdPasswordRE = regexp.MustCompile(`safekit webservercfg -rcmdpasswd ([^"\s]+)`)

// rcmdPassword is the password safekitd generated for distributed commands
// on its first start, as its log gives it.
func rcmdPassword(t testing.TB, n *testcluster.Node) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.Dir, "safekitd.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := rcmdPasswordRE.FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: the daemon log gives no rcmdadmin password (\"give every other node the same with: safekit webservercfg -rcmdpasswd <pwd>\"):\n%s", n.Name, b)
	}
	return string(m[1])
}

// addrs lists the nodes' addresses on the default lan.
func addrs(c *testcluster.Cluster) []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr("default"))
	}
	return out
}

// setupCluster configures the cluster from node1 as the User's Guide does
// (ch. 4.1, 12.2): cluster create with the addresses (with several lans,
// the harness's cluster.xml), cluster config, the rcmdadmin password of
// node1 given to every other node, -G.
func setupCluster(t testing.TB, c *testcluster.Cluster) {
	t.Helper()
	n1 := c.Nodes[0]
	if len(c.Lans) == 1 {
		out := must(t, n1, append([]string{"cluster", "create"}, addrs(c)...)...)
		if !strings.Contains(out, "Cluster configuration written") {
			t.Fatalf("cluster create says:\n%s", out)
		}
	} else {
		dir := n1.HostPath(filepath.Join(testcluster.NodeSAFEVAR, "cluster"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cluster.xml"), []byte(c.ClusterXML()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(t, n1, "cluster", "config")
	pwd := rcmdPassword(t, n1)
	for _, n := range c.Nodes[1:] {
		must(t, n, "webservercfg", "-rcmdpasswd", pwd)
	}
	out := must(t, n1, "-H", "*", "-G")
	wantEachNode(t, c, out, "this node is %s")
	sigs := map[string]bool{}
	for _, n := range c.Nodes {
		sigs[confSignature(t, n)] = true
	}
	if len(sigs) != 1 {
		t.Fatalf("after -G the nodes have %d cluster signatures, want 1: %v", len(sigs), sigs)
	}
}

var confinfoRE = regexp.MustCompile(`(?m)^(\S+) +([0-9a-f]{64}) `)

// confSignature is the signature `safekit cluster confinfo` gives in n,
// checked to name n.
func confSignature(t testing.TB, n *testcluster.Node) string {
	t.Helper()
	out := must(t, n, "cluster", "confinfo")
	m := confinfoRE.FindStringSubmatch(out)
	if m == nil || m[1] != n.Name {
		t.Fatalf("%s: cluster confinfo:\n%s", n.Name, out)
	}
	return m[2]
}

// wantEachNode checks the output of a command run with -H "*": one banner
// and one Success per node, in order, and after each banner format (its
// %s being the node's name).
func wantEachNode(t testing.TB, c *testcluster.Cluster, out, format string) {
	t.Helper()
	parts := strings.Split(out, "---------------- Server=")
	if len(parts) != len(c.Nodes)+1 {
		t.Fatalf("%d answers, want one per node (%d):\n%s", len(parts)-1, len(c.Nodes), out)
	}
	for i, n := range c.Nodes {
		p := parts[i+1]
		if !strings.HasPrefix(p, "http://"+n.Addr("default")+":9010 ") || !strings.Contains(p, "\nSuccess\n") {
			t.Fatalf("answer %d is not a success of %s:\n%s", i+1, n.Name, out)
		}
		want := format
		if strings.Contains(format, "%s") {
			want = fmt.Sprintf(format, n.Name)
		}
		if !strings.Contains(p, want) {
			t.Fatalf("the answer of %s does not say %q:\n%s", n.Name, want, out)
		}
	}
}

var installedIDRE = regexp.MustCompile(`\(id (\d+)\)`)

// installModule installs archive as AM on node1, edits its userconfig.xml,
// configures it there and exports it to every node with -H "*" -E (which
// installs it with node1's id and configures it). It returns the id.
func installModule(t testing.TB, c *testcluster.Cluster, am, archive string, edits ...func(string) string) int {
	t.Helper()
	n1 := c.Nodes[0]
	out := must(t, n1, "module", "install", "-m", am, archive)
	m := installedIDRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("module install says no id:\n%s", out)
	}
	id, _ := strconv.Atoi(m[1])
	conf := n1.HostPath(filepath.Join(testcluster.NodeSAFE, "modules", am, "conf", "userconfig.xml"))
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, e := range edits {
		edited := e(s)
		if edited == s {
			t.Fatalf("an edit changed nothing in %s:\n%s", conf, s)
		}
		s = edited
	}
	if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, n1, "config", "-m", am)
	out = must(t, n1, "-H", "*", "-E", am)
	wantEachNode(t, c, out, "Module "+am+" configured")
	want := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(am) + ` +` + strconv.Itoa(id) + `$`)
	for _, n := range c.Nodes {
		if out := must(t, n, "module", "listid"); !want.MatchString(out) {
			t.Fatalf("%s: module listid does not give %s the id %d it has on %s:\n%s", n.Name, am, id, n1.Name, out)
		}
	}
	return id
}

// stateLines returns, per node in order, the "Local" line of `safekit -H
// "*" state -m AM` run in n.
func stateLines(t testing.TB, c *testcluster.Cluster, n *testcluster.Node, am string) []string {
	t.Helper()
	out := must(t, n, "-H", "*", "state", "-m", am)
	wantEachNode(t, c, out, "")
	var local []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "Local") {
			local = append(local, strings.Join(strings.Fields(l), " "))
		}
	}
	return local
}

package uitest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
)

// consolePassword is the password of the console user admin on both nodes.
const consolePassword = "console-test-pwd"

// rcmdLine is what node1's daemon logs at its first start: the password of
// distributed commands, for the other nodes.
var rcmdLine = regexp.MustCompile(`give every other node the same with: safekit webservercfg -rcmdpasswd (\S+)`)

// TestConsoleCluster drives the console of two real nodes (safekitd in
// their own namespaces, internal/testcluster) from headless Chromium
// through the operator scenario: every page talks to node1 only, which
// relays to node2.
func TestConsoleCluster(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Need(t, chromiumPath+" (apt-get install chromium chromium-driver)")
	}
	mirror := filepath.Join(testenv.CorpusDir(t), "modules", "linux", "mirror.safe")
	c, n1, n2 := newPair(t)
	// The templates in node1's Application_Modules, as make install puts
	// them, for the New module page.
	packTemplates(t, n1.HostPath(filepath.Join(testcluster.NodeSAFE, "Application_Modules", "generic")))
	lan := c.Lans[0]
	scenario(t, target{
		url:      "http://" + n1.Addr(lan) + ":9010",
		netns:    n1.Netns(),
		password: consolePassword,
		setPasswords: func() {
			for _, n := range c.Nodes {
				if _, _, err := n.Safekit("webservercfg", "-passwd", consolePassword); err != nil {
					t.Fatal(err)
				}
			}
		},
		nodes:  [2]string{n1.Name, n2.Name},
		addrs:  [2]string{n1.Addr(lan), n2.Addr(lan)},
		mirror: mirror,
		userconfig: func(node, module string) (string, error) {
			b, err := os.ReadFile(c.Node(node).HostPath(filepath.Join(testcluster.NodeSAFE, "modules", module, "conf", "userconfig.xml")))
			return string(b), err
		},
	})
}

// newPair starts two nodes running this tree's binaries, and gives node2
// the password of distributed commands that node1's daemon made, so that
// node1 relays to node2.
func newPair(t *testing.T) (c *testcluster.Cluster, n1, n2 *testcluster.Node) {
	t.Helper()
	c = testcluster.New(t, testcluster.Options{Nodes: 2, Bin: buildBinaries(t)})
	n1, n2 = c.Node("node1"), c.Node("node2")
	pwd := waitLogLine(t, filepath.Join(n1.Dir, "safekitd.log"), rcmdLine)
	if _, _, err := n2.Safekit("webservercfg", "-rcmdpasswd", pwd); err != nil {
		t.Fatal(err)
	}
	return c, n1, n2
}

// buildBinaries builds safekit and safekitd of this tree into a
// temporary directory, as compat-tests does, so that the test never runs
// a stale bin/.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, c := range []string{"safekit", "safekitd"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c), "./cmd/"+c)
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/%s: %v\n%s", c, err, out)
		}
	}
	return dir
}

// packTemplates packs the project's module templates into dir.
func packTemplates(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("go", "run", "./internal/tools/mksafe", "-src", "modules/templates", "-out", dir)
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packing the templates: %v\n%s", err, out)
	}
}

// waitLogLine polls a log file until re matches, and returns its first
// group without the quotes of logrus.
func waitLogLine(t *testing.T, file string, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		if m := re.FindSubmatch(b); m != nil {
			return strings.Trim(string(m[1]), `"`)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not say %q:\n%s", file, re, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

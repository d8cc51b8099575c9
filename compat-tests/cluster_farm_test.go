package compattests

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
)

// testFarm runs the project's farm template on three nodes (User's Guide
// §6): UP everywhere, the load shared in three (85, 85 and 86 of 256
// entries), then shared in two once a node crashed. The same cluster then
// shows how `safekit -H "*" state` reports a node that is down.
func testFarm(t *testing.T) {
	const am = "farm"
	group := am + "_0" // no <vip>: one implicit group named after the module
	c := newCluster(t, 3)
	setupCluster(t, c)
	installModule(t, c, am, filepath.Join(binDir, "templates", "farm.safe"))
	n1, n3 := c.Node("node1"), c.Node("node3")

	t0 := time.Now()
	wantEachNode(t, c, must(t, n1, "-H", "*", "start", "-m", am), "")
	total := 0
	for _, n := range c.Nodes {
		waitState(t, n, am, "UP Ready")
		l := waitLogged(t, n, am, t0, "farm membership: node1 node2 node3 (group "+group+")")
		share := waitShare(t, n, am, group, l.at, 85, 86)
		total += share
		wantResource(t, n, am, "farm."+group, fmt.Sprintf("%d%%", (share*100+128)/256))
	}
	if total != 256 {
		t.Errorf("the shares of the three nodes add up to %d/256", total)
	}

	t.Run("a node crashes", func(t *testing.T) {
		t0 := time.Now()
		if err := n3.Kill(); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes[:2] {
			l := waitLogged(t, n, am, t0, "farm membership: node1 node2 (group "+group+")")
			waitShare(t, n, am, group, l.at, 128)
			wantResource(t, n, am, "farm."+group, "50%")
			if got := state(t, n, am); got != "UP Ready" {
				t.Errorf("%s: %s after the crash of node3, want UP Ready", n.Name, got)
			}
		}
	})

	t.Run("state with a node down", func(t *testing.T) {
		// A killed node's network namespace still answers (connection
		// refused at once); with its links cut, nothing answers at all.
		if err := n3.CutAll(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		stdout, stderr, code := sk(t, n1, "-H", "*", "state")
		took := time.Since(start)
		t.Logf("safekit -H \"*\" state with node3 down: exit %d after %v\n%s%s", code, took.Round(time.Millisecond), stdout, stderr)
		if code == 0 {
			t.Errorf("exit code 0 with node3 down")
		}
		if got := strings.Count(stdout, "\nSuccess\n"); got != 2 {
			t.Errorf("%d successes, want 2 (node1 and node2)", got)
		}
		for _, n := range c.Nodes[:2] {
			if !strings.Contains(stdout, "Server=http://"+n.Addr("default")+":9010 ") || !strings.Contains(stdout, "Local  ("+n.Name+")") {
				t.Errorf("no answer of %s", n.Name)
			}
		}
		addr := regexp.QuoteMeta(n3.Addr("default"))
		if !regexp.MustCompile(`(?m)^Error: cannot reach ` + addr + `:9010: \S`).MatchString(stderr) {
			t.Errorf("no error naming %s:9010 on stderr", n3.Addr("default"))
		}
		if !strings.Contains(stdout, "Server=http://"+n3.Addr("default")+":9010 ") {
			t.Errorf("no banner for node3")
		}
		if took > 15*time.Second {
			t.Errorf("the command took %v: an unreachable node must not hold it long", took)
		}
	})
}

var farmLoadRE = regexp.MustCompile(`^farm load: (\d+)/256 \(group (\S+)\)$`)

// waitShare waits for the "farm load" line of group logged at or after t0
// in n and checks it is one of want; it returns the share.
func waitShare(t *testing.T, n *testcluster.Node, am, group string, t0 time.Time, want ...int) int {
	t.Helper()
	l := waitLogged(t, n, am, t0, "farm load: ")
	m := farmLoadRE.FindStringSubmatch(l.text)
	if m == nil || m[2] != group {
		t.Fatalf("%s: %q, want farm load: N/256 (group %s)", n.Name, l.text, group)
	}
	var share int
	fmt.Sscan(m[1], &share)
	for _, w := range want {
		if share == w {
			return share
		}
	}
	t.Fatalf("%s: %q: want a share among %v", n.Name, l.text, want)
	return 0
}

// wantResource polls `safekit get -m AM -r name` in n until it prints
// value.
func wantResource(t *testing.T, n *testcluster.Node, am, name, value string) {
	t.Helper()
	deadline := time.Now().Add(transitionTimeout)
	for {
		got := strings.TrimSpace(must(t, n, "get", "-m", am, "-r", name))
		if got == value {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: resource %s of %s is %q, want %q", n.Name, name, am, got, value)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

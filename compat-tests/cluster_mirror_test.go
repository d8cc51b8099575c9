package compattests

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
)

// corpusMirror is Evidian's published mirror module (no <rfs>).
func corpusMirror(t *testing.T) string {
	return filepath.Join(testenv.CorpusDir(t), "modules", "linux", "mirror.safe")
}

// mirrorPair sets up a two-node cluster from node1 and installs the
// published mirror as module "mirror" on both, with short heartbeats and
// the given edits of its userconfig.xml.
func mirrorPair(t *testing.T, edits ...func(string) string) (c *testcluster.Cluster, n1, n2 *testcluster.Node) {
	t.Helper()
	archive := corpusMirror(t)
	c = newCluster(t, 2)
	setupCluster(t, c)
	installModule(t, c, "mirror", archive, append([]func(string) string{shortHeartbeats}, edits...)...)
	return c, c.Node("node1"), c.Node("node2")
}

// testWalkthrough follows the tests of a mirror module of the User's Guide
// (§4.2) with the published mirror.safe: first start with prim, the
// secondary joins, failover on a stop of the primary, failback, swap, the
// crash of the primary node, its return, and a split brain and its
// recovery.
func testWalkthrough(t *testing.T) {
	const am = "mirror"
	c, n1, n2 := mirrorPair(t)

	// prim on node1: ALONE, as the administrator asked.
	t0 := time.Now()
	must(t, n1, "prim", "-m", am)
	must(t, n1, "waitstart", "-m", am)
	waitState(t, n1, am, "ALONE Ready")
	wantLogged(t, n1, am, t0, "Action prim called by root", "Script start_prim", "Local state ALONE Ready")

	// start on node2: it joins as SECOND, node1 becomes PRIM; the ALONE
	// node stays primary (defaultprim="alone": no swap).
	t0 = time.Now()
	must(t, n2, "start", "-m", am)
	waitState(t, n2, am, "SECOND Ready")
	waitState(t, n1, am, "PRIM Ready")
	wantLogged(t, n2, am, t0, "Action start called by root", "Local state SECOND Ready")
	wantLogged(t, n1, am, t0, "Remote state SECOND", "Local state PRIM Ready")
	notLogged(t, n2, am, t0, "Script start_prim")
	if got := stateLines(t, c, n2, am); len(got) != 2 || !strings.HasPrefix(got[0], "Local (node1) : PRIM") || !strings.HasPrefix(got[1], "Local (node2) : SECOND") {
		t.Fatalf(`safekit -H "*" state: %q, want node1 PRIM and node2 SECOND`, got)
	}
	holdState(t, n1, am, "PRIM Ready", 2*hbPulse)
	notLogged(t, n1, am, t0, "defaultprim")

	t.Run("stop of the primary: failover", func(t *testing.T) {
		t0 := time.Now()
		must(t, n1, "stop", "-m", am)
		must(t, n1, "waitstop", "-m", am)
		waitState(t, n2, am, "ALONE Ready")
		waitState(t, n1, am, "STOP NotReady")
		wantLogged(t, n2, am, t0, "Remote state STOP", "Action alone called by heart: remote stop", "Script start_prim", "Local state ALONE Ready")
		if ul := userlog(t, n2, am, "start_prim", t0); !strings.Contains(ul, "Running start_prim SECOND ALONE") {
			t.Fatalf("node2: the userlog of start_prim after the failover says:\n%s", ul)
		}
		wantLogged(t, n1, am, t0, "Action stop called by root", "Script stop_prim", "Local state STOP NotReady")
	})

	t.Run("restart of the former primary: SECOND", func(t *testing.T) {
		t0 := time.Now()
		must(t, n1, "start", "-m", am)
		waitState(t, n1, am, "SECOND Ready")
		waitState(t, n2, am, "PRIM Ready")
		notLogged(t, n1, am, t0, "Script start_prim")
	})

	t.Run("swap", func(t *testing.T) {
		t0 := time.Now()
		must(t, n2, "swap", "-m", am)
		waitState(t, n1, am, "PRIM Ready")
		waitState(t, n2, am, "SECOND Ready")
		wantLogged(t, n2, am, t0, "Action swap called by root", "Begin of Swap", "Script stop_prim", "Local state SECOND Ready")
		wantLogged(t, n1, am, t0, "Script start_prim", "Local state PRIM Ready")
		if ul := userlog(t, n1, am, "start_prim", t0); !strings.Contains(ul, "Running start_prim SECOND PRIM swap") {
			t.Fatalf("node1: the userlog of start_prim of the swap says:\n%s", ul)
		}
	})

	t.Run("crash of the primary node", func(t *testing.T) {
		t0 := time.Now()
		if err := n1.Kill(); err != nil {
			t.Fatal(err)
		}
		waitState(t, n2, am, "ALONE Ready")
		alone := waitLogged(t, n2, am, t0, "Local state ALONE Ready")
		wantLogged(t, n2, am, t0, "Resource heartbeat.default set to down by heart", "Remote state UNKNOWN",
			"Action alone called by heart: no heartbeat", "Script start_prim", "Local state ALONE Ready")
		took := alone.at.Sub(t0)
		t.Logf("node1 killed: node2 ALONE Ready %v later (heartbeat timeout %v)", took.Round(time.Millisecond), hbTimeout)
		// make bench holds the target (1 s beyond the timeout, median of
		// ten crashes); a single crash on a busy CI machine gets twice that.
		if took > hbTimeout+2*time.Second {
			t.Errorf("node2 became ALONE %v after the crash of node1: more than the heartbeat timeout %v + 2s", took, hbTimeout)
		}

		// node1 boots again: the module (boot="on") starts and joins as
		// SECOND after stopping what its crash may have left running.
		t1 := time.Now()
		if err := n1.Start(); err != nil {
			t.Fatal(err)
		}
		waitState(t, n1, am, "SECOND Ready")
		waitState(t, n2, am, "PRIM Ready")
		wantLogged(t, n1, am, t1, "Module was PRIM when its process ended abnormally", `Script stop_prim "force"`,
			"Action start called at boot time", "Local state SECOND Ready")
	})

	t.Run("split brain", func(t *testing.T) {
		// node1, the secondary, loses every lan: both nodes go ALONE.
		t0 := time.Now()
		if err := n1.CutAll(); err != nil {
			t.Fatal(err)
		}
		waitState(t, n1, am, "ALONE Ready")
		waitState(t, n2, am, "ALONE Ready")
		wantLogged(t, n1, am, t0, "Action alone called by heart: no heartbeat", "Script start_prim", "Local state ALONE Ready")
		wantLogged(t, n2, am, t0, "Action alone called by heart: no heartbeat", "Local state ALONE Ready")

		// The network comes back: the former secondary gives way.
		t1 := time.Now()
		if err := n1.RestoreAll(); err != nil {
			t.Fatal(err)
		}
		waitState(t, n1, am, "SECOND Ready")
		waitState(t, n2, am, "PRIM Ready")
		wantLogged(t, n1, am, t1, "Remote state ALONE", "Split brain recovery: exiting alone", "Script stop_prim",
			"Action start called automatically", "Local state SECOND Ready")
		wantLogged(t, n2, am, t1, "Remote state ALONE", "Split brain recovery: staying alone", "Local state PRIM Ready")
		notLogged(t, n2, am, t1, "Split brain recovery: exiting alone")
		notLogged(t, n1, am, t1, "Split brain recovery: staying alone")
	})
}

// testFailoverOff: with <service failover="off">, the secondary does not
// take over a stopped primary; it waits (NotReady) until the primary comes
// back or an administrator runs prim (User's Guide §5.7).
func testFailoverOff(t *testing.T) {
	const am = "mirror"
	_, n1, n2 := mirrorPair(t, serviceAttr(`failover="off"`))
	must(t, n1, "prim", "-m", am)
	waitState(t, n1, am, "ALONE Ready")
	must(t, n2, "start", "-m", am)
	waitState(t, n2, am, "SECOND Ready")
	waitState(t, n1, am, "PRIM Ready")

	stopPrimary := func(t *testing.T) {
		t.Helper()
		t0 := time.Now()
		must(t, n1, "stop", "-m", am)
		waitState(t, n1, am, "STOP NotReady")
		waitState(t, n2, am, "WAIT NotReady")
		wantLogged(t, n2, am, t0, "Failover-off configured", "Action stopstart called by failover-off",
			"Transition STOPSTART from failover-off", "Local state WAIT NotReady")
		// Longer than a heartbeat timeout: it does not go ALONE on its own.
		holdState(t, n2, am, "WAIT NotReady", hbTimeout+time.Second)
		notLogged(t, n2, am, t0, "Script start_prim")
	}

	t.Run("the primary comes back", func(t *testing.T) {
		stopPrimary(t)
		must(t, n1, "prim", "-m", am)
		waitState(t, n1, am, "PRIM Ready")
		waitState(t, n2, am, "SECOND Ready")
	})

	t.Run("prim on the secondary", func(t *testing.T) {
		stopPrimary(t)
		t0 := time.Now()
		must(t, n2, "prim", "-m", am)
		waitState(t, n2, am, "ALONE Ready")
		wantLogged(t, n2, am, t0, "Action prim called by root", "Script start_prim", "Local state ALONE Ready")
		must(t, n1, "start", "-m", am)
		waitState(t, n1, am, "SECOND Ready")
		waitState(t, n2, am, "PRIM Ready")
	})
}

// testDefaultPrim: with <service defaultprim="node2">, node2 is the
// primary whenever both nodes run: when it joins as SECOND, the primary
// swaps with it (User's Guide §5.8); when it is already primary, nothing
// moves.
func testDefaultPrim(t *testing.T) {
	const am = "mirror"
	_, n1, n2 := mirrorPair(t, serviceAttr(`defaultprim="node2"`))
	must(t, n1, "prim", "-m", am)
	waitState(t, n1, am, "ALONE Ready")

	joinAndSwap := func(t *testing.T, t0 time.Time) {
		t.Helper()
		waitState(t, n2, am, "PRIM Ready")
		waitState(t, n1, am, "SECOND Ready")
		wantLogged(t, n2, am, t0, "Local state SECOND Ready", "Transition SWAP from defaultprim", "Script start_prim", "Local state PRIM Ready")
		wantLogged(t, n1, am, t0, "Local state PRIM Ready", "Script stop_prim", "Local state SECOND Ready")
	}

	t.Run("the named node joins", func(t *testing.T) {
		t0 := time.Now()
		must(t, n2, "start", "-m", am)
		joinAndSwap(t, t0)
	})

	t.Run("the other node joins", func(t *testing.T) {
		t0 := time.Now()
		must(t, n1, "stop", "-m", am)
		waitState(t, n1, am, "STOP NotReady")
		must(t, n1, "start", "-m", am)
		waitState(t, n1, am, "SECOND Ready")
		waitState(t, n2, am, "PRIM Ready")
		holdState(t, n2, am, "PRIM Ready", 2*hbPulse)
		notLogged(t, n1, am, t0, "defaultprim")
		notLogged(t, n2, am, t0, "defaultprim")
	})

	t.Run("failback to the named node", func(t *testing.T) {
		t0 := time.Now()
		must(t, n2, "stop", "-m", am)
		waitState(t, n1, am, "ALONE Ready")
		t1 := time.Now()
		must(t, n2, "start", "-m", am)
		joinAndSwap(t, t1)
		if got := count(since(modLog(t, n1, am, true), t0), "Local state PRIM Ready"); got != 1 {
			t.Errorf("node1 became PRIM %d times during the failback, want 1", got)
		}
	})
}

// testBothStart: both nodes of a mirror without replication are started
// at the same time; they elect one primary, without a split brain.
func testBothStart(t *testing.T) {
	const am = "mirror"
	c, n1, n2 := mirrorPair(t)
	for round, how := range []string{"-H *", "node2 then node1", "node1 then node2"} {
		t0 := time.Now()
		switch how {
		case "-H *":
			out := must(t, n1, "-H", "*", "start", "-m", am)
			wantEachNode(t, c, out, "")
		default:
			first, second := n2, n1
			if strings.HasPrefix(how, "node1") {
				first, second = n1, n2
			}
			var wg sync.WaitGroup
			for _, n := range []*testcluster.Node{first, second} {
				wg.Go(func() { must(t, n, "start", "-m", am) })
			}
			wg.Wait()
		}
		deadline := time.Now().Add(transitionTimeout)
		var s1, s2 string
		for {
			s1, s2 = state(t, n1, am), state(t, n2, am)
			if (s1 == "PRIM Ready" && s2 == "SECOND Ready") || (s1 == "SECOND Ready" && s2 == "PRIM Ready") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d (%s): node1 %s, node2 %s after %v, want one PRIM and one SECOND\nnode1:\n%s\nnode2:\n%s",
					round, how, s1, s2, transitionTimeout, tail(modLog(t, n1, am, true), 30), tail(modLog(t, n2, am, true), 30))
			}
			time.Sleep(50 * time.Millisecond)
		}
		prim := n1
		if s2 == "PRIM Ready" {
			prim = n2
		}
		t.Logf("round %d (%s): %s is PRIM", round, how, prim.Name)
		for _, n := range []*testcluster.Node{n1, n2} {
			lines := since(modLog(t, n, am, true), t0)
			if l := find(lines, "Split brain"); l != nil {
				t.Errorf("round %d: %s: %s", round, n.Name, l)
			}
			want := 0
			if n == prim {
				want = 1
			}
			if got := count(lines, "Script start_prim"); got != want {
				t.Errorf("round %d: %s ran start_prim %d times, want %d:\n%s", round, n.Name, got, want, tail(lines, 30))
			}
		}
		must(t, n1, "-H", "*", "stop", "-m", am)
		waitState(t, n1, am, "STOP NotReady")
		waitState(t, n2, am, "STOP NotReady")
	}
}

// testTwoLans: a mirror with a heartbeat on each of two lans (a dedicated
// replication lan beside the default one, User's Guide §13.4): losing one
// lan loses one heartbeat and nothing else (PRIM/SECOND stay), and no
// genuine heartbeat packet is ever dropped.
func testTwoLans(t *testing.T) {
	const am = "mirror"
	archive := corpusMirror(t)
	c := newCluster(t, 2, "default", "repli")
	n1, n2 := c.Node("node1"), c.Node("node2")
	setupCluster(t, c)
	flow := func(conf string) string {
		return strings.Replace(conf, "<heart>", fmt.Sprintf(`<heart>
    <heartbeat name="repli" ident="flow" pulse="%dms" timeout="%dms"/>`, hbPulse.Milliseconds(), hbTimeout.Milliseconds()), 1)
	}
	installModule(t, c, am, archive, shortHeartbeats, flow)
	t0 := time.Now()
	must(t, n1, "prim", "-m", am)
	waitState(t, n1, am, "ALONE Ready")
	must(t, n2, "start", "-m", am)
	waitState(t, n2, am, "SECOND Ready")
	waitState(t, n1, am, "PRIM Ready")
	for _, n := range c.Nodes {
		// Since the module was configured.
		wantLogged(t, n, am, time.Time{}, "Resource heartbeat.default set to up by heart")
		wantLogged(t, n, am, time.Time{}, "Resource heartbeat.flow set to up by heart")
	}

	t1 := time.Now()
	if err := n2.CutLan("default"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		waitLogged(t, n, am, t1, "Resource heartbeat.default set to down by heart")
	}
	holdState(t, n1, am, "PRIM Ready", 2*hbPulse)
	holdState(t, n2, am, "SECOND Ready", 2*hbPulse)
	t2 := time.Now()
	if err := n2.RestoreLan("default"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		waitLogged(t, n, am, t2, "Resource heartbeat.default set to up by heart")
		notLogged(t, n, am, t0, "Remote state UNKNOWN")
		notLogged(t, n, am, time.Time{}, "Heartbeat packet from")
	}
}

// testWitness: with a <splitbrain> checker whose witness is the harness's
// bridge (an address both nodes reach over their lan), the node that
// loses every lan also loses the witness: it stops its application and
// waits (splitbrain_failure) instead of going ALONE, while the node that
// still reaches the witness goes, or stays, ALONE. There is no split
// brain to recover from when the network comes back: the isolated node
// joins as SECOND.
func testWitness(t *testing.T) {
	const am = "mirror"
	c := newCluster(t, 2)
	n1, n2 := c.Node("node1"), c.Node("node2")
	setupCluster(t, c)
	witness := func(conf string) string {
		return strings.Replace(conf, "</service>", fmt.Sprintf(`  <check>
    <splitbrain ident="witness" exec="ping" arg="%s"/>
  </check>
 </service>`, c.HostAddr("default")), 1)
	}
	installModule(t, c, am, corpusMirror(t), shortHeartbeats, witness)
	must(t, n1, "prim", "-m", am)
	waitState(t, n1, am, "ALONE Ready")
	must(t, n2, "start", "-m", am)
	waitState(t, n2, am, "SECOND Ready")
	waitState(t, n1, am, "PRIM Ready")

	// isolate cuts every lan of lost; kept is expected to go (or stay)
	// ALONE, lost to wait with its application stopped, for longer than
	// a heartbeat timeout; then the lans come back.
	isolate := func(t *testing.T, lost, kept *testcluster.Node, lostWas string) {
		t0 := time.Now()
		if err := lost.CutAll(); err != nil {
			t.Fatal(err)
		}
		waitState(t, kept, am, "ALONE Ready")
		waitState(t, lost, am, "WAIT NotReady")
		wantLogged(t, lost, am, t0, "Resource splitbrain.uptodate set to down by splitbraincheck",
			"Action wait from failover rule splitbrain_failure", "Local state WAIT NotReady")
		wantLogged(t, kept, am, t0, "Resource splitbrain.uptodate set to up by splitbraincheck",
			"Action alone called by heart: no heartbeat", "Local state ALONE Ready")
		// The periodic checks of the witness keep failing: no ALONE.
		holdState(t, lost, am, "WAIT NotReady", hbTimeout+2*time.Second)
		notLogged(t, lost, am, t0, "Script start_prim")
		notLogged(t, kept, am, t0, "Resource splitbrain.uptodate set to down")
		if got := state(t, lost, am); got != "WAIT NotReady" {
			t.Fatalf("%s was %s, cut from the witness: %s, want WAIT NotReady", lost.Name, lostWas, got)
		}

		t1 := time.Now()
		if err := lost.RestoreAll(); err != nil {
			t.Fatal(err)
		}
		waitState(t, lost, am, "SECOND Ready")
		waitState(t, kept, am, "PRIM Ready")
		notLogged(t, kept, am, t1, "Split brain recovery")
		notLogged(t, lost, am, t1, "Split brain recovery")
	}
	t.Run("the secondary isolated", func(t *testing.T) { isolate(t, n2, n1, "SECOND") })
	t.Run("the primary isolated: it stops its application", func(t *testing.T) {
		t0 := time.Now()
		isolate(t, n1, n2, "PRIM")
		wantLogged(t, n1, am, t0, "Action wait from failover rule splitbrain_failure", "Script stop_prim", "Local state WAIT NotReady")
		wantLogged(t, n2, am, t0, "Script start_prim", "Local state ALONE Ready")
	})
}

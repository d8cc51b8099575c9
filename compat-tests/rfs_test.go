package compattests

// The acceptance scenarios of file replication (<rfs>, docs/replication.md)
// on the harness of internal/testcluster: two nodes, each with its own
// safekitd, a mirror module replicating /var/lib/sktest/data (a private
// copy-on-write directory of each node), heartbeats of 300 ms / 3 s. An
// application (internal/tools/rfswriter) writes on the primary and logs
// every acknowledged write to a file that is not replicated.
//
//   - Kill*: the primary (its daemon, its node) or the secondary is killed
//     at random points; every acknowledged write is on the node that took
//     over, and rfsverify finds no difference once the pair is back.
//   - Reintegration: after a clean stop only the changed zones are copied;
//     rfsverify sees no difference, then a corrupted byte.
//   - UpToDate: a node with stale or half-copied data does not become
//     primary by itself; prim, primforce, fullsync.
//   - Backups: a secondary restored from a backup of the primary, with
//     the external synchronisation (rfssync) and the synchronisation by
//     date (secondforce -d); a mismatched external policy stops it.
//   - DiskFull, FrozenSecondary, CutDuringReintegration,
//     DaemonRestartDuringReintegration: no acknowledged write lost, clear
//     log lines, and the pair comes back by itself when the fault ends.
//
// SAFEKIT_FULL=1 (make test-full) runs the heavier tier: 10 kills per
// scenario instead of 3, a 1 GiB image instead of 256 MiB, 20,000 writes
// per writer run instead of 2,000, 2 GiB instead of 512 MiB to
// reintegrate. SAFEKIT_RFS_SEED replays the random choices of a run (each
// scenario logs its seed).

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/safe/archive"
)

// The replicated directory of every scenario, and what the nodes keep
// private (each node gets its own copy-on-write copy of it).
const (
	rfsModule  = "rfs"
	rfsParent  = "/var/lib/sktest"
	rfsDir     = rfsParent + "/data"
	rfsBacking = rfsDir + "_For_SafeKit_Replication"
)

// rfsTier is the size of the scenarios: make test's or make test-full's.
type rfsTier struct {
	kills  int   // kills per fault scenario
	writes int   // writes per writer run (killed at a random point)
	image  int64 // size of the sparse image written with O_DIRECT
	big    int64 // size of the file to reintegrate
}

func tier() rfsTier {
	if os.Getenv("SAFEKIT_FULL") != "" {
		return rfsTier{kills: 10, writes: 20000, image: 1 << 30, big: 2 << 30}
	}
	return rfsTier{kills: 3, writes: 2000, image: 256 << 20, big: 512 << 20}
}

// TestRFS runs the file replication scenarios, each on its own cluster,
// all at once (as TestCluster does: their time goes to waiting for
// heartbeats, scripts and disks). -run TestRFS/KillPrimaryDaemon picks
// one.
func TestRFS(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(*testing.T)
	}{
		{"KillPrimaryDaemon", func(t *testing.T) { testKillPrimary(t, "daemon", "log", "second") }},
		{"KillPrimaryNode", func(t *testing.T) { testKillPrimary(t, "node", "log", "second") }},
		{"KillPrimaryImage", func(t *testing.T) { testKillPrimary(t, "both", "image", "none") }},
		{"KillSecondary", testKillSecondary},
		{"Reintegration", testReintegration},
		{"UpToDate", testUpToDate},
		{"Backups", testBackups},
		{"DiskFull", testDiskFull},
		{"FrozenSecondary", testFrozenSecondary},
		{"CutDuringReintegration", testCutDuringReintegration},
		{"DaemonRestartDuringReintegration", testDaemonRestartDuringReintegration},
	}
	var wg sync.WaitGroup
	for _, s := range scenarios {
		wg.Go(func() { t.Run(s.name, s.run) })
	}
	wg.Wait()
}

// rfsWriter builds, once, the application the scenarios run in the nodes.
var rfsWriter = sync.OnceValues(func() (string, error) {
	dst := filepath.Join(binDir, "rfswriter")
	cmd := exec.Command("go", "build", "-o", dst, "./internal/tools/rfswriter")
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./internal/tools/rfswriter: %w\n%s", err, out)
	}
	return dst, nil
})

func writerBin(t testing.TB) string {
	t.Helper()
	p, err := rfsWriter()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rfsOptions shape the module of a scenario.
type rfsOptions struct {
	// rfsAttrs are added to <rfs> (async="second" is always there unless
	// given).
	rfsAttrs string
	// boot is <service boot>: "on" (default) restarts the module with its
	// node, as a production module does.
	boot string
	// prepare runs in each node before the module is configured (after the
	// replicated directory's parent exists).
	prepare func(t *testing.T, n *testcluster.Node)
}

// rfsUserconfig is the module of these scenarios: a mirror that replicates
// rfsDir, with scripts that only say they ran.
func rfsUserconfig(o rfsOptions) string {
	attrs := o.rfsAttrs
	if !strings.Contains(attrs, "async=") {
		attrs = `async="second" ` + attrs
	}
	return fmt.Sprintf(`<!DOCTYPE safe>
<safe>
  <service mode="mirror" boot="%s">
    <heart>
      <heartbeat name="default" pulse="%dms" timeout="%dms"/>
    </heart>
    <rfs %s>
      <replicated dir="%s"/>
    </rfs>
    <user/>
  </service>
</safe>
`, o.boot, hbPulse.Milliseconds(), hbTimeout.Milliseconds(), strings.TrimSpace(attrs), rfsDir)
}

// rfsScripts are the module's scripts: they log their arguments.
var rfsScripts = []string{"start_prim", "stop_prim", "start_second", "stop_second"}

// packRFSModule writes the module's archive.
func packRFSModule(t *testing.T, o rfsOptions) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "rfs")
	for _, d := range []string{"conf", "bin"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "conf", "userconfig.xml"), []byte(rfsUserconfig(o)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range rfsScripts {
		body := "#!/bin/bash\necho \"Running " + s + " $*\"\n"
		if err := os.WriteFile(filepath.Join(src, "bin", s), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "rfs.safe")
	if err := archive.WriteFile(file, src); err != nil {
		t.Fatal(err)
	}
	return file
}

// rfsPair makes a two-node cluster with the module installed and
// configured on both, node1 PRIM and node2 SECOND.
func rfsPair(t *testing.T, o rfsOptions) (c *testcluster.Cluster, n1, n2 *testcluster.Node) {
	t.Helper()
	testenv.NeedRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Need(t, "/dev/fuse")
	}
	if o.boot == "" {
		o.boot = "on"
	}
	bin, err := initBin()
	if err != nil {
		t.Fatal(err)
	}
	c = testcluster.New(t, testcluster.Options{Nodes: 2, Bin: binDir, InitBin: bin, PrivateDirs: []string{rfsParent}})
	n1, n2 = c.Node("node1"), c.Node("node2")
	t.Cleanup(func() {
		// Before the teardown: a failed scenario gets both module logs.
		if !t.Failed() {
			return
		}
		for _, n := range c.Nodes {
			if n.DaemonPID() == 0 {
				continue
			}
			if out, _, err := n.Safekit("log", "-m", rfsModule, "-A", "-s", "250"); err == nil {
				t.Logf("--- %s: module log of %s (verbose, last lines) ---\n%s", n.Name, rfsModule, out)
			}
		}
	})
	setupCluster(t, c)
	for _, n := range c.Nodes {
		inNode(t, n, "mkdir", "-p", rfsParent)
		if o.prepare != nil {
			o.prepare(t, n)
		}
		inNode(t, n, "mkdir", "-p", rfsDir)
	}
	installModule(t, c, rfsModule, packRFSModule(t, o))
	must(t, n1, "prim", "-m", rfsModule)
	waitState(t, n1, rfsModule, "ALONE Ready")
	must(t, n2, "start", "-m", rfsModule)
	waitState(t, n2, rfsModule, "SECOND Ready")
	waitState(t, n1, rfsModule, "PRIM Ready")
	return c, n1, n2
}

// inNode runs a command in n and fails the test on an error.
func inNode(t testing.TB, n *testcluster.Node, args ...string) string {
	t.Helper()
	out, _, err := n.Run(args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// rfsRand returns the random source of a scenario, logging its seed.
func rfsRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SAFEKIT_RFS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("SAFEKIT_RFS_SEED=%d replays this scenario's random choices", seed)
	return rand.New(rand.NewPCG(seed, 0))
}

// appWriter is rfswriter running in a node.
type appWriter struct {
	n    *testcluster.Node
	ack  string // host path of its ack log (the nodes see the host's /tmp)
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan struct{}
	err  error
}

// startWriter runs rfswriter args in n, its acknowledgements going to ack.
func startWriter(t *testing.T, n *testcluster.Node, ack string, args ...string) *appWriter {
	t.Helper()
	w := &appWriter{n: n, ack: ack, done: make(chan struct{})}
	w.cmd = n.Command(append([]string{writerBin(t), args[0], "-ack", ack}, args[1:]...)...)
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("%s: start rfswriter: %v", n.Name, err)
	}
	go func() { w.err = w.cmd.Wait(); close(w.done) }()
	return w
}

// acked counts the writes acknowledged so far.
func (w *appWriter) acked() int {
	b, _ := os.ReadFile(w.ack)
	return bytes.Count(b, []byte("\n"))
}

// waitAcked waits until k writes are acknowledged; the writer must still
// run.
func (w *appWriter) waitAcked(t *testing.T, k int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for w.acked() < k {
		select {
		case <-w.done:
			t.Fatalf("%s: rfswriter ended after %d acknowledged writes, before the %d wanted (%v):\n%s", w.n.Name, w.acked(), k, w.err, w.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: rfswriter: %d acknowledged writes after 2m, want %d", w.n.Name, w.acked(), k)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wait waits for the end of the writer and returns its error.
func (w *appWriter) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(5 * time.Minute):
		t.Fatalf("%s: rfswriter still runs after 5m", w.n.Name)
	}
	return w.err
}

// checkWrites runs an rfswriter check in n; the test fails on any lost or
// damaged acknowledged write.
func checkWrites(t *testing.T, n *testcluster.Node, args ...string) {
	t.Helper()
	out, errOut, err := n.Run(append([]string{writerBin(t)}, args...)...)
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", n.Name, err, out, errOut)
	}
	t.Logf("%s: %s", n.Name, strings.TrimSpace(out))
}

// crash ends n's safekitd (and with it the module process: the FUSE
// server and the replication) or the whole node.
func crash(t *testing.T, n *testcluster.Node, what string) {
	t.Helper()
	var err error
	if what == "daemon" {
		err = n.KillDaemon()
	} else {
		err = n.Kill()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// revive starts what crash ended; the module (boot="on") starts by itself.
func revive(t *testing.T, n *testcluster.Node, what string) {
	t.Helper()
	var err error
	if what == "daemon" {
		if err = n.StartDaemon(); err == nil {
			err = n.WaitDaemon(transitionTimeout)
		}
	} else {
		err = n.Start()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// waitPair waits until prim is PRIM Ready and sec SECOND Ready.
func waitPair(t *testing.T, prim, sec *testcluster.Node) {
	t.Helper()
	waitUp(t, sec, "SECOND Ready")
	waitUp(t, prim, "PRIM Ready")
}

// waitUp is waitState for a node whose daemon or module process may be
// starting again: until it answers, `safekit state` prints nothing.
func waitUp(t *testing.T, n *testcluster.Node, want string) {
	t.Helper()
	deadline := time.Now().Add(2 * transitionTimeout)
	for {
		out, _, _ := sk(t, n, "state", "-m", rfsModule, "-lq")
		got := strings.TrimSpace(out)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: module %s is %q after %v, want %q; its log ends with:\n%s", n.Name, rfsModule, got, 2*transitionTimeout, want, tail(modLog(t, n, rfsModule, true), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rfsverify runs `safekit rfsverify` in the secondary n.
func rfsverify(t *testing.T, n *testcluster.Node) (string, int) {
	t.Helper()
	out, errOut, code := sk(t, n, "rfsverify", "-m", rfsModule)
	return out + errOut, code
}

// wantNoDifference fails unless rfsverify in the secondary n says the
// copies are the same.
func wantNoDifference(t *testing.T, n *testcluster.Node) {
	t.Helper()
	out, code := rfsverify(t, n)
	if code != 0 || !strings.Contains(out, "No difference") {
		t.Fatalf("%s: safekit rfsverify exited %d:\n%s", n.Name, code, out)
	}
}

// testKillPrimary: the primary is killed (its safekitd, which takes the
// module process and so the FUSE server and the replication with it, or
// the whole node) while an application writes; the secondary goes ALONE
// and holds every acknowledged write. The killed node comes back as
// SECOND and the roles alternate. kind is "daemon", "node" or "both"
// (alternating); app is "log" (small writes each followed by fdatasync)
// or "image" (4 KiB O_DIRECT writes at random offsets of a sparse image);
// async is <rfs async>.
func testKillPrimary(t *testing.T, kind, app, async string) {
	tr := tier()
	rng := rfsRand(t)
	_, n1, n2 := rfsPair(t, rfsOptions{rfsAttrs: `async="` + async + `"`})
	acks := t.TempDir()
	prim, sec := n1, n2
	seed := rng.Uint64()
	var imageAcks []string
	for round := 1; round <= tr.kills; round++ {
		what := kind
		if kind == "both" {
			what = map[bool]string{true: "daemon", false: "node"}[round%2 == 1]
		}
		at := tr.writes/20 + rng.IntN(tr.writes*9/10)
		ack := filepath.Join(acks, fmt.Sprintf("round%d.ack", round))
		var w *appWriter
		if app == "log" {
			w = startWriter(t, prim, ack, "log", "-file", fmt.Sprintf("%s/round%d.dat", rfsDir, round), "-n", strconv.Itoa(tr.writes), "-seed", strconv.Itoa(round))
		} else {
			first := uint64(round) * 1e6
			w = startWriter(t, prim, ack, "image", "-file", rfsDir+"/disk.img", "-n", strconv.Itoa(tr.writes), "-size", strconv.FormatInt(tr.image, 10),
				"-first", strconv.FormatUint(first, 10), "-seed", strconv.FormatUint(seed, 10))
			imageAcks = append(imageAcks, ack)
		}
		w.waitAcked(t, at)
		t0 := time.Now()
		crash(t, prim, what)
		if err := w.wait(t); err == nil {
			t.Fatalf("round %d: rfswriter ended without error although %s's %s was killed under it", round, prim.Name, what)
		}
		waitState(t, sec, rfsModule, "ALONE Ready")
		t.Logf("round %d: %s's %s killed after %d acknowledged writes; %s ALONE Ready %v later", round, prim.Name, what, w.acked(), sec.Name, time.Since(t0).Round(time.Millisecond))
		// Every acknowledged write of every round so far is on the node
		// that took over.
		if app == "log" {
			for r := 1; r <= round; r++ {
				checkWrites(t, sec, "check-log", "-file", fmt.Sprintf("%s/round%d.dat", rfsDir, r), "-ack", filepath.Join(acks, fmt.Sprintf("round%d.ack", r)), "-seed", strconv.Itoa(r))
			}
		} else {
			checkWrites(t, sec, append([]string{"check-image", "-file", rfsDir + "/disk.img", "-size", strconv.FormatInt(tr.image, 10), "-seed", strconv.FormatUint(seed, 10)}, imageAcks...)...)
		}
		t1 := time.Now()
		revive(t, prim, what)
		waitPair(t, sec, prim)
		t.Logf("round %d: %s back as SECOND %v after its restart", round, prim.Name, time.Since(t1).Round(time.Millisecond))
		prim, sec = sec, prim
	}
	wantNoDifference(t, sec)
}

// testKillSecondary: the secondary (its daemon, or the whole node, in
// turn) is killed while the primary writes with async="second" (writes
// acknowledged on receipt, perhaps not yet applied there); the primary
// goes on ALONE without failing a write; the secondary comes back,
// is reintegrated, and rfsverify finds no difference.
func testKillSecondary(t *testing.T) {
	tr := tier()
	rng := rfsRand(t)
	_, n1, n2 := rfsPair(t, rfsOptions{})
	acks := t.TempDir()
	for round := 1; round <= tr.kills; round++ {
		what := map[bool]string{true: "daemon", false: "node"}[round%2 == 1]
		at := tr.writes/20 + rng.IntN(tr.writes*9/10)
		ack := filepath.Join(acks, fmt.Sprintf("round%d.ack", round))
		file := fmt.Sprintf("%s/round%d.dat", rfsDir, round)
		w := startWriter(t, n1, ack, "log", "-file", file, "-n", strconv.Itoa(tr.writes), "-seed", strconv.Itoa(round))
		w.waitAcked(t, at)
		crash(t, n2, what)
		waitState(t, n1, rfsModule, "ALONE Ready")
		if err := w.wait(t); err != nil {
			t.Fatalf("round %d: rfswriter failed on the primary after the secondary's %s was killed: %v\n%s", round, what, err, w.out.String())
		}
		checkWrites(t, n1, "check-log", "-file", file, "-ack", ack, "-seed", strconv.Itoa(round))
		revive(t, n2, what)
		waitPair(t, n1, n2)
		wantNoDifference(t, n2)
		t.Logf("round %d: %s's %s killed after %d writes: no difference after its reintegration", round, n2.Name, what, at)
	}
}

// zoneSize is the default <rfs ruzone_blocksize>: the unit of the dirty
// bitmaps, hence of what a reintegration copies.
const zoneSize = 8 << 20

// testReintegration: the secondary is stopped cleanly; the primary, ALONE,
// changes 1% of a big file and creates, renames and deletes files and
// directories; the secondary comes back. Only the zones written are copied
// (the bitmaps), the copies are then identical (rfsverify, and a
// comparison of both backing trees here), and rfsverify does see a byte
// corrupted afterwards on the secondary's copy.
func testReintegration(t *testing.T) {
	tr := tier()
	rng := rfsRand(t)
	_, n1, n2 := rfsPair(t, rfsOptions{})
	w := writerBin(t)
	inNode(t, n1, "bash", "-euc", fmt.Sprintf(`cd %s
dd if=/dev/urandom of=big.img bs=1M count=%d status=none
mkdir -p tree/a/b tree/old tree/gone/sub
for i in $(seq 1 20); do echo "file $i" > tree/a/f$i; done
echo inner > tree/old/inner
echo doomed > tree/gone/sub/f
echo renameme > tree/a/torename
echo deleteme > tree/a/todelete
ln -s a/f1 tree/link1`, rfsDir, tr.big>>20))
	// The writes went through this daemon (a kernel passthrough would
	// have hidden them from it, and from the secondary): dd's 1 MiB writes
	// are at least one WRITE each.
	if w := rfsResource(t, n1, "rfs.replicated_writes", tr.big>>20); w < tr.big>>20 {
		t.Fatalf("node1: rfs.replicated_writes is %d after %d MiB written in 1 MiB writes", w, tr.big>>20)
	}
	wantNoDifference(t, n2)

	t0 := time.Now()
	must(t, n2, "stop", "-m", rfsModule)
	waitState(t, n2, rfsModule, "STOP NotReady")
	waitState(t, n1, rfsModule, "ALONE Ready")

	// 1% of the file, written in 64 KiB pieces in 1% of its zones (at
	// least one): the bitmaps count zones, so a change spread over the
	// whole file would make every zone dirty.
	zones := int(tr.big / zoneSize)
	k := max(1, (zones+99)/100)
	pieces := int(tr.big/100) / (64 << 10)
	var ranges []string
	for i, z := range rng.Perm(zones)[:k] {
		per := pieces / k
		if i < pieces%k {
			per++
		}
		for _, slot := range rng.Perm(zoneSize / (64 << 10))[:per] {
			ranges = append(ranges, fmt.Sprintf("%d:%d", int64(z)*zoneSize+int64(slot)*(64<<10), 64<<10))
		}
	}
	inNode(t, n1, append([]string{w, "patch", "-file", rfsDir + "/big.img", "-seed", strconv.FormatUint(rng.Uint64(), 10)}, ranges...)...)
	inNode(t, n1, "bash", "-euc", fmt.Sprintf(`cd %s/tree
mkdir -p new/deep/er
for i in $(seq 1 10); do head -c 10000 /dev/urandom > new/deep/er/n$i; done
mv a/torename a/renamed
mv old moved
rm a/todelete
rm -r gone
ln -s new/deep link2
chmod 600 a/f2
echo appended >> a/f3
touch -d 2001-01-01 a/f4`, rfsDir))
	t.Logf("node1 ALONE: %d bytes of big.img (%d MiB) rewritten in %d of its %d zones, a tree changed", len(ranges)*(64<<10), tr.big>>20, k, zones)

	t1 := time.Now()
	must(t, n2, "start", "-m", rfsModule)
	waitPair(t, n1, n2)
	took := time.Since(t1)
	wantLogged(t, n1, rfsModule, t0, "Action alone called by heart: remote stop", "Reintegration of the secondary (bitmap)")
	wantLogged(t, n2, rfsModule, t1, "Action start called by root", "Updating directory tree from "+rfsBacking, "Copied ", "Reintegration ended (synchronize)", "Local state SECOND Ready")
	copiedMB := -1
	for _, l := range since(modLog(t, n2, rfsModule, true), t1) {
		fmt.Sscanf(l.text, "Copied %d MB in", &copiedMB)
	}
	copied := rfsResource(t, n2, "rfs.rei_copy_size_metric", 1)
	limit := tr.big * 3 / 100
	t.Logf("node2 back as SECOND in %v: %d bytes copied (%d MB said the log), %.2f%% of big.img", took.Round(time.Millisecond), copied, copiedMB, float64(copied)*100/float64(tr.big))
	if copied <= 0 || copied >= limit || copiedMB < 0 || int64(copiedMB)<<20 >= limit {
		t.Errorf("the reintegration copied %d bytes (log: %d MB): want some, and less than 3%% of the %d MiB file (%d bytes)", copied, copiedMB, tr.big>>20, limit)
	}

	wantNoDifference(t, n2)
	if diffs := compareTrees(t, n1.HostPath(rfsBacking), n2.HostPath(rfsBacking)); len(diffs) > 0 {
		t.Fatalf("rfsverify finds no difference, but the backing trees differ:\n%s", strings.Join(diffs, "\n"))
	}

	// A byte changed behind replication's back on the secondary.
	off := rng.Int64N(tr.big)
	corruptByte(t, n2.HostPath(rfsBacking+"/big.img"), off)
	out, code := rfsverify(t, n2)
	if code != 1 || !strings.Contains(out, rfsBacking+"/big.img: content differs") || strings.Count(out, "\n") != 2 {
		t.Fatalf("node2: byte %d of big.img corrupted on the secondary: safekit rfsverify exited %d and said:\n%s", off, code, out)
	}
	t.Logf("node2: byte %d corrupted: rfsverify says %q", off, strings.SplitN(out, "\n", 2)[0])
	// The comparison above sees it too (it compares).
	if diffs := compareTrees(t, n1.HostPath(rfsBacking), n2.HostPath(rfsBacking)); len(diffs) != 1 || !strings.HasPrefix(diffs[0], "big.img: ") {
		t.Fatalf("after the corruption of big.img, the comparison of the trees finds:\n%s", strings.Join(diffs, "\n"))
	}
}

// rfsResource polls a replication resource of n (published every 2 s)
// until it is a number of at least least.
func rfsResource(t *testing.T, n *testcluster.Node, name string, least int64) int64 {
	t.Helper()
	deadline := time.Now().Add(transitionTimeout)
	for {
		out, _, _ := sk(t, n, "get", "-m", rfsModule, "-r", name)
		v, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err == nil && v >= least {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: resource %s is %q after %v", n.Name, name, strings.TrimSpace(out), transitionTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// corruptByte flips the bits of the byte at off of a file.
func corruptByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// compareTrees lists the differences between two trees: kind, mode,
// owner, size, modification time, content (SHA-256) or link target of
// each entry.
func compareTrees(t *testing.T, a, b string) []string {
	t.Helper()
	da, db := treeDigest(t, a), treeDigest(t, b)
	var diffs []string
	for k, va := range da {
		if vb, ok := db[k]; !ok {
			diffs = append(diffs, k+": only on the first node")
		} else if va != vb {
			diffs = append(diffs, fmt.Sprintf("%s: %s / %s", k, va, vb))
		}
	}
	for k := range db {
		if _, ok := da[k]; !ok {
			diffs = append(diffs, k+": only on the second node")
		}
	}
	sort.Strings(diffs)
	return diffs
}

func treeDigest(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode %o uid %d gid %d mtime %d", st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFREG:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size %d sha256 %s", st.Size, hex.EncodeToString(h.Sum(nil))[:16])
		case syscall.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// testUpToDate: the rules that keep a node with stale or half-copied data
// from becoming primary by itself (User's Guide §5.3, §5.4), and fullsync.
func testUpToDate(t *testing.T) {
	// A slow reintegration (16 MB/s), so that a node can be stopped in the
	// middle of one.
	_, n1, n2 := rfsPair(t, rfsOptions{rfsAttrs: `reiallowedbw="16000"`})
	inNode(t, n1, "bash", "-euc", "echo v1 > "+rfsDir+"/a")

	t.Run("the former secondary waits alone until prim", func(t *testing.T) {
		must(t, n2, "stop", "-m", rfsModule)
		waitState(t, n1, rfsModule, "ALONE Ready")
		waitState(t, n2, rfsModule, "STOP NotReady")
		inNode(t, n1, "bash", "-euc", "echo only-on-node1 > "+rfsDir+"/b")
		must(t, n1, "stop", "-m", rfsModule)
		waitState(t, n1, rfsModule, "STOP NotReady")
		t0 := time.Now()
		must(t, n2, "start", "-m", rfsModule)
		waitState(t, n2, rfsModule, "WAIT NotReady")
		wantLogged(t, n2, rfsModule, t0, "Data may be not uptodate for replicated directories (wait for the start of the remote server)",
			"If you are sure that this server has valid data, run safekit prim to force start as primary",
			"Action wait from failover rule notuptodate_server")
		holdState(t, n2, rfsModule, "WAIT NotReady", hbTimeout+time.Second)
		notLogged(t, n2, rfsModule, t0, "Script start_prim")
		must(t, n2, "prim", "-m", rfsModule)
		waitState(t, n2, rfsModule, "ALONE Ready")
		// node1 joins: what it wrote alone is gone, node2's copy won.
		must(t, n1, "start", "-m", rfsModule)
		waitPair(t, n2, n1)
		wantNoDifference(t, n1)
		if out, _, err := n1.Run("ls", rfsDir); err != nil || strings.Contains(out, "b") || !strings.Contains(out, "a") {
			t.Fatalf("node1 SECOND of node2: %s holds %q (%v), want a and not b", rfsDir, out, err)
		}
	})

	t.Run("stopped during reintegration: prim refused, primforce", func(t *testing.T) {
		// node2 PRIM, node1 SECOND.
		must(t, n1, "stop", "-m", rfsModule)
		waitState(t, n2, rfsModule, "ALONE Ready")
		waitState(t, n1, rfsModule, "STOP NotReady")
		inNode(t, n2, "dd", "if=/dev/urandom", "of="+rfsDir+"/big", "bs=1M", "count=96", "status=none")
		t0 := time.Now()
		must(t, n1, "start", "-m", rfsModule)
		waitLogged(t, n1, rfsModule, t0, "MB copied")
		must(t, n1, "stop", "-m", rfsModule)
		waitState(t, n1, rfsModule, "STOP NotReady")
		notLogged(t, n1, rfsModule, t0, "Reintegration ended")
		must(t, n2, "stop", "-m", rfsModule)
		waitState(t, n2, rfsModule, "STOP NotReady")

		t1 := time.Now()
		out, errOut, code := sk(t, n1, "prim", "-m", rfsModule)
		if code != 1 || !strings.Contains(out+errOut, "data may be inconsistent for replicated directories (stopped during reintegration)") || !strings.Contains(out+errOut, "primforce") {
			t.Fatalf("node1: safekit prim after a stop during reintegration exited %d:\n%s%s", code, out, errOut)
		}
		wantLogged(t, n1, rfsModule, t1, "Data may be inconsistent for replicated directories (stopped during reintegration)",
			"If you are sure that this server has valid data, run safekit primforce to force start as primary", "Requested prim start aborted")
		if got := state(t, n1, rfsModule); got != "STOP NotReady" {
			t.Fatalf("node1: %s after a refused prim", got)
		}
		must(t, n1, "primforce", "-m", rfsModule)
		waitState(t, n1, rfsModule, "ALONE Ready")
		// node1's copy is now the reference: node2 gets all of it.
		t2 := time.Now()
		must(t, n2, "start", "-m", rfsModule)
		waitPair(t, n1, n2)
		wantFullCopy(t, n1, n2, t2)
		wantNoDifference(t, n2)
	})

	t.Run("second fullsync and prim fullsync copy everything", func(t *testing.T) {
		// node1 PRIM, node2 SECOND.
		must(t, n2, "stop", "-m", rfsModule)
		waitState(t, n1, rfsModule, "ALONE Ready")
		waitState(t, n2, rfsModule, "STOP NotReady")
		t0 := time.Now()
		must(t, n2, "second", "fullsync", "-m", rfsModule)
		waitPair(t, n1, n2)
		wantFullCopy(t, n1, n2, t0)

		must(t, n2, "stop", "-m", rfsModule)
		waitState(t, n1, rfsModule, "ALONE Ready")
		waitState(t, n2, rfsModule, "STOP NotReady")
		must(t, n1, "stop", "-m", rfsModule)
		waitState(t, n1, rfsModule, "STOP NotReady")
		t1 := time.Now()
		must(t, n1, "prim", "fullsync", "-m", rfsModule)
		waitState(t, n1, rfsModule, "ALONE Ready")
		must(t, n2, "start", "-m", rfsModule)
		waitPair(t, n1, n2)
		wantFullCopy(t, n1, n2, t1)
		wantNoDifference(t, n2)
	})
}

// wantFullCopy checks that the reintegration of sec since t0 copied
// everything prim has (the full mode, and all the bytes).
func wantFullCopy(t *testing.T, prim, sec *testcluster.Node, t0 time.Time) {
	t.Helper()
	wantLogged(t, prim, rfsModule, t0, "Reintegration of the secondary (full)")
	copiedMB := -1
	for _, l := range since(modLog(t, sec, rfsModule, true), t0) {
		fmt.Sscanf(l.text, "Copied %d MB in", &copiedMB)
	}
	var total int64
	_ = filepath.WalkDir(prim.HostPath(rfsBacking), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	if int64(copiedMB) != total>>20 {
		t.Fatalf("%s: the full reintegration copied %d MB, the primary holds %d bytes (%d MB)", sec.Name, copiedMB, total, total>>20)
	}
	t.Logf("%s: full reintegration: %d MB copied, all of the primary's %d bytes", sec.Name, copiedMB, total)
}

// testDiskFull: the secondary's file system fills up (a 32 MiB tmpfs
// under its copy) while the primary writes: the secondary says it cannot
// apply a write, the primary drops it and goes on alone without failing a
// write of the application; the secondary tries to resynchronise, fails
// while its disk is full, and joins by itself once there is room.
func testDiskFull(t *testing.T) {
	tr := tier()
	_, n1, n2 := rfsPair(t, rfsOptions{prepare: func(t *testing.T, n *testcluster.Node) {
		if n.Name == "node2" {
			inNode(t, n, "mount", "-t", "tmpfs", "-o", "size=32m", "sktest", rfsParent)
		}
	}})
	ack := filepath.Join(t.TempDir(), "journal.ack")
	w := startWriter(t, n1, ack, "log", "-file", rfsDir+"/journal", "-n", strconv.Itoa(tr.writes))
	w.waitAcked(t, tr.writes/10)
	t0 := time.Now()
	inNode(t, n1, "dd", "if=/dev/urandom", "of="+rfsDir+"/fill", "bs=1M", "count=48", "conv=fsync", "status=none")
	waitState(t, n1, rfsModule, "ALONE Ready")
	wantLogged(t, n1, rfsModule, t0, "Replication to the secondary stopped: the secondary could not apply an operation: ", "Action alone called by nfsadmin")
	wantLogged(t, n2, rfsModule, t0, "Replication failed: write "+rfsBacking+"/")
	if l := find(since(modLog(t, n2, rfsModule, true), t0), "Replication failed: "); l == nil || !strings.Contains(l.text, "no space left on device") {
		t.Fatalf("node2: the replication failure does not say the disk is full: %v", l)
	}
	// The primary may have acknowledged what node2 could not write: its
	// copy is no longer one to fail over to.
	wantLogged(t, n2, rfsModule, t0, "The replicated data of this node misses operations of the primary")
	wantResource(t, n2, rfsModule, "rfs.uptodate", "down")
	// Its resynchronisation fails too while the disk is full: it waits and
	// tries again.
	waitLogged(t, n2, rfsModule, t0, "Reintegration failed: ")
	waitState(t, n2, rfsModule, "WAIT NotReady")
	if err := w.wait(t); err != nil {
		t.Fatalf("node1: the application failed while the secondary's disk was full: %v\n%s", err, w.out.String())
	}
	checkWrites(t, n1, "check-log", "-file", rfsDir+"/journal", "-ack", ack)
	if out := inNode(t, n1, "stat", "-c", "%s", rfsDir+"/fill"); strings.TrimSpace(out) != strconv.Itoa(48<<20) {
		t.Fatalf("node1: fill has %s bytes, want %d", out, 48<<20)
	}

	t1 := time.Now()
	inNode(t, n2, "mount", "-o", "remount,size=512m", rfsParent)
	waitPair(t, n1, n2)
	t.Logf("node2's disk grown: the pair is back %v later", time.Since(t1).Round(time.Millisecond))
	wantNoDifference(t, n2)
}

// testFrozenSecondary: the secondary's module process (its replication
// and its heartbeats) is stopped with SIGSTOP while the primary writes:
// the primary goes ALONE when the heartbeats time out, its writes wait at
// most locktimeout (10 s here) for the frozen secondary and then go on;
// after SIGCONT the pair comes back by itself.
func testFrozenSecondary(t *testing.T) {
	tr := tier()
	_, n1, n2 := rfsPair(t, rfsOptions{rfsAttrs: `locktimeout="10s"`})
	ack := filepath.Join(t.TempDir(), "journal.ack")
	w := startWriter(t, n1, ack, "log", "-file", rfsDir+"/journal", "-n", strconv.Itoa(tr.writes))
	w.waitAcked(t, tr.writes/10)
	pid := modulePID(t, n2)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	cont := func() {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Error(err)
		}
	}
	defer cont()
	waitState(t, n1, rfsModule, "ALONE Ready")
	l := waitLogged(t, n1, rfsModule, t0, "Replication to the secondary stopped: no acknowledgement from the secondary within locktimeout (10s)")
	t.Logf("node2 frozen: node1 dropped it %v later", l.at.Sub(t0).Round(time.Millisecond))
	if err := w.wait(t); err != nil {
		t.Fatalf("node1: the application failed while the secondary was frozen: %v\n%s", err, w.out.String())
	}
	checkWrites(t, n1, "check-log", "-file", rfsDir+"/journal", "-ack", ack)
	t1 := time.Now()
	cont()
	// Right after SIGCONT node2 still says SECOND Ready, its state before
	// the freeze: wait for it to be SECOND Ready again.
	back := waitLogged(t, n2, rfsModule, t1, "Local state SECOND Ready")
	waitPair(t, n1, n2)
	var how []string
	for _, l := range since(modLog(t, n2, rfsModule, false), t1) {
		if l.at.After(back.at) {
			break
		}
		how = append(how, l.text)
	}
	t.Logf("node2 thawed: SECOND Ready again %v later:\n\t%s", back.at.Sub(t1).Round(time.Millisecond), strings.Join(how, "\n\t"))
	checkWrites(t, n1, "check-log", "-file", rfsDir+"/journal", "-ack", ack)
	wantNoDifference(t, n2)
}

// testCutDuringReintegration: every link of the secondary is cut while it
// is being reintegrated and the primary writes: the secondary, not up to
// date, does not take over; the primary goes on alone; once the links are
// back the pair comes back by itself with the same data.
func testCutDuringReintegration(t *testing.T) {
	tr := tier()
	_, n1, n2 := rfsPair(t, rfsOptions{rfsAttrs: `reiallowedbw="16000"`})
	must(t, n2, "stop", "-m", rfsModule)
	waitState(t, n1, rfsModule, "ALONE Ready")
	waitState(t, n2, rfsModule, "STOP NotReady")
	inNode(t, n1, "dd", "if=/dev/urandom", "of="+rfsDir+"/big", "bs=1M", "count=96", "status=none")
	ack := filepath.Join(t.TempDir(), "journal.ack")
	w := startWriter(t, n1, ack, "log", "-file", rfsDir+"/journal", "-n", strconv.Itoa(tr.writes))
	t0 := time.Now()
	must(t, n2, "start", "-m", rfsModule)
	waitLogged(t, n2, rfsModule, t0, "MB copied")
	if err := n2.CutAll(); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	waitState(t, n2, rfsModule, "WAIT NotReady")
	waitState(t, n1, rfsModule, "ALONE Ready")
	wantLogged(t, n2, rfsModule, t1, "The primary is gone but the replicated data of this node is not up to date (reintegration not finished): no failover")
	notLogged(t, n2, rfsModule, t1, "Script start_prim")
	if err := n2.RestoreAll(); err != nil {
		t.Fatal(err)
	}
	t2 := time.Now()
	waitPair(t, n1, n2)
	t.Logf("links back: the pair is back %v later", time.Since(t2).Round(time.Millisecond))
	if err := w.wait(t); err != nil {
		t.Fatalf("node1: the application failed during the cut: %v\n%s", err, w.out.String())
	}
	checkWrites(t, n1, "check-log", "-file", rfsDir+"/journal", "-ack", ack)
	wantNoDifference(t, n2)
}

// testDaemonRestartDuringReintegration: the primary's safekitd is killed
// (and with it its module process), then in a second round stopped
// cleanly, while the secondary is being reintegrated: the secondary, not
// up to date, does not take over; when the daemon is back, the primary,
// whose data is the newest, becomes primary again by itself and the
// secondary finishes its reintegration.
func testDaemonRestartDuringReintegration(t *testing.T) {
	tr := tier()
	_, n1, n2 := rfsPair(t, rfsOptions{rfsAttrs: `reiallowedbw="16000"`})
	for round, how := range []string{"killed", "stopped"} {
		must(t, n2, "stop", "-m", rfsModule)
		waitState(t, n1, rfsModule, "ALONE Ready")
		waitState(t, n2, rfsModule, "STOP NotReady")
		inNode(t, n1, "dd", "if=/dev/urandom", "of="+rfsDir+"/big", "bs=1M", "count=96", "status=none")
		ack := filepath.Join(t.TempDir(), "journal.ack")
		file := fmt.Sprintf("%s/journal%d", rfsDir, round)
		w := startWriter(t, n1, ack, "log", "-file", file, "-n", strconv.Itoa(tr.writes))
		t0 := time.Now()
		must(t, n2, "start", "-m", rfsModule)
		waitLogged(t, n2, rfsModule, t0, "MB copied")
		t1 := time.Now()
		if how == "killed" {
			crash(t, n1, "daemon")
		} else if err := n1.StopDaemon(); err != nil {
			t.Fatal(err)
		}
		_ = w.wait(t) // ended with its mount, or done
		waitState(t, n2, rfsModule, "WAIT NotReady")
		notLogged(t, n2, rfsModule, t1, "Script start_prim")
		revive(t, n1, "daemon")
		waitPair(t, n1, n2)
		t.Logf("node1's daemon %s during the reintegration: the pair is back %v later", how, time.Since(t1).Round(time.Millisecond))
		if how == "killed" {
			wantLogged(t, n1, rfsModule, t1, "Module was PRIM when its process ended abnormally")
		}
		checkWrites(t, n1, "check-log", "-file", file, "-ack", ack)
		wantNoDifference(t, n2)
	}
}

// modulePID is the host pid of the process of the module in n: the
// safekitd module process in n's PID namespace.
func modulePID(t *testing.T, n *testcluster.Node) int {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", n.InitPID()))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) < 4 || filepath.Base(args[0]) != "safekitd" || args[1] != "module" || args[3] != rfsModule {
			continue
		}
		if pns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); pns == ns {
			return pid
		}
	}
	t.Fatalf("%s: no process of module %s", n.Name, rfsModule)
	return 0
}

// copiedMB is what the secondary sec logged it copied since t0 ("Copied N
// MB in M files"), -1 when it did not.
func copiedMB(t *testing.T, sec *testcluster.Node, t0 time.Time) int {
	t.Helper()
	mb := -1
	for _, l := range since(modLog(t, sec, rfsModule, true), t0) {
		fmt.Sscanf(l.text, "Copied %d MB in", &mb)
	}
	return mb
}

// waitResource polls a resource of n until it has the value want.
func waitResource(t *testing.T, n *testcluster.Node, name, want string) {
	t.Helper()
	deadline := time.Now().Add(transitionTimeout)
	for {
		out, _, _ := sk(t, n, "get", "-m", rfsModule, "-r", name)
		if got := strings.TrimSpace(out); got == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%s: resource %s is %q after %v, want %q", n.Name, name, got, transitionTimeout, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testBackups: the secondary starts from a backup of the primary instead
// of a full copy (User's Guide §13.7.4.8, §13.7.4.9).
func testBackups(t *testing.T) {
	_, n1, n2 := rfsPair(t, rfsOptions{})
	const bigMB = 64

	t.Run("external synchronisation, cold backup", func(t *testing.T) {
		// node2 away while node1 writes: a bitmap reintegration would copy
		// the new image whole.
		must(t, n2, "stop", "-m", rfsModule)
		waitState(t, n2, rfsModule, "STOP NotReady")
		waitState(t, n1, rfsModule, "ALONE Ready")
		inNode(t, n1, "bash", "-euc", fmt.Sprintf(`cd %s
dd if=/dev/urandom of=big.img bs=1M count=%d status=none
mkdir -p etc && for i in $(seq 1 10); do echo "conf $i" > etc/c$i; done`, rfsDir, bigMB))
		must(t, n1, "stop", "-m", rfsModule)
		waitState(t, n1, rfsModule, "STOP NotReady")
		// The backup of node1, restored on node2 (both stopped: <dir> is
		// a link to the backing directory).
		backup := t.TempDir()
		for _, c := range [][]string{
			{"cp", "-a", n1.HostPath(rfsBacking) + "/.", backup},
			{"bash", "-euc", `find "$1" -mindepth 1 -delete && cp -a "$2"/. "$1"`, "-", n2.HostPath(rfsBacking), backup},
		} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", c, err, out)
			}
		}
		t0 := time.Now()
		must(t, n1, "rfssync", "external", "prim", "backup-1", "-m", rfsModule)
		must(t, n2, "rfssync", "external", "second", "backup-1", "-m", rfsModule)
		wantLogged(t, n1, rfsModule, t0, "Action rfssync called by root", "Synchronization policy set to external prim backup-1")
		must(t, n1, "prim", "-m", rfsModule)
		waitState(t, n1, rfsModule, "ALONE Ready")
		waitResource(t, n2, "rfs.rfssync", "up")
		out := must(t, n2, "rfssync", "-m", rfsModule)
		if !strings.Contains(out, "external, role second, uid backup-1") || !regexpMatch(`usersetting.rfssyncuid +backup-1\n`, out) {
			t.Fatalf("node2: safekit rfssync says:\n%s", out)
		}
		// The application changes one zone after the backup.
		inNode(t, n1, writerBin(t), "patch", "-file", rfsDir+"/big.img", "-seed", "7", fmt.Sprintf("%d:4096", 3*zoneSize+100))
		t1 := time.Now()
		must(t, n2, "start", "-m", rfsModule)
		waitPair(t, n1, n2)
		wantLogged(t, n1, rfsModule, t1, "Reintegration of the secondary (external)")
		wantLogged(t, n2, rfsModule, t1, "Reintegration ended (synchronize)", "Synchronization policy external second backup-1 returned to default")
		mb := copiedMB(t, n2, t1)
		if mb < 0 || int64(mb)<<20 > zoneSize {
			t.Errorf("node2: the external synchronisation copied %d MB, want at most the changed zone (%d MB) of the %d MB image", mb, zoneSize>>20, bigMB)
		}
		t.Logf("node2 restored from a backup, one zone changed since: %d MB copied of the %d MB image", mb, bigMB)
		waitLogged(t, n1, rfsModule, t1, "Synchronization policy external prim backup-1 returned to default")
		for _, n := range []*testcluster.Node{n1, n2} {
			waitResource(t, n, "usersetting.rfssyncmode", "default")
		}
		wantNoDifference(t, n2)
	})

	t.Run("mismatched external policy: the secondary stops, rfssync full", func(t *testing.T) {
		must(t, n2, "stop", "-m", rfsModule)
		waitState(t, n2, rfsModule, "STOP NotReady")
		must(t, n2, "rfssync", "external", "second", "backup-2", "-m", rfsModule)
		t0 := time.Now()
		must(t, n2, "start", "-m", rfsModule)
		waitLogged(t, n2, rfsModule, t0, "Action stop called by rfsplug")
		waitState(t, n2, rfsModule, "STOP NotReady")
		wantLogged(t, n2, rfsModule, t0, "External synchronization cannot be applied: the synchronization policy is external second backup-2 on this node and default on node1",
			"Complete the external synchronization procedure on both nodes", "Local state STOP NotReady")
		notLogged(t, n2, rfsModule, t0, "Updating directory tree")
		notLogged(t, n2, rfsModule, t0, "Script start_second")
		notLogged(t, n1, rfsModule, t0, "Local state PRIM")
		must(t, n2, "rfssync", "full", "-m", rfsModule)
		t1 := time.Now()
		must(t, n2, "start", "-m", rfsModule)
		waitPair(t, n1, n2)
		wantFullCopy(t, n1, n2, t1)
		waitResource(t, n2, "usersetting.rfssyncmode", "default")
	})

	t.Run("synchronisation by date", func(t *testing.T) {
		must(t, n2, "stop", "-m", rfsModule)
		waitState(t, n2, rfsModule, "STOP NotReady")
		waitState(t, n1, rfsModule, "ALONE Ready")
		// The date has a resolution of a second: the next one, once the
		// clock (and the file times, which lag it by a tick) passed it, is
		// after every change made so far and before those that follow.
		date := time.Now().UTC().Truncate(time.Second).Add(time.Second)
		for time.Now().Before(date.Add(50 * time.Millisecond)) {
			time.Sleep(10 * time.Millisecond)
		}
		inNode(t, n1, "bash", "-euc", fmt.Sprintf(`cd %s
head -c 3000000 /dev/urandom > after
echo changed > etc/c1`, rfsDir))
		t0 := time.Now()
		must(t, n2, "secondforce", "-d", date.Format("2006-01-02T15:04:05Z"), "-m", rfsModule)
		waitPair(t, n1, n2)
		wantLogged(t, n1, rfsModule, t0, "Reintegration of the secondary (date)", "Files modified since "+date.Format("2006-01-02T15:04:05Z"))
		wantLogged(t, n2, rfsModule, t0, "Action secondforce called by root", "Synchronization by date", "Reintegration ended (synchronize)")
		// Only the two files written since the date, not the image.
		mb := copiedMB(t, n2, t0)
		if mb < 0 || mb > 3 {
			t.Errorf("node2: the synchronisation by date copied %d MB, want the 3 MB written since the date", mb)
		}
		t.Logf("node2 secondforce -d %s: %d MB copied", date.Format("2006-01-02T15:04:05Z"), mb)
		wantNoDifference(t, n2)
	})
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

package compattests

// The KVM acceptance scenarios on the harness of internal/testcluster, with
// real guests (internal/kvmtest: qemu under TCG, one libvirtd per node,
// lifecycle events from both nodes with their timestamps):
//
//   - Walkthrough, once per published version of the kvm module (kvm.safe
//     of SafeKit 8.2, and the older seed-kvm with its #!/bin/sh scripts),
//     as the KVM article walks an administrator through it: the domain
//     defined on both nodes, the module installed with its macros set,
//     prim, the secondary's full resynchronisation, failover on a stop,
//     reintegration under the running VM, swap, and the crash of the
//     primary node. The guest writes an increasing counter to its
//     replicated disk and prints each value once synced: after every move
//     it must go on from at least the last value it printed.
//   - ManyVMs: five kvm modules of the project's template, each with a
//     diskless domain, primaries split between the nodes; the crash of one
//     node moves its VMs and leaves the other node's alone.
//
// Where a VM runs is read from libvirt's lifecycle events, never polled,
// so that even a short overlap of two running copies is seen. The tests
// need root, /dev/fuse and the KVM stack (kvmtest.Need); they fail instead
// of skipping when CI=true. SAFEKIT_FULL=1 (make test-full) kills the
// primary node three times in the walkthrough instead of once.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/kvmtest"
	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/safe/archive"
)

// The heartbeats of the walkthrough's module (<heart pulse timeout>, what
// an administrator tunes): guests booting under TCG keep the two cores
// busy, so the timeout is longer than the other cluster scenarios' 3 s.
const (
	kvmPulse   = 500 * time.Millisecond
	kvmTimeout = 8 * time.Second
	// manyTimeout is the heartbeat timeout of the many-VMs scenario.
	manyTimeout = 10 * time.Second
	// guestTimeout bounds the boot of a counter guest to its first synced
	// value (about 5 s on an idle machine) and the events of a domain.
	guestTimeout = 90 * time.Second
)

// TestKVM runs the KVM scenarios, each on its own cluster, all at once (as
// TestCluster does). -run TestKVM/Walkthrough/seed picks one.
func TestKVM(t *testing.T) {
	scenarios := []struct {
		name string
		run  func(*testing.T)
	}{
		{"Walkthrough/kvm.safe", func(t *testing.T) {
			testKVMWalkthrough(t, filepath.Join(testenv.CorpusDir(t), "modules", "linux", "kvm.safe"))
		}},
		{"Walkthrough/seed-kvm", func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "kvm.safe")
			if err := archive.WriteFile(file, filepath.Join(testenv.CorpusDir(t), "seed-kvm")); err != nil {
				t.Fatal(err)
			}
			testKVMWalkthrough(t, file)
		}},
		{"ManyVMs", testKVMManyVMs},
		{"Advice", testKVMAdvice},
	}
	var wg sync.WaitGroup
	for _, s := range scenarios {
		wg.Go(func() { t.Run(s.name, s.run) })
	}
	wg.Wait()
}

// kvmKit fetches, once, the kernel and initramfs of the guests. These
// tests run in the mount namespace of TestMain, whose /var is an overlay:
// they find the host's kvmtest cache in its lower layer, and on a machine
// where it is empty they fetch the kernel into the overlay, which ends
// with the namespace.
var kvmKit = sync.OnceValues(func() (*kvmtest.Kit, error) {
	var notes []string
	kit, err := kvmtest.NewKit(func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) })
	if err != nil && len(notes) > 0 {
		err = fmt.Errorf("%w (%s)", err, strings.Join(notes, "; "))
	}
	return kit, err
})

// kvmPair makes a two-node cluster configured from node1 (setupCluster),
// with a libvirtd in each node and a watcher of both nodes' lifecycle
// events. On a failure the events and the module logs of modules are
// logged.
func kvmPair(t *testing.T, modules ...string) (c *testcluster.Cluster, w *kvmtest.Watcher, kit *kvmtest.Kit) {
	t.Helper()
	kvmtest.Need(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Need(t, "/dev/fuse")
	}
	kit, err := kvmKit()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := initBin()
	if err != nil {
		t.Fatal(err)
	}
	c = testcluster.New(t, testcluster.Options{Nodes: 2, Bin: binDir, InitBin: bin, PrivateDirs: kvmtest.PrivateDirs})
	w = kvmtest.NewWatcher()
	t.Cleanup(func() {
		w.Close()
		if !t.Failed() {
			return
		}
		t.Logf("lifecycle events:\n%s", kvmtest.FormatEvents(w.Events()))
		for _, n := range c.Nodes {
			if n.DaemonPID() == 0 {
				continue
			}
			for _, am := range modules {
				if out, _, err := n.Safekit("log", "-m", am, "-A", "-s", "150"); err == nil {
					t.Logf("--- %s: module log of %s (verbose, last lines) ---\n%s", n.Name, am, out)
				}
			}
		}
	})
	setupCluster(t, c)
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = kvmtest.StartLibvirt(n) })
	}
	wg.Wait()
	for _, n := range c.Nodes {
		if err := w.Watch(n); err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return c, w, kit
}

// kvmConf is what an administrator edits in the userconfig.xml of a kvm
// module: the macros VM_PATH and VM_NAME (both must be there), the
// heartbeats on <heart>, and any extra <var> of <user>.
func kvmConf(t *testing.T, vm string, pulse, timeout time.Duration, vars ...string) func(string) string {
	return func(conf string) string {
		for _, m := range []struct{ name, value string }{{"VM_PATH", kvmtest.ImagesDir}, {"VM_NAME", vm}} {
			re := regexp.MustCompile(`(<macro name="` + m.name + `" value=")[^"]*(")`)
			if len(re.FindAllString(conf, -1)) != 1 {
				t.Fatalf("userconfig.xml has no single macro %s:\n%s", m.name, conf)
			}
			conf = re.ReplaceAllString(conf, "${1}"+m.value+"${2}")
		}
		if strings.Count(conf, "<heart>") != 1 {
			t.Fatalf("userconfig.xml has no single <heart>:\n%s", conf)
		}
		conf = strings.Replace(conf, "<heart>", fmt.Sprintf(`<heart pulse="%d" timeout="%d">`, pulse.Milliseconds(), timeout.Milliseconds()), 1)
		if len(vars) > 0 {
			if strings.Count(conf, "<user>") != 1 {
				t.Fatalf("userconfig.xml has no single <user>:\n%s", conf)
			}
			conf = strings.Replace(conf, "<user>", "<user>\n    "+strings.Join(vars, "\n    "), 1)
		}
		return conf
	}
}

// freshImageDir gives n an empty image directory dir. The node's
// /var/lib/libvirt is a copy-on-write copy of the one of this process,
// where other scenarios (testdata/*.txtar) may have made the directories
// of their own vm1: a directory of the lower layer of an overlay cannot be
// renamed (EXDEV), and safekit config renames the replicated directory.
// One removed and made again lives in the upper layer only.
func freshImageDir(t *testing.T, n *testcluster.Node, dir string) {
	t.Helper()
	inNode(t, n, "rm", "-rf", dir, dir+"_For_SafeKit_Replication")
	inNode(t, n, "mkdir", "-p", dir)
}

// wantScriptsAsShipped checks that the scripts of module am on every node,
// installed (SAFE/modules/AM/bin) and active (SAFEUSERBIN, which also holds
// the wrappers config generates), are the archive's, byte for byte.
func wantScriptsAsShipped(t *testing.T, c *testcluster.Cluster, am, file string) {
	t.Helper()
	a, err := archive.ReadFile(file, archive.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	shipped := map[string][]byte{}
	for _, f := range a.Files {
		if name, ok := strings.CutPrefix(f.Name, "bin/"); ok && !f.Mode.IsDir() {
			shipped[name] = f.Data
		}
	}
	if len(shipped) == 0 {
		t.Fatalf("%s has no script", file)
	}
	for _, n := range c.Nodes {
		for _, dir := range []string{filepath.Join("modules", am, "bin"), filepath.Join("private", "modules", am, "bin")} {
			host := n.HostPath(filepath.Join(testcluster.NodeSAFE, dir))
			entries, err := os.ReadDir(host)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if _, ok := shipped[e.Name()]; !ok && !strings.HasPrefix(dir, "private") {
					t.Errorf("%s: SAFE/%s/%s is not in the archive", n.Name, dir, e.Name())
				}
			}
			for name, data := range shipped {
				got, err := os.ReadFile(filepath.Join(host, name))
				if err != nil {
					t.Errorf("%s: %v", n.Name, err)
				} else if !bytes.Equal(got, data) {
					t.Errorf("%s: SAFE/%s/%s differs from the archive's bin/%s", n.Name, dir, name, name)
				}
			}
		}
	}
}

// userlogs returns the script logs of script in n (every run, graceful
// and forced) written at or after t0, oldest first, concatenated.
func userlogs(t testing.TB, n *testcluster.Node, am, script string, t0 time.Time) string {
	t.Helper()
	files, _ := filepath.Glob(n.HostPath(filepath.Join(testcluster.NodeSAFEVAR, "modules", am, "userlog_*_"+script+"*.ulog")))
	type run struct {
		at   time.Time
		text string
	}
	var runs []run
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil || st.ModTime().Before(t0.Truncate(time.Second)) {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, run{st.ModTime(), string(b)})
	}
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].at.Before(runs[j].at) })
	var b strings.Builder
	for _, r := range runs {
		b.WriteString(r.text)
	}
	return b.String()
}

// wantUserlog fails unless the script logs of script in n since t0 hold
// each text, in this order.
func wantUserlog(t testing.TB, n *testcluster.Node, am, script string, t0 time.Time, texts ...string) {
	t.Helper()
	log := userlogs(t, n, am, script, t0)
	rest := log
	for _, text := range texts {
		i := strings.Index(rest, text)
		if i < 0 {
			t.Fatalf("%s: the script logs of %s since %s have no %q (after the texts before it):\n%s", n.Name, script, t0.Format("15:04:05.000"), text, log)
		}
		rest = rest[i+len(text):]
	}
}

// kvmScriptErrors are what the kvm scripts send to the module log
// (safekit printe) when the VM is missing, does not start or does not
// stop, and the replication's failure.
var kvmScriptErrors = []string{"not found", "start failed", "stop failed", "Reintegration failed"}

func noScriptErrors(t testing.TB, n *testcluster.Node, am string, t0 time.Time) {
	t.Helper()
	for _, e := range kvmScriptErrors {
		notLogged(t, n, am, t0, e)
	}
}

// wantRunsOn checks, from the lifecycle events of both nodes, that dom
// never ran on two nodes at once and runs now on node only.
func wantRunsOn(t testing.TB, w *kvmtest.Watcher, dom, node string) {
	t.Helper()
	evs := w.Events()
	if err := kvmtest.CheckExclusive(evs, dom); err != nil {
		t.Fatalf("%v\nevents:\n%s", err, kvmtest.FormatEvents(evs))
	}
	if got := kvmtest.RunningAt(evs, dom, time.Now()); !slices.Equal(got, []string{node}) {
		t.Fatalf("domain %s runs on %v according to the events, want [%s]:\n%s", dom, got, node, kvmtest.FormatEvents(evs))
	}
}

// noEvents fails if dom had any lifecycle event on node since t0.
func noEvents(t testing.TB, w *kvmtest.Watcher, dom, node string, t0 time.Time) {
	t.Helper()
	for _, e := range w.Events() {
		if e.Domain == dom && e.Node == node && !e.Time.Before(t0) {
			t.Fatalf("domain %s was disturbed on %s since %s: %v\nevents:\n%s", dom, node, t0.Format("15:04:05.000"), e, kvmtest.FormatEvents(w.Events()))
		}
	}
}

// waitBoot waits until the guest vm on n has a boot after the first
// `before` ones of its serial log, with a synced value, and returns it.
func waitBoot(t testing.TB, vm *kvmtest.Domain, n *testcluster.Node, before int) kvmtest.Boot {
	t.Helper()
	deadline := time.Now().Add(guestTimeout)
	for {
		boots, err := vm.Boots(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(boots) > before && boots[len(boots)-1].First != 0 {
			if len(boots) > before+1 {
				t.Fatalf("%s: %d boots of %s since the last check, want 1: %+v", n.Name, len(boots)-before, vm.Name, boots[before:])
			}
			return boots[len(boots)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no new boot of %s with a synced value within %v (boots: %+v)", n.Name, vm.Name, guestTimeout, boots)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bootCount(t testing.TB, vm *kvmtest.Domain, n *testcluster.Node) int {
	t.Helper()
	boots, err := vm.Boots(n)
	if err != nil {
		t.Fatal(err)
	}
	return len(boots)
}

// wantContinued checks that the guest that booted on `to` (boot b) went on
// from the last value it printed as synced on `from`, which is on the
// replicated disk: exactly that value after a graceful stop (the guest
// stops between two values), at most one more after a crash (written and
// synced, not yet printed). It returns that last value.
func wantContinued(t testing.TB, vm *kvmtest.Domain, from, to *testcluster.Node, b kvmtest.Boot, graceful bool) int {
	t.Helper()
	boots, err := vm.Boots(from)
	if err != nil {
		t.Fatal(err)
	}
	if len(boots) == 0 || boots[len(boots)-1].Last == 0 {
		t.Fatalf("%s: %s printed no synced value: %+v", from.Name, vm.Name, boots)
	}
	prev := boots[len(boots)-1]
	if graceful && !prev.Stopped {
		t.Errorf("%s: the guest did not stop on the power button (a graceful stop): %+v", from.Name, prev)
	}
	hi := prev.Last + 1
	if graceful {
		hi = prev.Last
	}
	if b.Resumed < prev.Last || b.Resumed > hi {
		t.Fatalf("%s: %s resumed after %d, but it last printed %d as synced on %s (want %d to %d)", to.Name, vm.Name, b.Resumed, prev.Last, from.Name, prev.Last, hi)
	}
	if b.First != b.Resumed+1 {
		t.Fatalf("%s: %s resumed after %d but first synced %d", to.Name, vm.Name, b.Resumed, b.First)
	}
	return prev.Last
}

// testKVMWalkthrough runs the KVM article's walkthrough with the module
// archive file (installed unchanged, but for its userconfig.xml).
func testKVMWalkthrough(t *testing.T, file string) {
	const am = "vm1"
	c, w, kit := kvmPair(t, am)
	n1, n2 := c.Node("node1"), c.Node("node2")
	vm := kit.Counter("vm1")

	// The image on node1, its directory on node2 (the module's
	// configuration wants the replicated directory on both), the domain
	// on both.
	for _, n := range c.Nodes {
		freshImageDir(t, n, vm.ImageDir())
	}
	if err := vm.CreateImage(n1); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if err := vm.Define(n); err != nil {
			t.Fatal(err)
		}
	}
	installModule(t, c, am, file, kvmConf(t, vm.Name, kvmPulse, kvmTimeout))
	wantScriptsAsShipped(t, c, am, file)
	// The domain as the article asks (cache='none', no autostart, its
	// image in the replicated directory) gets no advice on either node.
	for _, n := range c.Nodes {
		if out, errs, code := sk(t, n, "confcheck", "-m", am); code != 0 || strings.Contains(out+errs, "domain "+vm.Name) {
			t.Fatalf("%s: safekit confcheck -m %s exited %d with advice about %s:\n%s%s", n.Name, am, code, vm.Name, out, errs)
		}
	}
	for _, n := range c.Nodes {
		if got := state(t, n, am); got != "STOP NotReady" {
			t.Fatalf("%s: %s is %q after its configuration, want STOP NotReady", n.Name, am, got)
		}
	}

	if !t.Run("prim on node1: ALONE, the VM runs there", func(t *testing.T) {
		t0 := time.Now()
		must(t, n1, "prim", "-m", am)
		waitState(t, n1, am, "ALONE Ready")
		if _, err := w.WaitFor(n1.Name, vm.Name, "Started", "Booted", t0, guestTimeout); err != nil {
			t.Fatal(err)
		}
		b := waitBoot(t, vm, n1, 0)
		if b.Resumed != 0 {
			t.Fatalf("node1: first boot of %s resumed after %d, want 0 (a blank image)", vm.Name, b.Resumed)
		}
		wantLogged(t, n1, am, t0, "Action prim called by root", "Script start_prim", "Local state ALONE Ready")
		wantUserlog(t, n1, am, "start_prim", t0, "Running start_prim WAIT ALONE start", "Domain 'vm1' started")
		noScriptErrors(t, n1, am, t0)
		if got := state(t, n2, am); got != "STOP NotReady" {
			t.Fatalf("node2: %s is %q, want STOP NotReady", am, got)
		}
		wantRunsOn(t, w, vm.Name, n1.Name)
	}) {
		return
	}

	if !t.Run("start on node2: full resynchronisation, then PRIM and SECOND", func(t *testing.T) {
		t0 := time.Now()
		must(t, n2, "start", "-m", am)
		waitState(t, n2, am, "SECOND Ready")
		waitState(t, n1, am, "PRIM Ready")
		// The primary says PRIM as soon as its peer is SECOND (still
		// Transient while it resynchronises): the two lines come in
		// either order.
		wantLogged(t, n1, am, t0, "Reintegration of the secondary (full)")
		wantLogged(t, n1, am, t0, "Local state PRIM Ready")
		wantLogged(t, n2, am, t0, "Action start called by root", "Reintegration ended (synchronize)", "Local state SECOND Ready")
		notLogged(t, n2, am, t0, "Script start_prim")
		noScriptErrors(t, n1, am, t0)
		noScriptErrors(t, n2, am, t0)
		if got := stateLines(t, c, n1, am); len(got) != 2 || !strings.HasPrefix(got[0], "Local (node1) : PRIM") || !strings.HasPrefix(got[1], "Local (node2) : SECOND") {
			t.Fatalf(`safekit -H "*" state: %q, want node1 PRIM and node2 SECOND`, got)
		}
		// The guest went on writing on node1 through the resynchronisation.
		noEvents(t, w, vm.Name, n1.Name, t0)
		noEvents(t, w, vm.Name, n2.Name, t0)
		last, err := vm.LastSynced(n1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vm.WaitSynced(n1, last+10, guestTimeout); err != nil {
			t.Fatal(err)
		}
		wantRunsOn(t, w, vm.Name, n1.Name)
	}) {
		return
	}

	if !t.Run("stop of the primary: the VM restarts on node2 from the replicated image", func(t *testing.T) {
		before := bootCount(t, vm, n2)
		t0 := time.Now()
		must(t, n1, "stop", "-m", am)
		waitState(t, n1, am, "STOP NotReady")
		waitState(t, n2, am, "ALONE Ready")
		stopped, err := w.WaitFor(n1.Name, vm.Name, "Stopped", "Shutdown", t0, guestTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WaitFor(n2.Name, vm.Name, "Started", "Booted", stopped.Time, guestTimeout); err != nil {
			t.Fatal(err)
		}
		b := waitBoot(t, vm, n2, before)
		last := wantContinued(t, vm, n1, n2, b, true)
		t.Logf("vm1 stopped on node1 at %d, resumed on node2 after %d", last, b.Resumed)
		wantLogged(t, n1, am, t0, "Action stop called by root", "Script stop_prim", "Local state STOP NotReady")
		wantLogged(t, n2, am, t0, "Remote state STOP", "Action alone called by heart: remote stop", "Script start_prim", "Local state ALONE Ready")
		wantUserlog(t, n1, am, "stop_prim", t0, "Running stop_prim PRIM WAIT", "Domain 'vm1' is being shutdown")
		wantUserlog(t, n2, am, "start_prim", t0, "Running start_prim SECOND ALONE", "Domain 'vm1' started")
		noScriptErrors(t, n1, am, t0)
		noScriptErrors(t, n2, am, t0)
		wantRunsOn(t, w, vm.Name, n2.Name)
	}) {
		return
	}

	if !t.Run("start of node1: reintegration under the running VM, then SECOND", func(t *testing.T) {
		t0 := time.Now()
		must(t, n1, "start", "-m", am)
		waitState(t, n1, am, "SECOND Ready")
		waitState(t, n2, am, "PRIM Ready")
		wantLogged(t, n2, am, t0, "Reintegration of the secondary (")
		wantLogged(t, n2, am, t0, "Local state PRIM Ready")
		wantLogged(t, n1, am, t0, "Action start called by root", "Reintegration ended (synchronize)", "Local state SECOND Ready")
		if l := find(since(modLog(t, n2, am, true), t0), "Reintegration of the secondary ("); l != nil {
			t.Logf("node2: %s", l.text)
		}
		notLogged(t, n1, am, t0, "Script start_prim")
		noScriptErrors(t, n1, am, t0)
		noScriptErrors(t, n2, am, t0)
		// Not stopped, not paused, not started again on node2; never
		// started on node1.
		noEvents(t, w, vm.Name, n2.Name, t0)
		noEvents(t, w, vm.Name, n1.Name, t0)
		last, err := vm.LastSynced(n2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vm.WaitSynced(n2, last+10, guestTimeout); err != nil {
			t.Fatal(err)
		}
		if got := stateLines(t, c, n2, am); len(got) != 2 || !strings.HasPrefix(got[0], "Local (node1) : SECOND") || !strings.HasPrefix(got[1], "Local (node2) : PRIM") {
			t.Fatalf(`safekit -H "*" state: %q, want node1 SECOND and node2 PRIM`, got)
		}
		wantRunsOn(t, w, vm.Name, n2.Name)
	}) {
		return
	}

	if !t.Run("swap back to node1", func(t *testing.T) {
		before := bootCount(t, vm, n1)
		t0 := time.Now()
		must(t, n2, "swap", "-m", am)
		waitState(t, n1, am, "PRIM Ready")
		waitState(t, n2, am, "SECOND Ready")
		stopped, err := w.WaitFor(n2.Name, vm.Name, "Stopped", "Shutdown", t0, guestTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.WaitFor(n1.Name, vm.Name, "Started", "Booted", stopped.Time, guestTimeout); err != nil {
			t.Fatal(err)
		}
		b := waitBoot(t, vm, n1, before)
		last := wantContinued(t, vm, n2, n1, b, true)
		t.Logf("vm1 stopped on node2 at %d, resumed on node1 after %d", last, b.Resumed)
		wantLogged(t, n2, am, t0, "Action swap called by root", "Begin of Swap", "Script stop_prim", "Local state SECOND Ready")
		wantLogged(t, n1, am, t0, "Script start_prim", "Local state PRIM Ready")
		wantUserlog(t, n2, am, "stop_prim", t0, "Running stop_prim PRIM SECOND swap", "Domain 'vm1' is being shutdown")
		wantUserlog(t, n1, am, "start_prim", t0, "Running start_prim SECOND PRIM swap", "Domain 'vm1' started")
		noScriptErrors(t, n1, am, t0)
		noScriptErrors(t, n2, am, t0)
		wantRunsOn(t, w, vm.Name, n1.Name)
	}) {
		return
	}

	kills := 1
	if os.Getenv("SAFEKIT_FULL") != "" {
		kills = 3
	}
	prim, second := n1, n2
	for round := 1; round <= kills; round++ {
		if !t.Run(fmt.Sprintf("crash of the primary node %d while the guest writes", round), func(t *testing.T) {
			last, err := vm.LastSynced(prim)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := vm.WaitSynced(prim, last+5, guestTimeout); err != nil {
				t.Fatal(err)
			}
			before := bootCount(t, vm, second)
			t0 := time.Now()
			if err := prim.Kill(); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Wait(guestTimeout, func(e kvmtest.Event) bool {
				return e.Node == prim.Name && e.Event == kvmtest.EventLost && e.Detail == kvmtest.LostKilled
			}); err != nil {
				t.Fatalf("no Lost event for the killed %s: %v", prim.Name, err)
			}
			waitState(t, second, am, "ALONE Ready")
			started, err := w.WaitFor(second.Name, vm.Name, "Started", "Booted", t0, guestTimeout)
			if err != nil {
				t.Fatal(err)
			}
			b := waitBoot(t, vm, second, before)
			last = wantContinued(t, vm, prim, second, b, false)
			t.Logf("%s killed with vm1 at %d (printed); vm1 started on %s %v later and resumed after %d",
				prim.Name, last, second.Name, started.Time.Sub(t0).Round(time.Millisecond), b.Resumed)
			wantLogged(t, second, am, t0, "Action alone called by heart: no heartbeat", "Script start_prim", "Local state ALONE Ready")
			wantUserlog(t, second, am, "start_prim", t0, "Running start_prim SECOND ALONE", "Domain 'vm1' started")
			noScriptErrors(t, second, am, t0)
			wantRunsOn(t, w, vm.Name, second.Name)
			// -H "*" answers for the survivor and fails for the dead node.
			out, errs, code := sk(t, second, "-H", "*", "state", "-m", am)
			if code == 0 || !regexp.MustCompile(`Local +\(`+second.Name+`\) +: ALONE`).MatchString(out) || !strings.Contains(out+errs, prim.Addr("default")) {
				t.Fatalf("safekit -H \"*\" state with %s down exited %d, want non-zero with %s ALONE:\n%s%s", prim.Name, code, second.Name, out, errs)
			}
			if round == kills {
				return
			}
			// The crashed node boots again, with its libvirtd; its
			// module (boot="ignore") is started by hand and joins as
			// SECOND after a resynchronisation.
			if err := prim.Start(); err != nil {
				t.Fatal(err)
			}
			if err := kvmtest.StartLibvirt(prim); err != nil {
				t.Fatal(err)
			}
			if err := w.Watch(prim); err != nil {
				t.Fatal(err)
			}
			t1 := time.Now()
			must(t, prim, "start", "-m", am)
			waitState(t, prim, am, "SECOND Ready")
			waitState(t, second, am, "PRIM Ready")
			noEvents(t, w, vm.Name, second.Name, t1)
			noEvents(t, w, vm.Name, prim.Name, t1)
			wantRunsOn(t, w, vm.Name, second.Name)
			prim, second = second, prim
		}) {
			return
		}
	}
}

// testKVMManyVMs: five kvm modules of the project's template, each with a
// diskless domain (kvmtest.Idle), heartbeat timeout 10 s; vm1 to vm3 are
// primary on node1, vm4 and vm5 on node2 (swapped there). node1 is killed:
// its three VMs start on node2, whose own two see no lifecycle event.
//
// The template and not the published kvm.safe: the idle domains ignore
// the ACPI power button, and the template's graceful stop (used by the
// swaps) gives up after STOP_TIMEOUT, a <var> an administrator sets, where
// the published stop_prim polls for 25 s before its forced stop.
func testKVMManyVMs(t *testing.T) {
	const count, onNode2 = 5, 2
	var names []string
	for i := range count {
		names = append(names, fmt.Sprintf("vm%d", i+1))
	}
	c, w, _ := kvmPair(t, names...)
	n1, n2 := c.Node("node1"), c.Node("node2")
	file := filepath.Join(binDir, "templates", "kvm.safe")
	for _, name := range names {
		d := kvmtest.Idle(name)
		for _, n := range c.Nodes {
			if err := d.Define(n); err != nil {
				t.Fatal(err)
			}
			// The replicated directory holds nothing for a diskless
			// domain, but it must exist.
			freshImageDir(t, n, filepath.Join(kvmtest.ImagesDir, name))
		}
		installModule(t, c, name, file, kvmConf(t, name, kvmPulse, manyTimeout, `<var name="STOP_TIMEOUT" value="1"/>`))
	}
	wantScriptsAsShipped(t, c, names[0], file)

	// each runs f for every module at once, each in its subtest, and
	// tells whether all passed.
	each := func(what string, names []string, f func(t *testing.T, am string)) bool {
		var wg sync.WaitGroup
		ok := make([]bool, len(names))
		for i, am := range names {
			wg.Go(func() { ok[i] = t.Run(what+" "+am, func(t *testing.T) { f(t, am) }) })
		}
		wg.Wait()
		return !slices.Contains(ok, false)
	}
	t0 := time.Now()
	if !each("start", names, func(t *testing.T, am string) {
		must(t, n1, "prim", "-m", am)
		waitState(t, n1, am, "ALONE Ready")
		must(t, n2, "start", "-m", am)
		waitState(t, n2, am, "SECOND Ready")
		waitState(t, n1, am, "PRIM Ready")
	}) {
		return
	}
	for _, am := range names {
		if _, err := w.WaitFor(n1.Name, am, "Started", "Booted", t0, guestTimeout); err != nil {
			t.Fatal(err)
		}
	}
	t1 := time.Now()
	moved := names[count-onNode2:]
	if !each("swap", moved, func(t *testing.T, am string) {
		must(t, n1, "swap", "-m", am)
		waitState(t, n2, am, "PRIM Ready")
		waitState(t, n1, am, "SECOND Ready")
	}) {
		return
	}
	for _, am := range moved {
		if _, err := w.WaitFor(n2.Name, am, "Started", "Booted", t1, guestTimeout); err != nil {
			t.Fatal(err)
		}
		wantUserlog(t, n1, am, "stop_prim", t1, "Running stop_prim PRIM SECOND swap", "virsh destroy "+am, am+" is stopped")
		wantUserlog(t, n2, am, "start_prim", t1, "Running start_prim SECOND PRIM swap", am+" is running")
	}
	stay := names[:count-onNode2]
	for _, am := range stay {
		wantRunsOn(t, w, am, n1.Name)
	}
	for _, am := range moved {
		wantRunsOn(t, w, am, n2.Name)
	}
	t.Logf("%d modules: %v primary on node1, %v on node2 (set up in %v)", count, stay, moved, time.Since(t0).Round(time.Millisecond))

	t2 := time.Now()
	if err := n1.Kill(); err != nil {
		t.Fatal(err)
	}
	var last time.Time
	for _, am := range stay {
		e, err := w.WaitFor(n2.Name, am, "Started", "Booted", t2, manyTimeout+guestTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if e.Time.After(last) {
			last = e.Time
		}
	}
	took := last.Sub(t2)
	t.Logf("node1 killed: its %d VMs all running on node2 %v later (heartbeat timeout %v)", len(stay), took.Round(time.Millisecond), manyTimeout)
	if took > manyTimeout+transitionTimeout {
		t.Errorf("the VMs of node1 took %v to run on node2: more than the heartbeat timeout %v + %v", took, manyTimeout, transitionTimeout)
	}
	if !each("alone", names, func(t *testing.T, am string) { waitState(t, n2, am, "ALONE Ready") }) {
		return
	}
	for _, am := range stay {
		wantLogged(t, n2, am, t2, "Action alone called by heart: no heartbeat", "Script start_prim", "Local state ALONE Ready")
		noScriptErrors(t, n2, am, t2)
		wantRunsOn(t, w, am, n2.Name)
	}
	for _, am := range moved {
		notLogged(t, n2, am, t2, "Script start_prim")
		noEvents(t, w, am, n2.Name, t2)
		wantRunsOn(t, w, am, n2.Name)
	}
}

// testKVMAdvice: the configuration advice of a kvm module reads its
// domain from the node's libvirt. A domain with a writeback cache,
// autostart on and its image outside the replicated directory gets the
// three warnings from safekit confcheck, each naming its fix; safekit
// config applies the module anyway (they are warnings).
func testKVMAdvice(t *testing.T) {
	const am = "advice1"
	c, _, kit := kvmPair(t, am)
	n1 := c.Node("node1")
	d := kit.Counter(am)
	d.Disk.Cache, d.Disk.IO = "writeback", "threads"
	d.Disk.Path = filepath.Join(kvmtest.ImagesDir, "elsewhere", am+".img")
	if err := d.Define(n1); err != nil {
		t.Fatal(err)
	}
	if _, err := kvmtest.Virsh(n1, "autostart", am); err != nil {
		t.Fatal(err)
	}
	freshImageDir(t, n1, filepath.Join(kvmtest.ImagesDir, am))
	must(t, n1, "module", "install", "-m", am, filepath.Join(testenv.CorpusDir(t), "modules", "linux", "kvm.safe"))
	conf := n1.HostPath(filepath.Join(testcluster.NodeSAFE, "modules", am, "conf", "userconfig.xml"))
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(kvmConf(t, am, kvmPulse, kvmTimeout)(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := sk(t, n1, "confcheck", "-m", am)
	if code != 0 {
		t.Fatalf("safekit confcheck -m %s exited %d: warnings must not fail it:\n%s%s", am, code, out, errs)
	}
	for _, want := range []string{
		"uses cache='writeback': set <driver cache='none'/>",
		"virsh autostart --disable " + am,
		d.Disk.Path,
	} {
		if !strings.Contains(out+errs, want) {
			t.Errorf("safekit confcheck -m %s says nothing with %q:\n%s%s", am, want, out, errs)
		}
	}
	if out, errs, code := sk(t, n1, "config", "-m", am); code != 0 || !strings.Contains(out+errs, "cache='writeback'") {
		t.Errorf("safekit config -m %s exited %d and does not repeat the advice:\n%s%s", am, code, out, errs)
	}
}

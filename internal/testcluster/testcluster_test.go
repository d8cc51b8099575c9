package testcluster_test

// These tests need root (namespaces, links, mounts): they skip elsewhere
// and fail in CI when something is missing. They boot nodes without
// safekitd (NoDaemon), so they do not need a build of the daemon.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/safe"
)

// missingPrivate does not exist on the host and must never be created
// there: the nodes get it inside an overlay of /var/lib.
const missingPrivate = "/var/lib/sktc-test-private/x"

func needPing(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		testenv.Need(t, "ping (apt-get install iputils-ping)")
	}
}

func checkAbsent(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err == nil {
		t.Fatalf("%s exists on the host: the harness must never create it (remove it by hand if an older run did)", p)
	}
}

// nodePing pings addr from n, once; the first packet also resolves ARP.
func nodePing(n *testcluster.Node, addr string) error {
	_, _, err := n.Run("ping", "-c1", "-W2", addr)
	return err
}

func hostPing(addr string) error {
	out, err := exec.Command("ping", "-c1", "-W2", addr).CombinedOutput()
	if err != nil {
		return fmt.Errorf("host: ping %s: %w: %s", addr, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// unreachable tells whether a ping (from n, or from the host when n is
// nil) gets no answer. A reachable address answers within a millisecond
// here, so a short wait keeps the test fast without making it flaky.
func unreachable(n *testcluster.Node, addr string) bool {
	args := []string{"ping", "-c1", "-W0.3", addr}
	if n == nil {
		return exec.Command(args[0], args[1:]...).Run() != nil
	}
	_, _, err := n.Run(args...)
	return err != nil
}

// hostPidOf finds, from the host, the process whose command line holds
// marker (something unique the test put there).
func hostPidOf(t *testing.T, marker string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if strings.Contains(string(b), marker) {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no process with %q in its command line", marker)
	return 0
}

// gone waits until pid has ended and been reaped (a zombie is not gone:
// it would mean nobody reaps the node's orphans).
func gone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startSleep starts a detached sleep in n and returns its host pid.
func startSleep(t *testing.T, n *testcluster.Node) int {
	t.Helper()
	marker := fmt.Sprintf("%d.%d", 100000+n.Index, time.Now().UnixNano()%1000000)
	if _, _, err := n.Run("sh", "-c", "sleep "+marker+" >/dev/null 2>&1 &"); err != nil {
		t.Fatal(err)
	}
	return hostPidOf(t, "sleep\x00"+marker)
}

func TestTwoNodesTwoLans(t *testing.T) {
	testenv.NeedRoot(t)
	needPing(t)
	checkAbsent(t, missingPrivate)
	checkAbsent(t, filepath.Dir(missingPrivate))
	shared := t.TempDir() // exists on the host: the nodes get an overlay of it
	if err := os.WriteFile(filepath.Join(shared, "from-host"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := testcluster.New(t, testcluster.Options{Nodes: 2, Lans: []string{"default", "repli"}, PrivateDirs: []string{missingPrivate, shared}, NoDaemon: true})
	n1, n2 := c.Node("node1"), c.Node("node2")

	t.Run("ping", func(t *testing.T) {
		for _, lan := range c.Lans {
			for _, p := range [][2]*testcluster.Node{{n1, n2}, {n2, n1}} {
				if err := nodePing(p[0], p[1].Addr(lan)); err != nil {
					t.Errorf("lan %s: %v", lan, err)
				}
			}
			for _, n := range c.Nodes {
				if err := hostPing(n.Addr(lan)); err != nil {
					t.Errorf("lan %s: %v", lan, err)
				}
			}
		}
	})

	t.Run("cluster.xml", func(t *testing.T) {
		cl, diags := safe.ParseCluster([]byte(c.ClusterXML()), "cluster.xml")
		if err := diags.Err(); err != nil {
			t.Fatalf("%v\n%s", err, c.ClusterXML())
		}
		if got := cl.LanNames(); !slices.Equal(got, c.Lans) {
			t.Errorf("lans %v, want %v", got, c.Lans)
		}
		if got := cl.Lan("repli").Nodes[1].Addr; got != n2.Addr("repli") {
			t.Errorf("node2 on repli: %s, want %s", got, n2.Addr("repli"))
		}
	})

	t.Run("private /opt/safekit", func(t *testing.T) {
		for _, n := range c.Nodes {
			if _, _, err := n.Run("sh", "-c", "echo "+n.Name+" > /opt/safekit/who && echo "+n.Name+" > /var/safekit/who"); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range c.Nodes {
			for _, p := range []string{"/opt/safekit/who", "/var/safekit/who"} {
				out, _, err := n.Run("cat", p)
				if err != nil || strings.TrimSpace(out) != n.Name {
					t.Errorf("%s: %s = %q (%v), want its own %q", n.Name, p, out, err, n.Name)
				}
				b, err := os.ReadFile(n.HostPath(p))
				if err != nil || strings.TrimSpace(string(b)) != n.Name {
					t.Errorf("%s: host copy %s = %q (%v)", n.Name, n.HostPath(p), b, err)
				}
			}
			if out, _, _ := n.Run("hostname"); strings.TrimSpace(out) != n.Name {
				t.Errorf("%s: hostname %q", n.Name, out)
			}
		}
		for _, p := range []string{"/opt/safekit/who", "/var/safekit/who"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s exists on the host", p)
			}
		}
	})

	t.Run("private dirs", func(t *testing.T) {
		for _, n := range c.Nodes {
			if _, _, err := n.Run("sh", "-c", "test -d "+missingPrivate+" && echo "+n.Name+" > "+missingPrivate+"/f && echo "+n.Name+" > "+shared+"/f && rm "+shared+"/from-host"); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range c.Nodes {
			for _, p := range []string{missingPrivate + "/f", shared + "/f"} {
				if out, _, err := n.Run("cat", p); err != nil || strings.TrimSpace(out) != n.Name {
					t.Errorf("%s: %s = %q (%v), want its own", n.Name, p, out, err)
				}
			}
		}
		checkAbsent(t, filepath.Dir(missingPrivate))
		checkAbsent(t, filepath.Join(shared, "f"))
		if _, err := os.Stat(filepath.Join(shared, "from-host")); err != nil {
			t.Errorf("a node's rm reached the host: %v", err)
		}
	})

	t.Run("cut and restore", func(t *testing.T) {
		if err := n1.CutLan("repli"); err != nil {
			t.Fatal(err)
		}
		if !unreachable(n1, n2.Addr("repli")) {
			t.Error("node1 reaches node2 on the cut lan repli")
		}
		if !unreachable(nil, n1.Addr("repli")) {
			t.Error("the host reaches node1 on the cut lan repli")
		}
		if err := nodePing(n1, n2.Addr("default")); err != nil {
			t.Errorf("lan default, not cut: %v", err)
		}
		if err := n1.RestoreLan("repli"); err != nil {
			t.Fatal(err)
		}
		if err := nodePing(n1, n2.Addr("repli")); err != nil {
			t.Errorf("after RestoreLan: %v", err)
		}
		if err := n2.CutAll(); err != nil {
			t.Fatal(err)
		}
		for _, lan := range c.Lans {
			if !unreachable(n1, n2.Addr(lan)) {
				t.Errorf("node1 reaches node2 on %s after CutAll", lan)
			}
		}
		if err := n2.RestoreAll(); err != nil {
			t.Fatal(err)
		}
		for _, lan := range c.Lans {
			if err := nodePing(n1, n2.Addr(lan)); err != nil {
				t.Errorf("after RestoreAll: %v", err)
			}
		}
	})

	t.Run("orphans are reaped", func(t *testing.T) {
		pid := startSleep(t, n2)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if !gone(pid, 5*time.Second) {
			t.Errorf("orphan %d killed but not reaped by the node's init", pid)
		}
	})

	t.Run("kill and start", func(t *testing.T) {
		sleep := startSleep(t, n1)
		init := n1.InitPID()
		if err := n1.Kill(); err != nil {
			t.Fatal(err)
		}
		for _, pid := range []int{sleep, init} {
			if !gone(pid, 5*time.Second) {
				t.Errorf("process %d of node1 survives Kill", pid)
			}
		}
		if _, _, err := n1.Run("true"); err == nil || !strings.Contains(err.Error(), "down") {
			t.Errorf("Run on a killed node: %v, want an error saying it is down", err)
		}
		if err := n1.Start(); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/opt/safekit/who", "/var/safekit/who", missingPrivate + "/f", shared + "/f"} {
			if out, _, err := n1.Run("cat", p); err != nil || strings.TrimSpace(out) != "node1" {
				t.Errorf("after Start: %s = %q (%v), want node1's file back", p, out, err)
			}
		}
		if err := nodePing(n2, n1.Addr("repli")); err != nil {
			t.Errorf("after Start: %v", err)
		}
	})
}

// thing is something the host shows: a network namespace, a link or a
// mount, with what tells two of the same name apart (the namespace's
// inode, the link's index, the mount's id).
type thing struct {
	kind, name, identity string
}

func (t thing) String() string { return t.kind + " " + t.name }

// hostThings lists what `ip netns list`, `ip -o link` and
// /proc/self/mountinfo show.
func hostThings(t *testing.T) []thing {
	t.Helper()
	var out []thing
	b, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			var st syscall.Stat_t
			_ = syscall.Stat("/run/netns/"+f[0], &st)
			out = append(out, thing{"netns", f[0], strconv.FormatUint(st.Ino, 10)})
		}
	}
	b, err = exec.Command("ip", "-o", "link").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// 7: sktc3n1l0@if2: <BROADCAST,...
		if f := strings.Fields(l); len(f) > 1 {
			name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
			out = append(out, thing{"link", name, strings.TrimSuffix(f[0], ":")})
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 {
			out = append(out, thing{"mount", fs[4], fs[0]})
		}
	}
	return out
}

// harnessID finds the cluster id in a harness name ("" for other names).
func harnessID(name string) string {
	if m := regexp.MustCompile(`sktc-?(\d+)`).FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return ""
}

// leaks lists what the host shows after and did not before, that is
// cluster id's or no cluster's. Things of other clusters, which tests
// running in parallel make and remove, do not count; nor do those named
// after id when foreign says that another process already took the id
// again.
func leaks(before, after []thing, id int, foreign bool) []thing {
	var out []thing
	for _, a := range after {
		if slices.Contains(before, a) {
			continue
		}
		switch harnessID(a.name) {
		case "":
			// iproute2 makes /run/netns a mount point on first use, for good.
			if a.kind == "mount" && a.name == "/run/netns" {
				continue
			}
		case strconv.Itoa(id):
			if foreign {
				continue
			}
		default:
			continue
		}
		out = append(out, a)
	}
	return out
}

// foreignOwner tells whether cluster id now belongs to another owner than
// owner. A cluster's state file is written before its first name exists
// and removed after its last is gone, so checking it before and after
// listing the host's things tells whether names with this id in the list
// can be another process's.
func foreignOwner(id, owner int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/tmp/sktc-%d/state.json", id))
	if err != nil {
		return false
	}
	var st struct {
		Owner int `json:"owner"`
	}
	return json.Unmarshal(b, &st) != nil || st.Owner != owner
}

// afterThings lists the host's things, and whether id may be another
// owner's meanwhile.
func afterThings(t *testing.T, id, owner int) ([]thing, bool) {
	foreign := foreignOwner(id, owner)
	things := hostThings(t)
	return things, foreign || foreignOwner(id, owner)
}

// nsInode is the inode naming the namespace kind (net, pid...) of pid.
func nsInode(pid int, kind string) string {
	l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	return l
}

func TestTeardownLeavesNothing(t *testing.T) {
	testenv.NeedRoot(t)
	before := hostThings(t)
	c := testcluster.New(t, testcluster.Options{Nodes: 2, Lans: []string{"default", "repli"}, PrivateDirs: []string{missingPrivate}, NoDaemon: true})
	nss := map[string]bool{}
	var pids []int
	for _, n := range c.Nodes {
		pids = append(pids, n.InitPID(), startSleep(t, n))
		for _, kind := range []string{"pid", "net", "mnt"} {
			nss[nsInode(n.InitPID(), kind)] = true
		}
	}
	dir := c.Dir
	c.Teardown()
	c.Teardown() // idempotent
	after, foreign := afterThings(t, c.ID, os.Getpid())

	if l := leaks(before, after, c.ID, foreign); len(l) > 0 {
		t.Errorf("left after Teardown: %v", l)
	}
	for _, pid := range pids {
		if !gone(pid, time.Second) {
			t.Errorf("process %d left after Teardown", pid)
		}
	}
	// Any process still in one of the nodes' namespaces, or started from
	// the cluster directory, is a leak too; the directory is another
	// process's when it took the id meanwhile (tests of other packages
	// make clusters at the same time).
	var fromDir []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		for _, kind := range []string{"pid", "net", "mnt"} {
			if ino := nsInode(pid, kind); ino != "" && nss[ino] {
				t.Errorf("process %d left in a node's %s namespace", pid, kind)
			}
		}
		if b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); strings.Contains(string(b), dir) {
			fromDir = append(fromDir, fmt.Sprintf("process %d: %q", pid, b))
		}
	}
	foreign = foreign || foreignOwner(c.ID, os.Getpid())
	if len(fromDir) > 0 && !foreign {
		t.Errorf("left after Teardown: %s", strings.Join(fromDir, "; "))
	}
	if _, err := os.Lstat(dir); err == nil && !foreign {
		t.Errorf("%s left after Teardown", dir)
	}
	checkAbsent(t, filepath.Dir(missingPrivate))
}

// TestSweepAfterKilledOwner kills a test process that owns a cluster, as a
// go test timeout would, and checks that its nodes die with it and that
// Sweep removes the rest.
func TestSweepAfterKilledOwner(t *testing.T) {
	testenv.NeedRoot(t)
	if os.Getenv("SKTC_SWEEP_HELPER") != "" {
		t.Skip("in the helper")
	}
	before := hostThings(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSweepHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "SKTC_SWEEP_HELPER=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	id := 0
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "cluster %d ready", &id); err == nil {
			break
		}
	}
	if id == 0 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("the helper process made no cluster")
	}
	owner := cmd.Process.Pid
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// The inits die with their owner (parent-death signal); the rest stays
	// for Sweep.
	initRunning := func() string {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); strings.Contains(string(b), fmt.Sprintf("/tmp/sktc-%d/node", id)) {
				return e.Name()
			}
		}
		return ""
	}
	deadline := time.Now().Add(5 * time.Second)
	for initRunning() != "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if pid := initRunning(); pid != "" {
		t.Errorf("init %s of the dead owner's cluster still runs", pid)
	}
	if l := leaks(before, hostThings(t), id, false); len(l) == 0 {
		// A test process running in parallel swept it when it made a
		// cluster; what follows still checks that nothing is left.
		t.Log("nothing left to sweep: another process's New swept it first")
	}
	if err := testcluster.Sweep(); err != nil {
		t.Fatal(err)
	}
	after, foreign := afterThings(t, id, owner)
	if l := leaks(before, after, id, foreign); len(l) > 0 {
		t.Errorf("left after Sweep: %v", l)
	}
	if _, err := os.Stat(fmt.Sprintf("/tmp/sktc-%d", id)); err == nil && !foreign {
		t.Errorf("/tmp/sktc-%d of the dead owner left after Sweep", id)
	}
}

// TestSweepHelper is the owner that TestSweepAfterKilledOwner kills.
func TestSweepHelper(t *testing.T) {
	if os.Getenv("SKTC_SWEEP_HELPER") == "" {
		t.Skip("run by TestSweepAfterKilledOwner")
	}
	c := testcluster.New(t, testcluster.Options{Nodes: 2, NoDaemon: true})
	fmt.Printf("cluster %d ready\n", c.ID)
	select {}
}

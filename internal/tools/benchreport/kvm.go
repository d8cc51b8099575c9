package main

// Benchmarks of many kvm modules on two nodes (issue 7). For 25 and then
// 50 modules of the project's kvm template, each protecting one diskless
// libvirt domain (kvmtest.Idle: the firmware only, 32 MiB, under qemu's
// TCG), on a fresh two-node cluster of the harness with heartbeats of
// 300 ms / 3000 ms, half of the primaries on each node:
//
//	kvm at rest, N modules: CPU of safekitd + module processes
//	    per module and node, in % of a core, over kvmRestWindow once every
//	    pair is PRIM/SECOND; the checkers (vmcheck and the virsh it runs
//	    every 5 s) are given beside it, without a target.
//	    Target: < kvmCPUTarget (0.5%).
//	kvm at rest, N modules: memory of safekitd + module processes
//	    PSS per module and node, safekitd's share included.
//	    Target: < kvmPSSTarget (8 MiB).
//	kvm failover, N modules: start_prim on the survivor
//	    from the SIGKILL of node1 to the last "Script start_prim" in the
//	    logs of its N/2 modules on node2: detection and transition, the
//	    cluster's part. Target: < timeout + 1 s (failoverOverhead, as for
//	    one mirror module).
//	kvm failover, N modules: VMs running on the survivor
//	    from the SIGKILL to libvirt's last "Started" event of those VMs on
//	    node2 (events, not polling), N/2 qemu starting at once; node2's own
//	    VMs must see no event meanwhile. Target: < timeout + 5 s
//	    (kvmFailoverMargin).
//
// libvirtd, virtlogd and qemu are not counted in the daemon's figures:
// they are the VMs' cost, not the cluster's. Everything runs on one
// machine: the nodes take CPU from each other, and under TCG each qemu
// start costs a fraction of a second of CPU.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/internal/kvmtest"
	"github.com/safekit-oss/safekit/internal/testcluster"
)

const (
	// kvmRest is how long the pairs run before the figures at rest are
	// taken (the checkers start 5 s after start_prim), and kvmRestWindow
	// the window the CPU is measured over.
	kvmRest       = 15 * time.Second
	kvmRestWindow = 30 * time.Second
	// kvmCPUTarget is the CPU of the daemon per module and node at rest,
	// in % of a core: heartbeats every 300 ms and the replication's idle
	// stream should cost next to nothing.
	kvmCPUTarget = 0.5
	// kvmPSSTarget is the memory per module and node.
	kvmPSSTarget = 8 << 20
	// kvmFailoverMargin is what the survivor may take beyond the
	// heartbeat timeout to have every VM of the lost node running.
	kvmFailoverMargin = 5 * time.Second
	// kvmParallel bounds the CLI commands run at once.
	kvmParallel = 8
	// kvmWait bounds the start of every pair and the failover.
	kvmWait = 5 * time.Minute
	// clockTick is USER_HZ, the unit of the times of /proc/<pid>/stat.
	clockTick = 100
)

// kvmCounts are the numbers of modules measured.
var kvmCounts = []int{25, 50}

// measureKVM runs the kvm measurements for each of kvmCounts; without root
// or the KVM stack they are reported as not measured.
func measureKVM(ctx context.Context, root string) (rows []row, err error) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (namespaces)")
	}
	missing = append(missing, kvmtest.MissingTools()...)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse")
	}
	if len(missing) > 0 {
		return []row{{name: "kvm modules", result: "not measured", target: "-", verdict: "-",
			note: "kvm: needs " + strings.Join(missing, ", ") + " (the apt-get line of .ci/run installs the tools): not measured\n"}}, nil
	}
	logf := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "benchreport: "+format+"\n", args...) }
	if _, err := kvmtest.NewKit(logf); err != nil {
		return nil, fmt.Errorf("kvm: %w", err)
	}
	for _, count := range kvmCounts {
		more, err := measureKVMModules(ctx, root, count, logf)
		rows = append(rows, more...)
		if err != nil {
			return rows, fmt.Errorf("kvm, %d modules: %w", count, err)
		}
	}
	return rows, nil
}

// kvmBench is the cluster of one measurement: count modules vm1..vmN,
// vm1..vm<N/2> primary on node1, the others on node2.
type kvmBench struct {
	c      *testcluster.Cluster
	n1, n2 *testcluster.Node
	w      *kvmtest.Watcher
	names  []string
	logf   func(string, ...any)
}

func measureKVMModules(ctx context.Context, root string, count int, logf func(string, ...any)) (rows []row, err error) {
	logf("kvm: %d modules on two nodes", count)
	c, err := testcluster.Create(testcluster.Options{Nodes: 2, Bin: filepath.Join(root, "bin"), PrivateDirs: kvmtest.PrivateDirs}, logf)
	if err != nil {
		return nil, fmt.Errorf("two-node cluster: %w", err)
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	b := &kvmBench{c: c, n1: c.Nodes[0], n2: c.Nodes[1], w: kvmtest.NewWatcher(), logf: logf}
	defer b.w.Close()
	for i := range count {
		b.names = append(b.names, fmt.Sprintf("vm%d", i+1))
	}
	start := time.Now()
	if err := b.setup(ctx, filepath.Join(root, "build", "Application_Modules", "generic", "kvm.safe")); err != nil {
		return nil, err
	}
	logf("kvm: %d pairs PRIM/SECOND in %v", count, time.Since(start).Round(time.Second))
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(kvmRest):
	}
	r, err := b.measureRest(ctx, count)
	if err != nil {
		return nil, err
	}
	rows = append(rows, r...)
	f, err := b.measureFailover(ctx, count)
	return append(rows, f...), err
}

func (b *kvmBench) sk(n *testcluster.Node, args ...string) (string, error) {
	out, errOut, err := n.Safekit(args...)
	if err != nil {
		return out, fmt.Errorf("%w\n%s%s", err, out, errOut)
	}
	return out, nil
}

// each runs f on every name, kvmParallel at a time, and returns the first
// error.
func (b *kvmBench) each(names []string, f func(name string) error) error {
	sem := make(chan struct{}, kvmParallel)
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = f(name)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// setup configures the cluster from node1, starts a libvirtd in each node
// and watches their events, defines the domains on both nodes, installs
// and configures one kvm module per domain (heartbeats, VM_NAME, a
// STOP_TIMEOUT of 1 s: the domains ignore the ACPI power button) and
// starts the pairs.
func (b *kvmBench) setup(ctx context.Context, file string) error {
	n1, n2 := b.n1, b.n2
	if err := joinCluster(n1, n2, b.sk); err != nil {
		return err
	}
	for _, n := range b.c.Nodes {
		if err := kvmtest.StartLibvirt(n); err != nil {
			return err
		}
		if err := b.w.Watch(n); err != nil {
			return err
		}
	}
	if err := b.each(b.names, func(name string) error {
		d := kvmtest.Idle(name)
		for _, n := range b.c.Nodes {
			if err := d.Define(n); err != nil {
				return err
			}
			if _, _, err := n.Run("mkdir", "-p", filepath.Join(kvmtest.ImagesDir, name)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	// One module at a time: install picks the next free id.
	for _, name := range b.names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := b.sk(n1, "module", "install", "-m", name, file); err != nil {
			return err
		}
		conf := n1.HostPath(filepath.Join(testcluster.NodeSAFE, "modules", name, "conf", "userconfig.xml"))
		data, err := os.ReadFile(conf)
		if err != nil {
			return err
		}
		edited := strings.Replace(string(data), `<macro name="VM_NAME" value="vm1"/>`, `<macro name="VM_NAME" value="`+name+`"/>`, 1)
		edited = strings.Replace(edited, "<heart>", fmt.Sprintf(`<heart pulse="%d" timeout="%d">`, clusterPulse.Milliseconds(), clusterTimeout.Milliseconds()), 1)
		edited = strings.Replace(edited, "<user>", `<user>
      <var name="STOP_TIMEOUT" value="1"/>`, 1)
		if strings.Count(edited, `value="`+name+`"`) != 1 || !strings.Contains(edited, "timeout=") || !strings.Contains(edited, "STOP_TIMEOUT") {
			return fmt.Errorf("%s: the kvm template's userconfig.xml lacks the VM_NAME macro, <heart> or <user>:\n%s", file, data)
		}
		if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
			return err
		}
		if _, err := b.sk(n1, "config", "-m", name); err != nil {
			return err
		}
		if _, err := b.sk(n1, "-H", "*", "-E", name); err != nil {
			return err
		}
	}
	half := len(b.names) / 2
	if err := b.each(b.names, func(name string) error {
		prim, second := n1, n2
		if slices.Index(b.names, name) >= half {
			prim, second = n2, n1
		}
		if _, err := b.sk(prim, "prim", "-m", name); err != nil {
			return err
		}
		if err := b.waitStates(ctx, prim, []string{name}, "ALONE Ready"); err != nil {
			return err
		}
		_, err := b.sk(second, "start", "-m", name)
		return err
	}); err != nil {
		return err
	}
	if err := b.waitStates(ctx, n1, b.names[:half], "PRIM Ready"); err != nil {
		return err
	}
	if err := b.waitStates(ctx, n2, b.names[half:], "PRIM Ready"); err != nil {
		return err
	}
	if err := b.waitStates(ctx, n2, b.names[:half], "SECOND Ready"); err != nil {
		return err
	}
	if err := b.waitStates(ctx, n1, b.names[half:], "SECOND Ready"); err != nil {
		return err
	}
	evs := b.w.Events()
	for i, name := range b.names {
		want := n1.Name
		if i >= half {
			want = n2.Name
		}
		if got := kvmtest.RunningAt(evs, name, time.Now()); !slices.Equal(got, []string{want}) {
			return fmt.Errorf("domain %s runs on %v, want %s", name, got, want)
		}
	}
	return nil
}

var (
	stateTitleRE = regexp.MustCompile(`^-+ (\S+) State -+$`)
	stateLocalRE = regexp.MustCompile(`^\s*Local\s+\([^)]*\)\s*: (\w+) .*\((\w+)\)$`)
)

// states is `safekit state` of every module of n: "PRIM Ready" by name.
func (b *kvmBench) states(n *testcluster.Node) (map[string]string, error) {
	out, err := b.sk(n, "state")
	if err != nil {
		return nil, err
	}
	states := map[string]string{}
	module := ""
	for _, l := range strings.Split(out, "\n") {
		if m := stateTitleRE.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			module = m[1]
		} else if m := stateLocalRE.FindStringSubmatch(l); m != nil && module != "" {
			states[module] = m[1] + " " + m[2]
		}
	}
	return states, nil
}

// waitStates waits until every module of names is in state want on n.
func (b *kvmBench) waitStates(ctx context.Context, n *testcluster.Node, names []string, want string) error {
	deadline := time.Now().Add(kvmWait)
	for {
		states, err := b.states(n)
		if err != nil {
			return err
		}
		var wrong []string
		for _, name := range names {
			if states[name] != want {
				wrong = append(wrong, fmt.Sprintf("%s %q", name, states[name]))
			}
		}
		if len(wrong) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: after %v, not %s: %s", n.Name, kvmWait, want, strings.Join(wrong, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// nodeProcess is a process of a node: what it is, its CPU times in
// clock ticks (its own, and those of its children it waited for) and its
// PSS (daemon processes only).
type nodeProcess struct {
	comm       string
	daemon     bool // safekitd or one of its module processes
	checker    bool // a vmcheck: its children are the virsh it runs
	ticks      int64
	childTicks int64
	pss        int64
}

// processes lists the processes of n's PID namespace.
func processes(n *testcluster.Node, memory bool) (map[int]nodeProcess, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", n.InitPID()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := map[int]nodeProcess{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A process may end at any moment: unreadable files mean it is gone.
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); l != ns {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		lp, rp := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
		if lp < 0 || rp < lp {
			continue
		}
		f := strings.Fields(string(stat[rp+1:]))
		// After the command: state (0), ..., utime (11), stime,
		// cutime, cstime.
		if len(f) < 15 {
			continue
		}
		p := nodeProcess{comm: string(stat[lp+1 : rp])}
		var t [4]int64
		for i := range t {
			t[i], _ = strconv.ParseInt(f[11+i], 10, 64)
		}
		p.ticks, p.childTicks = t[0]+t[1], t[2]+t[3]
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		p.daemon = filepath.Base(args[0]) == "safekitd"
		p.checker = len(args) > 1 && filepath.Base(args[1]) == "vmcheck"
		if memory && p.daemon {
			rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
			if err != nil {
				return nil, err
			}
			if p.pss, err = kbField(rollup, "Pss"); err != nil {
				return nil, fmt.Errorf("/proc/%d/smaps_rollup: %w", pid, err)
			}
		}
		out[pid] = p
	}
	return out, nil
}

// measureRest samples the CPU the daemons and the checkers use over
// kvmRestWindow, and the daemons' memory.
func (b *kvmBench) measureRest(ctx context.Context, count int) ([]row, error) {
	before := map[string]map[int]nodeProcess{}
	for _, n := range b.c.Nodes {
		ps, err := processes(n, false)
		if err != nil {
			return nil, err
		}
		before[n.Name] = ps
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(kvmRestWindow):
	}
	window := time.Since(t0)
	var daemonTicks, checkerTicks, pss int64
	daemons := 0
	for _, n := range b.c.Nodes {
		ps, err := processes(n, true)
		if err != nil {
			return nil, err
		}
		for pid, p := range ps {
			old, ok := before[n.Name][pid]
			if !ok || old.comm != p.comm {
				continue // started during the window: a script, a virsh
			}
			switch {
			case p.daemon:
				daemonTicks += p.ticks - old.ticks
				pss += p.pss
				daemons++
			case p.checker:
				checkerTicks += p.ticks + p.childTicks - old.ticks - old.childTicks
			}
		}
	}
	if want := 2 * (count + 1); daemons != want {
		return nil, fmt.Errorf("%d safekitd processes in the nodes, want %d (a daemon and %d module processes each)", daemons, want, count)
	}
	perCore := func(ticks int64) float64 {
		return 100 * float64(ticks) / clockTick / window.Seconds() / float64(2*count)
	}
	cpu, checkers := perCore(daemonTicks), perCore(checkerTicks)
	perModule := pss / int64(2*count)
	return []row{
		{
			name:    fmt.Sprintf("kvm at rest, %d modules: CPU of safekitd + module processes", count),
			result:  fmt.Sprintf("%.3f%% of a core per module and node (checkers %.3f%% more)", cpu, checkers),
			target:  fmt.Sprintf("< %.1f%%", kvmCPUTarget),
			verdict: verdict(cpu < kvmCPUTarget),
			note: fmt.Sprintf("kvm at rest, %d modules: each node runs safekitd and %d module processes (half PRIM, half SECOND), heartbeats every %v, one idle diskless domain per primary; CPU over %v, %v after every pair was PRIM/SECOND; \"checkers\" is vmcheck with the virsh it runs every 5 s; libvirtd and qemu not counted\n",
				count, count, clusterPulse, window.Round(time.Second), kvmRest),
		},
		{
			name:    fmt.Sprintf("kvm at rest, %d modules: memory of safekitd + module processes", count),
			result:  fmt.Sprintf("PSS %s per module and node (%s in all)", mib(perModule), mib(pss)),
			target:  fmt.Sprintf("< %d MiB", kvmPSSTarget>>20),
			verdict: verdict(perModule < kvmPSSTarget),
		},
	}, nil
}

// measureFailover kills node1 and times, on node2, the start_prim of the
// modules it was primary of (the cluster's part of the failover) and the
// start of their VMs.
func (b *kvmBench) measureFailover(ctx context.Context, count int) ([]row, error) {
	half := len(b.names) / 2
	moved, stay := b.names[:half], b.names[half:]
	t0 := time.Now()
	if err := b.n1.Kill(); err != nil {
		return nil, err
	}
	var first, last time.Time
	for _, vm := range moved {
		remaining := time.Until(t0.Add(kvmWait))
		e, err := b.w.WaitFor(b.n2.Name, vm, "Started", "", t0, max(remaining, time.Millisecond))
		if err != nil {
			return nil, fmt.Errorf("after the SIGKILL of node1: %w", err)
		}
		if e.Time.After(last) {
			last = e.Time
		}
		if first.IsZero() || e.Time.Before(first) {
			first = e.Time
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	took := last.Sub(t0)
	if err := b.waitStates(ctx, b.n2, b.names, "ALONE Ready"); err != nil {
		return nil, err
	}
	var dispatched time.Duration
	for _, vm := range moved {
		at, err := b.logged(b.n2, vm, t0, "Script start_prim")
		if err != nil {
			return nil, err
		}
		dispatched = max(dispatched, at.Sub(t0))
	}
	var disturbed []string
	for _, e := range b.w.Events() {
		if e.Node == b.n2.Name && slices.Contains(stay, e.Domain) && !e.Time.Before(t0) {
			disturbed = append(disturbed, e.String())
		}
	}
	rows := []row{{
		name:    fmt.Sprintf("kvm failover, %d modules: start_prim on the survivor (SIGKILL of a node, timeout %v)", count, clusterTimeout),
		result:  fmt.Sprintf("%s after the kill for the last of %d modules, %s beyond the timeout", ms(dispatched), len(moved), ms(dispatched-clusterTimeout)),
		target:  fmt.Sprintf("< timeout + %v", failoverOverhead),
		verdict: verdict(dispatched < clusterTimeout+failoverOverhead),
	}, {
		name: fmt.Sprintf("kvm failover, %d modules: VMs running on the survivor (SIGKILL of a node, timeout %v)", count, clusterTimeout),
		result: fmt.Sprintf("%d VMs running %s after the kill, %s beyond the timeout (the first %s after it)",
			len(moved), ms(took), ms(took-clusterTimeout), ms(first.Sub(t0))),
		target:  fmt.Sprintf("< timeout + %v", kvmFailoverMargin),
		verdict: verdict(took < clusterTimeout+kvmFailoverMargin && len(disturbed) == 0),
		note: fmt.Sprintf("kvm failover, %d modules: node1, primary of %d of them, is killed; the times run to the last \"Script start_prim\" of their module logs on node2 (detection and transition: the cluster's part) and to libvirt's last \"Started\" event of their VMs there (%d qemu started at once under TCG); node2's own %d VMs must see no event\n",
			count, len(moved), len(moved), len(stay)),
	}}
	if len(disturbed) > 0 {
		rows[1].note += fmt.Sprintf("kvm failover, %d modules: the survivor's own VMs were disturbed: %s\n", count, strings.Join(disturbed, "; "))
	}
	return rows, nil
}

// logged returns when the verbose log of module am in n first says text at
// or after t0.
func (b *kvmBench) logged(n *testcluster.Node, am string, t0 time.Time, text string) (time.Time, error) {
	out, err := b.sk(n, "log", "-m", am, "-A", "-s", "200")
	if err != nil {
		return time.Time{}, err
	}
	for _, l := range strings.Split(out, "\n") {
		// | 2026-11-25 22:38:21.804509 |        heart | E | Local state ALONE Ready
		f := strings.SplitN(l, "|", 5)
		if len(f) != 5 || !strings.Contains(f[4], text) {
			continue
		}
		at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", strings.TrimSpace(f[1]), time.Local)
		if err != nil {
			return time.Time{}, fmt.Errorf("%s: module log line %q: %w", n.Name, l, err)
		}
		if !at.Before(t0) {
			return at, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s: the log of %s has no %q since %s", n.Name, am, text, t0.Format("15:04:05.000"))
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/runtime/rfs/rfsbench"
	"github.com/safekit-oss/safekit/safe/archive"
)

// The file replication targets (docs/replication.md): each replicated
// figure is measured in the same run as the same work on the raw
// directory of the same disk, and given as a ratio to it.
const (
	rfsSeqTarget    = 0.4 // sequential 1 MiB writes + fdatasync, ×raw
	rfsSyncP50      = 2.0 // 4 KiB write + fdatasync p50 with async="second", ×raw at most
	rfsIOPSTarget   = 0.2 // 4 KiB O_DIRECT random writes at QD16, ×raw
	rfsBitmapTarget = 10  // clean-stop reintegration, times faster than rsync
	rfsCksTarget    = 0.5 // crash reintegration (checksums), ×rsync's time at most
	rfsFullTarget   = 0.8 // full copy throughput, ×cp+sync
)

// The two-node replication measurements.
const (
	rfsBenchModule = "rfsbench"
	rfsBenchParent = "/var/lib/skbench"
	rfsBenchDir    = rfsBenchParent + "/data" // replicated
	rfsBenchRaw    = rfsBenchParent + "/raw"  // the same disk, not replicated
	rfsBenchBig    = 2 << 30                  // the file reintegrated
	rfsBenchZone   = 8 << 20                  // the default ruzone_blocksize
	rfsFioSeconds  = 8
	rfsFioSize     = "256M"
	// rfsHeavyRuns caps the runs of the measurements that take tens of
	// seconds each.
	rfsHeavyRuns = 3
)

// measureRFS runs the replication measurements: the write figures of
// runtime/rfs/rfsbench (a primary and a secondary in this process), then,
// on a two-node cluster of the harness with safekitd, fio at queue depth
// 16, the reintegrations and the full copy.
func measureRFS(ctx context.Context, root string, runs int) (rows []row, err error) {
	if os.Geteuid() != 0 {
		return []row{{name: "file replication", result: "not measured", target: "-", verdict: "-",
			note: "file replication: needs root (FUSE mounts, namespaces): not measured\n"}}, nil
	}
	for _, async := range []string{"second", "none"} {
		r, err := rfsbench.Measure(ctx, rfsbench.Options{Async: async})
		if err != nil {
			return rows, fmt.Errorf("rfsbench async=%s: %w", async, err)
		}
		rows = append(rows, rfsWriteRows(r)...)
	}
	missing := []string{}
	for _, tool := range []string{"fio", "rsync"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return append(rows, row{name: "file replication on two nodes", result: "not measured", target: "-", verdict: "-",
			note: fmt.Sprintf("file replication: needs %s (apt-get install %s): fio, reintegration and full copy not measured\n", strings.Join(missing, " and "), strings.Join(missing, " "))}), nil
	}
	c, err := testcluster.Create(testcluster.Options{Nodes: 2, Bin: filepath.Join(root, "bin"), PrivateDirs: []string{rfsBenchParent}},
		func(format string, args ...any) { fmt.Fprintf(os.Stderr, "benchreport: "+format+"\n", args...) })
	if err != nil {
		return rows, fmt.Errorf("file replication: two-node cluster: %w", err)
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	rc := &rfsCluster{c: c, n1: c.Nodes[0], n2: c.Nodes[1], rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))}
	heavy := min(runs, rfsHeavyRuns)
	for _, m := range []func(context.Context, int) ([]row, error){
		func(ctx context.Context, _ int) ([]row, error) { return nil, rc.setup(ctx) },
		rc.measureFio,
		rc.measureReintegration,
		rc.measureFullCopy,
	} {
		more, err := m(ctx, heavy)
		rows = append(rows, more...)
		if err != nil {
			return rows, fmt.Errorf("file replication: %w", err)
		}
	}
	return rows, nil
}

func rfsWriteRows(r rfsbench.Result) []row {
	seq, p50, p99 := r.SeqRepl/r.SeqRaw, float64(r.SyncReplP50)/float64(r.SyncRawP50), float64(r.SyncReplP99)/float64(r.SyncRawP99)
	seqRow := row{name: "rfs 1 MiB writes + fdatasync, async=" + r.Async,
		result: fmt.Sprintf("×%.2f of raw (%.0f MiB/s, raw %.0f)", seq, r.SeqRepl, r.SeqRaw), target: "-", verdict: "-"}
	p50Row := row{name: "rfs 4 KiB write + fdatasync p50, async=" + r.Async,
		result: fmt.Sprintf("×%.2f of raw (%s, raw %s)", p50, ms(r.SyncReplP50), ms(r.SyncRawP50)), target: "-", verdict: "-"}
	p99Row := row{name: "rfs 4 KiB write + fdatasync p99, async=" + r.Async,
		result: fmt.Sprintf("×%.2f of raw (%s, raw %s)", p99, ms(r.SyncReplP99), ms(r.SyncRawP99)), target: "-", verdict: "-"}
	if r.Async == "second" {
		seqRow.target, seqRow.verdict = fmt.Sprintf("≥ ×%.1f raw", rfsSeqTarget), verdict(seq >= rfsSeqTarget)
		p50Row.target, p50Row.verdict = fmt.Sprintf("≤ ×%.0f raw", rfsSyncP50), verdict(p50 <= rfsSyncP50)
		seqRow.note = "rfs writes: runtime/rfs/rfsbench, a primary and a secondary of one module in one process on two trees of the same file system (loopback TCP), against the raw directory of that file system; the best of 2 interleaved runs each\n"
	}
	return []row{seqRow, p50Row, p99Row}
}

// rfsCluster is the pair of the two-node measurements: node1 primary,
// node2 secondary, a mirror module replicating rfsBenchDir with
// async="second".
type rfsCluster struct {
	c      *testcluster.Cluster
	n1, n2 *testcluster.Node
	rng    *rand.Rand
}

// rfsBenchUserconfig: boot="ignore" (the default), so that a node that
// crashed comes back with its module stopped and its start can be timed.
var rfsBenchUserconfig = fmt.Sprintf(`<!DOCTYPE safe>
<safe>
  <service mode="mirror">
    <heart>
      <heartbeat name="default" pulse="%dms" timeout="%dms"/>
    </heart>
    <rfs async="second">
      <replicated dir="%s"/>
    </rfs>
  </service>
</safe>
`, clusterPulse.Milliseconds(), clusterTimeout.Milliseconds(), rfsBenchDir)

func (rc *rfsCluster) sk(n *testcluster.Node, args ...string) (string, error) {
	out, _, err := n.Safekit(args...)
	return out, err
}

func (rc *rfsCluster) run(n *testcluster.Node, args ...string) (string, error) {
	out, errOut, err := n.Run(args...)
	if err != nil {
		return out, fmt.Errorf("%w\n%s", err, errOut)
	}
	return out, nil
}

// setup configures the cluster, installs the module on both nodes, starts
// the pair and writes the file of the reintegrations (through the
// replicated directory: both nodes have it).
func (rc *rfsCluster) setup(ctx context.Context) error {
	n1, n2 := rc.n1, rc.n2
	for _, n := range rc.c.Nodes {
		if _, err := rc.run(n, "mkdir", "-p", rfsBenchDir, rfsBenchRaw); err != nil {
			return err
		}
	}
	src, err := os.MkdirTemp("", "benchreport-rfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if err := os.MkdirAll(filepath.Join(src, "mod", "conf"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "mod", "conf", "userconfig.xml"), []byte(rfsBenchUserconfig), 0o644); err != nil {
		return err
	}
	file := filepath.Join(src, "rfsbench.safe")
	if err := archive.WriteFile(file, filepath.Join(src, "mod")); err != nil {
		return err
	}
	if err := joinCluster(n1, n2, rc.sk); err != nil {
		return err
	}
	for _, step := range []struct {
		n    *testcluster.Node
		args []string
	}{
		{n1, []string{"module", "install", "-m", rfsBenchModule, file}},
		{n1, []string{"config", "-m", rfsBenchModule}},
		{n1, []string{"-H", "*", "-E", rfsBenchModule}},
		{n1, []string{"prim", "-m", rfsBenchModule}},
		{n2, []string{"start", "-m", rfsBenchModule}},
	} {
		if _, err := rc.sk(step.n, step.args...); err != nil {
			return err
		}
	}
	if err := rc.waitPair(ctx); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchreport: writing the %d GiB file of the reintegrations\n", rfsBenchBig>>30)
	_, err = rc.run(n1, "dd", "if=/dev/urandom", "of="+rfsBenchDir+"/big.img", "bs=1M", fmt.Sprintf("count=%d", rfsBenchBig>>20), "conv=fsync", "status=none")
	return err
}

func (rc *rfsCluster) state(n *testcluster.Node) string {
	out, _ := rc.sk(n, "state", "-m", rfsBenchModule, "-lq")
	return strings.TrimSpace(out)
}

func (rc *rfsCluster) waitState(ctx context.Context, n *testcluster.Node, want string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		got := rc.state(n)
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: module %s is %q after 5m, want %q", n.Name, rfsBenchModule, got, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// waitPair waits for node1 PRIM Ready and node2 SECOND Ready.
func (rc *rfsCluster) waitPair(ctx context.Context) error {
	if err := rc.waitState(ctx, rc.n2, "SECOND Ready"); err != nil {
		return err
	}
	return rc.waitState(ctx, rc.n1, "PRIM Ready")
}

// logSince returns the verbose module log lines of n at or after t0.
func (rc *rfsCluster) logSince(n *testcluster.Node, t0 time.Time) ([]logEntry, error) {
	out, err := rc.sk(n, "log", "-m", rfsBenchModule, "-A", "-s", "2000")
	if err != nil {
		return nil, err
	}
	entries, err := parseLog(out, t0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	return entries, nil
}

// daemonCPU is the CPU time (user + system) used so far by the safekitd
// processes (daemon and module processes) of n.
func daemonCPU(n *testcluster.Node) (time.Duration, error) {
	procs, err := processes(n, false)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, p := range procs {
		if p.daemon {
			ticks += p.ticks
		}
	}
	return time.Duration(ticks) * time.Second / clockTick, nil
}

// fioResult is what the report needs of `fio --output-format=json`.
type fioResult struct {
	Jobs []struct {
		Write struct {
			IOPS     float64 `json:"iops"`
			TotalIOs int64   `json:"total_ios"`
		} `json:"write"`
	} `json:"jobs"`
}

// fio runs 4 KiB O_DIRECT random writes at queue depth 16 in dir of
// node1 for rfsFioSeconds and returns the IOPS and the writes done.
func (rc *rfsCluster) fio(dir string, createOnly bool) (float64, int64, error) {
	args := []string{"fio", "--name=qd16", "--directory=" + dir, "--filename=fio.dat", "--size=" + rfsFioSize,
		"--rw=randwrite", "--bs=4k", "--direct=1", "--ioengine=libaio", "--iodepth=16", "--output-format=json"}
	if createOnly {
		args = append(args, "--create_only=1")
	} else {
		args = append(args, "--time_based", fmt.Sprintf("--runtime=%d", rfsFioSeconds))
	}
	out, err := rc.run(rc.n1, args...)
	if err != nil || createOnly {
		return 0, 0, err
	}
	var r fioResult
	// fio may print notes before its JSON.
	if i := strings.IndexByte(out, '{'); i >= 0 {
		out = out[i:]
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Jobs) == 0 {
		return 0, 0, fmt.Errorf("fio's output: %v:\n%s", err, out)
	}
	return r.Jobs[0].Write.IOPS, r.Jobs[0].Write.TotalIOs, nil
}

// measureFio compares fio in the replicated directory of node1 with fio
// in a raw directory of the same disk, and gives the CPU that the safekitd
// processes of each node spend per replicated write.
func (rc *rfsCluster) measureFio(ctx context.Context, runs int) ([]row, error) {
	for _, dir := range []string{rfsBenchRaw, rfsBenchDir} {
		if _, _, err := rc.fio(dir, true); err != nil {
			return nil, err
		}
	}
	var ratios, raws, repls, cpu1, cpu2 []float64
	for range runs {
		raw, _, err := rc.fio(rfsBenchRaw, false)
		if err != nil {
			return nil, err
		}
		c1, err1 := daemonCPU(rc.n1)
		c2, err2 := daemonCPU(rc.n2)
		repl, ios, err := rc.fio(rfsBenchDir, false)
		if err = errors.Join(err, err1, err2); err != nil {
			return nil, err
		}
		d1, err1 := daemonCPU(rc.n1)
		d2, err2 := daemonCPU(rc.n2)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		raws, repls, ratios = append(raws, raw), append(repls, repl), append(ratios, repl/raw)
		cpu1 = append(cpu1, float64((d1-c1).Microseconds())/float64(max(ios, 1)))
		cpu2 = append(cpu2, float64((d2-c2).Microseconds())/float64(max(ios, 1)))
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	// The reintegrations that follow compare big.img only, as rsync does.
	if _, err := rc.run(rc.n1, "rm", "-f", rfsBenchRaw+"/fio.dat", rfsBenchDir+"/fio.dat"); err != nil {
		return nil, err
	}
	ratio := median(ratios)
	return []row{
		{name: "rfs 4 KiB O_DIRECT random writes, QD16 (fio)",
			result: fmt.Sprintf("×%.2f of raw (%.0f IOPS, raw %.0f)", ratio, median(repls), median(raws)),
			target: fmt.Sprintf("≥ ×%.1f raw", rfsIOPSTarget), verdict: verdict(ratio >= rfsIOPSTarget),
			note: fmt.Sprintf("rfs fio: two nodes of the harness on this machine (the secondary shares the CPUs), async=\"second\"; fio randwrite bs=4k direct=1 libaio iodepth=16 for %d s on a %s file, in the replicated directory and in a raw directory of the same disk; median of %d runs\n", rfsFioSeconds, rfsFioSize, runs)},
		{name: "rfs daemon CPU per replicated write, QD16",
			result: fmt.Sprintf("primary %.0f µs, secondary %.0f µs", median(cpu1), median(cpu2)), target: "-", verdict: "-",
			note: "rfs daemon CPU: user+system time of every safekitd process (daemon and module processes) of each node during the replicated fio run, divided by the writes fio did\n"},
	}, nil
}

// changeZones rewrites 1 MiB at a random 4 KiB-aligned place inside each
// of 1% of big.img's zones (on node1, through the replicated directory),
// and returns how many zones.
func (rc *rfsCluster) changeZones() (int, error) {
	zones := rfsBenchBig / rfsBenchZone
	k := (zones + 99) / 100
	for _, z := range rc.rng.Perm(zones)[:k] {
		block := (z*rfsBenchZone + rc.rng.IntN(rfsBenchZone-(1<<20))) / 4096
		if _, err := rc.run(rc.n1, "dd", "if=/dev/urandom", "of="+rfsBenchDir+"/big.img", "bs=4k", "count=256",
			fmt.Sprintf("seek=%d", block), "conv=notrunc,fsync", "status=none"); err != nil {
			return 0, err
		}
	}
	return k, nil
}

// rsync brings node1's raw copy of big.img (its state before the change)
// up to date with rsync's delta algorithm, and returns how long it took.
func (rc *rfsCluster) rsync() (time.Duration, error) {
	t0 := time.Now()
	_, err := rc.run(rc.n1, "rsync", "--inplace", "--no-whole-file", "-I", rfsBenchDir+"_For_SafeKit_Replication/big.img", rfsBenchRaw+"/big.img")
	return time.Since(t0), err
}

// timedStart runs args (a start of node2's module) and returns the time
// from the command to node2's SECOND Ready, from node2's module log, and
// the MB the reintegration copied.
func (rc *rfsCluster) timedStart(ctx context.Context, args ...string) (time.Duration, int, error) {
	t0 := time.Now().Add(-time.Second)
	if _, err := rc.sk(rc.n2, args...); err != nil {
		return 0, 0, err
	}
	if err := rc.waitPair(ctx); err != nil {
		return 0, 0, err
	}
	entries, err := rc.logSince(rc.n2, t0)
	if err != nil {
		return 0, 0, err
	}
	var start, ready time.Time
	copied := -1
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.text, "Action "+args[0]+" called by") && start.IsZero():
			start = e.at
		case e.text == "Local state SECOND Ready" && !start.IsZero():
			ready = e.at
		}
		fmt.Sscanf(e.text, "Copied %d MB in", &copied)
	}
	if start.IsZero() || ready.IsZero() {
		return 0, 0, fmt.Errorf("node2's log does not say when %q began and ended", strings.Join(args, " "))
	}
	return ready.Sub(start), copied, nil
}

// reintegrate is one reintegration run: node2 leaves (a clean stop, or
// a crash of its node), node1 changes 1% of the zones of big.img, rsync
// applies the same change to the old copy, node2 comes back.
func (rc *rfsCluster) reintegrate(ctx context.Context, crash bool) (reint, rs time.Duration, copied int, mode string, err error) {
	if crash {
		err = rc.n2.Kill()
	} else {
		_, err = rc.sk(rc.n2, "stop", "-m", rfsBenchModule)
	}
	if err == nil {
		err = rc.waitState(ctx, rc.n1, "ALONE Ready")
	}
	if err != nil {
		return
	}
	if _, err = rc.changeZones(); err != nil {
		return
	}
	if rs, err = rc.rsync(); err != nil {
		return
	}
	if crash {
		// The daemon comes back; the module stays stopped (boot="ignore").
		if err = rc.n2.Start(); err == nil {
			err = rc.waitState(ctx, rc.n2, "STOP NotReady")
		}
		if err != nil {
			return
		}
	}
	t0 := time.Now()
	if reint, copied, err = rc.timedStart(ctx, "start", "-m", rfsBenchModule); err != nil {
		return
	}
	entries, err := rc.logSince(rc.n1, t0.Add(-time.Second))
	for _, e := range entries {
		if m, ok := strings.CutPrefix(e.text, "Reintegration of the secondary ("); ok {
			mode = strings.TrimSuffix(m, ")")
		}
	}
	return
}

// measureReintegration times the reintegration of the 2 GiB file after a
// clean stop (bitmaps) and after a crash (checksums), each against rsync.
func (rc *rfsCluster) measureReintegration(ctx context.Context, runs int) ([]row, error) {
	// The old version rsync starts from: what node2 has.
	if _, err := rc.run(rc.n1, "cp", rfsBenchDir+"_For_SafeKit_Replication/big.img", rfsBenchRaw+"/big.img"); err != nil {
		return nil, err
	}
	var rows []row
	for _, crash := range []bool{false, true} {
		var ratios []float64
		var reints, rsyncs []time.Duration
		var copied []int
		for range runs {
			reint, rs, mb, mode, err := rc.reintegrate(ctx, crash)
			if err != nil {
				return rows, err
			}
			want := map[bool]string{false: "bitmap", true: "checksum"}[crash]
			if mode != want {
				return rows, fmt.Errorf("the reintegration ran in mode %q, want %q", mode, want)
			}
			reints, rsyncs, copied = append(reints, reint), append(rsyncs, rs), append(copied, mb)
			ratios = append(ratios, float64(reint)/float64(rs))
		}
		ratio := median(ratios)
		r := row{target: "-", verdict: "-"}
		figures := fmt.Sprintf("%s, rsync %s; %d MB copied", ms(median(reints)), ms(median(rsyncs)), median(copied))
		if crash {
			r.name = "rfs reintegration of 2 GiB, 1% of zones changed, after a crash (checksums)"
			r.result = fmt.Sprintf("×%.2f of rsync's time (%s)", ratio, figures)
			r.target, r.verdict = fmt.Sprintf("≤ ×%.1f rsync", rfsCksTarget), verdict(ratio <= rfsCksTarget)
		} else {
			r.name = "rfs reintegration of 2 GiB, 1% of zones changed, after a clean stop (bitmaps)"
			r.result = fmt.Sprintf("%.1f× faster than rsync (%s)", 1/ratio, figures)
			r.target, r.verdict = fmt.Sprintf("≥ %d× faster than rsync", rfsBitmapTarget), verdict(1/ratio >= rfsBitmapTarget)
			r.note = fmt.Sprintf("rfs reintegration: node2 stops (or its node is killed), node1 rewrites 1 MiB in each of 1%% of the %d MiB zones of a 2 GiB file, node2 starts again: from its \"Action start\" to its \"Local state SECOND Ready\" (module log). Against `rsync --inplace --no-whole-file -I` of the same change onto the previous version, in node1, on the same disk; warm caches for both. Median of %d runs\n", rfsBenchZone>>20, runs)
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// measureFullCopy times `second fullsync` of node2 against cp + sync of
// the same bytes on node1.
func (rc *rfsCluster) measureFullCopy(ctx context.Context, runs int) ([]row, error) {
	var ratios, fulls, cps []float64
	for range runs {
		if _, err := rc.sk(rc.n2, "stop", "-m", rfsBenchModule); err != nil {
			return nil, err
		}
		if err := rc.waitState(ctx, rc.n1, "ALONE Ready"); err != nil {
			return nil, err
		}
		took, mb, err := rc.timedStart(ctx, "second", "fullsync", "-m", rfsBenchModule)
		if err != nil {
			return nil, err
		}
		if mb < rfsBenchBig>>20 {
			return nil, fmt.Errorf("second fullsync copied %d MB, less than big.img alone", mb)
		}
		t0 := time.Now()
		if _, err := rc.run(rc.n1, "bash", "-c", "cp "+rfsBenchDir+"_For_SafeKit_Replication/big.img "+rfsBenchRaw+"/copy.img && sync"); err != nil {
			return nil, err
		}
		cp := float64(rfsBenchBig>>20) / time.Since(t0).Seconds()
		full := float64(mb) / took.Seconds()
		fulls, cps, ratios = append(fulls, full), append(cps, cp), append(ratios, full/cp)
		if _, err := rc.run(rc.n1, "rm", rfsBenchRaw+"/copy.img"); err != nil {
			return nil, err
		}
	}
	ratio := median(ratios)
	return []row{{name: "rfs full copy (second fullsync)",
		result: fmt.Sprintf("×%.2f of cp+sync (%.0f MB/s, cp+sync %.0f MB/s)", ratio, median(fulls), median(cps)),
		target: fmt.Sprintf("≥ ×%.1f cp+sync", rfsFullTarget), verdict: verdict(ratio >= rfsFullTarget),
		note: fmt.Sprintf("rfs full copy: `safekit second fullsync` of node2, from its \"Action second\" to its \"Local state SECOND Ready\", MB copied from its log, against `cp` of the 2 GiB file then `sync` on node1 (the same disk); median of %d runs\n", runs)}}, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
)

// The two-node measurements run the project's mirror template on a
// cluster of the harness (internal/testcluster: one network, PID and mount
// namespace per node), with the heartbeats below.
const (
	clusterPulse   = 300 * time.Millisecond
	clusterTimeout = 3000 * time.Millisecond
	clusterModule  = "bench"
	// failoverRuns crashes of the primary are timed; the report gives
	// their median.
	failoverRuns = 10
	// failoverOverhead is the target: what the survivor may take, beyond
	// the heartbeat timeout, to be ALONE Ready.
	failoverOverhead = time.Second
	// defaultSoak is how long both nodes run under full CPU load;
	// $SAFEKIT_SOAK (a Go duration) changes it.
	defaultSoak = 10 * time.Minute
)

// measureCluster times the detection of a crashed primary and runs the
// soak test. Without root (namespaces) it reports them as not measured.
func measureCluster(ctx context.Context, root string) (rows []row, err error) {
	soak := defaultSoak
	if s := os.Getenv("SAFEKIT_SOAK"); s != "" {
		if soak, err = time.ParseDuration(s); err != nil || soak <= 0 {
			return nil, fmt.Errorf("SAFEKIT_SOAK=%q: want a positive duration such as 60s", s)
		}
	}
	detectName := fmt.Sprintf("failure detection (SIGKILL of the primary node, timeout %v)", clusterTimeout)
	soakName := fmt.Sprintf("soak, both nodes under full CPU load for %v", soak)
	detectTarget := fmt.Sprintf("< %v beyond the timeout", failoverOverhead)
	soakTarget := "no state change (no false failover)"
	if os.Geteuid() != 0 {
		note := "the two-node measurements need root (network, PID and mount namespaces): not measured"
		return []row{
			{name: detectName, result: "not measured", target: detectTarget, verdict: "-", note: note},
			{name: soakName, result: "not measured", target: soakTarget, verdict: "-"},
		}, nil
	}
	c, err := testcluster.Create(testcluster.Options{Nodes: 2, Bin: filepath.Join(root, "bin")},
		func(format string, args ...any) { fmt.Fprintf(os.Stderr, "benchreport: "+format+"\n", args...) })
	if err != nil {
		return nil, fmt.Errorf("two-node cluster: %w", err)
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	cl := &cluster{c: c}
	if err := cl.setup(ctx, filepath.Join(root, "build", "Application_Modules", "generic", "mirror.safe")); err != nil {
		return nil, fmt.Errorf("two-node cluster: %w", err)
	}

	r, err := cl.measureDetection(ctx, detectName, detectTarget)
	if err != nil {
		return nil, fmt.Errorf("failure detection: %w", err)
	}
	rows = append(rows, r)
	r, err = cl.soak(ctx, soak, soakName, soakTarget)
	if err != nil {
		return rows, fmt.Errorf("soak: %w", err)
	}
	return append(rows, r), nil
}

// cluster is the two-node cluster of the measurements.
type cluster struct {
	c *testcluster.Cluster
}

// safekit runs the CLI in node n.
func (cl *cluster) safekit(n *testcluster.Node, args ...string) (string, error) {
	out, _, err := n.Safekit(args...)
	return out, err
}

// setup configures the cluster from node1 (cluster create, cluster config,
// the rcmdadmin password, -G), installs the mirror template with short
// heartbeats on both nodes (-E), and starts it: node1 PRIM, node2 SECOND.
func (cl *cluster) setup(ctx context.Context, archive string) error {
	n1, n2 := cl.c.Nodes[0], cl.c.Nodes[1]
	if err := joinCluster(n1, n2, cl.safekit); err != nil {
		return err
	}
	if _, err := cl.safekit(n1, "module", "install", "-m", clusterModule, archive); err != nil {
		return err
	}
	conf := n1.HostPath(filepath.Join(testcluster.NodeSAFE, "modules", clusterModule, "conf", "userconfig.xml"))
	b, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	hb := fmt.Sprintf(`<heartbeat name="default" pulse="%dms" timeout="%dms"`, clusterPulse.Milliseconds(), clusterTimeout.Milliseconds())
	edited := strings.Replace(string(b), `<heartbeat name="default"`, hb, 1)
	if edited == string(b) {
		return fmt.Errorf("%s has no <heartbeat name=\"default\">", archive)
	}
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		return err
	}
	for _, step := range []struct {
		n    *testcluster.Node
		args []string
	}{
		{n1, []string{"-H", "*", "-E", clusterModule}},
		{n1, []string{"prim", "-m", clusterModule}},
		{n2, []string{"start", "-m", clusterModule}},
	} {
		if _, err := cl.safekit(step.n, step.args...); err != nil {
			return err
		}
	}
	return cl.waitPair(ctx, n1, n2)
}

// state is `safekit state -m bench -lq` in n ("PRIM Ready"; "" when the
// module does not answer).
func (cl *cluster) state(n *testcluster.Node) string {
	out, _ := cl.safekit(n, "state", "-m", clusterModule, "-lq")
	return strings.TrimSpace(out)
}

// waitState polls n until its module is in state want.
func (cl *cluster) waitState(ctx context.Context, n *testcluster.Node, want string) error {
	deadline := time.Now().Add(cliTimeout)
	for {
		got := cl.state(n)
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: module %s is %q after %v, want %q", n.Name, clusterModule, got, cliTimeout, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

func (cl *cluster) waitPair(ctx context.Context, prim, second *testcluster.Node) error {
	if err := cl.waitState(ctx, second, "SECOND Ready"); err != nil {
		return err
	}
	return cl.waitState(ctx, prim, "PRIM Ready")
}

// logEntry is a line of `safekit log`.
type logEntry struct {
	at   time.Time
	text string
}

// log returns the verbose module log of n, oldest first.
func (cl *cluster) log(n *testcluster.Node) ([]logEntry, error) {
	out, err := cl.safekit(n, "log", "-m", clusterModule, "-A", "-s", "5000")
	if err != nil {
		return nil, err
	}
	entries, err := parseLog(out, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	return entries, nil
}

// parseLog reads the lines of `safekit log` at or after since, oldest
// first.
func parseLog(out string, since time.Time) ([]logEntry, error) {
	var entries []logEntry
	for _, l := range strings.Split(out, "\n") {
		// | 2026-11-25 22:38:21.804509 |        heart | E | Local state ALONE Ready
		f := strings.SplitN(l, "|", 5)
		if len(f) != 5 {
			continue
		}
		at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", strings.TrimSpace(f[1]), time.Local)
		if err != nil {
			return nil, fmt.Errorf("module log line %q: %w", l, err)
		}
		if !at.Before(since) {
			entries = append(entries, logEntry{at: at, text: strings.TrimSpace(f[4])})
		}
	}
	return entries, nil
}

// measureDetection kills the primary node failoverRuns times: each time
// the other node must be ALONE Ready (its log gives when); the killed node
// then boots again and rejoins as SECOND for the next run.
func (cl *cluster) measureDetection(ctx context.Context, name, target string) (row, error) {
	prim, second := cl.c.Nodes[0], cl.c.Nodes[1]
	var took []time.Duration
	for range failoverRuns {
		t0 := time.Now()
		if err := prim.Kill(); err != nil {
			return row{}, err
		}
		if err := cl.waitState(ctx, second, "ALONE Ready"); err != nil {
			return row{}, err
		}
		entries, err := cl.log(second)
		if err != nil {
			return row{}, err
		}
		var alone time.Time
		for _, e := range entries {
			if !e.at.Before(t0) && e.text == "Local state ALONE Ready" {
				alone = e.at
				break
			}
		}
		if alone.IsZero() {
			return row{}, fmt.Errorf("%s is ALONE Ready but its log does not say when", second.Name)
		}
		took = append(took, alone.Sub(t0))
		if err := prim.Start(); err != nil {
			return row{}, err
		}
		if err := cl.waitPair(ctx, second, prim); err != nil {
			return row{}, err
		}
		prim, second = second, prim
	}
	med := median(took)
	return row{
		name:    name,
		result:  fmt.Sprintf("%s beyond the timeout (ALONE Ready %s after the kill; %d runs, %s to %s)", ms(med-clusterTimeout), ms(med), len(took), ms(slices.Min(took)), ms(slices.Max(took))),
		target:  target,
		verdict: verdict(med-clusterTimeout < failoverOverhead),
		note: fmt.Sprintf("failure detection: heartbeats every %v, lost after %v; the time runs from the SIGKILL of the primary node's init to the survivor's \"Local state ALONE Ready\" (its start_prim included). The last heartbeat arrives up to a pulse before the kill, so a figure up to %v below the timeout is possible.\n",
			clusterPulse, clusterTimeout, clusterPulse),
	}, nil
}

// soak loads every CPU from both nodes (busy loops, as many per node as
// the machine has CPUs) for d and counts the module state changes on both
// meanwhile: a pair that lost heartbeats under load would fail over.
func (cl *cluster) soak(ctx context.Context, d time.Duration, name, target string) (row, error) {
	s1, s2 := cl.state(cl.c.Nodes[0]), cl.state(cl.c.Nodes[1])
	if !(s1 == "PRIM Ready" && s2 == "SECOND Ready") && !(s1 == "SECOND Ready" && s2 == "PRIM Ready") {
		return row{}, fmt.Errorf("before the soak, node1 is %q and node2 %q: want a PRIM and a SECOND", s1, s2)
	}
	loops := goruntime.NumCPU()
	script := fmt.Sprintf(`for i in $(seq %d); do (end=$((SECONDS+%d)); while [ $SECONDS -lt $end ]; do :; done) & done; wait`, loops, int(d.Seconds()))
	var cmds []*exec.Cmd
	for _, n := range cl.c.Nodes {
		cmd := n.Command("bash", "-c", script)
		if err := cmd.Start(); err != nil {
			return row{}, fmt.Errorf("%s: busy loops: %w", n.Name, err)
		}
		cmds = append(cmds, cmd)
	}
	t0 := time.Now()
	fmt.Fprintf(os.Stderr, "benchreport: soak: %d busy loops in each node for %v\n", loops, d)
	loaded := make(chan error, 1)
	go func() {
		var err error
		for _, cmd := range cmds {
			if werr := cmd.Wait(); werr != nil {
				err = errors.Join(err, fmt.Errorf("busy loops: %w", werr))
			}
		}
		loaded <- err
	}()
	var loadErr error
	select {
	case loadErr = <-loaded:
	case <-ctx.Done():
		// The loops end with their nodes, which the caller tears down.
		return row{}, ctx.Err()
	}
	load, _ := os.ReadFile("/proc/loadavg")
	changes, lost := 0, 0
	var seen []string
	for _, n := range cl.c.Nodes {
		entries, err := cl.log(n)
		if err != nil {
			return row{}, err
		}
		for _, e := range entries {
			if e.at.Before(t0) {
				continue
			}
			switch {
			case strings.HasPrefix(e.text, "Local state "):
				changes++
				seen = append(seen, n.Name+": "+e.text)
			case strings.Contains(e.text, "set to down by heart"):
				lost++
				seen = append(seen, n.Name+": "+e.text)
			}
		}
	}
	if loadErr != nil {
		return row{}, loadErr
	}
	r := row{
		name:    name,
		result:  fmt.Sprintf("%d state changes, %d heartbeat losses in %v (load average %s)", changes, lost, time.Since(t0).Round(time.Second), strings.Join(strings.Fields(string(load))[:3], " ")),
		target:  target,
		verdict: verdict(changes == 0 && lost == 0),
	}
	if len(seen) > 0 {
		r.note = "soak: " + strings.Join(seen, "; ") + "\n"
	}
	return r, nil
}

// joinCluster configures the cluster of n1 and n2 from n1 as an
// administrator does: cluster create and config, n2 given the rcmdadmin
// password that n1's daemon logged at its first start, then -H "*" -G.
func joinCluster(n1, n2 *testcluster.Node, safekit func(*testcluster.Node, ...string) (string, error)) error {
	log, err := os.ReadFile(filepath.Join(n1.Dir, "safekitd.log"))
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`-rcmdpasswd ([^"\s]+)`).FindSubmatch(log)
	if m == nil {
		return fmt.Errorf("node1's daemon log gives no rcmdadmin password:\n%s", log)
	}
	for _, step := range []struct {
		n    *testcluster.Node
		args []string
	}{
		{n1, []string{"cluster", "create", n1.Addr("default"), n2.Addr("default")}},
		{n1, []string{"cluster", "config"}},
		{n2, []string{"webservercfg", "-rcmdpasswd", string(m[1])}},
		{n1, []string{"-H", "*", "-G"}},
	} {
		if _, err := safekit(step.n, step.args...); err != nil {
			return err
		}
	}
	return nil
}

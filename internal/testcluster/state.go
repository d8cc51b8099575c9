package testcluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The state file of a cluster, in stateDir(id). It is what lets Sweep tell
// a live cluster from the leftovers of a killed test run, and what lets the
// `testcluster` command act on a cluster made by an earlier command.
const (
	stateFile = "state.json"
	// markerFile in the cluster directory names the cluster that owns it:
	// a directory is only ever removed when it carries the marker, so that
	// a damaged state file cannot make Sweep remove anything else.
	markerFile = ".sktc-cluster"
)

type state struct {
	// Owner is the pid of the process whose end makes the cluster garbage
	// (the test binary); 0 for a cluster made by `testcluster up`, which
	// only Close (`testcluster down`) removes.
	Owner      int    `json:"owner"`
	OwnerStart uint64 `json:"owner_start"`
	ID         int    `json:"id"`
	Dir        string `json:"dir"`
	// Options as resolved at creation (defaults applied, paths absolute).
	Options Options `json:"options"`
	// NodeFlag: whether safekitd gets --node (Options.NodeFlag, or the
	// daemon lists the flag in its usage).
	NodeFlag bool        `json:"node_flag"`
	InitBin  string      `json:"init_bin"`
	Nodes    []nodeState `json:"nodes"`
}

type nodeState struct {
	Init   *proc `json:"init,omitempty"`
	Daemon *proc `json:"daemon,omitempty"`
}

func readState(id int) (*state, error) {
	b, err := os.ReadFile(filepath.Join(stateDir(id), stateFile))
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(stateDir(id), stateFile), err)
	}
	return &st, nil
}

func writeState(st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(stateDir(st.ID), stateFile)
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// ownerAlive tells whether the cluster's owner still runs.
func (st *state) ownerAlive() bool {
	if st.Owner == 0 {
		return true
	}
	return (&proc{Pid: st.Owner, Start: st.OwnerStart}).alive()
}

// lockHarness serialises, across processes, the reservation of a cluster
// id, the creation of network namespaces (two concurrent first `ip netns
// add` race to mount /run/netns twice) and Sweep. The lock is a flock on
// /tmp itself, so that it leaves no file behind and dies with its holder.
func lockHarness() (unlock func(), err error) {
	f, err := os.Open("/tmp")
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock /tmp: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

var stateDirRE = regexp.MustCompile(`^/tmp/sktc-([0-9]+)$`)

// clusterIDs lists the ids that have a state directory.
func clusterIDs() []int {
	dirs, _ := filepath.Glob("/tmp/sktc-*")
	var ids []int
	for _, d := range dirs {
		if m := stateDirRE.FindStringSubmatch(d); m != nil {
			id, _ := strconv.Atoi(m[1])
			if id >= 1 && id <= maxID {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// Sweep removes what harness runs whose owner process is dead left on the
// machine: their processes, network namespaces, links, bridges and
// directories. Clusters of live processes and those made by `testcluster
// up` are kept. New calls it, so a killed test run is cleaned by the next.
func Sweep() error {
	unlock, err := lockHarness()
	if err != nil {
		return err
	}
	defer unlock()
	return sweepLocked(func(string, ...any) {})
}

func sweepLocked(logf func(string, ...any)) error {
	live := map[int]bool{}
	var errs []error
	for _, id := range clusterIDs() {
		st, err := readState(id)
		if err == nil && st.ownerAlive() {
			live[id] = true
			continue
		}
		// No state (the creator died before writing it: creation writes
		// it under the lock we hold) or a dead owner.
		logf("testcluster: sweeping cluster %d left by a dead process", id)
		if err := destroy(id, st); err != nil {
			errs = append(errs, err)
		}
	}
	// Names on the host whose cluster has no state any more.
	orphan := map[int]bool{}
	for _, id := range hostIDs() {
		if !live[id] {
			orphan[id] = true
		}
	}
	for id := range orphan {
		logf("testcluster: sweeping orphan namespaces and links of cluster %d", id)
		if err := destroy(id, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var hostNameRE = regexp.MustCompile(`^sktc([0-9]+)(?:-node[0-9]+|[bn][0-9].*)$`)

// hostIDs lists the cluster ids that have a network namespace, a link or
// an init process on the host.
func hostIDs() []int {
	seen := map[int]bool{}
	add := func(name string) {
		if m := hostNameRE.FindStringSubmatch(name); m != nil {
			id, _ := strconv.Atoi(m[1])
			seen[id] = true
		}
	}
	for _, n := range netnsNames() {
		add(n)
	}
	for _, n := range linkNames() {
		add(n)
	}
	for id := range initPids(0) {
		seen[id] = true
	}
	var out []int
	for id := range seen {
		out = append(out, id)
	}
	return out
}

// destroy ends every process of cluster id, removes its namespaces and
// links, then its directories. st may be nil (no state file).
func destroy(id int, st *state) error {
	var errs []error
	var procs []*proc
	if st != nil {
		for _, n := range st.Nodes {
			procs = append(procs, n.Init, n.Daemon)
		}
	}
	for _, pid := range initPids(id)[id] {
		procs = append(procs, &proc{Pid: pid})
	}
	for _, ns := range netnsNames() {
		if strings.HasPrefix(ns, fmt.Sprintf("sktc%d-", id)) {
			out, _ := exec.Command("ip", "netns", "pids", ns).Output()
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					procs = append(procs, &proc{Pid: pid})
				}
			}
		}
	}
	for _, p := range procs {
		if p != nil && p.alive() {
			if p.Start == 0 {
				p.Start, _, _ = procStat(p.Pid)
			}
			errs = append(errs, p.signal(syscall.SIGKILL))
		}
	}
	for _, p := range procs {
		if p != nil {
			errs = append(errs, p.wait(10*time.Second))
		}
	}
	errs = append(errs, removeNet(id))
	if st != nil {
		errs = append(errs, removeClusterDir(st.Dir, id))
	}
	errs = append(errs, removeClusterDir(stateDir(id), id))
	return errors.Join(errs...)
}

// removeClusterDir removes dir if it is cluster id's (it carries the
// marker, or it is the state directory, whose name says so).
func removeClusterDir(dir string, id int) error {
	if dir == "" {
		return nil
	}
	if dir != stateDir(id) {
		b, err := os.ReadFile(filepath.Join(dir, markerFile))
		if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(id) {
			return nil
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// initPids finds the running inits of cluster id (all clusters when id is
// 0) by their command line: `testcluster init -cluster <id> <spec>`.
func initPids(id int) map[int][]int {
	out := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		argv := strings.Split(string(b), "\x00")
		if len(argv) < 4 || argv[1] != "init" || argv[2] != "-cluster" || filepath.Base(argv[0]) != "testcluster" {
			continue
		}
		cid, err := strconv.Atoi(argv[3])
		if err != nil || (id != 0 && cid != id) {
			continue
		}
		out[cid] = append(out[cid], pid)
	}
	return out
}

// netnsNames lists the named network namespaces (what `ip netns list`
// shows).
func netnsNames() []string {
	entries, _ := os.ReadDir("/run/netns")
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// linkNames lists the links of the host's network namespace.
func linkNames() []string {
	ifs, _ := net.Interfaces()
	var out []string
	for _, i := range ifs {
		out = append(out, i.Name)
	}
	return out
}

// removeNet deletes the links, bridges and network namespaces of cluster
// id. Host ends of veths go first: deleting one end removes the pair at
// once, whereas a deleted namespace frees its links asynchronously and they
// would still show for a moment.
func removeNet(id int) error {
	var veths, bridges, nss []string
	for _, l := range linkNames() {
		switch {
		case strings.HasPrefix(l, fmt.Sprintf("sktc%dn", id)):
			veths = append(veths, l)
		case strings.HasPrefix(l, fmt.Sprintf("sktc%db", id)):
			bridges = append(bridges, l)
		}
	}
	for _, ns := range netnsNames() {
		if strings.HasPrefix(ns, fmt.Sprintf("sktc%d-", id)) {
			nss = append(nss, ns)
		}
	}
	var batch bytes.Buffer
	for _, l := range append(veths, bridges...) {
		fmt.Fprintf(&batch, "link del %s\n", l)
	}
	for _, ns := range nss {
		fmt.Fprintf(&batch, "netns del %s\n", ns)
	}
	if batch.Len() == 0 {
		return nil
	}
	// -force: go on after an error (a veth gone with its peer), and check
	// the result below instead.
	_ = ipBatch("", &batch, true)
	var left []string
	for _, l := range linkNames() {
		if strings.HasPrefix(l, fmt.Sprintf("sktc%dn", id)) || strings.HasPrefix(l, fmt.Sprintf("sktc%db", id)) {
			left = append(left, l)
		}
	}
	for _, ns := range netnsNames() {
		if strings.HasPrefix(ns, fmt.Sprintf("sktc%d-", id)) {
			left = append(left, "netns "+ns)
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("cluster %d: could not remove %s (remove them with ip link del / ip netns del)", id, strings.Join(left, ", "))
	}
	return nil
}

// ipBatch runs ip commands, one a line, in the host's network namespace or
// in netns.
func ipBatch(netns string, cmds *bytes.Buffer, force bool) error {
	args := []string{}
	if netns != "" {
		args = append(args, "-n", netns)
	}
	if force {
		args = append(args, "-force")
	}
	args = append(args, "-batch", "-")
	text := cmds.String()
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		where := "on the host"
		if netns != "" {
			where = "in netns " + netns
		}
		return fmt.Errorf("ip -batch %s: %w: %s\ncommands:\n%s", where, err, strings.TrimSpace(string(out)), text)
	}
	return nil
}

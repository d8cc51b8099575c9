package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
)

// initMain is pid 1 of a node's PID namespace. It builds the node's mounts,
// says "ok" (or "error: ...") on fd 3, then reaps every orphan of the node
// (scripts and daemons are reparented to it) until SIGTERM, when it kills
// the whole node. SIGKILL from the host ends it the same way: the kernel
// kills every process of a PID namespace whose init dies.
func initMain(args []string) int {
	fs := flag.NewFlagSet("testcluster init", flag.ContinueOnError)
	fs.Int("cluster", 0, "cluster id (only there so that Sweep finds the inits of a cluster)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: testcluster init -cluster ID NODE.json (started by the testcluster package, not by hand)")
		return 2
	}
	ready := os.NewFile(3, "ready")
	// Pid 1 only receives, from inside its namespace, the signals it
	// handles: install the handlers before anything else.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM)

	spec, err := readSpec(fs.Arg(0))
	if err == nil {
		err = setupNode(spec)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testcluster init: %v\n", err)
		if ready != nil {
			fmt.Fprintf(ready, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		return 1
	}
	fmt.Fprintf(os.Stderr, "%s testcluster init: %s booted\n", time.Now().Format(time.RFC3339), spec.Hostname)
	if ready != nil {
		fmt.Fprintln(ready, "ok")
		ready.Close()
	}
	for sig := range sigs {
		reap(syscall.WNOHANG)
		if sig == syscall.SIGTERM {
			// kill(-1) from pid 1 reaches every other process of the
			// namespace.
			_ = syscall.Kill(-1, syscall.SIGKILL)
			reap(0)
			fmt.Fprintf(os.Stderr, "%s testcluster init: %s stopped (SIGTERM)\n", time.Now().Format(time.RFC3339), spec.Hostname)
			return 0
		}
	}
	return 0
}

// reap collects ended children: all that are done (WNOHANG), or every
// child until none is left (0).
func reap(opts int) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, opts, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
	}
}

func readSpec(path string) (testcluster.NodeSpec, error) {
	var s testcluster.NodeSpec
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if s.Protocol != testcluster.Protocol {
		return s, fmt.Errorf("%s: protocol %d, this init speaks %d: the testcluster binary is stale, rebuild it (scripts/testcluster)", path, s.Protocol, testcluster.Protocol)
	}
	return s, nil
}

// setupNode builds the node's mount namespace. Everything is made private
// first, so that nothing mounted here propagates to the host.
func setupNode(s testcluster.NodeSpec) error {
	if os.Getpid() != 1 {
		return fmt.Errorf("the init must be pid 1 of a new PID namespace (it is pid %d)", os.Getpid())
	}
	if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := syscall.Sethostname([]byte(s.Hostname)); err != nil {
		return fmt.Errorf("sethostname %s: %w", s.Hostname, err)
	}
	if err := detachNsfs(); err != nil {
		return err
	}
	// The node's own /proc shows the node's processes with the pids the
	// node's daemon sees; the host's would not.
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mount tmpfs on /run: %w", err)
	}
	// /var/lock is a link to /run/lock on Debian.
	if err := os.Mkdir("/run/lock", 0o755); err != nil {
		return err
	}
	if err := os.Chmod("/run/lock", 0o777|os.ModeSticky); err != nil {
		return err
	}
	if err := remountSys(); err != nil {
		return err
	}
	if err := mountPrivate(s); err != nil {
		return err
	}
	return os.Chdir("/")
}

type mount struct {
	id, parent int
	point      string
	fstype     string
}

// mounts reads /proc/self/mountinfo.
func mounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root point options [optional...] - fstype source super
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		id, _ := strconv.Atoi(fields[0])
		parent, _ := strconv.Atoi(fields[1])
		out = append(out, mount{id: id, parent: parent, point: unescapeMountinfo(fields[4]), fstype: fields[sep+1]})
	}
	return out, sc.Err()
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) of
// mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// detachNsfs removes the copies of namespace mounts (/run/netns/*) that the
// new mount namespace inherited: each would keep a network namespace of
// another node or cluster alive, with its links, as long as this node
// lives.
func detachNsfs() error {
	ms, err := mounts()
	if err != nil {
		return err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].fstype != "nsfs" {
			continue
		}
		if err := syscall.Unmount(ms[i].point, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("detach %s: %w", ms[i].point, err)
		}
	}
	return nil
}

// remountSys mounts a sysfs of the node's network namespace on /sys (so
// that /sys/class/net shows the node's interfaces), keeping the host's
// mounts under /sys (cgroups...). The new sysfs is assembled on the side,
// then moved in place.
func remountSys() error {
	ms, err := mounts()
	if err != nil {
		return err
	}
	sysID := -1
	for _, m := range ms {
		if m.point == "/sys" {
			sysID = m.id // the last one is on top
		}
	}
	tmp := "/run/.testcluster-sys"
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("sysfs", tmp, "sysfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount sysfs: %w", err)
	}
	for _, m := range ms {
		if m.parent != sysID || sysID < 0 {
			continue
		}
		dst := filepath.Join(tmp, strings.TrimPrefix(m.point, "/sys"))
		if err := syscall.Mount(m.point, dst, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("keep %s in the node's /sys: %w", m.point, err)
		}
	}
	if sysID >= 0 {
		if err := syscall.Unmount("/sys", syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("detach the host's /sys: %w", err)
		}
	}
	if err := syscall.Mount(tmp, "/sys", "", syscall.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the node's sysfs to /sys: %w", err)
	}
	return os.Remove(tmp)
}

// mountPrivate gives the node its own /opt/safekit and /var/safekit (bind
// mounts of its directories) and copy-on-write copies of the private dirs.
// A directory missing on the host is created inside an overlay of its
// deepest existing ancestor, so that the host is never written.
func mountPrivate(s testcluster.NodeSpec) error {
	nodeOwn := []string{"/run", "/proc", "/sys"} // already the node's own
	var overlays, mkdirs []string
	plan := func(p string, private bool) error {
		anc, rest, err := deepestExisting(p)
		if err != nil {
			return err
		}
		full := filepath.Join(anc, rest)
		for _, r := range nodeOwn {
			if under(full, r) {
				mkdirs = append(mkdirs, full)
				return nil
			}
		}
		if private && (under(full, testcluster.NodeSAFE) || under(full, testcluster.NodeSAFEVAR)) {
			mkdirs = append(mkdirs, full) // after the bind mounts below
			return nil
		}
		if rest == "" && !private {
			return nil // an existing mount point
		}
		if anc == "/" {
			return fmt.Errorf("%s: no ancestor but / exists on the host, and / cannot be overlaid: create a parent on the host or choose another directory", p)
		}
		if under(s.HarnessDir, anc) || under(anc, s.HarnessDir) {
			return fmt.Errorf("%s: the overlay on %s would cover the cluster directory %s: choose a private dir outside it, or another cluster directory", p, anc, s.HarnessDir)
		}
		overlays = append(overlays, anc)
		mkdirs = append(mkdirs, full)
		return nil
	}
	for _, p := range []string{testcluster.NodeSAFE, testcluster.NodeSAFEVAR} {
		if err := plan(p, false); err != nil {
			return err
		}
	}
	for _, p := range s.PrivateDirs {
		if err := plan(p, true); err != nil {
			return fmt.Errorf("private dir %w", err)
		}
	}
	// Shallow first: an overlay mounted over a deeper one would hide it.
	// One covered by another is private already.
	sort.Slice(overlays, func(i, j int) bool { return len(overlays[i]) < len(overlays[j]) })
	var done []string
	for _, t := range overlays {
		covered := false
		for _, d := range done {
			covered = covered || under(t, d)
		}
		if covered {
			continue
		}
		if err := mountOverlay(t, filepath.Join(s.OverlayDir, testcluster.OverlayName(t))); err != nil {
			return err
		}
		done = append(done, t)
	}
	for _, b := range []struct{ src, dst string }{{s.SAFE, testcluster.NodeSAFE}, {s.SAFEVAR, testcluster.NodeSAFEVAR}} {
		if err := os.MkdirAll(b.dst, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(b.src, b.dst, "", syscall.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", b.src, b.dst, err)
		}
	}
	for _, d := range mkdirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// mountOverlay mounts on target an overlay whose lower layer is target
// itself, with the upper and work directories under dir. Right after a
// node is killed, the kernel may still hold the previous boot's overlay on
// the same upper directory for a moment (EBUSY): retry briefly.
func mountOverlay(target, dir string) error {
	upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", target, upper, work)
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Mount("overlay", target, "overlay", 0, opts)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("mount overlay on %s (%s): %w", target, opts, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deepestExisting splits p into its deepest existing ancestor (symlinks
// resolved, a directory) and the missing rest.
func deepestExisting(p string) (anc, rest string, err error) {
	anc = filepath.Clean(p)
	for {
		fi, err := os.Stat(anc)
		if err == nil {
			if !fi.IsDir() {
				return "", "", fmt.Errorf("%s: %s is not a directory", p, anc)
			}
			real, err := filepath.EvalSymlinks(anc)
			if err != nil {
				return "", "", err
			}
			return real, rest, nil
		}
		if !os.IsNotExist(err) {
			return "", "", err
		}
		rest = filepath.Join(filepath.Base(anc), rest)
		anc = filepath.Dir(anc)
	}
}

// under tells whether p is dir or inside it (both clean and absolute).
func under(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

package testcluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node is one server of the cluster.
type Node struct {
	// Name is node<Index>, Index counting from 1.
	Name  string
	Index int
	// Dir holds the node's files on the host: safe/ and safevar/ (its
	// /opt/safekit and /var/safekit), overlay/ (its private copies),
	// safekitd.log and init.log.
	Dir string

	c     *Cluster
	netns string

	mu     sync.Mutex // guards the processes
	init   *proc
	daemon *proc // safekitd, by its host pid
	// daemonVia is the nsenter that started safekitd and waits for it;
	// nil when the daemon was started by another process.
	daemonVia *proc
}

// Timeouts of the node lifecycle. A boot only mounts a few file systems;
// the daemon gets time to stop its modules.
const (
	bootTimeout       = 15 * time.Second
	daemonStopTimeout = 30 * time.Second
	killTimeout       = 10 * time.Second
	levelTimeout      = 5 * time.Second
)

func (c *Cluster) newNode(i int) *Node {
	name := fmt.Sprintf("node%d", i)
	return &Node{Name: name, Index: i, Dir: filepath.Join(c.Dir, name), c: c, netns: netnsName(c.ID, i)}
}

// Addr is the node's address on lan. It panics on an unknown lan, a bug in
// the test.
func (n *Node) Addr(lan string) string {
	l, err := n.c.lanIndex(lan)
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf("%s.%d", subnetPrefix(n.c.ID, l), 10+n.Index)
}

// Netns is the name of the node's network namespace (for `ip netns exec`).
func (n *Node) Netns() string { return n.netns }

// InitPID is the host pid of the node's init, 0 when the node is down.
func (n *Node) InitPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.init.alive() {
		return 0
	}
	return n.init.Pid
}

// DaemonPID is the host pid of the node's safekitd, 0 when it does not run.
func (n *Node) DaemonPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.daemon.alive() {
		return 0
	}
	return n.daemon.Pid
}

// boot starts the node's init in new PID, mount and UTS namespaces, inside
// the node's network namespace, and waits until it has built the node's
// mounts.
func (n *Node) boot() error {
	o := n.c.st.Options
	spec := NodeSpec{
		Protocol:    Protocol,
		Cluster:     n.c.ID,
		Hostname:    n.Name,
		SAFE:        filepath.Join(n.Dir, "safe"),
		SAFEVAR:     filepath.Join(n.Dir, "safevar"),
		OverlayDir:  filepath.Join(n.Dir, "overlay"),
		HarnessDir:  n.c.Dir,
		PrivateDirs: o.PrivateDirs,
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	specPath := filepath.Join(n.Dir, NodeSpecFile)
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		return err
	}
	logPath := filepath.Join(n.Dir, "init.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	// nsenter joins the network namespace, which outlives the node's
	// boots, then execs the init, which stays pid 1 of the new PID
	// namespace created by the clone flags.
	cmd := exec.Command(n.c.nsenter, "--net=/run/netns/"+n.netns, "--", n.c.initBin, "init", "-cluster", strconv.Itoa(n.c.ID), specPath)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w} // fd 3: the readiness line
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
		// Own session: a ^C meant for `testcluster up` or `go test` must
		// not reach the nodes; Teardown ends them.
		Setsid: true,
	}
	if n.c.st.Owner != 0 {
		// A test binary that dies (timeout, SIGKILL) takes its nodes with
		// it; Sweep removes the rest.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	p, err := startProc(cmd)
	w.Close()
	if err != nil {
		return fmt.Errorf("%s: start the init (%s): %w", n.Name, n.c.initBin, err)
	}
	_ = r.SetReadDeadline(time.Now().Add(bootTimeout))
	line, rerr := bufio.NewReader(r).ReadString('\n')
	if line = strings.TrimSpace(line); line != "ok" {
		_ = p.signal(syscall.SIGKILL)
		_ = p.wait(killTimeout)
		msg := strings.TrimPrefix(line, "error: ")
		if msg == "" {
			msg = fmt.Sprintf("the init ended without saying it was ready (%v)", rerr)
		}
		return fmt.Errorf("%s: boot: %s\n--- %s ---\n%s", n.Name, msg, logPath, tailFile(logPath, 20))
	}
	n.mu.Lock()
	n.init = p
	n.mu.Unlock()
	return n.c.save()
}

// Start boots a killed node again: new PID and mount namespaces over the
// same directories and the same network, and its daemon unless NoDaemon
// (waiting until it answers).
func (n *Node) Start() error {
	if n.InitPID() != 0 {
		return fmt.Errorf("%s is already running: Kill it first", n.Name)
	}
	if err := n.boot(); err != nil {
		return err
	}
	if n.c.st.Options.NoDaemon {
		return nil
	}
	if err := n.StartDaemon(); err != nil {
		return err
	}
	return n.WaitDaemon(daemonReadyTimeout)
}

// Kill kills the node's init with SIGKILL: the kernel then kills every
// process of the node's PID namespace (daemon, module processes, scripts,
// checkers, VMs), as a crash of the server would. The network namespace
// and the node's directories stay for Start.
func (n *Node) Kill() error {
	if n.InitPID() == 0 {
		return fmt.Errorf("%s is already down", n.Name)
	}
	if err := n.kill(); err != nil {
		return err
	}
	return n.c.save()
}

// kill ends the node's processes, if any, and waits for them: once the
// init is reaped the kernel has reaped every process of its namespace, so
// that the node's mounts are gone when this returns.
func (n *Node) kill() error {
	n.mu.Lock()
	init, d, via := n.init, n.daemon, n.daemonVia
	n.mu.Unlock()
	var errs []error
	if init != nil {
		ns := pidNamespace(init)
		errs = append(errs, init.signal(syscall.SIGKILL), init.wait(killTimeout))
		// The kernel kills the rest of the namespace after its init, not
		// with it: a process blocked in a FUSE call can outlive the init
		// for a moment and still write into the node's directory.
		errs = append(errs, waitNamespaceEmpty(ns, killTimeout))
	}
	// Normally gone with the init; a daemon started by nsenter into a
	// namespace that is not the init's (never by this package) would not be.
	errs = append(errs, d.signal(syscall.SIGKILL), d.wait(killTimeout), via.wait(killTimeout))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: kill: %w", n.Name, err)
	}
	n.mu.Lock()
	n.init, n.daemon, n.daemonVia = nil, nil, nil
	n.mu.Unlock()
	return nil
}

// nsenterArgs enter every namespace of the node's init; with --pid,
// nsenter forks so that the command is in the node's PID namespace (a
// child of nsenter, or of the node's init once nsenter is gone).
func nsenterArgs(initPid int) []string {
	return []string{"-t", strconv.Itoa(initPid), "--net", "--mount", "--pid", "--uts", "--"}
}

// StartDaemon starts safekitd in the node (without waiting for it: see
// WaitDaemon). Its output is appended to safekitd.log in the node's
// directory.
func (n *Node) StartDaemon() error {
	pid := n.InitPID()
	if pid == 0 {
		return fmt.Errorf("%s is down: Start it first", n.Name)
	}
	if d := n.DaemonPID(); d != 0 {
		return fmt.Errorf("%s: safekitd already runs (pid %d)", n.Name, d)
	}
	o := n.c.st.Options
	args := append(nsenterArgs(pid), filepath.Join(o.Bin, "safekitd"), "--listen", DaemonListen)
	args = append(args, o.DaemonArgs...)
	if n.c.nodeFlag {
		args = append(args, "--node", n.Name)
	}
	logPath := filepath.Join(n.Dir, "safekitd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== %s testcluster: %s\n", time.Now().Format(time.RFC3339), strings.Join(args[len(nsenterArgs(pid)):], " "))
	cmd := exec.Command(n.c.nsenter, args...)
	cmd.Env = n.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	via, err := startProc(cmd)
	if err != nil {
		return fmt.Errorf("%s: start safekitd: %w", n.Name, err)
	}
	d, err := childOf(via, 5*time.Second)
	if err != nil {
		return fmt.Errorf("%s: start safekitd: %w\n--- %s ---\n%s", n.Name, err, logPath, tailFile(logPath, 20))
	}
	n.mu.Lock()
	n.daemon, n.daemonVia = d, via
	n.mu.Unlock()
	return n.c.save()
}

// StopDaemon sends SIGTERM to safekitd and waits until it has ended (it
// stops its modules first); after daemonStopTimeout it is killed and the
// error says so.
func (n *Node) StopDaemon() error {
	return n.endDaemon(syscall.SIGTERM, daemonStopTimeout)
}

// KillDaemon kills safekitd with SIGKILL and waits until it has ended. Its
// module processes survive it, as on a real server.
func (n *Node) KillDaemon() error {
	return n.endDaemon(syscall.SIGKILL, killTimeout)
}

func (n *Node) endDaemon(sig syscall.Signal, timeout time.Duration) error {
	n.mu.Lock()
	d, via := n.daemon, n.daemonVia
	n.mu.Unlock()
	if !d.alive() {
		return fmt.Errorf("%s: safekitd is not running", n.Name)
	}
	var err error
	if err = d.signal(sig); err == nil {
		if werr := d.wait(timeout); werr != nil {
			_ = d.signal(syscall.SIGKILL)
			_ = d.wait(killTimeout)
			err = fmt.Errorf("%s: safekitd did not end within %v of signal %d: killed it", n.Name, timeout, sig)
		}
	}
	_ = via.wait(killTimeout)
	n.mu.Lock()
	n.daemon, n.daemonVia = nil, nil
	n.mu.Unlock()
	return errors.Join(err, n.c.save())
}

// WaitDaemon waits until `safekit level` answers inside the node.
func (n *Node) WaitDaemon(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	logPath := filepath.Join(n.Dir, "safekitd.log")
	for {
		if n.DaemonPID() == 0 {
			return fmt.Errorf("%s: safekitd is not running (it exited: the end of its log says why)\n--- %s ---\n%s", n.Name, logPath, tailFile(logPath, 20))
		}
		cmd := n.Command(n.safekitPath(), "level")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := runTimeout(cmd, levelTimeout)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: safekitd does not answer `safekit level` after %v: %v: %s\n--- %s ---\n%s", n.Name, timeout, err, strings.TrimSpace(out.String()), logPath, tailFile(logPath, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// runTimeout runs a Command, killing it (nsenter and what it forked in the
// node) after timeout.
func runTimeout(cmd *exec.Cmd, timeout time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		for _, pid := range childPids(cmd.Process.Pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("no answer within %v", timeout)
	}
}

// env is the environment of commands in the node: the caller's, with the
// node's SAFE and SAFEVAR, and a PATH that finds the node's safekit first
// (then the one of Options.Bin, until the daemon has installed it).
func (n *Node) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SAFE=") && !strings.HasPrefix(kv, "SAFEVAR=") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return append(env, "SAFE="+NodeSAFE, "SAFEVAR="+NodeSAFEVAR, "PATH="+NodeSAFE+":"+n.c.st.Options.Bin+":"+path)
}

// Command prepares args to run inside the node's namespaces, with the
// node's environment (see env); the working directory is the node's /.
// On a node that is down, Start and Run return an error saying so.
func (n *Node) Command(args ...string) *exec.Cmd {
	pid := n.InitPID()
	cmd := exec.Command(n.c.nsenter, append(nsenterArgs(pid), args...)...)
	cmd.Env = n.env()
	if pid == 0 {
		cmd.Err = fmt.Errorf("%s is down: Start it before running %q", n.Name, strings.Join(args, " "))
	}
	return cmd
}

// Run runs args in the node and returns its output. The error names the
// node, the command and the last line of stderr.
func (n *Node) Run(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd := n.Command(args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(e.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if msg != "" {
			msg = ": " + msg
		}
		return o.String(), e.String(), fmt.Errorf("%s: %s: %w%s", n.Name, strings.Join(args, " "), err, msg)
	}
	return o.String(), e.String(), nil
}

// safekitPath is the CLI the daemon installed in the node, or the one of
// Options.Bin before that.
func (n *Node) safekitPath() string {
	if _, err := os.Stat(filepath.Join(n.Dir, "safe", "safekit")); err == nil {
		return NodeSAFE + "/safekit"
	}
	return filepath.Join(n.c.st.Options.Bin, "safekit")
}

// Safekit runs the safekit CLI in the node.
func (n *Node) Safekit(args ...string) (stdout, stderr string, err error) {
	return n.Run(append([]string{n.safekitPath()}, args...)...)
}

// HostPath is the host path of path p of the node. Under /opt/safekit and
// /var/safekit it is in the node's directory, valid even while the node is
// down; any other path is reached through the init's root
// (/proc/<pid>/root), valid while the node runs (it panics when the node is
// down).
func (n *Node) HostPath(p string) string {
	p = filepath.Clean(p)
	for _, m := range []struct{ node, host string }{{NodeSAFE, "safe"}, {NodeSAFEVAR, "safevar"}} {
		if under(p, m.node) {
			return filepath.Join(n.Dir, m.host, strings.TrimPrefix(p, m.node))
		}
	}
	pid := n.InitPID()
	if pid == 0 {
		panic(fmt.Sprintf("testcluster: HostPath(%q): %s is down, and only %s and %s have a host path then", p, n.Name, NodeSAFE, NodeSAFEVAR))
	}
	return fmt.Sprintf("/proc/%d/root%s", pid, p)
}

// CutLan takes the node's interface on lan down, as if its cable were
// pulled: the node keeps its address, but nothing goes through.
func (n *Node) CutLan(lan string) error { return n.setLinks(lan, "down") }

// RestoreLan brings the node's interface on lan back up.
func (n *Node) RestoreLan(lan string) error { return n.setLinks(lan, "up") }

// CutAll cuts every lan of the node.
func (n *Node) CutAll() error { return n.setLinks("", "down") }

// RestoreAll restores every lan of the node.
func (n *Node) RestoreAll() error { return n.setLinks("", "up") }

// setLinks sets the node side of one lan ("" for all) up or down. The
// network namespace outlives the node's boots, so this works on a node
// that is down too.
func (n *Node) setLinks(lan, updown string) error {
	idx := []int{}
	if lan == "" {
		for i := range n.c.Lans {
			idx = append(idx, i)
		}
	} else {
		i, err := n.c.lanIndex(lan)
		if err != nil {
			return err
		}
		idx = append(idx, i)
	}
	var b bytes.Buffer
	for _, i := range idx {
		fmt.Fprintf(&b, "link set %s %s\n", nodeIfName(i), updown)
	}
	if err := ipBatch(n.netns, &b, false); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	return nil
}

// pidNamespace names the PID namespace of p ("" when p is gone).
func pidNamespace(p *proc) string {
	if !p.alive() {
		return ""
	}
	ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p.Pid))
	return ns
}

// waitNamespaceEmpty waits until no process is left in the PID namespace
// ns (as pidNamespace names it).
func waitNamespaceEmpty(ns string, timeout time.Duration) error {
	if ns == "" {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		left := namespaceMembers(ns)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of the node are still there %v after its init was killed", left, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// namespaceMembers lists the pids of the PID namespace ns.
func namespaceMembers(ns string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && l == ns {
			if _, state, err := procStat(pid); err == nil && state != 'Z' {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

package testcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a process on the host, named by pid and start time so that a pid
// reused by another process (after a reboot, or across `testcluster`
// commands) is never signalled.
type proc struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
	// done is closed when the process was our child and has been waited
	// for; nil for a process known only from the state file.
	done chan struct{}
}

// forker runs cmd.Start on one OS thread that never exits. The kernel
// sends a child its parent-death signal (Pdeathsig) when the thread that
// forked it ends, not the process: a node forked from a thread that some
// test code locked and let die would be killed in the middle of the test.
var forker = sync.OnceValue(func() chan func() {
	ch := make(chan func())
	go func() {
		runtime.LockOSThread() // and never unlocked: the thread lives as long as the process
		for f := range ch {
			f()
		}
	}()
	return ch
})

// startProc starts cmd and reaps it in the background.
func startProc(cmd *exec.Cmd) (*proc, error) {
	errc := make(chan error)
	forker() <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		return nil, err
	}
	p := &proc{Pid: cmd.Process.Pid, done: make(chan struct{})}
	p.Start, _, _ = procStat(p.Pid)
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// procStat reads the start time (clock ticks since boot) and the state
// letter of pid.
func procStat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0][0], err
}

// ppidOf reads the parent pid of pid.
func ppidOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// alive tells whether the process still runs (a zombie does not).
func (p *proc) alive() bool {
	if p == nil || p.Pid <= 0 {
		return false
	}
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
		}
	}
	start, state, err := procStat(p.Pid)
	return err == nil && (p.Start == 0 || start == p.Start) && state != 'Z' && state != 'X'
}

// signal sends sig if the process is still the one we started.
func (p *proc) signal(sig syscall.Signal) error {
	if !p.alive() {
		return nil
	}
	if err := syscall.Kill(p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill -%d %d: %w", sig, p.Pid, err)
	}
	return nil
}

// wait waits until the process has ended (and, for our child, has been
// reaped, so that it holds no namespace any more).
func (p *proc) wait(timeout time.Duration) error {
	if p == nil {
		return nil
	}
	deadline := time.Now().Add(timeout)
	if p.done != nil {
		select {
		case <-p.done:
			return nil
		case <-time.After(timeout):
			return fmt.Errorf("process %d still runs after %v", p.Pid, timeout)
		}
	}
	for p.alive() {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still runs after %v", p.Pid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// childOf waits until parent has a child and returns it: the process that
// nsenter forks into the node's PID namespace and that then execs the
// command.
func childOf(parent *proc, timeout time.Duration) (*proc, error) {
	deadline := time.Now().Add(timeout)
	for {
		if pids := childPids(parent.Pid); len(pids) > 0 {
			c := &proc{Pid: pids[0]}
			c.Start, _, _ = procStat(c.Pid)
			return c, nil
		}
		if !parent.alive() {
			return nil, errors.New("nsenter ended before forking the command")
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("nsenter (pid %d) forked nothing within %v", parent.Pid, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// childPids lists the children of pid. /proc/<pid>/task/<tid>/children
// needs CONFIG_PROC_CHILDREN; scanning /proc works everywhere.
func childPids(pid int) []int {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
		var out []int
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err == nil && ppidOf(n) == pid {
			out = append(out, n)
		}
	}
	return out
}

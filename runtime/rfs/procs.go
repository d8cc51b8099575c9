package rfs

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopUsers terminates the processes that still use files under dir (open
// descriptors, working or root directory, mapped files): the directory
// cannot be unmounted under them, and they must not write once
// replication stops. TERM first, KILL after a grace period.
// termGrace is how long a process has to exit after SIGTERM.
var termGrace = 5 * time.Second

func stopUsers(dir string, logf func(origin, level, format string, args ...any)) {
	grace := termGrace
	pids := users(dir)
	if len(pids) == 0 {
		return
	}
	for _, pid := range pids {
		logf("rfs", "W", "process %s (pid %d) still uses %s: sending SIGTERM", procName(pid), pid, dir)
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if len(users(dir)) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range users(dir) {
		logf("rfs", "W", "process %s (pid %d) still uses %s: sending SIGKILL", procName(pid), pid, dir)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline = time.Now().Add(grace)
	for time.Now().Before(deadline) && len(users(dir)) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
}

// users lists the processes (but this one) that hold something under dir.
func users(dir string) []int {
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if uses(pid, dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func uses(pid int, dir string) bool {
	base := "/proc/" + strconv.Itoa(pid)
	in := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, l := range []string{"cwd", "root"} {
		if t, err := os.Readlink(filepath.Join(base, l)); err == nil && in(t) && !(l == "root" && t == "/") {
			return true
		}
	}
	fds, _ := os.ReadDir(base + "/fd")
	for _, fd := range fds {
		if t, err := os.Readlink(base + "/fd/" + fd.Name()); err == nil && in(t) {
			return true
		}
	}
	f, err := os.Open(base + "/maps")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '/'); i >= 0 && in(strings.TrimSuffix(line[i:], " (deleted)")) {
			return true
		}
	}
	return false
}

func procName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

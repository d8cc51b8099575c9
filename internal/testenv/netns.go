package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// InNetns runs f on an OS thread that has entered the network namespace
// /run/netns/<ns>, and returns what f returns: sockets f makes and
// processes it starts belong to that namespace. The thread is never
// unlocked: it ends with f's goroutine instead of going back, in the wrong
// namespace, to the threads that run everything else.
func InNetns[T any](ns string, f func() (T, error)) (T, error) {
	type answer struct {
		v   T
		err error
	}
	c := make(chan answer, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			c <- answer{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			c <- answer{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		v, err := f()
		c <- answer{v, err}
	}()
	a := <-c
	return a.v, a.err
}

var netnsSeq atomic.Int32

// NewNetns creates a network namespace for the test (as root, with ip(8);
// the test skips or, in CI, fails without them), runs `ip -n <ns> <cmd>`
// for each of cmds (words separated by blanks), and deletes the namespace,
// with its interfaces, at the end of the test. prefix starts its name.
func NewNetns(t testing.TB, prefix string, cmds ...string) string {
	t.Helper()
	NeedRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		Need(t, "ip (iproute2)")
	}
	name := fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), netnsSeq.Add(1))
	IP(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	for _, c := range cmds {
		IP(t, append([]string{"-n", name}, strings.Fields(c)...)...)
	}
	return name
}

// IP runs ip(8) with args and returns its output; a failure fails the
// test.
func IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

package compattests

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/safe/archive"
)

// Stand-ins for the commands that published module scripts call, so that
// scenarios never touch the machine: virsh and systemctl keep their state
// in files under $STUBSTATE.
var stubs = map[string]string{
	// virsh: domains are files $STUBSTATE/virsh/<name> holding their state.
	"virsh": `#!/bin/bash
d="$STUBSTATE/virsh"; mkdir -p "$d"
echo "virsh $*" >> "$STUBSTATE/virsh.log"
cmd=$1; shift
[ "$1" = "--graceful" ] && shift
name=$1
state() { cat "$d/$1" 2>/dev/null; }
case "$cmd" in
define) echo "shut off" > "$d/$name" ;;
start)
	[ -f "$d/$name" ] || { echo "error: failed to get domain '$name'" >&2; exit 1; }
	[ "$(state "$name")" = running ] && { echo "error: Domain is already active" >&2; exit 1; }
	echo running > "$d/$name"; echo "Domain '$name' started" ;;
shutdown|destroy)
	[ -f "$d/$name" ] || { echo "error: failed to get domain '$name'" >&2; exit 1; }
	echo "shut off" > "$d/$name" ;;
domstate)
	[ -f "$d/$name" ] || { echo "error: failed to get domain '$name'" >&2; exit 1; }
	state "$name" ;;
list)
	if [ "$*" = "--all --name" ] || [ "$*" = "--name --all" ]; then ls "$d"; exit 0; fi
	echo " Id   Name   State"; echo "--------------------"
	i=1; for f in "$d"/*; do [ -f "$f" ] || continue; echo " $i    $(basename "$f")    $(cat "$f")"; i=$((i+1)); done ;;
*) echo "virsh stand-in: $cmd not supported" >&2; exit 1 ;;
esac
`,
	// systemctl: units are files $STUBSTATE/units/<name>.service holding
	// active or inactive.
	"systemctl": `#!/bin/bash
d="$STUBSTATE/units"; mkdir -p "$d"
echo "systemctl $*" >> "$STUBSTATE/systemctl.log"
cmd=$1; shift
unit=${1%.service}
case "$cmd" in
list-unit-files) for f in "$d"/*.service; do [ -f "$f" ] && echo "$(basename "$f") enabled"; done; true ;;
is-active) s=$(cat "$d/$unit.service" 2>/dev/null || echo inactive); echo "$s"; [ "$s" = active ] ;;
start) [ -f "$d/$unit.service" ] || { echo "Unit $unit.service not found." >&2; exit 5; }; echo active > "$d/$unit.service" ;;
stop|kill) [ -f "$d/$unit.service" ] && echo inactive > "$d/$unit.service"; true ;;
enable|disable|daemon-reload) true ;;
cat) [ -f "$d/$unit.service" ] ;;
*) true ;;
esac
`,
}

func writeStubs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// daemons maps a scenario's work directory to its safekitd.
var daemons = map[string]*exec.Cmd{}

// daemon start|stop|kill: run this node's safekitd in the background (and
// wait until it answers), stop it with SIGTERM (it stops its modules), or
// SIGKILL it.
func cmdDaemon(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: daemon start|stop|kill")
	}
	work := ts.Getenv("WORK")
	switch args[0] {
	case "start":
		log, err := os.OpenFile(filepath.Join(work, "safekitd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		ts.Check(err)
		cmd := exec.Command(filepath.Join(binDir, "safekitd"), "--listen", "127.0.0.1:"+ts.Getenv("WEBPORT"), "--syslog=false")
		cmd.Env = scriptEnv(ts)
		cmd.Stdout, cmd.Stderr = log, log
		ts.Check(cmd.Start())
		daemons[work] = cmd
		go func() { _ = cmd.Wait(); log.Close() }()
		ts.Defer(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				waitGone(cmd.Process.Pid, 60*time.Second)
			}
		})
		deadline := time.Now().Add(20 * time.Second)
		for {
			c := exec.Command(filepath.Join(binDir, "safekit"), "level")
			c.Env = scriptEnv(ts)
			if c.Run() == nil {
				return
			}
			if time.Now().After(deadline) {
				data, _ := os.ReadFile(filepath.Join(work, "safekitd.log"))
				ts.Fatalf("safekitd does not answer:\n%s", data)
			}
			time.Sleep(50 * time.Millisecond)
		}
	case "stop", "kill":
		cmd := daemons[work]
		if cmd == nil {
			ts.Fatalf("no daemon running")
		}
		sig := syscall.SIGTERM
		if args[0] == "kill" {
			sig = syscall.SIGKILL
		}
		ts.Check(cmd.Process.Signal(sig))
		if !waitGone(cmd.Process.Pid, 120*time.Second) {
			ts.Fatalf("safekitd did not end")
		}
		// Module processes die with their daemon; wait for them too.
		for _, pid := range modulePIDs(ts.Getenv("SAFEVAR"), "") {
			waitGone(pid, 10*time.Second)
		}
		delete(daemons, work)
	default:
		ts.Fatalf("usage: daemon start|stop|kill")
	}
}

func scriptEnv(ts *testscript.TestScript) []string {
	var env []string
	for _, k := range []string{"PATH", "SAFE", "SAFEVAR", "HOME", "STUBSTATE", "CORPUS", "WORK"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	return env
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil || isZombie(pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func isZombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && i+2 < len(data) && data[i+2] == 'Z'
}

// modulePIDs finds the module processes of a node (SAFEVAR) by their
// command line and environment; name "" matches every module.
func modulePIDs(safevar, name string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || isZombie(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) < 4 || filepath.Base(args[0]) != "safekitd" || args[1] != "module" {
			continue
		}
		if name != "" && args[3] != name {
			continue
		}
		environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if bytes.Contains(environ, []byte("SAFEVAR="+safevar+"\x00")) {
			out = append(out, pid)
		}
	}
	return out
}

// killmodule AM: SIGKILL the process of module AM of this node.
func cmdKillModule(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: killmodule AM")
	}
	pids := modulePIDs(ts.Getenv("SAFEVAR"), args[0])
	if len(pids) != 1 {
		ts.Fatalf("module %s: %d processes found", args[0], len(pids))
	}
	ts.Check(syscall.Kill(pids[0], syscall.SIGKILL))
	waitGone(pids[0], 10*time.Second)
}

// gone pidfile: the process whose pid is in pidfile no longer runs ("!
// gone" for: it runs).
func cmdGone(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: gone pidfile")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	ts.Check(err)
	// A process just killed takes a moment to become a zombie: wait a
	// little for it to be gone.
	alive := true
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		alive = syscall.Kill(pid, 0) == nil && !isZombie(pid)
		if !alive || neg || time.Now().After(deadline) {
			break
		}
	}
	if alive != neg {
		ts.Fatalf("process %d (from %s): running=%v", pid, args[0], alive)
	}
}

// pack dir file.safe: pack a module directory into an archive.
func cmdPack(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: pack dir file.safe")
	}
	ts.Check(archive.WriteFile(ts.MkAbs(args[1]), ts.MkAbs(args[0])))
}

// listenIn listens on network and address in the network namespace of n.
// The listener is the test's: it closes it.
func listenIn(t *testing.T, n *testcluster.Node, network, address string) net.Listener {
	t.Helper()
	l, err := testenv.InNetns(n.Netns(), func() (net.Listener, error) { return net.Listen(network, address) })
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	return l
}

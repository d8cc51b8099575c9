package module

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/safe"
)

// errdApp is a light module "app" whose start_both starts a process of a
// name of its own (a link to sleep, whose name the kernel takes as the
// command name) and writes its pid to $SAFEUSERVAR/app.pid; stop_both
// kills it. errd makes its <errd> from the process's name; more scripts
// may be given.
type errdApp struct {
	name string // the process's command name
	d    *Driver
	log  *modlog.Store
	m    layout.Module
}

func newErrdApp(t *testing.T, errd func(name string) *safe.Errd, more map[string]string) *errdApp {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	b := make([]byte, 3)
	rand.Read(b)
	a := &errdApp{name: "errdapp-" + hex.EncodeToString(b)}
	roots := layout.Roots{SAFE: t.TempDir(), SAFEVAR: t.TempDir()}
	a.m = roots.Module("app")
	for _, dir := range []string{a.m.UserVar(), a.m.UserBin()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(sleep, filepath.Join(a.m.UserBin(), a.name)); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"start_both": "#!/bin/sh\n\"$SAFEUSERBIN/" + a.name + "\" 3600 >/dev/null 2>&1 &\necho $! > \"$SAFEUSERVAR/app.pid\"\n",
		"stop_both":  "#!/bin/sh\n[ -f \"$SAFEUSERVAR/app.pid\" ] && kill $(cat \"$SAFEUSERVAR/app.pid\") 2>/dev/null\ntrue\n",
	}
	for n, body := range more {
		files[n] = body
	}
	for n, body := range files {
		if err := os.WriteFile(filepath.Join(a.m.UserBin(), n), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &safe.Config{Service: safe.Service{Mode: safe.ModeLight, MaxLoop: 3, LoopInterval: safe.Duration(24 * time.Hour)},
		User: &safe.User{NiceStopTimeout: safe.Duration(10 * time.Second), ForceStopTimeout: safe.Duration(10 * time.Second), UserLogSize: 2048},
		Errd: errd(a.name)}
	// Cleanups run last first: the application is killed once the
	// driver has stopped.
	t.Cleanup(func() {
		if pid := a.pid(t); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	a.d, a.log = runDriver(t, a.m, cfg, "", "", automaton.DefaultPersisted())
	return a
}

// pid is the pid of the process that start_both started last.
func (a *errdApp) pid(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.m.UserVar(), "app.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// kill kills the process of the application and waits until it has
// ended: gone, or a zombie until the process that adopted it collects it.
func (a *errdApp) kill(t *testing.T) {
	t.Helper()
	pid := a.pid(t)
	if pid <= 0 {
		t.Fatal("no pid of the application")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := strings.LastIndexByte(string(stat), ')'); err != nil || (i > 0 && i+2 < len(stat) && stat[i+2] == 'Z') {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running after SIGKILL", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (a *errdApp) list(t *testing.T) ErrdList {
	t.Helper()
	srv := httptest.NewServer(a.d.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/errd")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l ErrdList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l
}

// wantLogPrefix is wantLog with lines that start with each text.
func wantLogPrefix(t *testing.T, store *modlog.Store, after int, prefixes ...string) int {
	t.Helper()
	all := logLines(t, store)
	i := after
	for _, p := range prefixes {
		for i++; i < len(all) && !strings.HasPrefix(all[i], p); i++ {
		}
		if i >= len(all) {
			t.Fatalf("the log has no line starting with %q after line %d; it holds:\n%s", p, after, logText(t, store))
		}
	}
	return i
}

// TestErrdRestart: the process of a <proc action="restart" class="both">
// is polled from one polltimer after start_both; killed, it is found
// missing at the next poll: "Process X not running", proc.X down, a
// restart called by errd (counted toward maxloop), and start_both starts
// it again. errd off stops the polling; once on again, the missing process
// is acted on.
func TestErrdRestart(t *testing.T) {
	const poll = 100 * time.Millisecond
	a := newErrdApp(t, func(name string) *safe.Errd {
		return &safe.Errd{PollTimer: safe.Duration(poll), Procs: []safe.Proc{{Name: name, AtLeast: 1, AtMax: -1, Action: "restart", Class: "both"}}}
	}, nil)
	res := "proc." + a.name

	if l := a.list(t); !l.On || len(l.Procs) != 1 || l.Procs[0].Monitored || l.Procs[0].State != "init" || l.Procs[0].Running != -1 {
		t.Errorf("errd list of a stopped module: %+v", l)
	}
	post(t, a.d, automaton.Command{Action: "start"})
	waitState(t, a.d, a.log, "UP Ready")
	waitLogCount(t, a.log, "Resource "+res+" set to up by errd", 1)
	n := wantLogPrefix(t, a.log, -1, "userplug S: Script start_both",
		"errd I: Monitoring of "+res+" started (processes named "+a.name+", every 100ms, first poll in 100ms)",
		"errd I: Resource "+res+" set to up by errd")
	// The log is written before the state is published: wait for it.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		l := a.list(t)
		if len(l.Procs) == 1 && l.Procs[0].Monitored && l.Procs[0].State == "up" && l.Procs[0].Running == 1 && l.Procs[0].Class == "both" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("errd list of a monitored process: %+v", l)
		}
	}

	first := a.pid(t)
	a.kill(t)
	waitLogCount(t, a.log, "Resource "+res+" set to up by errd", 2)
	waitState(t, a.d, a.log, "UP Ready")
	wantLogPrefix(t, a.log, n, "errd E: Process "+a.name+" not running", "errd C: Resource "+res+" set to down by errd",
		"heartplug U: Action restart called by errd", "errd I: Monitoring of "+res+" stopped",
		"userplug S: Script stop_both", "userplug S: Script start_both", "errd I: Monitoring of "+res+" started (processes named "+a.name+", every 100ms, first poll in 100ms)",
		"errd I: Resource "+res+" set to up by errd")
	if second := a.pid(t); second == first || syscall.Kill(second, 0) != nil {
		t.Errorf("the application was not started again (pid %d, then %d)", first, second)
	}
	if p := a.d.Snapshot().Persisted; p.LoopCount != 1 {
		t.Errorf("maxloop count %d after one restart by errd, want 1", p.LoopCount)
	}

	post(t, a.d, automaton.Setting{Name: "errd", On: false, By: "root"})
	wantLogPrefix(t, a.log, -1, "errd I: Monitoring of "+res+" stopped", "heart I: Resource usersetting.errd set to off by root")
	a.kill(t)
	time.Sleep(5 * poll)
	if got := countLog(t, a.log, "not running"); got != 1 {
		t.Fatalf("errd off, the missing process was seen:\n%s", logText(t, a.log))
	}
	if l := a.list(t); l.On || l.Procs[0].Monitored {
		t.Errorf("errd list with errd off: %+v", l)
	}
	post(t, a.d, automaton.Setting{Name: "errd", On: true, By: "root"})
	waitLogCount(t, a.log, "Resource "+res+" set to up by errd", 3)
	if got := countLog(t, a.log, "Action restart called by errd"); got != 2 {
		t.Errorf("%d restarts by errd, want 2:\n%s", got, logText(t, a.log))
	}

	post(t, a.d, automaton.Command{Action: "stop"})
	waitState(t, a.d, a.log, "STOP NotReady")
	wantLogPrefix(t, a.log, -1, "errd I: Monitoring of "+res+" stopped", "userplug S: Script stop_both")
}

// TestErrdHandler: a <proc> of a class of the module's own, switched with
// safekit errd enable|disable, whose action is a handler of bin/. The
// handler gets the module and the resource, and the scripts' environment;
// while the process stays missing it runs again at each poll after it
// ended with 0, and does not count toward maxloop; once it fails, the
// module stops and starts again, called by errd.
func TestErrdHandler(t *testing.T) {
	const poll = 100 * time.Millisecond
	handler := "#!/bin/sh\necho \"$1 $2 $SAFEMODULE\" >> \"$SAFEUSERVAR/handler.log\"\nexit $(cat \"$SAFEUSERVAR/handler.exit\" 2>/dev/null || echo 0)\n"
	a := newErrdApp(t, func(name string) *safe.Errd {
		return &safe.Errd{PollTimer: safe.Duration(poll), Procs: []safe.Proc{{Name: name, AtLeast: 1, AtMax: -1, Action: "restart_app", Class: "mine"}}}
	}, map[string]string{"restart_app": handler})
	res := "proc." + a.name

	if err := a.d.Post(t.Context(), automaton.ErrdClass{Class: "mine", On: true, By: "root"}); err == nil {
		t.Error("errd enable of a stopped module: no error")
	}
	post(t, a.d, automaton.Command{Action: "start"})
	waitState(t, a.d, a.log, "UP Ready")
	time.Sleep(2 * poll)
	if countLog(t, a.log, "Monitoring of "+res+" started") != 0 {
		t.Fatalf("class mine monitored before errd enable:\n%s", logText(t, a.log))
	}
	post(t, a.d, automaton.ErrdClass{Class: "mine", On: true, By: "root"})
	waitLogCount(t, a.log, "Resource "+res+" set to up by errd", 1)
	n := wantLogPrefix(t, a.log, -1, "errd I: Process monitoring of class mine enabled by root", "errd I: Monitoring of "+res+" started")

	a.kill(t)
	hlog := filepath.Join(a.m.UserVar(), "handler.log")
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(hlog)
		if strings.Count(string(b), "\n") >= 2 {
			if line := strings.SplitN(string(b), "\n", 2)[0]; line != "app "+res+" app" {
				t.Errorf("the handler got %q, want %q", line, "app "+res+" app")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the handler did not run twice:\n%s\n%s", b, logText(t, a.log))
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantLogPrefix(t, a.log, n, "errd E: Process "+a.name+" not running", "errd C: Resource "+res+" set to down by errd",
		"errd U: Handler restart_app called by errd", "userplug S: Script restart_app", "errd E: Process "+a.name+" not running",
		"errd U: Handler restart_app called by errd")
	if p := a.d.Snapshot().Persisted; p.LoopCount != 0 {
		t.Errorf("maxloop count %d after handlers, want 0", p.LoopCount)
	}

	if err := os.WriteFile(filepath.Join(a.m.UserVar(), "handler.exit"), []byte("3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLogCount(t, a.log, "heart U: Action start called automatically", 1)
	waitState(t, a.d, a.log, "UP Ready")
	wantLogPrefix(t, a.log, n, "errd E: Handler restart_app of "+res+" ended with exit code 3: stopstart",
		"heartplug U: Action stopstart called by errd", "errd I: Monitoring of "+res+" stopped", "userplug S: Script stop_both")
	if p := a.d.Snapshot().Persisted; p.LoopCount != 1 {
		t.Errorf("maxloop count %d after the stopstart of a failed handler, want 1", p.LoopCount)
	}
	// The stop closed the class: the start scripts would enable it again.
	if l := a.list(t); l.Procs[0].Monitored {
		t.Errorf("class mine still monitored after the stopstart: %+v", l)
	}
	post(t, a.d, automaton.Command{Action: "stop"})
	waitState(t, a.d, a.log, "STOP NotReady")
}

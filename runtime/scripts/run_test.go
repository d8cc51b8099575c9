package scripts

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/safe"
)

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEnviron(t *testing.T) {
	m := layout.Roots{SAFE: "/opt/safekit", SAFEVAR: "/var/safekit"}.Module("vm1")
	env := Environ(m, []safe.Var{{Name: "VM_NAME", Value: "vm1"}, {Name: "SAFE", Value: "/not/this"}},
		[]string{"PATH=/stubs:/usr/bin", "HOME=/root", "SAFEMODULE=other"})
	got := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := got[k]; dup {
			t.Fatalf("%s set twice in %v", k, env)
		}
		got[k] = v
	}
	want := map[string]string{
		"SAFE":         "/opt/safekit",
		"SAFEBIN":      "/opt/safekit/private/bin",
		"SAFEVAR":      "/var/safekit",
		"SAFEMODULE":   "vm1",
		"SAFEUSERBIN":  "/opt/safekit/private/modules/vm1/bin",
		"SAFEUSERCONF": "/opt/safekit/private/modules/vm1/conf",
		"SAFEUSERVAR":  "/var/safekit/modules/vm1",
		"VM_NAME":      "vm1",
		"HOME":         "/root",
		// The daemon's PATH first (stand-ins win), then SAFE and SAFEBIN.
		"PATH": "/stubs:/usr/bin:/opt/safekit:/opt/safekit/private/bin",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestUserlogNameAndSuffix(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "start_prim", "#!/bin/bash\necho \"ran $*\"\n")
	at := time.Date(2024, 2, 12, 9, 14, 10, 0, time.Local)
	var names []string
	for i := 0; i < 2; i++ {
		res := Run(context.Background(), Spec{Script: "start_prim", Path: script, Args: []string{"WAIT", "ALONE", "start"},
			LogDir: dir, Clock: func() time.Time { return at }})
		if !res.OK() {
			t.Fatalf("run: %s", res.Describe())
		}
		names = append(names, res.LogFile)
	}
	want := []string{"userlog_2024-02-12T091410_start_prim.ulog", "userlog_2024-02-12T091410_start_prim_2.ulog"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("log files %v, want %v", names, want)
	}
	data, err := os.ReadFile(filepath.Join(dir, want[0]))
	if err != nil || string(data) != "ran WAIT ALONE start\n" {
		t.Fatalf("userlog = %q, %v", data, err)
	}
}

func TestTimeoutKillsTheWholeGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	script := writeScript(t, dir, "stop_prim", "#!/bin/bash\nsleep 1000 &\necho $! > "+pidFile+"\nsleep 1000\n")
	start := time.Now()
	res := Run(context.Background(), Spec{Script: "stop_prim", Path: script, Timeout: 300 * time.Millisecond, LogDir: dir})
	if !res.TimedOut {
		t.Fatalf("not timed out: %+v", res)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %s", el)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the timed-out script still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(res.Tail, "timeout 300ms expired") {
		t.Fatalf("tail does not say why: %q", res.Tail)
	}
}

func TestShAsBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("skipped: needs bash")
	}
	dir := t.TempDir()
	// let and == are bash-isms that dash refuses.
	script := writeScript(t, dir, "s", "#!/bin/sh\nlet i=1+1\nif [ \"$i\" == 2 ]; then echo two; fi\n")
	res := Run(context.Background(), Spec{Script: "s", Path: script, ShAsBash: true})
	if !res.OK() || strings.TrimSpace(res.Tail) != "two" {
		t.Fatalf("with bash: %s %q", res.Describe(), res.Tail)
	}
	if target, _ := os.Readlink("/bin/sh"); strings.Contains(target, "dash") {
		res = Run(context.Background(), Spec{Script: "s", Path: script, ShAsBash: false})
		if strings.TrimSpace(res.Tail) == "two" {
			t.Fatalf("without the setting, /bin/sh (dash) ran the bash-isms: %q", res.Tail)
		}
	}
}

func TestNoShebangAndMissingScript(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "s", "echo plain\n")
	if res := Run(context.Background(), Spec{Script: "s", Path: script, ShAsBash: true}); !res.OK() || strings.TrimSpace(res.Tail) != "plain" {
		t.Fatalf("no shebang: %s %q", res.Describe(), res.Tail)
	}
	res := Run(context.Background(), Spec{Script: "x", Path: filepath.Join(dir, "missing")})
	if res.Err == nil || res.OK() {
		t.Fatalf("missing script ran: %+v", res)
	}
}

func TestCapUserlogs(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i < 5; i++ {
		p := filepath.Join(dir, "userlog_2024-01-01T00000"+strconv.Itoa(i)+"_s.ulog")
		if err := os.WriteFile(p, make([]byte, 400), 0o644); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(time.Duration(i-10) * time.Minute)
		_ = os.Chtimes(p, old, old)
	}
	keep := filepath.Join(dir, "userlog_2024-01-01T000000_s.ulog") // the oldest, but the current run's
	CapUserlogs(dir, 1024, keep)
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := "userlog_2024-01-01T000000_s.ulog,userlog_2024-01-01T000004_s.ulog"
	if strings.Join(left, ",") != want {
		t.Fatalf("left %v, want %s", left, want)
	}
}

func TestStartStop(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "checker", "#!/bin/bash\ntrap 'exit 0' TERM\nwhile :; do sleep 1; done\n")
	p, err := Start(Spec{Script: "checker", Path: script, LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		t.Fatal("ended by itself")
	case <-time.After(100 * time.Millisecond):
	}
	p.Stop()
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the program ended")
	}
	if syscall.Kill(-p.Pgid, 0) == nil {
		t.Fatalf("process group %d survives Stop", p.Pgid)
	}
}

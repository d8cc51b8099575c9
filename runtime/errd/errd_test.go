package errd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/safekit-oss/safekit/safe"
)

// fakeProc writes a /proc tree: pid -> "comm state" and its argument list.
func fakeProc(t *testing.T, procs map[int][2]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, fmt.Sprint(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		comm, state := p[0][:len(p[0])-2], p[0][len(p[0])-1:]
		stat := fmt.Sprintf("%d (%s) %s 1 %d %d 0 -1 4194560\n", pid, comm, state, pid, pid)
		var cmdline string
		if p[1] != "" {
			cmdline = strings.ReplaceAll(p[1], " ", "\x00") + "\x00"
		}
		for name, data := range map[string]string{"stat": stat, "cmdline": cmdline} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Entries that are not processes.
	for _, d := range []string{"sys", "net"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "uptime"), []byte("1.0 1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestCountFakeProc: name (as the kernel truncates it), nameregex and
// argregex against a /proc tree of the test; zombies and entries that are
// not processes never count.
func TestCountFakeProc(t *testing.T) {
	root := fakeProc(t, map[int][2]string{
		1:   {"systemd S", "/sbin/init splash"},
		10:  {"mysqld S", "/usr/sbin/mysqld --datadir=/var/lib/mysql"},
		11:  {"mysqld S", "/usr/sbin/mysqld --datadir=/srv/db2"},
		12:  {"mysqld Z", ""},
		20:  {"postgresql-serv R", "/opt/pg/postgresql-server-main -D /data"},
		30:  {"ora_pmon_db1 S", "ora_pmon_db1"},
		31:  {"ora_smon_db1 S", "ora_smon_db1"},
		32:  {"ora_pmon_db2 D", "ora_pmon_db2"},
		33:  {"xora_pmon S", "xora_pmon"},
		40:  {"my (app) x S", "/opt/app/bin/my (app) x --serve"},
		50:  {"kworker/0:1 I", ""},
		60:  {"vi S", "vi /myrep/myfile.txt"},
		61:  {"vi T", "vi /tmp/other"},
		999: {"mysqld X", ""},
	})
	for _, tc := range []struct {
		proc safe.Proc
		want int
	}{
		{safe.Proc{Name: "mysqld"}, 2},
		{safe.Proc{Name: "mysql"}, 0},
		{safe.Proc{Name: "mysqld", ArgRegex: "--datadir=/var/lib/mysql"}, 1},
		{safe.Proc{Name: "mysqld", ArgRegex: "^/usr/sbin/mysqld --datadir=/srv/db2$"}, 1},
		// A name longer than 15 bytes is compared as the kernel keeps it,
		// so a longer name with the same 15 first bytes matches too.
		{safe.Proc{Name: "postgresql-server-main"}, 1},
		{safe.Proc{Name: "postgresql-serv"}, 1},
		{safe.Proc{Name: "postgresql-server-other"}, 1},
		{safe.Proc{Name: "postgresql-ser"}, 0},
		// nameregex searches the command name (anchor it to match whole).
		{safe.Proc{Name: "oracle", NameRegex: "ora_.*"}, 4},
		{safe.Proc{Name: "oracle", NameRegex: "^ora_.*"}, 3},
		{safe.Proc{Name: "oracle", NameRegex: "^ora_.*", ArgRegex: ".*db1$"}, 2},
		{safe.Proc{Name: "oracle", NameRegex: "^ora_(pmon|smon)_db2$"}, 1},
		{safe.Proc{Name: "my (app) x"}, 1},
		{safe.Proc{Name: "app", NameRegex: `\(app\)`, ArgRegex: "--serve$"}, 1},
		// The examples of the User's Guide §13.10.3; a stopped (T)
		// process still runs.
		{safe.Proc{Name: "vi", ArgRegex: ".*myfile.*"}, 1},
		{safe.Proc{Name: "vi", ArgRegex: "/myrep/myfile"}, 1},
		{safe.Proc{Name: "vi"}, 2},
		// A kernel thread has an empty argument list.
		{safe.Proc{Name: "kworker/0:1"}, 1},
		{safe.Proc{Name: "kworker/0:1", ArgRegex: "."}, 0},
		// Case-sensitive on Linux.
		{safe.Proc{Name: "Mysqld"}, 0},
		{safe.Proc{Name: "m", NameRegex: "^MYSQLD$"}, 0},
	} {
		w, err := New(tc.proc)
		if err != nil {
			t.Fatal(err)
		}
		w.ProcRoot = root
		got, err := w.Count(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%+v (%s): %d processes, want %d", tc.proc, w, got, tc.want)
		}
	}

	w, _ := New(safe.Proc{Name: "mysqld"})
	w.ProcRoot = filepath.Join(root, "missing")
	if _, err := w.Count(t.Context()); err == nil {
		t.Error("no error from a /proc that cannot be read")
	}
	if _, err := New(safe.Proc{Name: "x", ArgRegex: "("}); err == nil {
		t.Error("no error from an invalid argregex")
	}
}

// TestVerdict: atleast and atmax as the User's Guide §13.10.3 defines
// them, with the messages of the module log.
func TestVerdict(t *testing.T) {
	for _, tc := range []struct {
		proc safe.Proc
		n    int
		want string // "" when ok
	}{
		{safe.Proc{Name: "appli", AtLeast: 1, AtMax: -1}, 1, ""},
		{safe.Proc{Name: "appli", AtLeast: 1, AtMax: -1}, 5, ""},
		{safe.Proc{Name: "appli", AtLeast: 1, AtMax: -1}, 0, "Process appli not running"},
		{safe.Proc{Name: "mySQL", Service: true, AtLeast: 1, AtMax: -1}, 0, "Service mySQL not running"},
		{safe.Proc{Name: "mySQL", Service: true, AtLeast: 1, AtMax: -1}, 1, ""},
		{safe.Proc{Name: "oracle", AtLeast: 3, AtMax: -1}, 2, "Process oracle: 2 running, fewer than atleast=3"},
		{safe.Proc{Name: "oracle", AtLeast: 3, AtMax: -1}, 3, ""},
		// atleast -1 disables the test.
		{safe.Proc{Name: "appli", AtLeast: -1, AtMax: -1}, 0, ""},
		// atmax: reaching it is an error; 0 acts as soon as one runs.
		{safe.Proc{Name: "appli", AtLeast: -1, AtMax: 0}, 0, ""},
		{safe.Proc{Name: "appli", AtLeast: -1, AtMax: 0}, 1, "Process appli: 1 running, atmax=0 reached"},
		{safe.Proc{Name: "appli", AtLeast: 1, AtMax: 3}, 2, ""},
		{safe.Proc{Name: "appli", AtLeast: 1, AtMax: 3}, 3, "Process appli: 3 running, atmax=3 reached"},
		{safe.Proc{Name: "appli", AtLeast: 1, AtMax: 3}, 0, "Process appli not running"},
	} {
		ok, msg := Verdict(tc.proc, tc.n)
		if ok != (tc.want == "") || msg != tc.want {
			t.Errorf("%+v with %d: %v %q, want %q", tc.proc, tc.n, ok, msg, tc.want)
		}
	}
}

// TestCountRealProcesses runs sleep under a name of the test (a symbolic
// link, whose name the kernel takes as the command name) and counts it in
// the real /proc: by name, by its truncated name, by nameregex and by
// argregex; a killed process that its parent has not collected yet (a
// zombie) no longer counts.
func TestCountRealProcesses(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep command")
	}
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	// 22 bytes: the kernel keeps "errdtest-<8 hex>-l" (15 bytes).
	name := "errdtest-" + id + "-long"
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(sleep, link); err != nil {
		t.Fatal(err)
	}
	start := func(arg string) *exec.Cmd {
		c := exec.Command(link, arg)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c.Process.Kill()
			c.Wait()
		})
		return c
	}
	a := start("3600")
	start("3601")
	count := func(p safe.Proc) int {
		t.Helper()
		w, err := New(p)
		if err != nil {
			t.Fatal(err)
		}
		n, err := w.Count(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	cases := []struct {
		proc safe.Proc
		want int
	}{
		{safe.Proc{Name: name}, 2},
		{safe.Proc{Name: name[:CommLen]}, 2},
		{safe.Proc{Name: name[:CommLen-1]}, 0},
		// nameregex sees the truncated name too.
		{safe.Proc{Name: "errdtest", NameRegex: "^errdtest-" + id[:6] + "$"}, 2},
		{safe.Proc{Name: "errdtest", NameRegex: "^errdtest-" + id}, 0},
		{safe.Proc{Name: name, ArgRegex: "/" + name + " 3600$"}, 1},
		{safe.Proc{Name: name, ArgRegex: " 360[01]$"}, 2},
		{safe.Proc{Name: "sleep", ArgRegex: id}, 0},
	}
	for _, tc := range cases {
		if got := count(tc.proc); got != tc.want {
			t.Errorf("%+v: %d processes, want %d", tc.proc, got, tc.want)
		}
	}

	// Killed but not collected: a zombie until Wait.
	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, state, ok := readStat(filepath.Join("/proc", fmt.Sprint(a.Process.Pid)))
		if ok && state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d is not a zombie after SIGKILL (state %c)", a.Process.Pid, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := count(safe.Proc{Name: name}); got != 1 {
		t.Errorf("%d processes with one killed (a zombie), want 1", got)
	}
	a.Wait()
	if got := count(safe.Proc{Name: name, ArgRegex: "3600"}); got != 0 {
		t.Errorf("%d processes with argument 3600 once it is collected, want 0", got)
	}
}

// TestServiceActive runs a systemctl of the test: "active" is running,
// any other answer (and its non-zero exit) is not; a systemctl that
// cannot run is an error.
func TestServiceActive(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\n[ \"$1\" = is-active ] || exit 3\ncase \"$2\" in\non) echo active ;;\nstarting) echo activating; exit 3 ;;\n*) echo inactive; exit 3 ;;\nesac\n"
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	for name, want := range map[string]bool{"on": true, "starting": false, "off": false} {
		got, err := ServiceActive(t.Context(), name)
		if err != nil || got != want {
			t.Errorf("service %s: %v, %v; want %v", name, got, err, want)
		}
	}
	w, _ := New(safe.Proc{Name: "on", Service: true})
	if n, err := w.Count(t.Context()); n != 1 || err != nil {
		t.Errorf("count of an active service: %d, %v", n, err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := ServiceActive(t.Context(), "on"); err == nil {
		t.Error("no error without systemctl")
	}
}

// TestRun: the first poll one interval after the start, then every
// interval, each reported; start_after n skips the n-1 first polls; once
// ctx ends nothing more is reported, not even a poll it interrupted.
func TestRun(t *testing.T) {
	for _, tc := range []struct {
		startAfter int
		want       string
	}{
		{0, "[10s 20s 30s 40s 50s]"},
		{1, "[10s 20s 30s 40s 50s]"},
		{3, "[30s 40s 50s]"},
	} {
		synctest.Test(t, func(t *testing.T) {
			start := time.Now()
			var polls, reports []time.Duration
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() {
				Run(ctx, 10*time.Second, tc.startAfter, func(context.Context) Result {
					polls = append(polls, time.Since(start))
					return Result{Count: len(polls)}
				}, func(r Result) { reports = append(reports, time.Since(start)) })
				close(done)
			}()
			time.Sleep(55 * time.Second)
			cancel()
			<-done
			if fmt.Sprint(polls) != tc.want || fmt.Sprint(reports) != tc.want {
				t.Errorf("start_after=%d: polls at %v, reports at %v; want %s", tc.startAfter, polls, reports, tc.want)
			}
		})
	}

	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		started, done := make(chan struct{}), make(chan struct{})
		reported := false
		go func() {
			Run(ctx, time.Second, 0, func(ctx context.Context) Result {
				close(started)
				<-ctx.Done()
				return Result{Count: 1}
			}, func(Result) { reported = true })
			close(done)
		}()
		<-started
		cancel()
		<-done
		if reported {
			t.Error("a poll interrupted by the stop was reported")
		}
	})
}

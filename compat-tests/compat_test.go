// Package compattests runs the safekit command line as a user does, on the
// published modules of the compat corpus: testscript scenarios in
// testdata/*.txtar, each on a fresh node (its own SAFE and SAFEVAR under
// $WORK), with the real safekit and safekitd binaries built once.
package compattests

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/safekit-oss/safekit/internal/testenv"
)

// binDir holds the binaries built for the scenarios.
var binDir string

// privateDirs are the system directories that module scripts may write
// to; in the private mount namespace of the tests they are empty tmpfs, so
// that scenarios never change the machine.
var privateDirs = []string{"/etc/systemd/system", "/run/systemd/system"}

// overlaidDirs get a copy-on-write overlay in the private mount namespace:
// the replicated directories the published modules name (/var/lib/mysql,
// /var/lib/libvirt/images/vm1, /opt/firebird/...) must exist for `safekit
// config`, and the tests create them there without changing the machine.
var overlaidDirs = []string{"/var", "/opt"}

func TestMain(m *testing.M) {
	if reexecInMountNamespace() {
		return
	}
	dir, err := os.MkdirTemp("", "safekit-compat-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, c := range []string{"safekit", "safekitd"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c), "./cmd/"+c)
		cmd.Dir = testenv.RepoRoot()
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", c, err)
			os.Exit(1)
		}
	}
	cmd := exec.Command("go", "run", "./internal/tools/mksafe", "-src", "modules/templates", "-out", filepath.Join(dir, "templates"))
	cmd.Dir = testenv.RepoRoot()
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "packing the templates: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// reexecInMountNamespace runs the tests again in a private mount namespace
// (as root, with unshare), with tmpfs over privateDirs. It returns true in
// the parent, which has then exited with the child's status. Without root
// the tests run here, and the scenarios that need the namespace skip (or
// fail in CI).
func reexecInMountNamespace() bool {
	if os.Getenv("SAFEKIT_MNTNS") != "" {
		for _, d := range privateDirs {
			// Only existing directories: creating a mount point would
			// change the machine.
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				_ = syscall.Mount("tmpfs", d, "tmpfs", 0, "mode=0755")
			}
		}
		scratch, err := os.MkdirTemp("", "safekit-compat-ovl-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// A tmpfs holds the upper layers, so that they go away with the
		// namespace.
		if err := syscall.Mount("tmpfs", scratch, "tmpfs", 0, "mode=0700"); err != nil {
			fmt.Fprintln(os.Stderr, "tmpfs for the overlays:", err)
			os.Exit(1)
		}
		for i, d := range overlaidDirs {
			up, work := filepath.Join(scratch, fmt.Sprint(i), "up"), filepath.Join(scratch, fmt.Sprint(i), "work")
			_ = os.MkdirAll(up, 0o755)
			_ = os.MkdirAll(work, 0o755)
			if err := syscall.Mount("overlay", d, "overlay", 0, "lowerdir="+d+",upperdir="+up+",workdir="+work); err != nil {
				fmt.Fprintf(os.Stderr, "overlay on %s: %v\n", d, err)
				os.Exit(1)
			}
		}
		return false
	}
	unshare, err := exec.LookPath("unshare")
	if os.Geteuid() != 0 || err != nil {
		return false
	}
	args := append([]string{"--mount", "--propagation", "private", os.Args[0]}, os.Args[1:]...)
	cmd := exec.Command(unshare, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "SAFEKIT_MNTNS=1")
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "unshare:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

func TestScripts(t *testing.T) {
	corpus := testenv.CorpusDir(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			work := e.WorkDir
			e.Setenv("PATH", binDir+string(os.PathListSeparator)+e.Getenv("PATH"))
			e.Setenv("SAFE", filepath.Join(work, "opt"))
			e.Setenv("SAFEVAR", filepath.Join(work, "var"))
			e.Setenv("CORPUS", corpus)
			e.Setenv("TEMPLATES", filepath.Join(binDir, "templates"))
			e.Setenv("HOME", work)
			stubs := filepath.Join(work, "stubs")
			if err := writeStubs(stubs); err != nil {
				return err
			}
			e.Setenv("PATH", stubs+string(os.PathListSeparator)+e.Getenv("PATH"))
			e.Setenv("STUBSTATE", filepath.Join(work, "stubstate"))
			// Each scenario gets its own web port so that scenarios may run
			// in parallel.
			e.Setenv("WEBPORT", fmt.Sprint(freePort(t)))
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "root":
				return os.Geteuid() == 0, nil
			case "mntns":
				return os.Getenv("SAFEKIT_MNTNS") != "", nil
			case "bash":
				_, err := exec.LookPath("bash")
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfor":    cmdWaitFor,
			"sigkill":    cmdSigkill,
			"edit":       cmdEdit,
			"grepcount":  cmdGrepCount,
			"daemon":     cmdDaemon,
			"pack":       cmdPack,
			"killmodule": cmdKillModule,
			"gone":       cmdGone,
		},
	})
}

// waitfor [-t seconds] file pattern: wait until file exists and contains
// pattern (a plain substring).
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	timeout := 60 * time.Second
	if len(args) > 2 && args[0] == "-t" {
		d, err := time.ParseDuration(args[1] + "s")
		ts.Check(err)
		timeout, args = d, args[2:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: waitfor [-t seconds] file substring")
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(path)
		found := err == nil && strings.Contains(string(data), args[1])
		if found != neg {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("after %s, %s does not contain %q:\n%s", timeout, args[0], args[1], data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sigkill pidfile: SIGKILL the process whose pid is in pidfile.
func cmdSigkill(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: sigkill pidfile")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	var pid int
	_, err = fmt.Sscan(string(data), &pid)
	ts.Check(err)
	ts.Check(syscall.Kill(pid, syscall.SIGKILL))
	// Wait until it is gone, so that the next command sees a dead process.
	waitGone(pid, 2*time.Second)
}

// edit file old new: replace the first occurrence of old by new in file.
func cmdEdit(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: edit file old new")
	}
	path := ts.MkAbs(args[0])
	data, err := os.ReadFile(path)
	ts.Check(err)
	if !strings.Contains(string(data), args[1]) {
		ts.Fatalf("%s does not contain %q", args[0], args[1])
	}
	ts.Check(os.WriteFile(path, []byte(strings.Replace(string(data), args[1], args[2], 1)), 0o644))
}

// grepcount n file substring: file contains substring exactly n times.
func cmdGrepCount(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: grepcount n file substring")
	}
	data, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	n := strings.Count(string(data), args[2])
	if fmt.Sprint(n) != args[0] {
		ts.Fatalf("%s contains %q %d times, not %s", args[1], args[2], n, args[0])
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

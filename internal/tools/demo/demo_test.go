package main

// The README's main job, run the way a user runs it: scripts/demo.sh, as a
// separate process, on this machine's real KVM stack. The check mode is
// what CI relies on to keep `make demo` working; the interrupt test proves
// that Ctrl-C in the interactive mode removes everything. They need root
// and the KVM packages: outside CI they skip saying so, in CI they fail.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/kvmtest"
	"github.com/safekit-oss/safekit/internal/testenv"
)

// demoTimeout bounds one run of the demo; a healthy one takes under a
// minute on two busy cores.
const demoTimeout = 5 * time.Minute

// buildDir is where the script builds the binaries and templates for these
// tests: not the repository's bin/ and build/, which other tests may be
// using while these run.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "safekit-demo-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// demoCmd is scripts/demo.sh with args, building into buildDir, in its own
// process group (as a shell runs a foreground job).
func demoCmd(ctx context.Context, args ...string) *exec.Cmd {
	root := testenv.RepoRoot()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "demo.sh"), args...)
	cmd.Dir = root
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEMO_CI=") && !strings.HasPrefix(kv, "SAFEKIT_DEMO_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "SAFEKIT_DEMO_BIN="+filepath.Join(buildDir, "bin"), "SAFEKIT_DEMO_BUILD="+filepath.Join(buildDir, "build"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Past the deadline, the whole group: the demo and what it runs.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// TestDemoCheck runs `scripts/demo.sh --check`: the demo brought up as a
// user gets it, its checks (both nodes Ready, the VM on node1 only, the
// console login, a failover with the guest's data intact), its teardown.
func TestDemoCheck(t *testing.T) {
	kvmtest.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	start := time.Now()
	out, err := demoCmd(ctx, "--check").CombinedOutput()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("scripts/demo.sh --check: %v after %v\n%s", err, took.Round(time.Second), out)
	}
	t.Logf("scripts/demo.sh --check passed in %v", took.Round(time.Second))
	text := string(out)
	if !strings.Contains(text, "Demo check passed.") {
		t.Errorf("the output does not end with the check's success:\n%s", text)
	}
	id := clusterID(t, text)
	wantPrinted(t, text, id)
	// The operator's sequence, in this order, on these nodes.
	wantInOrder(t, text,
		"node1# safekit cluster create ",
		"node1# safekit cluster config",
		"node2# safekit webservercfg -rcmdpasswd <node1's password>",
		`node1# safekit -H "*" -G`,
		"node1# safekit module install -m vm1 kvm.safe",
		"Module vm1 installed from /opt/safekit/Application_Modules/generic/kvm.safe",
		`<macro name="VM_PATH" value="/var/lib/libvirt/images"/>`,
		`<macro name="VM_NAME" value="vm1"/>`,
		"node1# safekit config -m vm1",
		`node1# safekit -H "*" -E vm1`,
		"node1# safekit prim -m vm1",
		"start_prim: vm1 is running",
		"node2# safekit start -m vm1",
		"Reintegration ended (synchronize)",
		"node1# safekit webservercfg -passwd <password> -user admin",
		"node2# safekit webservercfg -passwd <password> -user admin",
		"node1: PRIM Ready, VM running; node2: SECOND Ready, VM shut off",
		"/api/v1.0/nodes/node2/modules: vm1 is SECOND Ready on node2",
		"node1# safekit stop -m vm1",
		"node1: STOP NotReady, VM shut off; node2: ALONE Ready, VM running",
		"never on both nodes at once",
		"Removing cluster "+strconv.Itoa(id),
		"Demo check passed.",
	)
	// The project's own template, never the corpus's.
	if strings.Contains(text, "compat-corpus") {
		t.Errorf("the demo used the compat corpus:\n%s", text)
	}
	wantGone(t, id)
}

// TestDemoInterrupt runs the interactive demo, waits until it says it is
// up, presses Ctrl-C (SIGINT to its process group) and checks that it
// exits 0 having removed everything.
func TestDemoInterrupt(t *testing.T) {
	kvmtest.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	cmd := demoCmd(ctx)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	var all bytes.Buffer
	up := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			// The first state line printed after the banner: the demo
			// is up and watching.
			if !seen && watchLineRE.MatchString(sc.Text()) {
				seen = true
				close(up)
			}
		}
	}()
	select {
	case <-up:
	case <-copied:
		err := cmd.Wait()
		t.Fatalf("scripts/demo.sh ended (%v) before it said the demo was up:\n%s", err, all.String())
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	<-copied
	text := all.String()
	if err != nil {
		t.Fatalf("scripts/demo.sh, interrupted: %v\n%s", err, text)
	}
	id := clusterID(t, text)
	wantPrinted(t, text, id)
	if !watchLineRE.MatchString(text) {
		t.Errorf("no state line of the watch:\n%s", text)
	}
	wantInOrder(t, text,
		"Ctrl-C stops the demo and removes everything.",
		"  node1 PRIM Ready      node2 SECOND Ready    vm1 runs on node1\n",
		"interrupt: stopping the demo and removing everything it made...",
		"Removing cluster "+strconv.Itoa(id),
		"done in",
	)
	wantGone(t, id)
}

// watchLineRE is the line the interactive demo prints when the states
// are those the demo brings up.
var watchLineRE = regexp.MustCompile(`(?m)^  \d\d:\d\d:\d\d  node1 PRIM Ready +node2 SECOND Ready +vm1 runs on node1$`)

var clusterRE = regexp.MustCompile(`Removing cluster (\d+):`)

// clusterID is the harness's id of the demo's cluster, as its teardown
// names it.
func clusterID(t *testing.T, out string) int {
	t.Helper()
	m := clusterRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the demo did not say it removed its cluster:\n%s", out)
	}
	id, _ := strconv.Atoi(m[1])
	return id
}

// wantPrinted checks the block the demo prints once it is up: the console
// URLs of both nodes, the user and a password, and the commands to try
// with the harness.
func wantPrinted(t *testing.T, out string, id int) {
	t.Helper()
	for _, re := range []string{
		`http://10\.200\.` + strconv.Itoa(id) + `\.11:9010/console/en/monitoring +\(node1\)`,
		`http://10\.200\.` + strconv.Itoa(id) + `\.12:9010/console/en/monitoring +\(node2\)`,
		`user admin, password [a-z2-9]{12}\n`,
		`scripts/testcluster -c ` + strconv.Itoa(id) + ` exec node1 safekit stop -m vm1 `,
		`scripts/testcluster -c ` + strconv.Itoa(id) + ` exec node1 safekit swap -m vm1 `,
		`scripts/testcluster -c ` + strconv.Itoa(id) + ` exec node1 safekit log -m vm1 `,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("the demo did not print %s:\n%s", re, out)
		}
	}
}

// wantInOrder checks that out holds each text, in this order.
func wantInOrder(t *testing.T, out string, texts ...string) {
	t.Helper()
	rest := out
	for _, s := range texts {
		i := strings.Index(rest, s)
		if i < 0 {
			t.Fatalf("the output has no %q (after the texts before it):\n%s", s, out)
		}
		rest = rest[i+len(s):]
	}
}

// wantGone checks that cluster id left nothing on the machine: no network
// namespace, link, directory, mount or process of it, and no process
// running the binaries built for these tests (safekitd, its module
// processes, the demo itself).
func wantGone(t *testing.T, id int) {
	t.Helper()
	prefix := fmt.Sprintf("sktc%d", id)
	if out, err := exec.Command("ip", "netns", "list").Output(); err != nil {
		t.Error(err)
	} else {
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, prefix+"-") {
				t.Errorf("network namespace left: %s", l)
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err != nil {
		t.Error(err)
	} else {
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 && (strings.HasPrefix(f[1], prefix+"n") || strings.HasPrefix(f[1], prefix+"b")) {
				t.Errorf("link left: %s", l)
			}
		}
	}
	dir := fmt.Sprintf("/tmp/sktc-%d", id)
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s left", dir)
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err != nil {
		t.Error(err)
	} else if bytes.Contains(b, []byte(dir+"/")) {
		t.Errorf("mounts of %s left in this mount namespace:\n%s", dir, b)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, _ := os.Readlink("/proc/" + e.Name() + "/exe")
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if strings.HasPrefix(exe, buildDir+"/") || strings.Contains(args, dir+"/") {
			t.Errorf("process left: %s %s (%s)", e.Name(), args, exe)
		}
	}
}

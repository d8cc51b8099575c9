// Package deploy holds what installs a node: the systemd unit, installed
// with the binaries and the templates by `make install`. Its test runs
// that target into a staging directory (DESTDIR) and checks the tree.
package deploy

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/safe/archive"
)

// buildDir is where make builds the binaries and templates for these
// tests (BIN= and BUILD=), so that the repository's bin/ and build/, which
// other tests may be running, are left alone.
var buildDir string

// makeInstall runs `make install` with DESTDIR=dest and the extra
// variables.
func makeInstall(t *testing.T, dest string, vars ...string) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		testenv.Need(t, "make (apt-get install make)")
	}
	args := append([]string{"--no-print-directory", "install", "DESTDIR=" + dest,
		"BIN=" + filepath.Join(buildDir, "bin"), "BUILD=" + filepath.Join(buildDir, "build")}, vars...)
	cmd := exec.Command("make", args...)
	cmd.Dir = testenv.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "safekit-install-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestMakeInstall installs with the default PREFIX (/opt/safekit) into a
// staging directory and checks every file of the tree, its mode, that the
// binaries run, that the templates are the packed ones and readable, the
// unit, and the safekit link on PATH.
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	makeInstall(t, dest)

	want := map[string]os.FileMode{
		"opt/safekit/safekit":                                 0o755,
		"opt/safekit/safekitd":                                0o755,
		"opt/safekit/Application_Modules/generic/kvm.safe":    0o644,
		"opt/safekit/Application_Modules/generic/mirror.safe": 0o644,
		"opt/safekit/Application_Modules/generic/farm.safe":   0o644,
		"etc/systemd/system/safekit.service":                  0o644,
		"usr/local/bin/safekit":                               fs.ModeSymlink,
	}
	docs, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "docs", "*.md"))
	images, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "docs", "images", "*"))
	for _, f := range append(docs, images...) {
		rel, _ := filepath.Rel(filepath.Join(testenv.RepoRoot(), "docs"), f)
		want["opt/safekit/docs/"+rel] = 0o644
	}
	got := tree(t, dest)
	var extra, missing []string
	for f := range got {
		if _, ok := want[f]; !ok {
			extra = append(extra, f)
		}
	}
	for f, mode := range want {
		g, ok := got[f]
		switch {
		case !ok:
			missing = append(missing, f)
		case mode == fs.ModeSymlink && g.Type() != fs.ModeSymlink:
			t.Errorf("%s: %v, want a symbolic link", f, g)
		case mode != fs.ModeSymlink && (!g.IsRegular() || g.Perm() != mode):
			t.Errorf("%s: %v, want a regular file with mode %v", f, g, mode)
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	if len(extra) > 0 || len(missing) > 0 {
		t.Fatalf("make install: files not expected: %v; files missing: %v", extra, missing)
	}

	if link, _ := os.Readlink(filepath.Join(dest, "usr/local/bin/safekit")); link != "/opt/safekit/safekit" {
		t.Errorf("usr/local/bin/safekit links to %q, want /opt/safekit/safekit (the installed path, not the staging one)", link)
	}
	// The installed CLI runs and, without SAFE, takes /opt/safekit.
	cmd := exec.Command(filepath.Join(dest, "opt/safekit/safekit"), "-p")
	cmd.Env = envWithout("SAFE", "SAFEVAR")
	if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte(`SAFE="/opt/safekit"`)) {
		t.Errorf("opt/safekit/safekit -p: %v\n%s", err, out)
	}
	if out, err := exec.Command(filepath.Join(dest, "opt/safekit/safekitd"), "-h").CombinedOutput(); !bytes.Contains(out, []byte("usage: safekitd")) {
		t.Errorf("opt/safekit/safekitd -h: %v\n%s", err, out)
	}
	// Each template as make build packed it, and readable as a module
	// archive with its main script.
	for name, script := range map[string]string{"kvm": "bin/vmcheck", "mirror": "bin/start_prim", "farm": "bin/start_both"} {
		installed := filepath.Join(dest, "opt/safekit/Application_Modules/generic", name+".safe")
		if readFile(t, installed) != readFile(t, filepath.Join(buildDir, "build/Application_Modules/generic", name+".safe")) {
			t.Errorf("%s differs from the archive make build packed", installed)
		}
		a, err := archive.ReadFile(installed, archive.DefaultLimits)
		if err != nil {
			t.Errorf("%s: %v", installed, err)
			continue
		}
		if _, ok := a.Lookup(script); !ok || a.Userconfig() == nil {
			t.Errorf("%s has no conf/userconfig.xml or no %s", installed, script)
		}
	}
	unit := readFile(t, filepath.Join(dest, "etc/systemd/system/safekit.service"))
	for _, line := range []string{"ExecStart=/opt/safekit/safekitd", "Environment=SAFE=/opt/safekit SAFEVAR=/var/safekit", "WantedBy=multi-user.target"} {
		if !strings.Contains(unit, line+"\n") {
			t.Errorf("the installed unit has no line %q:\n%s", line, unit)
		}
	}
	if unit != readFile(t, filepath.Join(testenv.RepoRoot(), "deploy", "safekit.service")) {
		t.Error("with the default PREFIX the installed unit differs from deploy/safekit.service")
	}
}

// TestMakeInstallPrefix installs with another PREFIX: every path of the
// unit follows it, and safekit on PATH is a wrapper that gives the CLI its
// SAFE.
func TestMakeInstallPrefix(t *testing.T) {
	const prefix = "/usr/local/safekit"
	dest := t.TempDir()
	makeInstall(t, dest, "PREFIX="+prefix)
	for _, f := range []string{"safekit", "safekitd", "Application_Modules/generic/kvm.safe", "docs/README.md"} {
		if _, err := os.Stat(filepath.Join(dest, prefix, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "opt")); err == nil {
		t.Error("with PREFIX=" + prefix + " make install still wrote under /opt")
	}
	unit := readFile(t, filepath.Join(dest, "etc/systemd/system/safekit.service"))
	if strings.Contains(unit, "/opt/safekit") || !strings.Contains(unit, "ExecStart="+prefix+"/safekitd\n") || !strings.Contains(unit, "Environment=SAFE="+prefix+" ") {
		t.Errorf("the unit does not follow PREFIX=%s:\n%s", prefix, unit)
	}
	wrapper := filepath.Join(dest, "usr/local/bin/safekit")
	st, err := os.Lstat(wrapper)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm() != 0o755 {
		t.Fatalf("usr/local/bin/safekit: %v, want an executable script", st.Mode())
	}
	// Run the wrapper against the staged CLI: the same script with the
	// staging directory in front of its path.
	script := strings.ReplaceAll(readFile(t, wrapper), "exec "+prefix+"/", "exec "+filepath.Join(dest, prefix)+"/")
	staged := filepath.Join(t.TempDir(), "safekit")
	if err := os.WriteFile(staged, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(staged, "-p")
	cmd.Env = envWithout("SAFE", "SAFEVAR")
	if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte(`SAFE="`+prefix+`"`)) {
		t.Errorf("the wrapper, without SAFE: %v\n%s", err, out)
	}
	cmd = exec.Command(staged, "-p")
	cmd.Env = append(envWithout("SAFE"), "SAFE=/elsewhere")
	if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte(`SAFE="/elsewhere"`)) {
		t.Errorf("the wrapper, with SAFE=/elsewhere: %v\n%s", err, out)
	}
}

// tree lists the files and links under root, by path relative to it.
func tree(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = info.Mode()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// envWithout is this process's environment without the named variables.
func envWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}

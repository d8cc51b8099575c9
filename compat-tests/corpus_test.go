package compattests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/internal/corpus"
	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/safe"
)

// TestCorpusInstallConfigure installs every published module of the corpus
// with the safekit command, as an operator would: confcheck reports exactly
// the placeholders left to fill (none for kvm, mirror, farm); once they are
// filled it passes for all 22 (the Windows ones as Windows modules, which
// config refuses); the Linux ones then configure, and a postconfig that fails
// because a service is missing here is reported as that script's error,
// with its output. Scripts run against stand-in systemctl and virsh.
func TestCorpusInstallConfigure(t *testing.T) {
	dir := testenv.CorpusDir(t)
	if os.Getenv("SAFEKIT_MNTNS") == "" {
		// config renames the replicated directories, which must exist:
		// they are created in the tests' private mount namespace.
		testenv.Need(t, "root, for the private mount namespace where the replicated directories are created")
	}
	root := t.TempDir()
	stubDir := filepath.Join(root, "stubs")
	if err := writeStubs(stubDir); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"SAFE="+filepath.Join(root, "opt"), "SAFEVAR="+filepath.Join(root, "var"),
		"STUBSTATE="+filepath.Join(root, "stubstate"),
		"PATH="+stubDir+":"+binDir+":"+os.Getenv("PATH"))
	safekit := func(args ...string) (string, string, int) {
		cmd := exec.Command(filepath.Join(binDir, "safekit"), args...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	if _, stderr, code := safekit("cluster", "create", "10.0.0.1", "10.0.0.2"); code != 0 {
		t.Fatalf("cluster create: %s", stderr)
	}
	archives, _ := filepath.Glob(filepath.Join(dir, "modules", "*", "*.safe"))
	if len(archives) != len(corpus.Modules) {
		t.Fatalf("%d archives in the corpus, %d rows in internal/corpus", len(archives), len(corpus.Modules))
	}
	postconfigFailures := 0
	defer func() {
		if !t.Failed() && postconfigFailures == 0 {
			t.Errorf("no module's postconfig failed on a missing service: the error path was not exercised")
		}
	}()
	for _, m := range corpus.Modules {
		name := m.OS + "_" + m.Name
		t.Run(name, func(t *testing.T) {
			if _, stderr, code := safekit("module", "install", "-m", name, filepath.Join(dir, "modules", m.OS, m.Name+".safe")); code != 0 {
				t.Fatalf("install: %s", stderr)
			}
			conf := filepath.Join(root, "opt", "modules", name, "conf", "userconfig.xml")
			_, stderr, code := safekit("confcheck", "-m", name)
			if got := errorLines(stderr, conf); strings.Join(got, "\n") != strings.Join(m.Shipped, "\n") {
				t.Errorf("confcheck as shipped:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(m.Shipped, "\n\t"))
			}
			if want := min(len(m.Shipped), 1); code != want {
				t.Errorf("confcheck as shipped exits %d, want %d", code, want)
			}

			data, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			filled, err := m.Filled(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(conf, filled, 0o644); err != nil {
				t.Fatal(err)
			}
			_, stderr, code = safekit("confcheck", "-m", name)
			if code != 0 {
				t.Fatalf("confcheck once filled exits %d:\n%s", code, stderr)
			}
			if m.Windows != "" {
				if !strings.Contains(strings.ReplaceAll(stderr, conf, "userconfig.xml"), m.Windows) {
					t.Errorf("no Windows-module warning in:\n%s", stderr)
				}
				_, stderr, code = safekit("config", "-m", name)
				if code == 0 || !strings.Contains(stderr, "is a Windows module") {
					t.Errorf("config of a Windows module: exit %d, %s", code, stderr)
				}
				return
			}
			makeReplicatedDirs(t, filled)
			if configureLinux(t, safekit, name, root) {
				postconfigFailures++
			}
			// Two modules may not replicate the same directory (k3s and
			// mysql both name /var/lib/mysql): deconfigure, which also
			// restores the directories.
			if _, stderr, code := safekit("deconfig", "-m", name); code != 0 {
				t.Fatalf("deconfig: %s", stderr)
			}
			checkRestored(t, filled)
		})
	}
}

// configureLinux configures a Linux module; when its postconfig fails on a
// missing (stand-in) service, the error must name the script and show its
// output, and the configuration must succeed once the service exists.
func configureLinux(t *testing.T, safekit func(...string) (string, string, int), name, root string) (postconfigFailed bool) {
	t.Helper()
	stdout, stderr, code := safekit("config", "-m", name)
	if code == 0 {
		if !strings.Contains(stdout, "Module "+name+" configured") {
			t.Errorf("config says:\n%s", stdout)
		}
		return false
	}
	if !strings.Contains(stderr, "script postconfig failed") || !strings.Contains(stderr, "does not exist") {
		t.Fatalf("config failed, but not as a postconfig error with its output:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "opt", "private", "modules", name)); err == nil {
		t.Errorf("a failed configuration left an active configuration")
	}
	// Create the services the module names, as installing the application
	// would, then configure again.
	for _, svc := range servicesOf(t, filepath.Join(root, "opt", "modules", name, "conf", "userconfig.xml")) {
		units := filepath.Join(root, "stubstate", "units")
		if err := os.MkdirAll(units, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(units, svc+".service"), []byte("inactive\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, code := safekit("config", "-m", name); code != 0 {
		t.Fatalf("config with the services present exits %d:\n%s", code, stderr)
	}
	return true
}

// servicesOf reads the SERVICES macro of a userconfig.xml.
func servicesOf(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, `name="SERVICES"`)
	if i < 0 {
		return nil
	}
	v := s[i:]
	v = v[strings.Index(v, `value="`)+len(`value="`):]
	v = v[:strings.Index(v, `"`)]
	var out []string
	for _, svc := range strings.Split(v, ",") {
		if svc = strings.TrimSpace(svc); svc != "" {
			out = append(out, svc)
		}
	}
	return out
}

// errorLines returns the error diagnostics of a confcheck output, with the
// file name shortened to userconfig.xml as in internal/corpus.
func errorLines(stderr, conf string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, conf+":") && !strings.Contains(l, ": warning: ") {
			out = append(out, "userconfig.xml"+strings.TrimPrefix(l, conf))
		}
	}
	return out
}

// makeReplicatedDirs creates the directories a module replicates (in the
// private mount namespace of the tests), as an operator does before
// configuring it.
func makeReplicatedDirs(t *testing.T, userconfig []byte) {
	t.Helper()
	u := safe.ParseUserconfig(userconfig, safe.Options{})
	if u.Config.RFS == nil {
		return
	}
	for _, r := range u.Config.RFS.Replicated {
		if err := os.MkdirAll(r.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRestored asserts that deconfig gave the replicated directories back:
// real directories again, no symlink, no renamed copy.
func checkRestored(t *testing.T, userconfig []byte) {
	t.Helper()
	u := safe.ParseUserconfig(userconfig, safe.Options{})
	if u.Config.RFS == nil {
		return
	}
	for _, r := range u.Config.RFS.Replicated {
		st, err := os.Lstat(r.Dir)
		if err != nil || !st.IsDir() {
			t.Errorf("after deconfig, %s is not a directory (%v)", r.Dir, err)
		}
		if _, err := os.Lstat(r.Dir + u.Config.RFS.MountOverSuffix); err == nil {
			t.Errorf("after deconfig, %s%s is still there", r.Dir, u.Config.RFS.MountOverSuffix)
		}
	}
}

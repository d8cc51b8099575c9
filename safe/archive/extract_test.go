package archive

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExtractModes: modes land exactly as the archive says, whatever the
// umask, including a directory that forbids writing into it.
func TestExtractModes(t *testing.T) {
	a := &Archive{Files: []File{
		{Name: "conf/userconfig.xml", Mode: 0o640, Data: []byte("<safe/>")},
		{Name: "bin/start_prim", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
		{Name: "bin/private", Mode: 0o700, Data: []byte("secret")},
		{Name: "web", Mode: fs.ModeDir | 0o750},
		{Name: "web/shared", Mode: 0o666, Data: []byte("x")},
		{Name: "ro", Mode: fs.ModeDir | 0o555},
		{Name: "ro/file", Mode: 0o444, Data: []byte("y")},
		{Name: "empty", Mode: 0o644},
	}}
	dir := filepath.Join(t.TempDir(), "module")
	if err := a.Extract(dir); err != nil {
		t.Fatal(err)
	}
	// Let TempDir remove ro/file when the tests do not run as root.
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(dir, "ro"), 0o755) })
	want := map[string]string{
		".":                   describe(fs.ModeDir|0o755, nil),
		"bin":                 describe(fs.ModeDir|0o755, nil), // implied
		"bin/private":         describe(0o700, []byte("secret")),
		"bin/start_prim":      describe(0o755, []byte("#!/bin/sh\n")),
		"conf":                describe(fs.ModeDir|0o755, nil), // implied
		"conf/userconfig.xml": describe(0o640, []byte("<safe/>")),
		"empty":               describe(0o644, nil),
		"ro":                  describe(fs.ModeDir|0o555, nil),
		"ro/file":             describe(0o444, []byte("y")),
		"web":                 describe(fs.ModeDir|0o750, nil),
		"web/shared":          describe(0o666, []byte("x")),
	}
	if got := snapshot(t, dir); !maps.Equal(got, want) {
		t.Errorf("extracted:\n%v\nwant:\n%v", got, want)
	}
	assertOnly(t, filepath.Dir(dir), "module")
}

// TestExtractTargetExists: an installed module is never overwritten.
func TestExtractTargetExists(t *testing.T) {
	top := t.TempDir()
	dir := filepath.Join(top, "module")
	writeTree(t, dir, installedModule)
	before := snapshot(t, top)
	a := &Archive{Files: []File{{Name: "conf/userconfig.xml", Mode: 0o644, Data: []byte("new")}}}
	err := a.Extract(dir)
	if err == nil || !strings.Contains(err.Error(), "already exists (nothing was written)") {
		t.Fatalf("Extract over an existing directory: %v", err)
	}
	assertUnchanged(t, top, before)
}

// TestExtractFailure: a failure halfway (here a name too long for the file
// system, after other files were written) leaves nothing behind, neither at
// the target nor in the temporary directory next to it.
func TestExtractFailure(t *testing.T) {
	top := t.TempDir()
	writeTree(t, filepath.Join(top, "installed"), installedModule)
	before := snapshot(t, top)
	a := &Archive{Files: []File{
		{Name: "bin/start_prim", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
		{Name: "conf/userconfig.xml", Mode: 0o644, Data: []byte("<safe/>")},
		{Name: "ro", Mode: fs.ModeDir | 0o500},
		{Name: "web/" + strings.Repeat("x", 300), Mode: 0o644},
	}}
	err := a.Extract(filepath.Join(top, "new"))
	if err == nil || !strings.Contains(err.Error(), "nothing was left there") {
		t.Fatalf("Extract: %v", err)
	}
	assertUnchanged(t, top, before)
}

// installedModule stands for a module already installed next to where an
// archive is extracted.
var installedModule = []File{
	{Name: "conf/userconfig.xml", Mode: 0o644, Data: []byte(`<safe><service mode="mirror"/></safe>`)},
	{Name: "bin/start_prim", Mode: 0o755, Data: []byte("#!/bin/sh\nexit 0\n")},
	{Name: "web/index.html", Mode: 0o644, Data: []byte("<html/>")},
}

// writeTree writes files under dir with the os package, independently of
// the code under test.
func writeTree(t *testing.T, dir string, files []File) {
	t.Helper()
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if f.Mode.IsDir() {
			if err := os.MkdirAll(p, f.Mode.Perm()); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.Data, f.Mode.Perm()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.Mode.Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// assertUnchanged checks that nothing under dir changed since before was
// taken: no file added, removed or modified, modes included.
func assertUnchanged(t *testing.T, dir string, before map[string]string) {
	t.Helper()
	after := snapshot(t, dir)
	for name, b := range before {
		if a, ok := after[name]; !ok {
			t.Errorf("%s: removed", name)
		} else if a != b {
			t.Errorf("%s: changed from %s to %s", name, b, a)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s: written", name)
		}
	}
}

// assertOnly checks that dir holds the names given and nothing else (no
// temporary file left behind).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

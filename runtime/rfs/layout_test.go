package rfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/safe"
)

func reps(dirs ...string) []safe.Replicated {
	var r []safe.Replicated
	for _, d := range dirs {
		r = append(r, safe.Replicated{Dir: d})
	}
	return r
}

func TestConfigureRoundTrip(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("x"), 0o644)
	for i := 0; i < 2; i++ { // idempotent
		if err := Configure(reps(dir), "", nil); err != nil {
			t.Fatal(err)
		}
		if tgt, err := os.Readlink(dir); err != nil || tgt != dir+DefaultSuffix {
			t.Fatalf("after configure %d: %s -> %q, %v", i, dir, tgt, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "sub", "f")); err != nil || string(b) != "x" {
			t.Fatalf("content through the symlink: %q %v", b, err)
		}
	}
	for i := 0; i < 2; i++ {
		if err := Deconfigure(reps(dir), ""); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			t.Fatalf("after deconfigure %d: %v %v", i, fi, err)
		}
		if _, err := os.Lstat(dir + DefaultSuffix); !os.IsNotExist(err) {
			t.Fatalf("backing left: %v", err)
		}
	}
	// Another suffix.
	if err := Configure(reps(dir), ".repl", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir + ".repl/sub/f"); err != nil {
		t.Fatal(err)
	}
	if err := Deconfigure(reps(dir), ".repl"); err != nil {
		t.Fatal(err)
	}
}

func TestConfigureRefusals(t *testing.T) {
	root := t.TempDir()
	ok := filepath.Join(root, "ok")
	os.Mkdir(ok, 0o755)
	inner := filepath.Join(ok, "inner")
	os.Mkdir(inner, 0o755)
	other := filepath.Join(root, "other")
	os.Mkdir(other, 0o755)
	missing := filepath.Join(root, "missing")
	cases := []struct {
		name   string
		dirs   []safe.Replicated
		others []string
		want   string
	}{
		{"missing", reps(ok, missing), nil, missing + " does not exist: create it on every node"},
		{"mount point", reps(ok, "/proc"), nil, "/proc is a mount point"},
		{"root", reps(ok, "/"), nil, "root of the file system"},
		{"nested", reps(ok, inner), nil, inner + " is nested in or equal to " + ok},
		{"shared", reps(ok), []string{other, ok}, "two modules must not share replicated directories"},
		{"shared below", reps(ok), []string{inner}, "replicated by another module"},
		{"relative", reps("rel/dir"), nil, "not an absolute path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Configure(c.dirs, "", c.others)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Configure: %v, want %q", err, c.want)
			}
			// Nothing renamed.
			if fi, err := os.Lstat(ok); err != nil || !fi.IsDir() {
				t.Fatalf("%s changed: %v %v", ok, fi, err)
			}
			if _, err := os.Lstat(ok + DefaultSuffix); !os.IsNotExist(err) {
				t.Fatalf("%s renamed", ok)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	f, err := newFilter(safe.Replicated{Dir: "/d", NotReplicated: []safe.NotReplicated{
		{Path: "tmp"}, {RegexPath: `.*\.tmp$`}}})
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{"a": true, "tmp": false, "tmp/x": false, "tmpx": true,
		"conf/config.tmp": false, "conf/config.tmp.swap": true, "x.tmp/y": false} {
		if got := f.replicated(rel, false); got != want {
			t.Errorf("replicated(%q) = %v, want %v", rel, got, want)
		}
	}
	only, _ := newFilter(safe.Replicated{Dir: "/d", NotReplicated: []safe.NotReplicated{{RegexPath: `!\.vmdk$`}}})
	for rel, want := range map[string]bool{"disk.vmdk": true, "a/disk.vmdk": true, "a/notes.txt": false} {
		if got := only.replicated(rel, false); got != want {
			t.Errorf("only: replicated(%q) = %v, want %v", rel, got, want)
		}
	}
	if !only.replicated("a", true) {
		t.Error("a directory must stay replicated under the ! form")
	}
	if _, err := newFilter(safe.Replicated{Dir: "/d", NotReplicated: []safe.NotReplicated{{Path: "/abs"}}}); err == nil {
		t.Error("an absolute notreplicated path must be refused")
	}
}

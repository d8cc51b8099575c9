package archive

import (
	"archive/zip"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// sampleModule is a module tree as a user edits it.
var sampleModule = []File{
	{Name: "conf/userconfig.xml", Mode: 0o644, Data: []byte(`<safe><service mode="mirror"/></safe>`)},
	{Name: "conf/userconfig.xml.template", Mode: 0o644, Data: []byte(`<safe/>`)},
	{Name: "bin/start_prim", Mode: 0o755, Data: []byte("#!/bin/sh\nexit 0\n")},
	{Name: "bin/stop_prim", Mode: 0o750, Data: []byte("#!/bin/sh\nexit 0\n")},
	{Name: "web/index.html", Mode: 0o644, Data: []byte("<html/>")},
	{Name: "web/img", Mode: fs.ModeDir | 0o755},
}

// TestWriteLayout: the archive SafeKit expects, entries at the root,
// directory entries included, in name order, with unix modes and a fixed
// time.
func TestWriteLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "mirror")
	writeTree(t, root, sampleModule)
	var buf bytes.Buffer
	if err := Write(&buf, root); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, zf := range zr.File {
		got = append(got, zf.Name+" "+zf.Mode().String())
		if !zf.Modified.Equal(modTime) {
			t.Errorf("%s: modified %v, want %v", zf.Name, zf.Modified, modTime)
		}
		if want := map[bool]uint16{true: zip.Store, false: zip.Deflate}[zf.Mode().IsDir()]; zf.Method != want {
			t.Errorf("%s: method %d, want %d", zf.Name, zf.Method, want)
		}
	}
	want := []string{
		"bin/ drwxr-xr-x",
		"bin/start_prim -rwxr-xr-x",
		"bin/stop_prim -rwxr-x---",
		"conf/ drwxr-xr-x",
		"conf/userconfig.xml -rw-r--r--",
		"conf/userconfig.xml.template -rw-r--r--",
		"web/ drwxr-xr-x",
		"web/img/ drwxr-xr-x",
		"web/index.html -rw-r--r--",
	}
	if !slices.Equal(got, want) {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestWriteReproducible: packing the same tree twice gives the same bytes,
// whatever the files' times.
func TestWriteReproducible(t *testing.T) {
	top := t.TempDir()
	root := filepath.Join(top, "mirror")
	writeTree(t, root, sampleModule)
	first := filepath.Join(top, "first.safe")
	if err := WriteFile(first, root); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(root, "bin", "start_prim"), later, later); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(top, "second.safe")
	if err := WriteFile(second, root); err != nil {
		t.Fatal(err)
	}
	a, b := readFile(t, first), readFile(t, second)
	if !bytes.Equal(a, b) {
		t.Error("two packings of one tree differ")
	}
}

// TestWriteFile: the archive replaces its previous version whole, mode
// 0644, and no temporary file stays behind.
func TestWriteFile(t *testing.T) {
	top := t.TempDir()
	root := filepath.Join(top, "mirror")
	writeTree(t, root, sampleModule)
	dest := filepath.Join(top, "out", "mirror.safe")
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dest, []byte("previous"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dest, root); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode() != 0o644 {
		t.Errorf("mode %v, want -rw-r--r--", info.Mode())
	}
	a, err := ReadFile(dest, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Names("bin"); !slices.Equal(got, []string{"start_prim", "stop_prim"}) {
		t.Errorf("bin: %q", got)
	}
	assertOnly(t, filepath.Dir(dest), "mirror.safe")
}

// TestWriteRefuses: links and names Read would refuse make Write fail, and
// WriteFile then leaves the previous archive as it was.
func TestWriteRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
		want  string
	}{
		{"symlink to a file", func(t *testing.T, root string) {
			symlink(t, "/etc/passwd", filepath.Join(root, "bin", "passwd"))
		}, "bin/passwd: symbolic link: a module archive holds only regular files and directories"},
		{"symlink to a directory", func(t *testing.T, root string) {
			symlink(t, "/etc", filepath.Join(root, "etc"))
		}, "etc: symbolic link"},
		{"backslash in a name", func(t *testing.T, root string) {
			writeTree(t, root, []File{{Name: `bin/..\..\evil`, Mode: 0o644}})
		}, `entry "bin/..\\..\\evil": backslash in name`},
		{"drive letter", func(t *testing.T, root string) {
			writeTree(t, root, []File{{Name: `C:evil`, Mode: 0o644}})
		}, `entry "C:evil": name starts with a Windows drive letter`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := t.TempDir()
			root := filepath.Join(top, "mirror")
			writeTree(t, root, sampleModule)
			tt.setup(t, root)
			dest := filepath.Join(top, "mirror.safe")
			if err := os.WriteFile(dest, []byte("previous"), 0o644); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, top)

			err := Write(io.Discard, root)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Write: %v\nwant an error with %q", err, tt.want)
			}
			err = WriteFile(dest, root)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteFile: %v\nwant an error with %q", err, tt.want)
			}
			assertUnchanged(t, top, before)
		})
	}
}

// TestWriteNotADirectory: Write packs directories only.
func TestWriteNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(io.Discard, file); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("Write of a file: %v", err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

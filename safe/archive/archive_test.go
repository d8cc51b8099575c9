package archive

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/internal/testenv"
)

// The compat corpus holds third-party archives: the tests read them in place
// and never copy them into the repository.

// corpusArchives returns every published .safe of the corpus, as
// "linux/kvm.safe" relative to its modules directory.
func corpusArchives(t *testing.T) (dir string, names []string) {
	t.Helper()
	dir = filepath.Join(testenv.CorpusDir(t), "modules")
	paths, err := filepath.Glob(filepath.Join(dir, "*", "*.safe"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no .safe archive under %s", dir)
	}
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		names = append(names, filepath.ToSlash(rel))
	}
	return dir, names
}

// TestCorpus reads every published module, checks what Read returns against
// archive/zip's own reading of the file, extracts it, packs the extracted
// tree and reads that back: names, modes and contents survive the trip.
func TestCorpus(t *testing.T) {
	dir, names := corpusArchives(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, filepath.FromSlash(name))
			a, err := ReadFile(path, DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			compareWithZip(t, path, a)
			if len(a.Userconfig()) == 0 {
				t.Error("empty conf/userconfig.xml")
			}
			if len(a.Names("bin")) == 0 {
				t.Error("no script under bin/")
			}

			module := filepath.Join(t.TempDir(), "module")
			if err := a.Extract(module); err != nil {
				t.Fatal(err)
			}
			compareWithDisk(t, module, a)

			var packed bytes.Buffer
			if err := Write(&packed, module); err != nil {
				t.Fatal(err)
			}
			back, err := Read(bytes.NewReader(packed.Bytes()), int64(packed.Len()), DefaultLimits)
			if err != nil {
				t.Fatal(err)
			}
			if diff := diffFiles(a.Files, back.Files); diff != "" {
				t.Errorf("extracted, packed and read back:\n%s", diff)
			}

			// The tree on disk and the archive in memory pack the same.
			var direct bytes.Buffer
			if _, err := a.WriteTo(&direct); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(packed.Bytes(), direct.Bytes()) {
				t.Error("Write of the extracted tree and WriteTo of the archive differ")
			}
		})
	}
}

// TestCorpusKVMScript is the case that motivated keeping unix modes: the kvm
// module's checker must stay executable once installed.
func TestCorpusKVMScript(t *testing.T) {
	dir, _ := corpusArchives(t)
	a, err := ReadFile(filepath.Join(dir, "linux", "kvm.safe"), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := a.Lookup("bin/vmcheck")
	if !ok {
		t.Fatal("no bin/vmcheck in kvm.safe")
	}
	if f.Mode != 0o755 {
		t.Errorf("bin/vmcheck: mode %v in the archive, want -rwxr-xr-x", f.Mode)
	}
	module := filepath.Join(t.TempDir(), "kvm")
	if err := a.Extract(module); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(module, "bin", "vmcheck"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode() != 0o755 {
		t.Errorf("bin/vmcheck: mode %v on disk, want -rwxr-xr-x", info.Mode())
	}
}

// compareWithZip checks a against the archive at path as archive/zip reads
// it, entry by entry.
func compareWithZip(t *testing.T, path string, a *Archive) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != len(a.Files) {
		t.Errorf("%d files read, %d entries in the zip", len(a.Files), len(zr.File))
	}
	for _, zf := range zr.File {
		f, ok := a.Lookup(zf.Name)
		if !ok {
			t.Errorf("%s: missing", zf.Name)
			continue
		}
		if want := zf.Mode().Type() | zf.Mode().Perm(); f.Mode != want {
			t.Errorf("%s: mode %v, want %v", zf.Name, f.Mode, want)
		}
		if zf.Mode().IsDir() {
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(f.Data, data) {
			t.Errorf("%s: content differs", zf.Name)
		}
	}
}

// compareWithDisk checks that dir holds exactly a's files, with their modes
// and contents.
func compareWithDisk(t *testing.T, dir string, a *Archive) {
	t.Helper()
	want := make(map[string]string)
	for _, f := range a.Files {
		want[f.Name] = describe(f.Mode, f.Data)
	}
	got := snapshot(t, dir)
	delete(got, ".")
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: not extracted", name)
		} else if g != w {
			t.Errorf("%s: extracted as %s, want %s", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: extracted but not in the archive", name)
		}
	}
}

// snapshot describes every file under dir (mode and content, link targets)
// by slash path, "." for dir itself.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		var data []byte
		switch {
		case d.Type().IsRegular():
			data, err = os.ReadFile(p)
		case d.Type()&fs.ModeSymlink != 0:
			var target string
			target, err = os.Readlink(p)
			data = []byte(target)
		}
		m[filepath.ToSlash(rel)] = describe(info.Mode(), data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func describe(mode fs.FileMode, data []byte) string {
	if mode.IsDir() {
		return mode.String()
	}
	return fmt.Sprintf("%v %q", mode, data)
}

// diffFiles lists how two lists of files differ; "" if they do not.
func diffFiles(got, want []File) string {
	var b strings.Builder
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i].Name + " " + describe(got[i].Mode, got[i].Data)
		}
		if i < len(want) {
			w = want[i].Name + " " + describe(want[i].Mode, want[i].Data)
		}
		if g != w {
			fmt.Fprintf(&b, "file %d: got  %s\n        want %s\n", i, g, w)
		}
	}
	return b.String()
}

// zipBuilder makes archives by hand, well-formed or not.
type zipBuilder struct {
	buf bytes.Buffer
	zw  *zip.Writer
	err error
}

func newZip() *zipBuilder {
	b := &zipBuilder{}
	b.zw = zip.NewWriter(&b.buf)
	return b
}

// module adds the least a module has, as a unix host packs it.
func (b *zipBuilder) module() *zipBuilder {
	return b.dir("conf/").
		file("conf/userconfig.xml", 0o644, `<safe><service mode="mirror"/></safe>`).
		dir("bin/").
		file("bin/start_prim", 0o755, "#!/bin/sh\n")
}

// dir adds a directory entry with unix mode 0755.
func (b *zipBuilder) dir(name string) *zipBuilder {
	return b.file(name, fs.ModeDir|0o755, "")
}

// file adds an entry with a unix mode, which may carry any type bit.
func (b *zipBuilder) file(name string, mode fs.FileMode, data string) *zipBuilder {
	h := &zip.FileHeader{Name: name, Method: zip.Deflate}
	h.SetMode(mode)
	return b.header(h, data)
}

// winFile adds an entry as zippers on Windows make them: MS-DOS attributes
// only, no unix mode.
func (b *zipBuilder) winFile(name, data string) *zipBuilder {
	h := &zip.FileHeader{Name: name, Method: zip.Deflate, CreatorVersion: 11<<8 | 20, ExternalAttrs: 0x20}
	if strings.HasSuffix(name, "/") {
		h.ExternalAttrs = 0x10
	}
	return b.header(h, data)
}

// header adds an entry with the header given.
func (b *zipBuilder) header(h *zip.FileHeader, data string) *zipBuilder {
	if b.err != nil {
		return b
	}
	w, err := b.zw.CreateHeader(h)
	if err == nil {
		_, err = io.WriteString(w, data)
	}
	b.err = err
	return b
}

// raw adds an entry whose header and compressed data are taken as they are,
// sizes and checksum included: the way to make headers lie.
func (b *zipBuilder) raw(h *zip.FileHeader, compressed []byte) *zipBuilder {
	if b.err != nil {
		return b
	}
	w, err := b.zw.CreateRaw(h)
	if err == nil {
		_, err = w.Write(compressed)
	}
	b.err = err
	return b
}

func (b *zipBuilder) bytes(t testing.TB) []byte {
	t.Helper()
	if b.err == nil {
		b.err = b.zw.Close()
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.buf.Bytes()
}

func readBytes(data []byte, lim Limits) (*Archive, error) {
	return Read(bytes.NewReader(data), int64(len(data)), lim)
}

// list shows files as "name mode" lines, the way the tests state what they
// expect.
func list(files []File) []string {
	var l []string
	for _, f := range files {
		l = append(l, f.Name+" "+f.Mode.String())
	}
	return l
}

// TestReadNames: names are normalised, directories the names imply are
// added, and the files come sorted, each directory before its content.
func TestReadNames(t *testing.T) {
	data := newZip().
		dir("./").
		file("./conf/userconfig.xml", 0o644, "<safe/>").
		file("bin//start_prim", 0o755, "").
		file("web/./css/style.css", 0o644, "").
		dir("web/").
		bytes(t)
	a, err := readBytes(data, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bin drwxr-xr-x",
		"bin/start_prim -rwxr-xr-x",
		"conf drwxr-xr-x",
		"conf/userconfig.xml -rw-r--r--",
		"web drwxr-xr-x",
		"web/css drwxr-xr-x",
		"web/css/style.css -rw-r--r--",
	}
	if got := list(a.Files); !slices.Equal(got, want) {
		t.Errorf("files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestReadModes: unix modes are kept but for the setuid, setgid and sticky
// bits; entries made on Windows get modes that keep scripts executable.
func TestReadModes(t *testing.T) {
	typeless := &zip.FileHeader{Name: "bin/typeless", CreatorVersion: 3<<8 | 20, ExternalAttrs: 0o750 << 16}
	data := newZip().
		file("conf/userconfig.xml", 0o600, "<safe/>").
		file("bin/setuid", fs.ModeSetuid|fs.ModeSetgid|0o755, "").
		file("web/", fs.ModeDir|fs.ModeSticky|0o700, "").
		header(typeless, "").
		winFile("win/", "").
		winFile("bin/", "").
		winFile("bin/start_prim", "").
		winFile("bin/prestart.sh", "").
		winFile("bin/stop_prim.ps1", "").
		winFile("bin/list.txt", "").
		winFile("bin/lib/helper", "").
		winFile("win/start_prim", "").
		bytes(t)
	a, err := readBytes(data, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bin drwxr-xr-x",
		"bin/lib drwxr-xr-x",
		"bin/lib/helper -rwxr-xr-x",
		"bin/list.txt -rw-r--r--",
		"bin/prestart.sh -rwxr-xr-x",
		"bin/setuid -rwxr-xr-x",
		"bin/start_prim -rwxr-xr-x",
		"bin/stop_prim.ps1 -rw-r--r--",
		"bin/typeless -rwxr-x---",
		"conf drwxr-xr-x",
		"conf/userconfig.xml -rw-------",
		"web drwx------",
		"win drwxr-xr-x",
		"win/start_prim -rw-r--r--",
	}
	if got := list(a.Files); !slices.Equal(got, want) {
		t.Errorf("files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestArchiveHelpers(t *testing.T) {
	a := &Archive{Files: []File{
		{Name: "bin", Mode: fs.ModeDir | 0o755},
		{Name: "bin/lib", Mode: fs.ModeDir | 0o755},
		{Name: "bin/lib/helper", Mode: 0o755},
		{Name: "bin/stop_prim", Mode: 0o755},
		{Name: "bin/start_prim", Mode: 0o755},
		{Name: "conf", Mode: fs.ModeDir | 0o755},
		{Name: "conf/userconfig.xml", Mode: 0o644, Data: []byte("<safe/>")},
		{Name: "manifest.xml", Mode: 0o644},
	}}
	for _, tt := range []struct {
		dir  string
		want []string
	}{
		{"bin", []string{"start_prim", "stop_prim"}},
		{"bin/", []string{"start_prim", "stop_prim"}},
		{"bin/lib", []string{"helper"}},
		{"", []string{"manifest.xml"}},
		{".", []string{"manifest.xml"}},
		{"web", nil},
	} {
		if got := a.Names(tt.dir); !slices.Equal(got, tt.want) {
			t.Errorf("Names(%q) = %q, want %q", tt.dir, got, tt.want)
		}
	}
	for _, tt := range []struct {
		name string
		want string // "" for not found
	}{
		{"bin/start_prim", "bin/start_prim"},
		{"./bin/start_prim", "bin/start_prim"},
		{"bin/", "bin"},
		{"bin/nothing", ""},
	} {
		got := ""
		if f, ok := a.Lookup(tt.name); ok {
			got = f.Name
		}
		if got != tt.want {
			t.Errorf("Lookup(%q) found %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := string(a.Userconfig()); got != "<safe/>" {
		t.Errorf("Userconfig() = %q", got)
	}
	if got := (&Archive{}).Userconfig(); got != nil {
		t.Errorf("Userconfig() of an empty archive = %q, want nil", got)
	}
}

// TestLimitsEdges: a zero Limits means the defaults, not "nothing
// allowed", and the largest limit still reads the data.
func TestLimitsEdges(t *testing.T) {
	data := newZip().module().bytes(t)
	for _, lim := range []Limits{{}, {MaxEntries: math.MaxInt, MaxBytes: math.MaxInt64}} {
		a, err := readBytes(data, lim)
		if err != nil {
			t.Fatalf("%+v: %v", lim, err)
		}
		if len(a.Userconfig()) == 0 {
			t.Errorf("%+v: conf/userconfig.xml read empty", lim)
		}
	}
}

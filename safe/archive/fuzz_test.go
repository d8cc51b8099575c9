package archive

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// The fuzz target runs its seeds with every go test; to search further:
//
//	go test -run=XXX -fuzz=FuzzRead -fuzztime=60s ./safe/archive/
//
// New failing inputs land in testdata/fuzz/FuzzRead/ and then run as seeds.

// fuzzLimits keep every input cheap to decompress.
var fuzzLimits = Limits{MaxEntries: 64, MaxBytes: 1 << 20}

// FuzzRead: Read never panics, refuses with an error that says nothing was
// written, and what it accepts is safe (see checkInvariants), packs and
// reads back the same, and extracts to exactly its files.
func FuzzRead(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := readBytes(data, fuzzLimits)
		if err != nil {
			if a != nil {
				t.Fatal("both an archive and an error")
			}
			if !strings.Contains(err.Error(), "nothing was written") {
				t.Fatalf("error does not say that nothing was written: %v", err)
			}
			return
		}
		checkInvariants(t, a, fuzzLimits)

		var packed bytes.Buffer
		if _, err := a.WriteTo(&packed); err != nil {
			t.Fatalf("WriteTo of an archive Read accepted: %v", err)
		}
		back, err := readBytes(packed.Bytes(), fuzzLimits)
		if err != nil {
			t.Fatalf("Read of what WriteTo wrote: %v", err)
		}
		if diff := diffFiles(back.Files, a.Files); diff != "" {
			t.Fatalf("written and read back:\n%s", diff)
		}

		dir := filepath.Join(t.TempDir(), "module")
		if err := a.Extract(dir); err != nil {
			t.Fatalf("Extract of an archive Read accepted: %v", err)
		}
		compareWithDisk(t, dir, a)
	})
}

// checkInvariants checks what Read promises of an archive it accepts,
// without the package's own helpers.
func checkInvariants(t *testing.T, a *Archive, lim Limits) {
	t.Helper()
	if len(a.Files) > lim.MaxEntries {
		t.Errorf("%d files, limit %d", len(a.Files), lim.MaxEntries)
	}
	var total int64
	for i, f := range a.Files {
		total += int64(len(f.Data))
		name := f.Name
		if !filepath.IsLocal(name) || path.Clean(name) != name || name == "." ||
			strings.ContainsAny(name, "\\\x00") || (len(name) > 1 && name[1] == ':') {
			t.Errorf("unsafe or unclean name %q", name)
		}
		for c := range strings.SplitSeq(name, "/") {
			if c == ".." || c == "." || c == "" {
				t.Errorf("name %q has a %q component", name, c)
			}
		}
		if f.Mode&^(fs.ModeDir|fs.ModePerm) != 0 {
			t.Errorf("%q: mode %v", name, f.Mode)
		}
		if f.Mode.IsDir() && f.Data != nil {
			t.Errorf("%q: directory with data", name)
		}
		if i > 0 && a.Files[i-1].Name >= name {
			t.Errorf("%q after %q: not sorted, or a duplicate", name, a.Files[i-1].Name)
		}
		if dir := path.Dir(name); dir != "." {
			if p, ok := a.Lookup(dir); !ok || !p.Mode.IsDir() {
				t.Errorf("%q: no directory %q", name, dir)
			}
		}
	}
	if total > lim.MaxBytes {
		t.Errorf("%d bytes, limit %d", total, lim.MaxBytes)
	}
	if f, ok := a.Lookup(userconfigName); !ok || f.Mode.IsDir() {
		t.Error("no conf/userconfig.xml")
	}
}

// fuzzSeeds are small archives, valid and hostile, in the shapes the
// corpus and the hostile suite have.
func fuzzSeeds(f *testing.F) [][]byte {
	module := func() *zipBuilder {
		return newZip().module().dir("web/").file("web/index.html", 0o644, "<html/>")
	}
	var written bytes.Buffer
	if _, err := (&Archive{Files: sampleModule}).WriteTo(&written); err != nil {
		f.Fatal(err)
	}
	valid := module().bytes(f)
	lying := &zip.FileHeader{Name: "web/big", Method: zip.Store, CompressedSize64: 8, UncompressedSize64: 2, CRC32: 1}
	return [][]byte{
		valid,
		written.Bytes(),
		newZip().
			winFile("conf/", "").
			winFile("conf/userconfig.xml", "<safe/>").
			winFile("bin/", "").
			winFile("bin/start_prim.ps1", "exit 0").
			bytes(f),
		newZip().
			dir("./").
			file("./conf/userconfig.xml", 0o644, "<safe/>").
			file("./bin/start_prim", 0o755, "").
			header(&zip.FileHeader{Name: "manifest.xml", Method: zip.Store}, "<manifest/>").
			bytes(f),
		valid[:len(valid)/2],
		module().file("../../evil", 0o644, "evil").bytes(f),
		module().file(`C:\evil`, 0o644, "evil").bytes(f),
		module().file("bin/link", fs.ModeSymlink|0o777, "/etc").bytes(f),
		module().file("bin/start_prim", 0o755, "again").bytes(f),
		module().file("web", 0o644, "").bytes(f),
		module().raw(lying, []byte("12345678")).bytes(f),
		newZip().dir("conf/").file("conf/userconfig.xml.template", 0o644, "<safe/>").bytes(f),
		{},
	}
}

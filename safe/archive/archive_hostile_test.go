package archive

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The hostile suite: archives made to escape the module directory, exhaust
// memory or confuse the installer. Each must be refused by Read, with an
// error naming the archive and the entry at fault and saying that nothing
// was written, and must leave everything as it was: the test works in its
// own directory, which holds a module installed next to the extraction
// target and is the current directory's grandparent, so that a relative
// traversal such as ../../evil would land in it and be seen.

// hostileCase is one archive Read must refuse.
type hostileCase struct {
	name string
	zip  []byte
	lim  Limits // zero: DefaultLimits
	want string // in the error
}

func TestHostileArchives(t *testing.T) {
	module := func() *zipBuilder { return newZip().module() }
	valid := module().bytes(t)
	zeros, zerosCRC := deflatedZeros(t, 4<<20)

	tests := []hostileCase{
		// Names that leave the module directory.
		{name: "parent traversal",
			zip:  module().file("../../evil", 0o644, "evil").bytes(t),
			want: `entry "../../evil": ".." in name: it would leave the module directory`},
		{name: "traversal inside a path",
			zip:  module().file("bin/../../evil", 0o755, "evil").bytes(t),
			want: `entry "bin/../../evil": ".." in name`},
		{name: "traversal hidden behind ./",
			zip:  module().file("./../evil", 0o644, "evil").bytes(t),
			want: `entry "./../evil": ".." in name`},
		{name: "absolute path",
			zip:  module().file("/etc/evil", 0o644, "evil").bytes(t),
			want: `entry "/etc/evil": absolute name`},
		{name: "windows drive and backslash",
			zip:  module().file(`C:\evil`, 0o644, "evil").bytes(t),
			want: `entry "C:\\evil": name starts with a Windows drive letter`},
		{name: "windows drive and slash",
			zip:  module().file("c:/evil", 0o644, "evil").bytes(t),
			want: `entry "c:/evil": name starts with a Windows drive letter`},
		{name: "backslash traversal",
			zip:  module().file(`..\..\evil`, 0o644, "evil").bytes(t),
			want: `entry "..\\..\\evil": backslash in name`},
		{name: "backslash traversal inside a path",
			zip:  module().file(`bin\..\..\evil`, 0o644, "evil").bytes(t),
			want: `entry "bin\\..\\..\\evil": backslash in name`},
		{name: "NUL in a name",
			zip:  module().file("bin/evil\x00.txt", 0o644, "evil").bytes(t),
			want: `NUL byte in name`},

		// Entries that are not files or directories.
		{name: "symlink",
			zip:  module().file("bin/link", fs.ModeSymlink|0o777, "/etc").file("bin/link/evil", 0o644, "evil").bytes(t),
			want: `entry "bin/link": symbolic link: a module archive holds only regular files and directories`},
		{name: "named pipe",
			zip:  module().file("bin/fifo", fs.ModeNamedPipe|0o644, "").bytes(t),
			want: `entry "bin/fifo": named pipe`},
		{name: "device",
			zip:  module().file("bin/sda", fs.ModeDevice|0o660, "").bytes(t),
			want: `entry "bin/sda": block device`},
		{name: "character device",
			zip:  module().file("bin/mem", fs.ModeDevice|fs.ModeCharDevice|0o660, "").bytes(t),
			want: `entry "bin/mem": character device`},
		{name: "directory with data",
			zip:  module().file("web", fs.ModeDir|0o755, "data").bytes(t),
			want: `entry "web": directory entry with data`},
		{name: "encrypted",
			zip:  module().header(&zip.FileHeader{Name: "bin/secret", Method: zip.Store, Flags: 0x1}, "cipher").bytes(t),
			want: `entry "bin/secret": encrypted entry`},

		// Size: only decompressed bytes count, never the headers.
		{name: "zip bomb",
			zip: module().
				raw(zerosHeader("web/zeros0", len(zeros), 4<<20, zerosCRC), zeros).
				raw(zerosHeader("web/zeros1", len(zeros), 4<<20, zerosCRC), zeros).
				raw(zerosHeader("web/zeros2", len(zeros), 4<<20, zerosCRC), zeros).
				raw(zerosHeader("web/zeros3", len(zeros), 4<<20, zerosCRC), zeros).
				bytes(t),
			lim:  Limits{MaxBytes: 10 << 20},
			want: `entry "web/zeros2": more than 10485760 bytes in total once decompressed`},
		{name: "header says 100 bytes for 4 MiB",
			zip:  module().raw(zerosHeader("web/zeros", len(zeros), 100, zerosCRC), zeros).bytes(t),
			lim:  Limits{MaxBytes: 1 << 20},
			want: `entry "web/zeros": more data than its header declares`},
		{name: "header says 1 TiB",
			zip:  module().raw(zerosHeader("web/zeros", len(zeros), 1<<40, zerosCRC), zeros).bytes(t),
			lim:  Limits{MaxBytes: 1 << 20},
			want: `entry "web/zeros": more than 1048576 bytes in total once decompressed`},
		{name: "too many entries",
			zip:  manyFiles(module(), 20).bytes(t),
			lim:  Limits{MaxEntries: 10},
			want: `24 entries, more than the limit of 10`},
		{name: "too many implied directories",
			zip:  module().file("web/a/b/c/d/e/f/g/h/i/j/index.html", 0o644, "").bytes(t),
			lim:  Limits{MaxEntries: 10},
			want: `more than 10 entries, counting the directories the names imply`},

		// Not a zip, or a damaged one.
		{name: "truncated",
			zip:  valid[:len(valid)/2],
			want: `not a readable zip archive: zip: not a valid zip file`},
		{name: "empty file",
			zip:  nil,
			want: `not a readable zip archive`},
		{name: "not a zip",
			zip:  []byte("#!/bin/sh\nrm -rf /\n"),
			want: `not a readable zip archive`},
		{name: "checksum error",
			zip:  corrupt(t, module().header(&zip.FileHeader{Name: "web/index.html", Method: zip.Store}, "<html>MARK</html>").bytes(t), "MARK"),
			want: `entry "web/index.html": corrupt data: zip: checksum error`},

		// Not a module.
		{name: "missing conf/userconfig.xml",
			zip:  newZip().dir("conf/").file("conf/userconfig.xml.template", 0o644, "<safe/>").dir("bin/").bytes(t),
			want: `no conf/userconfig.xml: not a SafeKit module`},
		{name: "conf/userconfig.xml is a directory",
			zip:  newZip().dir("conf/").dir("conf/userconfig.xml/").bytes(t),
			want: `no conf/userconfig.xml: not a SafeKit module`},

		// Names that collide.
		{name: "duplicate entries",
			zip:  module().file("bin/start_prim", 0o755, "#!/bin/sh\nevil\n").bytes(t),
			want: `entry "bin/start_prim": duplicate name (see entry "bin/start_prim")`},
		{name: "duplicate once ./ is removed",
			zip:  module().file("./bin/start_prim", 0o755, "#!/bin/sh\nevil\n").bytes(t),
			want: `entry "./bin/start_prim": duplicate name (see entry "bin/start_prim")`},
		{name: "file and directory of one name",
			zip:  module().file("web", 0o644, "").file("web/", fs.ModeDir|0o755, "").bytes(t),
			want: `entry "web/": "web" is both a file and a directory (see entry "web")`},
		{name: "file as a parent directory",
			zip:  module().file("web", 0o644, "").file("web/index.html", 0o644, "").bytes(t),
			want: `entry "web/index.html": "web" is both a file and a directory (see entry "web")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkHostile(t, tt) })
	}
}

// checkHostile reads tt's archive the way an installer does and checks that
// it is refused with nothing written.
func checkHostile(t *testing.T, tt hostileCase) {
	top := t.TempDir()
	modules := filepath.Join(top, "modules")
	writeTree(t, filepath.Join(modules, "installed"), installedModule)
	work := filepath.Join(top, "work", "a", "b")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	file := filepath.Join(top, "hostile.safe")
	if err := os.WriteFile(file, tt.zip, 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, top)

	for _, read := range []struct {
		archive string // how the error names it
		read    func() (*Archive, error)
	}{
		{"module archive", func() (*Archive, error) { return readBytes(tt.zip, tt.lim) }},
		{file, func() (*Archive, error) { return ReadFile(file, tt.lim) }},
	} {
		a, err := read.read()
		if err == nil {
			// Go on as an installer would, to show what the archive does.
			extractErr := a.Extract(filepath.Join(modules, "new"))
			t.Errorf("accepted (extract: %v)", extractErr)
			continue
		}
		msg := err.Error()
		for _, want := range []string{read.archive + ": ", tt.want, "nothing was written"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q\nwant it to contain %q", msg, want)
			}
		}
	}

	assertUnchanged(t, top, before)
	for _, p := range []string{"/etc/evil", "/evil"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
}

// TestZipBombMemory: a bomb costs about the limit in memory, not what it
// would decompress to, because Read stops decompressing one byte past the
// limit instead of trusting the header or reading to the end.
func TestZipBombMemory(t *testing.T) {
	const size = 64 << 20
	zeros, crc := deflatedZeros(t, size)
	data := newZip().module().raw(zerosHeader("web/zeros", len(zeros), size, crc), zeros).bytes(t)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readBytes(data, Limits{MaxBytes: 1 << 20})
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a 64 MiB entry accepted with a 1 MiB limit")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("reading a 64 MiB bomb with a 1 MiB limit allocated %d MiB", alloc>>20)
	}
}

// TestHostileHandBuilt: an Archive built by hand, not by Read, gets the same
// checks from Extract and WriteTo, so that it cannot be used to get round
// Read; nothing is written.
func TestHostileHandBuilt(t *testing.T) {
	userconfig := File{Name: "conf/userconfig.xml", Mode: 0o644, Data: []byte("<safe/>")}
	tests := []struct {
		name string
		file File
		want string
	}{
		{"parent traversal", File{Name: "../evil", Mode: 0o644}, `entry "../evil": ".." in name`},
		{"traversal inside a path", File{Name: "bin/../../evil", Mode: 0o644}, `entry "bin/../../evil": ".." in name`},
		{"absolute path", File{Name: "/etc/evil", Mode: 0o644}, `entry "/etc/evil": absolute name`},
		{"windows drive", File{Name: `C:\evil`, Mode: 0o644}, `entry "C:\\evil": name starts with a Windows drive letter`},
		{"unclean name", File{Name: "./bin/x", Mode: 0o644}, `entry "./bin/x": name is not in clean form (want "bin/x")`},
		{"trailing slash", File{Name: "bin/", Mode: fs.ModeDir | 0o755}, `entry "bin/": name is not in clean form (want "bin")`},
		{"the module directory itself", File{Name: ".", Mode: fs.ModeDir | 0o755}, `entry ".": name is not in clean form`},
		{"symlink", File{Name: "bin/link", Mode: fs.ModeSymlink | 0o777, Data: []byte("/etc")}, `entry "bin/link": symbolic link`},
		{"device", File{Name: "bin/sda", Mode: fs.ModeDevice | 0o660}, `entry "bin/sda": block device`},
		{"directory with data", File{Name: "web", Mode: fs.ModeDir | 0o755, Data: []byte("x")}, `entry "web": directory with data`},
		{"duplicate", userconfig, `entry "conf/userconfig.xml": duplicate name`},
		{"file as a parent directory", File{Name: "conf/userconfig.xml/evil", Mode: 0o644}, `"conf/userconfig.xml" is both a file and a directory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := t.TempDir()
			writeTree(t, filepath.Join(top, "installed"), installedModule)
			work := filepath.Join(top, "work", "a")
			if err := os.MkdirAll(work, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Chdir(work)
			before := snapshot(t, top)

			a := &Archive{Files: []File{userconfig, tt.file}}
			err := a.Extract(filepath.Join(top, "new"))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "nothing was written") {
				t.Errorf("Extract: %v\nwant an error with %q and nothing written", err, tt.want)
			}
			_, err = a.WriteTo(io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteTo: %v\nwant an error with %q", err, tt.want)
			}
			assertUnchanged(t, top, before)
			if _, err := os.Lstat("/etc/evil"); err == nil {
				t.Error("/etc/evil exists")
			}
		})
	}
}

// deflatedZeros returns n zero bytes deflated, and their CRC: a few
// kilobytes that decompress to megabytes.
func deflatedZeros(t *testing.T, n int) ([]byte, uint32) {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var crc uint32
	for n > 0 {
		c := chunk[:min(n, len(chunk))]
		if _, err := w.Write(c); err != nil {
			t.Fatal(err)
		}
		crc = crc32.Update(crc, crc32.IEEETable, c)
		n -= len(c)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), crc
}

// zerosHeader is the header of deflated zeros that declares size bytes once
// decompressed, truthfully or not.
func zerosHeader(name string, compressed int, size uint64, crc uint32) *zip.FileHeader {
	h := &zip.FileHeader{
		Name:               name,
		Method:             zip.Deflate,
		CRC32:              crc,
		CompressedSize64:   uint64(compressed),
		UncompressedSize64: size,
	}
	h.SetMode(0o644)
	return h
}

// manyFiles adds n small files under web/.
func manyFiles(b *zipBuilder, n int) *zipBuilder {
	for i := range n {
		b.file(fmt.Sprintf("web/f%03d", i), 0o644, "x")
	}
	return b
}

// corrupt flips a byte of mark, which must appear once in data.
func corrupt(t *testing.T, data []byte, mark string) []byte {
	t.Helper()
	if bytes.Count(data, []byte(mark)) != 1 {
		t.Fatalf("%q appears %d times", mark, bytes.Count(data, []byte(mark)))
	}
	data = bytes.Clone(data)
	data[bytes.Index(data, []byte(mark))] ^= 0xff
	return data
}

package archive

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"strings"
)

// The zip "version made by" hosts whose external attributes carry a unix
// mode (archive/zip keeps these private).
const (
	creatorUnix  = 3
	creatorMacOS = 19
)

// The file type bits of a unix mode, as zip external attributes carry them.
const (
	unixTypeMask = 0o170000
	unixDir      = 0o040000
	unixRegular  = 0o100000
	unixSymlink  = 0o120000
	unixFIFO     = 0o010000
	unixCharDev  = 0o020000
	unixBlockDev = 0o060000
	unixSocket   = 0o140000
)

// ReadFile reads the module archive file: see Read. Errors name file.
func ReadFile(file string, lim Limits) (*Archive, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read module archive: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read module archive: %w", err)
	}
	return read(file, f, info.Size(), lim)
}

// Read reads a whole module archive of size bytes into memory and checks it:
// every name stays inside the module directory, every entry is a regular
// file or a directory, each name appears once, conf/userconfig.xml is there,
// the data decompresses with correct checksums, and the archive stays
// within lim once decompressed. The sizes the archive declares are never
// trusted: only bytes actually decompressed count.
//
// Read writes nothing anywhere, and its errors say so, so that a caller can
// tell the user that a refused archive left the node untouched.
func Read(r io.ReaderAt, size int64, lim Limits) (*Archive, error) {
	return read("module archive", r, size, lim)
}

// read is Read with the name the errors give the archive.
func read(name string, r io.ReaderAt, size int64, lim Limits) (*Archive, error) {
	a, err := decode(r, size, lim.orDefaults())
	if err != nil {
		return nil, fmt.Errorf("%s: %w (refused, nothing was written)", name, err)
	}
	return a, nil
}

// decode does Read's work with the cheap checks first, so that a hostile
// archive is refused before any decompression when its headers give it away.
func decode(r io.ReaderAt, size int64, lim Limits) (*Archive, error) {
	zr, err := zip.NewReader(r, size)
	// ErrInsecurePath (GODEBUG=zipinsecurepath=0) comes with a usable reader,
	// and the names are checked below in any case.
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return nil, fmt.Errorf("not a readable zip archive: %w", err)
	}
	if n := len(zr.File); n > lim.MaxEntries {
		return nil, fmt.Errorf("%d entries, more than the limit of %d", n, lim.MaxEntries)
	}
	files := make([]File, 0, len(zr.File))
	zfs := make([]*zip.File, 0, len(zr.File)) // zfs[i] is where files[i] comes from
	for _, zf := range zr.File {
		f, err := header(zf)
		if err != nil {
			return nil, &entryError{zf.Name, err}
		}
		if f.Name == "." {
			continue // "./": the module directory itself
		}
		files = append(files, f)
		zfs = append(zfs, zf)
	}
	implied, err := tree(files, func(i int) string { return zfs[i].Name }, lim.MaxEntries)
	if err != nil {
		return nil, err
	}
	if !hasUserconfig(files) {
		return nil, fmt.Errorf("no %s: not a SafeKit module", userconfigName)
	}

	remaining := lim.MaxBytes
	for i, zf := range zfs {
		if files[i].Mode.IsDir() {
			continue
		}
		data, err := inflate(zf, remaining)
		if errors.Is(err, errTooBig) {
			return nil, &entryError{zf.Name, fmt.Errorf("more than %d bytes in total once decompressed (a zip bomb?)", lim.MaxBytes)}
		}
		if err != nil {
			return nil, &entryError{zf.Name, err}
		}
		remaining -= int64(len(data))
		files[i].Data = data
	}

	files = append(files, implied...)
	sortFiles(files)
	return &Archive{Files: files}, nil
}

// hasUserconfig tells whether conf/userconfig.xml is among files, as a
// regular file.
func hasUserconfig(files []File) bool {
	for _, f := range files {
		if f.Name == userconfigName && !f.Mode.IsDir() {
			return true
		}
	}
	return false
}

// header is the File an entry becomes, without its data, or why the entry
// cannot be installed.
func header(zf *zip.File) (File, error) {
	name, err := cleanName(zf.Name)
	if err != nil {
		return File{}, err
	}
	// archive/zip does not decrypt: it would hand back the cipher text.
	if zf.Flags&0x1 != 0 {
		return File{}, errors.New("encrypted entry: not supported")
	}
	mode, err := entryMode(&zf.FileHeader, name)
	if err != nil {
		return File{}, err
	}
	if mode.IsDir() && zf.UncompressedSize64 != 0 {
		return File{}, errors.New("directory entry with data")
	}
	if name == "." && !mode.IsDir() {
		return File{}, errors.New("file with an empty name")
	}
	return File{Name: name, Mode: mode}, nil
}

// entryMode is the mode an entry gets on disk. An archive made on unix
// carries it in the external attributes; setuid, setgid and sticky bits are
// dropped, as no module needs them and extraction runs as root. An archive
// made without one (on Windows, or by a tool that leaves it out) gets 0755
// for directories and for what looks like a script under bin/ (no
// extension, or .sh), 0644 otherwise, so that the scripts stay executable.
func entryMode(h *zip.FileHeader, name string) (fs.FileMode, error) {
	creator := h.CreatorVersion >> 8
	unix := h.ExternalAttrs >> 16
	if (creator == creatorUnix || creator == creatorMacOS) && unix != 0 {
		perm := fs.FileMode(unix & 0o777)
		switch unix & unixTypeMask {
		case unixDir:
			return fs.ModeDir | perm, nil
		case 0, unixRegular:
			// Some zippers leave the type out; the trailing "/" decides.
			if strings.HasSuffix(h.Name, "/") {
				return fs.ModeDir | perm, nil
			}
			return perm, nil
		case unixSymlink:
			return 0, fmt.Errorf("symbolic link: %w", errNotFileOrDir)
		case unixFIFO:
			return 0, fmt.Errorf("named pipe: %w", errNotFileOrDir)
		case unixCharDev:
			return 0, fmt.Errorf("character device: %w", errNotFileOrDir)
		case unixBlockDev:
			return 0, fmt.Errorf("block device: %w", errNotFileOrDir)
		case unixSocket:
			return 0, fmt.Errorf("socket: %w", errNotFileOrDir)
		default:
			return 0, fmt.Errorf("unknown unix file type %#o: %w", unix&unixTypeMask, errNotFileOrDir)
		}
	}
	switch {
	case h.Mode().IsDir():
		return fs.ModeDir | 0o755, nil
	case isScript(name):
		return 0o755, nil
	}
	return 0o644, nil
}

// isScript tells whether a file made without a unix mode is to be
// executable.
func isScript(name string) bool {
	if !strings.HasPrefix(name, "bin/") {
		return false
	}
	ext := path.Ext(name)
	return ext == "" || ext == ".sh"
}

// errTooBig is inflate's way of saying that the data went past its budget.
var errTooBig = errors.New("too big")

// inflate decompresses one entry, reading at most one byte past budget: the
// sizes in the headers are the archive's to choose, so only the bytes
// actually produced count.
func inflate(zf *zip.File, budget int64) ([]byte, error) {
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("cannot open: %w", err)
	}
	defer rc.Close()
	limit := budget
	if limit < math.MaxInt64 {
		limit++ // one byte past budget tells "too big" from "just fits"
	}
	data, err := io.ReadAll(io.LimitReader(rc, limit))
	switch {
	case int64(len(data)) > budget:
		return nil, errTooBig
	case errors.Is(err, zip.ErrFormat):
		// archive/zip says this once the data outgrows the declared size.
		return nil, fmt.Errorf("more data than its header declares: %w", err)
	case err != nil:
		return nil, fmt.Errorf("corrupt data: %w", err)
	}
	return data, nil
}

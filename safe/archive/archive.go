package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// userconfigName is the one file every module archive must hold.
const userconfigName = "conf/userconfig.xml"

// Limits bound what Read accepts, so that a hostile archive cannot exhaust
// memory. A zero or negative field means the DefaultLimits value.
type Limits struct {
	// MaxEntries is the most entries an archive may have, counting the
	// directories its names imply but do not list. Default 10,000.
	MaxEntries int
	// MaxBytes is the most bytes of file data, in total over all entries,
	// once decompressed. Default 1 GiB.
	MaxBytes int64
}

// DefaultLimits are far above any published module (tens of kilobytes, a
// dozen entries) and far below what would hurt a node.
var DefaultLimits = Limits{MaxEntries: 10_000, MaxBytes: 1 << 30}

// orDefaults fills the zero fields of lim.
func (lim Limits) orDefaults() Limits {
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = DefaultLimits.MaxEntries
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultLimits.MaxBytes
	}
	return lim
}

// File is one entry of a module archive.
type File struct {
	// Name is the slash-separated path inside the module, without a leading
	// "./" or a trailing "/": "bin/start_prim", "conf".
	Name string
	// Mode is the permission bits, plus fs.ModeDir for a directory. No
	// other type bit is allowed.
	Mode fs.FileMode
	// Data is the content of a regular file; nil for a directory.
	Data []byte
}

// Archive is a module archive held in memory. Read returns its Files sorted
// by name, each directory before what it holds, and with every directory
// the names imply.
type Archive struct {
	Files []File
}

// Lookup returns the entry called name ("bin/start_prim"; a trailing "/" or
// a leading "./" is ignored).
func (a *Archive) Lookup(name string) (*File, bool) {
	name = path.Clean(name)
	for i := range a.Files {
		if a.Files[i].Name == name {
			return &a.Files[i], true
		}
	}
	return nil, false
}

// Userconfig returns the content of conf/userconfig.xml, or nil if the
// archive has none (Read never returns such an archive).
func (a *Archive) Userconfig() []byte {
	f, ok := a.Lookup(userconfigName)
	if !ok || f.Mode.IsDir() {
		return nil
	}
	return f.Data
}

// Names returns the base names of the regular files directly in dir, sorted:
// a.Names("bin") lists a module's scripts. dir "" or "." is the top of the
// module.
func (a *Archive) Names(dir string) []string {
	dir = path.Clean(dir) // "" becomes "."
	var names []string
	for _, f := range a.Files {
		if !f.Mode.IsDir() && path.Dir(f.Name) == dir {
			names = append(names, path.Base(f.Name))
		}
	}
	slices.Sort(names)
	return names
}

// entryError names the archive entry at fault, as stored in the archive, so
// that the user can find it with unzip -l.
type entryError struct {
	entry string
	err   error
}

func (e *entryError) Error() string { return fmt.Sprintf("entry %q: %v", e.entry, e.err) }
func (e *entryError) Unwrap() error { return e.err }

// cleanName turns a name as stored in an archive into the form File.Name
// holds, or says why extracting it could write outside the module
// directory. The result is "." for the module directory itself ("./").
//
// Backslashes are refused rather than read as separators: a zip made with
// them is broken, and on Linux `..\..\evil` is a legal file name that would
// turn into a traversal the day the module is packed or extracted on
// Windows.
func cleanName(raw string) (string, error) {
	switch {
	case raw == "":
		return "", errors.New("empty name")
	case strings.ContainsRune(raw, 0):
		return "", errors.New("NUL byte in name")
	case hasDrive(raw):
		return "", errors.New("name starts with a Windows drive letter: it would leave the module directory")
	case strings.Contains(raw, `\`):
		return "", errors.New(`backslash in name (a Windows path; zip names use "/"): it could leave the module directory`)
	case strings.HasPrefix(raw, "/"):
		return "", errors.New("absolute name: it would leave the module directory")
	}
	for c := range strings.SplitSeq(raw, "/") {
		if c == ".." {
			return "", errors.New(`".." in name: it would leave the module directory`)
		}
	}
	return path.Clean(raw), nil
}

// hasDrive tells whether name starts like C: or c:\.
func hasDrive(name string) bool {
	if len(name) < 2 || name[1] != ':' {
		return false
	}
	c := name[0] | 0x20 // lower case for ASCII letters
	return 'a' <= c && c <= 'z'
}

// typeName says what kind of file mode m is, for errors.
func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}

// errNotFileOrDir is the rule links and special files break: a module is
// scripts, configuration and web pages, and a link in an archive is the
// classic way to make a later entry land outside the target.
var errNotFileOrDir = errors.New("a module archive holds only regular files and directories")

// tree checks that files, with raw(i) the name of files[i] as stored, form a
// tree: each name once, nothing below a regular file. It returns the
// directories the names imply but do not list, with mode 0755, and refuses
// more than maxEntries entries in all (maxEntries <= 0: no limit).
func tree(files []File, raw func(int) string, maxEntries int) ([]File, error) {
	// seen maps a name to its index in files, or -1 for an implied
	// directory.
	seen := make(map[string]int, len(files))
	for i, f := range files {
		if j, ok := seen[f.Name]; ok {
			if files[j].Mode.IsDir() != f.Mode.IsDir() {
				return nil, &entryError{raw(i), fmt.Errorf("%q is both a file and a directory (see entry %q)", f.Name, raw(j))}
			}
			return nil, &entryError{raw(i), fmt.Errorf("duplicate name (see entry %q)", raw(j))}
		}
		seen[f.Name] = i
	}
	var implied []File
	for i, f := range files {
		// Stop at the first known parent: its own parents were added when
		// it was (implied) or will be on its own turn (listed).
		for dir := path.Dir(f.Name); dir != "."; dir = path.Dir(dir) {
			if j, ok := seen[dir]; ok {
				if j >= 0 && !files[j].Mode.IsDir() {
					return nil, &entryError{raw(i), fmt.Errorf("%q is both a file and a directory (see entry %q)", dir, raw(j))}
				}
				break
			}
			seen[dir] = -1
			implied = append(implied, File{Name: dir, Mode: fs.ModeDir | 0o755})
			if maxEntries > 0 && len(files)+len(implied) > maxEntries {
				return nil, fmt.Errorf("more than %d entries, counting the directories the names imply", maxEntries)
			}
		}
	}
	return implied, nil
}

// complete returns a's files, checked the way Read checks an archive (the
// limits aside), with the directories their names imply, sorted by name.
// Extract and WriteTo start from it because an Archive may be built by hand
// and must not become a way around Read's rules.
func (a *Archive) complete() ([]File, error) {
	files := slices.Clone(a.Files)
	for _, f := range files {
		name, err := cleanName(f.Name)
		if err != nil {
			return nil, &entryError{f.Name, err}
		}
		if name != f.Name || name == "." {
			return nil, &entryError{f.Name, fmt.Errorf("name is not in clean form (want %q)", name)}
		}
		if t := f.Mode.Type(); t != 0 && t != fs.ModeDir {
			return nil, &entryError{f.Name, fmt.Errorf("%s: %w", typeName(t), errNotFileOrDir)}
		}
		if f.Mode.IsDir() && len(f.Data) > 0 {
			return nil, &entryError{f.Name, errors.New("directory with data")}
		}
	}
	implied, err := tree(files, func(i int) string { return files[i].Name }, 0)
	if err != nil {
		return nil, err
	}
	files = append(files, implied...)
	sortFiles(files)
	return files, nil
}

// sortFiles sorts by name, which puts every directory before what it holds.
func sortFiles(files []File) {
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
}

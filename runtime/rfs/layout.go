package rfs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/safekit-oss/safekit/safe"
)

// The on-disk layout of a configured replicated directory /a/dir:
//
//	/a/dir<suffix>   the real content (the backing directory)
//	/a/dir           a symlink to it while the module is stopped; a
//	                 directory with the FUSE mount on it while it runs
//
// so that the application finds its files at the usual place in both
// cases, and can only change them through the mount while the module runs.

// Backing is the directory that holds the real content of dir.
func Backing(dir, suffix string) string {
	if suffix == "" {
		suffix = DefaultSuffix
	}
	return filepath.Clean(dir) + suffix
}

// dirState is what a replicated directory looks like on disk.
type dirState int

const (
	stPlain      dirState = iota // a directory, not configured
	stConfigured                 // symlink to the backing directory
	stMounted                    // our mount (or a dead one) on the directory
	stMissing                    // neither the directory nor its backing
	stRepairable                 // backing present, dir missing
)

func inspect(dir, backing string) (dirState, error) {
	fi, err := os.Lstat(dir)
	_, berr := os.Lstat(backing)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return stMounted, nil
	case errors.Is(err, os.ErrNotExist):
		if berr == nil {
			return stRepairable, nil
		}
		return stMissing, nil
	case err != nil:
		return 0, fmt.Errorf("replicated directory %s: %w", dir, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		t, err := os.Readlink(dir)
		if err != nil {
			return 0, fmt.Errorf("replicated directory %s: %w", dir, err)
		}
		if filepath.Clean(t) != backing {
			return 0, fmt.Errorf("replicated directory %s is a symlink to %s, not to %s: remove it and restore the directory", dir, t, backing)
		}
		if berr != nil {
			return 0, fmt.Errorf("replicated directory %s: its content %s is missing (%v): restore it from the other node", dir, backing, berr)
		}
		return stConfigured, nil
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("replicated directory %s is not a directory: create the directory on every node", dir)
	}
	if berr == nil {
		if mountedOurs(dir, backing) {
			return stMounted, nil
		}
		return 0, fmt.Errorf("replicated directory %s and %s both exist: keep the one with the data, remove or rename the other", dir, backing)
	}
	return stPlain, nil
}

// Configure renames each replicated directory /a/dir to /a/dir<suffix> and
// puts a symlink in its place. It is idempotent. It refuses, renaming
// nothing, when a directory is missing, is a mount point or a file-system
// root, is nested in another replicated directory, or is also replicated by
// another module (others: the replicated directories of the other
// modules).
func Configure(dirs []safe.Replicated, suffix string, others []string) error {
	if suffix == "" {
		suffix = DefaultSuffix
	}
	var errs []string
	todo := []string{}
	repair := []string{}
	mounts, _ := mountTable()
	for i, d := range dirs {
		dir := filepath.Clean(d.Dir)
		if !filepath.IsAbs(dir) {
			errs = append(errs, fmt.Sprintf("replicated directory %q is not an absolute path", d.Dir))
			continue
		}
		for j, e := range dirs {
			if j != i && nested(dir, filepath.Clean(e.Dir)) && (j < i || dir != filepath.Clean(e.Dir)) {
				errs = append(errs, fmt.Sprintf("replicated directory %s is nested in or equal to %s: replicate only the upper one", dir, e.Dir))
			}
		}
		for _, o := range others {
			if nested(dir, filepath.Clean(o)) || nested(filepath.Clean(o), dir) {
				errs = append(errs, fmt.Sprintf("replicated directory %s overlaps %s, replicated by another module: two modules must not share replicated directories", dir, o))
			}
		}
		if dir == "/" {
			errs = append(errs, "replicated directory / is the root of the file system: replicate a sub-directory")
			continue
		}
		backing := Backing(dir, suffix)
		st, err := inspect(dir, backing)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		switch st {
		case stMissing:
			errs = append(errs, fmt.Sprintf("replicated directory %s does not exist: create it on every node, then configure again", dir))
		case stRepairable:
			repair = append(repair, dir)
		case stPlain:
			if fs, ok := mounts[dir]; ok {
				errs = append(errs, fmt.Sprintf("replicated directory %s is a mount point (%s): it is the root of a file system; replicate a sub-directory of it (see KB SK-0030)", dir, fs))
				continue
			}
			todo = append(todo, dir)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rfs configuration refused: %s", strings.Join(errs, "; "))
	}
	for _, dir := range repair {
		if err := os.Symlink(Backing(dir, suffix), dir); err != nil {
			return fmt.Errorf("replicated directory %s: restoring its symlink: %w", dir, err)
		}
	}
	for n, dir := range todo {
		backing := Backing(dir, suffix)
		err := os.Rename(dir, backing)
		if err == nil {
			err = os.Symlink(backing, dir)
			if err != nil {
				os.Rename(backing, dir)
			}
		}
		if err != nil {
			// Undo the directories already done: all or nothing.
			for _, d := range todo[:n] {
				os.Remove(d)
				os.Rename(Backing(d, suffix), d)
			}
			return fmt.Errorf("replicated directory %s: %w", dir, err)
		}
	}
	return nil
}

// Deconfigure puts each replicated directory back in place of its symlink.
// It is idempotent, and refuses while the module's mount is on a directory.
func Deconfigure(dirs []safe.Replicated, suffix string) error {
	var errs []string
	for _, d := range dirs {
		dir := filepath.Clean(d.Dir)
		backing := Backing(dir, suffix)
		st, err := inspect(dir, backing)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		switch st {
		case stMounted:
			errs = append(errs, fmt.Sprintf("replicated directory %s is mounted: stop the module first", dir))
		case stConfigured:
			if err := os.Remove(dir); err != nil {
				errs = append(errs, err.Error())
				continue
			}
			if err := os.Rename(backing, dir); err != nil {
				os.Symlink(backing, dir)
				errs = append(errs, fmt.Sprintf("replicated directory %s: %v", dir, err))
			}
		case stRepairable:
			if err := os.Rename(backing, dir); err != nil {
				errs = append(errs, fmt.Sprintf("replicated directory %s: %v", dir, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("rfs deconfiguration: %s", strings.Join(errs, "; "))
	}
	return nil
}

// nested reports whether a is b or below it.
func nested(a, b string) bool {
	return a == b || strings.HasPrefix(a, strings.TrimSuffix(b, "/")+"/")
}

// mountTable maps each mount point of this mount namespace to its file
// system type.
func mountTable() (map[string]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		sep := 6
		for sep < len(fields) && fields[sep] != "-" {
			sep++
		}
		if sep+2 >= len(fields) {
			continue
		}
		m[unescapeMount(fields[4])] = fields[sep+1] + " " + unescapeMount(fields[sep+2])
	}
	return m, sc.Err()
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountedOurs tells whether dir carries a FUSE mount of backing.
func mountedOurs(dir, backing string) bool {
	m, err := mountTable()
	if err != nil {
		return false
	}
	v, ok := m[dir]
	return ok && strings.HasPrefix(v, "fuse.") && strings.HasSuffix(v, " "+backing)
}

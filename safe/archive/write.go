package archive

import (
	"archive/zip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// modTime is the modification time of every entry written: the earliest a
// zip can hold. With it, and entries in name order, packing the same tree
// twice gives the same bytes, so a module's archive changes only when the
// module does.
var modTime = time.Date(1980, time.January, 1, 0, 0, 0, 0, time.UTC)

// Write packs the module directory root (conf/, bin/, web/..., every file
// under root) as a .safe archive into w: entries at the root of the archive,
// directories included, unix modes kept, file data deflated, in name order
// with a fixed modification time.
//
// It refuses symbolic links and special files (an archive cannot carry them
// safely: see Read), and names Read would refuse. It does not require
// conf/userconfig.xml, so that a broken module can still be saved, but Read
// refuses an archive without one.
func Write(w io.Writer, root string) error {
	a, err := load(root)
	if err != nil {
		return fmt.Errorf("pack %s: %w", root, err)
	}
	if _, err := a.WriteTo(w); err != nil {
		return fmt.Errorf("pack %s: %w", root, err)
	}
	return nil
}

// WriteFile packs the module directory root into the file path, as Write
// does. It writes a temporary file next to path, syncs it and renames it, so
// that path holds either its previous content or the whole new archive.
func WriteFile(path, root string) error {
	// Reading the tree before creating the temporary file keeps the latter
	// out of the archive when path is under root.
	a, err := load(root)
	if err != nil {
		return fmt.Errorf("pack %s into %s: %w", root, path, err)
	}
	if err := writeAtomic(path, a); err != nil {
		return fmt.Errorf("pack %s into %s: %w", root, path, err)
	}
	return nil
}

// WriteTo writes a as a .safe archive into w, the way Write does, and
// returns the number of bytes written. It refuses the names, modes and
// duplicates Read would refuse, and adds the directory entries the names
// imply.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	files, err := a.complete()
	if err != nil {
		return 0, fmt.Errorf("write module archive: %w", err)
	}
	cw := &countingWriter{w: w}
	zw := zip.NewWriter(cw)
	for _, f := range files {
		h := &zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: modTime}
		if f.Mode.IsDir() {
			h.Name += "/"
			h.Method = zip.Store
		}
		h.SetMode(f.Mode.Type() | f.Mode.Perm())
		fw, err := zw.CreateHeader(h)
		if err != nil {
			return cw.n, fmt.Errorf("write module archive: entry %q: %w", h.Name, err)
		}
		if _, err := fw.Write(f.Data); err != nil {
			return cw.n, fmt.Errorf("write module archive: entry %q: %w", h.Name, err)
		}
	}
	if err := zw.Close(); err != nil {
		return cw.n, fmt.Errorf("write module archive: %w", err)
	}
	return cw.n, nil
}

// countingWriter counts what WriteTo writes.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// load reads the module directory root into an Archive, refusing what an
// archive cannot carry. Modules are kilobytes: holding one in memory costs
// nothing and gives Write and WriteTo one code path.
func load(root string) (*Archive, error) {
	info, err := os.Lstat(root)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", root)
	}
	a := &Archive{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		t := d.Type()
		if t != 0 && t != fs.ModeDir {
			return fmt.Errorf("%s: %s: %w", p, typeName(t), errNotFileOrDir)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f := File{Name: name, Mode: t | info.Mode().Perm()}
		if !d.IsDir() {
			if f.Data, err = os.ReadFile(p); err != nil {
				return err
			}
		}
		a.Files = append(a.Files, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// writeAtomic writes a into path through a synced temporary file renamed
// into place.
func writeAtomic(path string, a *Archive) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := a.WriteTo(tmp); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; an archive is no secret.
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

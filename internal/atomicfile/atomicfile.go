// Package atomicfile replaces files so that a crash or a power cut leaves
// either the old content or the new one, never a mix or an empty file.
//
// The node's records (the module state with lastprim and uptodate, the
// cluster configuration, the web users) all go through it: a half-written
// record after a crash would make a node take the wrong role.
package atomicfile

import (
	"os"
	"path/filepath"
	"time"
)

// WriteFile replaces path with data and mode, creating its directory when
// missing. The data is on disk before the rename, and the rename is on
// disk before WriteFile returns.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	return WriteFileTime(path, data, mode, time.Time{})
}

// WriteFileTime is WriteFile that also sets the modification time, when
// mtime is not zero.
func WriteFileTime(path string, data []byte, mode os.FileMode, mtime time.Time) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: ENOENT, ignored
	if err := writeSync(tmp, data, mode); err != nil {
		return err
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(tmp.Name(), mtime, mtime); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// writeSync writes data into f, sets its mode, flushes it and closes it.
func writeSync(f *os.File, data []byte, mode os.FileMode) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir flushes a directory, so that a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

package cli

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/safe/archive"
)

func init() {
	register(&command{
		name:  "snapshot",
		usage: "snapshot -m AM /absolute/snapshot.zip",
		help:  "make a dump of AM, then zip the last 3 dumps and the last 3 configurations (SAFEVAR/snapshot/modules/AM) for support; the zip has no password",
		flags: map[string]bool{"-m": true},
		run:   runSnapshot,
	})
}

// A snapshot (User's Guide §7.18, §9.6.2) is a zip of
//
//	snapshot_<node>_<AM>/<AM>/config_YYYY_MM_DD_hh_mm_ss/   the last 3 configurations:
//	    module/{bin,conf,web}                                 SAFE/modules/lastconfig/AM_<date>.safe
//	    private/{bin,conf}                                    the active configuration (the newest only)
//	snapshot_<node>_<AM>/<AM>/dump_YYYY_MM_DD_hh_mm_ss/     the last 3 dumps, a new one first made
//
// SafeKit 8.2.4 protects the zip with the password "safekit"; this one has
// none (the standard library writes no encrypted zip).

func runSnapshot(e *Env, a *args) int {
	c := commands["snapshot"]
	name, err := e.module(a)
	if err != nil {
		return e.usage(c, "%v", err)
	}
	if len(a.pos) != 1 || !filepath.IsAbs(a.pos[0]) {
		return e.usage(c, "snapshot needs the absolute path of the zip to write")
	}
	done := e.logCommand(name, a.raw)
	if err := e.snapshot(name, a.pos[0]); err != nil {
		done(ExitFailure)
		return e.fail(err)
	}
	done(ExitOK)
	e.printf("Snapshot of module %s in %s\n", name, a.pos[0])
	return ExitOK
}

func (e *Env) snapshot(name, file string) error {
	if _, err := e.dump(name); err != nil {
		return err
	}
	base := snapshotDir(e.Roots, name)
	if err := e.snapshotConfigs(name, base); err != nil {
		return err
	}
	node := e.thisNode()
	if node == "-" {
		node, _ = os.Hostname()
	}
	top := fmt.Sprintf("snapshot_%s_%s/%s/", node, name, name)
	var dirs []string
	for _, prefix := range []string{"config_", "dump_"} {
		names := datedEntries(base, prefix)
		dirs = append(dirs, names[max(0, len(names)-snapshotKeep):]...)
	}
	return writeZip(file, base, dirs, top)
}

// snapshotConfigs makes config_<date> of the configurations kept in
// SAFE/modules/lastconfig, and keeps the last snapshotKeep of them; the
// newest also gets the active configuration (SAFE/private/modules/AM).
func (e *Env) snapshotConfigs(name, base string) error {
	mod := e.Roots.Module(name)
	entries, err := os.ReadDir(e.Roots.LastConfig())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var newest string
	for _, en := range entries {
		date, ok := strings.CutPrefix(en.Name(), name+"_")
		date, safe := strings.CutSuffix(date, ".safe")
		t, terr := time.ParseInLocation("2006-01-02_150405", date, time.Local)
		if !ok || !safe || terr != nil {
			continue
		}
		dir := filepath.Join(base, "config_"+t.Format(dumpTime))
		if dir > newest {
			newest = dir
		}
		if _, err := os.Stat(dir); err == nil {
			continue
		}
		ar, err := archive.ReadFile(filepath.Join(e.Roots.LastConfig(), en.Name()), archive.DefaultLimits)
		if err != nil {
			fmt.Fprintf(e.Stderr, "warning: snapshot: %v\n", err)
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := ar.Extract(filepath.Join(dir, "module")); err != nil {
			fmt.Fprintf(e.Stderr, "warning: snapshot: %v\n", err)
		}
	}
	if newest != "" && mod.Configured() {
		private := filepath.Join(newest, "private")
		_ = os.RemoveAll(private)
		if err := copyModuleTree(mod.Private(), private); err != nil {
			fmt.Fprintf(e.Stderr, "warning: snapshot: the active configuration: %v\n", err)
		}
	}
	pruneDirs(base, "config_", snapshotKeep)
	return nil
}

// copyModuleTree copies a module tree (bin, conf) to dst, which must not
// exist, with the modes of its files.
func copyModuleTree(src, dst string) error {
	var b bytes.Buffer
	if err := archive.Write(&b, src); err != nil {
		return err
	}
	ar, err := archive.Read(bytes.NewReader(b.Bytes()), int64(b.Len()), archive.DefaultLimits)
	if err != nil {
		return err
	}
	return ar.Extract(dst)
}

// writeZip writes the directories dirs of base into file, under top.
func writeZip(file, base string, dirs []string, top string) (err error) {
	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	zw := zip.NewWriter(f)
	for _, d := range dirs {
		err := filepath.WalkDir(filepath.Join(base, d), func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(base, p)
			info, err := de.Info()
			if err != nil {
				return err
			}
			if !de.IsDir() && !info.Mode().IsRegular() {
				return nil
			}
			h, err := zip.FileInfoHeader(info)
			if err != nil {
				return err
			}
			h.Name = top + filepath.ToSlash(rel)
			if de.IsDir() {
				h.Name += "/"
				_, err = zw.CreateHeader(h)
				return err
			}
			h.Method = zip.Deflate
			w, err := zw.CreateHeader(h)
			if err != nil {
				return err
			}
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			defer src.Close()
			_, err = io.Copy(w, src)
			return err
		})
		if err != nil {
			zw.Close()
			f.Close()
			return err
		}
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// Package modules manages the modules installed on a node: install,
// uninstall, list, ids and ports, package, and the configure / deconfigure
// cycle that turns SAFE/modules/AM into the active SAFE/private/modules/AM.
// It knows the on-disk layout (package layout), not the automaton.
package modules

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/modules/kvmadvice"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/safe"
	"github.com/safekit-oss/safekit/safe/archive"
)

// Manager performs module operations on one node.
type Manager struct {
	Roots layout.Roots
	// Env resolves %NAME% references that no macro defines; default: the
	// environment of this process.
	Env func(string) (string, bool)
	// Out receives progress lines and script output worth showing.
	Out io.Writer
	// ShAsBash: run "#!/bin/sh" scripts with bash (see runtime/scripts).
	ShAsBash bool
	// Guard, when set, is asked before an operation that needs the module
	// stopped (config of a running module, deconfig, uninstall); it returns
	// an error to refuse.
	Guard func(module, op string) error
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Domains reads the libvirt domain of a KVM module for the
	// configuration advice; default kvmadvice.Libvirt.
	Domains kvmadvice.Source
}

// NewManager returns a Manager for roots with the defaults filled in.
func NewManager(roots layout.Roots, out io.Writer) *Manager {
	return &Manager{Roots: roots, Env: os.LookupEnv, Out: out, ShAsBash: true, Now: time.Now}
}

func (m *Manager) printf(format string, args ...any) {
	if m.Out != nil {
		fmt.Fprintf(m.Out, format, args...)
	}
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$`)

// CheckName refuses names that cannot be module names.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("no module name: give one with -m AM")
	case name == "lastconfig":
		return errors.New(`"lastconfig" cannot be a module name: SAFE/modules/lastconfig keeps the last configurations; choose another name`)
	case !nameRE.MatchString(name):
		return fmt.Errorf("invalid module name %q: use letters, digits, '_' and '-' (at most 63 characters)", name)
	}
	return nil
}

// ErrNotInstalled is returned for operations on a module that is not there.
var ErrNotInstalled = errors.New("module not installed")

func (m *Manager) installed(name string) (layout.Module, error) {
	if err := CheckName(name); err != nil {
		return layout.Module{}, err
	}
	mod := m.Roots.Module(name)
	if !mod.Installed() {
		return mod, fmt.Errorf("%w: %s (no %s); see safekit module list", ErrNotInstalled, name, mod.Userconfig())
	}
	return mod, nil
}

// Info describes an installed module.
type Info struct {
	Name       string
	ID         int
	Mode       safe.Mode
	Configured bool
}

// List returns the installed modules, sorted by name.
func (m *Manager) List() ([]Info, error) {
	entries, err := os.ReadDir(m.Roots.ModulesDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ids, err := m.readIDs()
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "lastconfig" || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		mod := m.Roots.Module(e.Name())
		if !mod.Installed() {
			continue
		}
		out = append(out, Info{Name: e.Name(), ID: ids[e.Name()], Mode: m.mode(mod), Configured: mod.Configured()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// mode reads the module mode from the active configuration, else from the
// installed one.
func (m *Manager) mode(mod layout.Module) safe.Mode {
	for _, p := range []string{filepath.Join(mod.UserConf(), "userconfig.xml"), mod.Userconfig()} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		return safe.ParseUserconfig(data, safe.Options{}).Config.Service.Mode
	}
	return ""
}

// Install installs the archive file as module name. file may be absolute, a
// path relative to the current directory, a name to look for under
// SAFE/Application_Modules (and its subdirectories), or empty for
// <name>.safe there. id 0 picks the smallest free id (or keeps the module's
// id on reinstall). It returns the module id.
func (m *Manager) Install(name, file string, id int, reinstall bool) (int, error) {
	if err := CheckName(name); err != nil {
		return 0, err
	}
	mod := m.Roots.Module(name)
	if mod.Installed() && !reinstall {
		return 0, fmt.Errorf("module %s is already installed: use -r to reinstall it", name)
	}
	path, err := m.findArchive(name, file)
	if err != nil {
		return 0, err
	}
	ar, err := archive.ReadFile(path, archive.DefaultLimits)
	if err != nil {
		return 0, err
	}
	unlock, err := m.lockIDs()
	if err != nil {
		return 0, err
	}
	defer unlock()
	ids, err := m.readIDs()
	if err != nil {
		return 0, err
	}
	id, err = pickID(ids, name, id)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(m.Roots.ModulesDir(), 0o755); err != nil {
		return 0, err
	}
	// Extract next to the target, then swap, so that a failure leaves the
	// installed module as it was.
	staging := filepath.Join(m.Roots.ModulesDir(), "."+name+".installing")
	_ = os.RemoveAll(staging)
	if err := ar.Extract(staging); err != nil {
		return 0, fmt.Errorf("install %s from %s: %w", name, path, err)
	}
	if err := swapDir(staging, mod.Dir()); err != nil {
		_ = os.RemoveAll(staging)
		return 0, fmt.Errorf("install %s: %w", name, err)
	}
	ids[name] = id
	if err := m.writeIDs(ids); err != nil {
		return 0, err
	}
	m.printf("Module %s installed from %s (id %d)\n", name, path, id)
	return id, nil
}

// swapDir replaces dst by src (both on one file system).
func swapDir(src, dst string) error {
	old := dst + ".old"
	_ = os.RemoveAll(old)
	hadOld := false
	if _, err := os.Stat(dst); err == nil {
		if err := os.Rename(dst, old); err != nil {
			return err
		}
		hadOld = true
	}
	if err := os.Rename(src, dst); err != nil {
		if hadOld {
			_ = os.Rename(old, dst)
		}
		return err
	}
	if hadOld {
		return os.RemoveAll(old)
	}
	return nil
}

func (m *Manager) findArchive(name, file string) (string, error) {
	if file == "" {
		file = name + ".safe"
	}
	if filepath.IsAbs(file) {
		if _, err := os.Stat(file); err != nil {
			return "", fmt.Errorf("cannot read %s: %w", file, err)
		}
		return file, nil
	}
	if st, err := os.Stat(file); err == nil && !st.IsDir() && strings.ContainsRune(file, os.PathSeparator) {
		return filepath.Abs(file)
	}
	var found string
	root := m.Roots.ApplicationModules()
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || found != "" {
			return nil
		}
		if d.IsDir() && p != root && d.Name() == "backup" {
			return filepath.SkipDir
		}
		if !d.IsDir() && (d.Name() == file || strings.HasSuffix(p, string(os.PathSeparator)+file)) {
			found = p
		}
		return nil
	})
	if found == "" {
		if st, err := os.Stat(file); err == nil && !st.IsDir() {
			return filepath.Abs(file)
		}
		return "", fmt.Errorf("%s not found in %s or its subdirectories: give an absolute path", file, root)
	}
	return found, nil
}

// Uninstall removes module name after saving a copy in
// SAFE/Application_Modules/backup; a configured module is deconfigured
// first.
func (m *Manager) Uninstall(name string) error {
	mod, err := m.installed(name)
	if err != nil {
		return err
	}
	if m.Guard != nil {
		if err := m.Guard(name, "uninstall"); err != nil {
			return err
		}
	}
	if mod.Configured() {
		if err := m.Deconfigure(name); err != nil {
			return fmt.Errorf("uninstall %s: %w", name, err)
		}
	}
	backup := filepath.Join(m.Roots.Backups(), fmt.Sprintf("%s_%s.safe", name, m.now().Format("2006-01-02_150405")))
	if err := os.MkdirAll(m.Roots.Backups(), 0o755); err != nil {
		return err
	}
	if err := archive.WriteFile(backup, mod.Dir()); err != nil {
		return fmt.Errorf("uninstall %s: cannot save a backup, nothing removed: %w", name, err)
	}
	unlock, err := m.lockIDs()
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.RemoveAll(mod.Dir()); err != nil {
		return err
	}
	ids, err := m.readIDs()
	if err != nil {
		return err
	}
	delete(ids, name)
	if err := m.writeIDs(ids); err != nil {
		return err
	}
	m.printf("Module %s uninstalled (backup: %s)\n", name, backup)
	return nil
}

// Package writes SAFE/modules/name as the .safe file dest (an absolute
// path).
func (m *Manager) Package(name, dest string) error {
	mod, err := m.installed(name)
	if err != nil {
		return err
	}
	if !filepath.IsAbs(dest) {
		return fmt.Errorf("%s is not an absolute path: safekit module package needs one", dest)
	}
	if err := archive.WriteFile(dest, mod.Dir()); err != nil {
		return err
	}
	m.printf("Module %s packaged in %s\n", name, dest)
	return nil
}

package modules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/internal/atomicfile"
	"github.com/safekit-oss/safekit/modules/kvmadvice"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/rfs"
	"github.com/safekit-oss/safekit/runtime/scripts"
	"github.com/safekit-oss/safekit/safe"
	"github.com/safekit-oss/safekit/safe/archive"
)

// LoadCluster reads SAFEVAR/cluster/cluster.xml. It returns nil, nil when
// there is none yet.
func LoadCluster(roots layout.Roots) (*safe.Cluster, safe.Diagnostics, error) {
	data, err := os.ReadFile(roots.ClusterXML())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	cl, diags := safe.ParseCluster(data, roots.ClusterXML())
	if diags.HasErrors() {
		return nil, diags, fmt.Errorf("%s has errors; fix it and apply it with safekit cluster config:\n%w", roots.ClusterXML(), diags.Err())
	}
	return cl, diags, nil
}

// Check validates the installed configuration of module name (SAFE/modules/
// AM) without applying it. It is the first step of Configure: both use this
// code path. The result holds every diagnostic; err is set when there are
// errors.
func (m *Manager) Check(name string) (*safe.Userconfig, error) {
	mod, err := m.installed(name)
	if err != nil {
		return nil, err
	}
	return m.check(mod, mod.Dir())
}

// check validates the module tree at dir (SAFE/modules/AM, or a copy).
func (m *Manager) check(mod layout.Module, dir string) (*safe.Userconfig, error) {
	file := filepath.Join(dir, "conf", "userconfig.xml")
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	cl, _, err := LoadCluster(m.Roots)
	if err != nil {
		return nil, err
	}
	scriptNames, err := listFiles(filepath.Join(dir, "bin"))
	if err != nil {
		return nil, err
	}
	env := m.Env
	if env == nil {
		env = os.LookupEnv
	}
	u := safe.ParseUserconfig(data, safe.Options{File: file, Cluster: cl, Env: env, Scripts: scriptNames})
	if err := u.Diags.Err(); err != nil {
		return u, fmt.Errorf("configuration of module %s has errors:\n%w", mod.Name, err)
	}
	domains := m.Domains
	if domains == nil {
		domains = kvmadvice.Libvirt
	}
	for _, w := range kvmadvice.Advise(u.Config, domains) {
		u.Diags = append(u.Diags, safe.Diagnostic{File: file, Element: "user", Severity: safe.Warning, Msg: w})
	}
	return u, nil
}

// listFiles returns the names of the regular files of dir ([] when dir does
// not exist).
func listFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, e := range entries {
		if !e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// ConfigError is a failed configuration step; Output is what the failing
// script printed.
type ConfigError struct {
	Module, Step string
	Result       scripts.Result
}

func (e *ConfigError) Error() string {
	msg := fmt.Sprintf("module %s: script %s failed (%s)", e.Module, e.Step, e.Result.Describe())
	if out := strings.TrimSpace(e.Result.Tail); out != "" {
		msg += "; its output:\n" + out
	}
	return msg + "\nthe previous configuration is still active"
}

// Configure applies SAFE/modules/name: check, copy bin/ and conf/ to
// SAFE/private/modules/name with safeconf.xml and the start/stop wrappers,
// run the config then postconfig scripts, keep the configuration under
// SAFE/modules/lastconfig. Any failure restores the previous active
// configuration. Warnings are returned with a nil error.
func (m *Manager) Configure(ctx context.Context, name string) (safe.Diagnostics, error) {
	mod, err := m.installed(name)
	if err != nil {
		return nil, err
	}
	u, err := m.check(mod, mod.Dir())
	if err != nil {
		return diagsOf(u), err
	}
	cfg := u.Config
	if cfg.Windows {
		return u.Diags, fmt.Errorf("module %s is a Windows module (%s): it cannot be configured on Linux", name, windowsReason(u.Diags))
	}
	if m.Guard != nil {
		if err := m.Guard(name, "config"); err != nil {
			return u.Diags, err
		}
	}

	staging := mod.Private() + ".new"
	_ = os.RemoveAll(staging)
	defer os.RemoveAll(staging)
	if err := m.stage(mod, u, staging); err != nil {
		return u.Diags, fmt.Errorf("configure %s: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Dir(mod.Private()), 0o755); err != nil {
		return u.Diags, err
	}
	previous := mod.Private() + ".previous"
	_ = os.RemoveAll(previous)
	hadPrevious := false
	if _, err := os.Stat(mod.Private()); err == nil {
		if err := os.Rename(mod.Private(), previous); err != nil {
			return u.Diags, err
		}
		hadPrevious = true
	}
	if err := os.Rename(staging, mod.Private()); err != nil {
		if hadPrevious {
			_ = os.Rename(previous, mod.Private())
		}
		return u.Diags, err
	}
	undoDirs, err := m.configureReplicated(mod, cfg, previous, hadPrevious)
	if err != nil {
		_ = os.RemoveAll(mod.Private())
		if hadPrevious {
			_ = os.Rename(previous, mod.Private())
		}
		return u.Diags, fmt.Errorf("configure %s: %w", name, err)
	}
	rollback := func() {
		undoDirs()
		_ = os.RemoveAll(mod.Private())
		if hadPrevious {
			_ = os.Rename(previous, mod.Private())
		}
	}
	for _, step := range []string{"config", "postconfig"} {
		if res, ran := m.runConfigScript(ctx, mod, cfg, step); ran && !res.OK() {
			rollback()
			return u.Diags, &ConfigError{Module: name, Step: step, Result: res}
		}
	}
	_ = os.RemoveAll(previous)
	if err := os.MkdirAll(mod.UserVar(), 0o755); err != nil {
		return u.Diags, err
	}
	if err := m.saveLastConfig(mod); err != nil {
		m.printf("warning: the configuration is applied but could not be saved in %s: %v\n", m.Roots.LastConfig(), err)
	}
	return u.Diags, nil
}

func diagsOf(u *safe.Userconfig) safe.Diagnostics {
	if u == nil {
		return nil
	}
	return u.Diags
}

func windowsReason(ds safe.Diagnostics) string {
	for _, d := range ds {
		if strings.HasPrefix(d.Msg, "this is a Windows module (") {
			rest := strings.TrimPrefix(d.Msg, "this is a Windows module (")
			if i := strings.Index(rest, "):"); i >= 0 {
				return rest[:i]
			}
		}
	}
	return "Windows paths or scripts"
}

// stage builds the new active configuration in dir.
func (m *Manager) stage(mod layout.Module, u *safe.Userconfig, dir string) error {
	for _, sub := range []string{"bin", "conf"} {
		if err := copyTree(filepath.Join(mod.Dir(), sub), filepath.Join(dir, sub)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "conf"), 0o755); err != nil {
		return err
	}
	u.Expanded.Indent(2)
	safeconf, err := u.Expanded.WriteToBytes()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "conf", "safeconf.xml"), safeconf, 0o444); err != nil {
		return err
	}
	return writeWrappers(mod, u.Config, filepath.Join(dir, "bin"))
}

// runConfigScript runs bin/<step> of the new configuration if it exists and
// the module has <user> (without it no script runs).
func (m *Manager) runConfigScript(ctx context.Context, mod layout.Module, cfg *safe.Config, step string) (scripts.Result, bool) {
	path := filepath.Join(mod.UserBin(), step)
	if cfg.User == nil {
		return scripts.Result{}, false
	}
	if _, err := os.Stat(path); err != nil {
		return scripts.Result{}, false
	}
	if err := os.MkdirAll(mod.UserVar(), 0o755); err != nil {
		return scripts.Result{Err: err}, true
	}
	m.printf("Running %s of module %s\n", step, mod.Name)
	res := scripts.Run(ctx, scripts.Spec{
		Script:   step,
		Path:     path,
		Env:      scripts.Environ(mod, cfg.User.Vars, scripts.DaemonEnviron()),
		Dir:      mod.UserBin(),
		Timeout:  cfg.User.ForceStopTimeout.D(),
		LogDir:   mod.UserVar(),
		Discard:  cfg.User.Logging == "none",
		LogCapKB: cfg.User.UserLogSize,
		ShAsBash: m.ShAsBash,
	})
	return res, true
}

// saveLastConfig keeps SAFE/modules/AM as
// SAFE/modules/lastconfig/AM_<date>_<time>.safe, with the last 3 per module.
func (m *Manager) saveLastConfig(mod layout.Module) error {
	dir := m.Roots.LastConfig()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := fmt.Sprintf("%s_%s.safe", mod.Name, m.now().Format("2006-01-02_150405"))
	if err := archive.WriteFile(filepath.Join(dir, name), mod.Dir()); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var mine []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), mod.Name+"_") && strings.HasSuffix(e.Name(), ".safe") &&
			isDateSuffix(strings.TrimSuffix(strings.TrimPrefix(e.Name(), mod.Name+"_"), ".safe")) {
			mine = append(mine, e.Name())
		}
	}
	sort.Strings(mine)
	for len(mine) > LastConfigs {
		_ = os.Remove(filepath.Join(dir, mine[0]))
		mine = mine[1:]
	}
	return nil
}

// LastConfigs is how many configurations SAFE/modules/lastconfig keeps per
// module.
const LastConfigs = 3

func isDateSuffix(s string) bool {
	_, err := time.Parse("2006-01-02_150405", s)
	return err == nil
}

// Deconfigure runs the module's deconfig script and removes its active
// configuration.
func (m *Manager) Deconfigure(name string) error {
	mod, err := m.installed(name)
	if err != nil && !m.Roots.Module(name).Configured() {
		return err
	}
	mod = m.Roots.Module(name)
	if !mod.Configured() {
		return fmt.Errorf("module %s is not configured", name)
	}
	if m.Guard != nil {
		if err := m.Guard(name, "deconfig"); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(filepath.Join(mod.UserConf(), "userconfig.xml"))
	if err != nil {
		return err
	}
	cfg := safe.ParseUserconfig(data, safe.Options{Env: m.Env}).Config
	if res, ran := m.runConfigScript(context.Background(), mod, cfg, "deconfig"); ran && !res.OK() {
		m.printf("warning: script deconfig of module %s failed (%s); the configuration is removed anyway\n", name, res.Describe())
	}
	if cfg.RFS != nil && !cfg.Windows {
		if err := rfs.Deconfigure(cfg.RFS.Replicated, cfg.RFS.MountOverSuffix); err != nil {
			return fmt.Errorf("deconfigure %s: the replicated directories could not be restored, the configuration is kept: %w", name, err)
		}
	}
	return os.RemoveAll(mod.Private())
}

// Signature identifies a configuration: a hash of the conf/ and bin/ files
// (names, modes, contents) and the time of the newest.
type Signature struct {
	Hash string
	Date time.Time
}

// ConfInfo returns the signatures of the active configuration
// (SAFE/private/modules/AM) and of the installed one (SAFE/modules/AM);
// they differ when the installed one has not been applied. A zero Signature
// means there is none.
func (m *Manager) ConfInfo(name string) (active, current Signature, err error) {
	mod, err := m.installed(name)
	if err != nil {
		return
	}
	if current, err = signature(mod.Dir(), false); err != nil {
		return
	}
	if mod.Configured() {
		active, err = signature(mod.Private(), true)
	}
	return
}

// signature hashes the conf/ and bin/ files of dir. In an active
// configuration the generated files (safeconf.xml, wrappers) are left out so
// that both sides compare equal when nothing changed.
func signature(dir string, active bool) (Signature, error) {
	h := sha256.New()
	var newest time.Time
	for _, sub := range []string{"bin", "conf"} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			if active && isGenerated(rel) {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if info.ModTime().After(newest) {
				newest = info.ModTime()
			}
			fmt.Fprintf(h, "%s %o\n", filepath.ToSlash(rel), info.Mode().Perm())
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(h, f)
			return err
		})
		if err != nil {
			return Signature{}, err
		}
	}
	return Signature{Hash: hex.EncodeToString(h.Sum(nil)), Date: newest}, nil
}

func isGenerated(rel string) bool {
	base := filepath.Base(rel)
	return base == "safeconf.xml" || strings.HasSuffix(base, "_start_wrapper") || strings.HasSuffix(base, "_stop_wrapper")
}

// copyTree copies the regular files and directories of src into dst,
// keeping modes. A missing src gives an empty dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) && p == src {
			return os.MkdirAll(dst, 0o755)
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return atomicfile.WriteFile(target, data, info.Mode().Perm())
		default:
			return fmt.Errorf("%s is not a regular file: a module holds only files and directories", p)
		}
	})
}

// configureReplicated renames the replicated directories of the new
// configuration (rfs.Configure: /a/dir becomes a symlink to
// /a/dir_For_SafeKit_Replication) and restores those the previous
// configuration replicated and the new one does not. It returns what undoes
// its changes if a later step of the configuration fails.
func (m *Manager) configureReplicated(mod layout.Module, cfg *safe.Config, previous string, hadPrevious bool) (func(), error) {
	var old *safe.RFS
	if hadPrevious {
		if data, err := os.ReadFile(filepath.Join(previous, "conf", "safeconf.xml")); err == nil {
			old = safe.ParseUserconfig(data, safe.Options{}).Config.RFS
		}
	}
	var newDirs []safe.Replicated
	suffix := ""
	if cfg.RFS != nil {
		newDirs, suffix = cfg.RFS.Replicated, cfg.RFS.MountOverSuffix
	}
	var fresh []safe.Replicated
	for _, d := range newDirs {
		if old == nil || !hasDir(old.Replicated, d.Dir) || old.MountOverSuffix != suffix {
			fresh = append(fresh, d)
		}
	}
	if len(fresh) > 0 {
		others, err := m.otherReplicatedDirs(mod.Name)
		if err != nil {
			return nil, err
		}
		if err := rfs.Configure(fresh, suffix, others); err != nil {
			return nil, err
		}
	}
	if old != nil {
		var gone []safe.Replicated
		for _, d := range old.Replicated {
			if !hasDir(newDirs, d.Dir) || old.MountOverSuffix != suffix {
				gone = append(gone, d)
			}
		}
		if len(gone) > 0 {
			if err := rfs.Deconfigure(gone, old.MountOverSuffix); err != nil {
				_ = rfs.Deconfigure(fresh, suffix)
				return nil, err
			}
		}
	}
	return func() { _ = rfs.Deconfigure(fresh, suffix) }, nil
}

func hasDir(dirs []safe.Replicated, dir string) bool {
	for _, d := range dirs {
		if d.Dir == dir {
			return true
		}
	}
	return false
}

// otherReplicatedDirs lists the directories that the other configured
// modules of this node replicate: two modules may not share one.
func (m *Manager) otherReplicatedDirs(name string) ([]string, error) {
	infos, err := m.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, i := range infos {
		if i.Name == name || !i.Configured {
			continue
		}
		data, err := os.ReadFile(m.Roots.Module(i.Name).SafeConf())
		if err != nil {
			continue
		}
		if r := safe.ParseUserconfig(data, safe.Options{}).Config.RFS; r != nil {
			for _, d := range r.Replicated {
				out = append(out, d.Dir)
			}
		}
	}
	return out, nil
}

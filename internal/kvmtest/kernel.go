package kvmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// kernelMeta is the Debian metapackage whose dependency names the current
// kernel package (linux-image-<release>).
const kernelMeta = "linux-image-amd64"

// CacheDir is where the kernel and the initramfs stay between runs:
// $SAFEKIT_KVMTEST_CACHE, else $XDG_CACHE_HOME/safekit-kvmtest, else
// /var/cache/safekit-kvmtest. Nodes see it as the host has it (it is not a
// private directory), so the domains of every node boot the same files.
func CacheDir() string {
	if d := os.Getenv("SAFEKIT_KVMTEST_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "safekit-kvmtest")
	}
	return "/var/cache/safekit-kvmtest"
}

// Kernel is a Debian kernel package unpacked (dpkg -x) in CacheDir, with
// the modules.dep that depmod made for it: the package itself ships none,
// its postinst runs depmod on the system it is installed on.
type Kernel struct {
	// Package is the package name, linux-image-<Release>.
	Package string
	// Release is the kernel's release (uname -r in the guest).
	Release string
	// Root holds the unpacked package: boot/, lib/modules/<Release>/.
	Root string
}

// Vmlinuz is the kernel image.
func (k *Kernel) Vmlinuz() string { return filepath.Join(k.Root, "boot", "vmlinuz-"+k.Release) }

// Vmlinux is the uncompressed kernel that BootImage extracts from Vmlinuz.
func (k *Kernel) Vmlinux() string { return filepath.Join(k.Root, "boot", "vmlinux-"+k.Release) }

// BootImage is the kernel image the domains boot: Vmlinux, extracted on
// first use, which qemu starts through its PVH entry point without the
// decompression that takes seconds under TCG; Vmlinuz when it cannot be
// extracted (logged).
func (k *Kernel) BootImage(logf func(string, ...any)) (string, error) {
	if _, err := os.Stat(k.Vmlinux()); err == nil {
		return k.Vmlinux(), nil
	}
	unlock, err := lockFile(filepath.Join(filepath.Dir(k.Root), ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(k.Vmlinux()); err == nil {
		return k.Vmlinux(), nil
	}
	if err := extractVmlinux(k.Vmlinuz(), k.Vmlinux()); err != nil {
		logf("kvmtest: booting the compressed %s (slower): %v", k.Vmlinuz(), err)
		return k.Vmlinuz(), nil
	}
	return k.Vmlinux(), nil
}

// ModulesDir holds the modules and modules.dep.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Root, "lib", "modules", k.Release) }

// FetchKernel returns the kernel package that linux-image-amd64 depends on,
// downloading and unpacking it into CacheDir when it is not there yet. It
// needs apt-get (with its package lists: apt-get update), dpkg and depmod,
// and never installs anything. Without package lists it falls back to a
// kernel already in the cache. Concurrent callers (test processes) wait for
// each other on a lock in CacheDir.
func FetchKernel(logf func(string, ...any)) (*Kernel, error) {
	cache := CacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	pkg, resolveErr := currentKernelPackage()
	if resolveErr != nil {
		cached := cachedKernels(cache)
		if len(cached) == 0 {
			return nil, resolveErr
		}
		pkg = cached[len(cached)-1]
		logf("kvmtest: %v; using %s from the cache", resolveErr, pkg)
	}
	k := &Kernel{Package: pkg, Release: strings.TrimPrefix(pkg, "linux-image-"), Root: filepath.Join(cache, pkg)}
	if _, err := os.Stat(k.Root); err == nil {
		return k, nil
	}
	unlock, err := lockFile(filepath.Join(cache, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(k.Root); err == nil {
		return k, nil // another process fetched it while we waited
	}
	if err := unpackKernel(k, cache, logf); err != nil {
		return nil, err
	}
	for _, old := range cachedKernels(cache) {
		if old != pkg {
			logf("kvmtest: removing the older kernel %s from %s", old, cache)
			_ = os.RemoveAll(filepath.Join(cache, old))
		}
	}
	return k, nil
}

// currentKernelPackage asks apt which linux-image-<release> the
// metapackage depends on.
func currentKernelPackage() (string, error) {
	out, err := exec.Command("apt-cache", "depends", kernelMeta).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w (run apt-get update)", kernelMeta, exitDetail(err))
	}
	return parseKernelDepends(string(out))
}

// parseKernelDepends finds the kernel package in the output of
// `apt-cache depends linux-image-amd64`.
func parseKernelDepends(out string) (string, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s names no linux-image-<release> package (run apt-get update)", kernelMeta)
}

// cachedKernels lists the unpacked kernel packages of the cache, oldest
// first.
func cachedKernels(cache string) []string {
	entries, _ := os.ReadDir(cache)
	type kern struct {
		name string
		mod  int64
	}
	var ks []kern
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "linux-image-") && !strings.Contains(e.Name(), ".tmp") {
			if fi, err := e.Info(); err == nil {
				ks = append(ks, kern{e.Name(), fi.ModTime().UnixNano()})
			}
		}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].mod < ks[j].mod })
	var out []string
	for _, k := range ks {
		out = append(out, k.name)
	}
	return out
}

// unpackKernel downloads k's package into a scratch directory of the cache,
// unpacks it, runs depmod on it and moves it to k.Root: k.Root exists only
// complete.
func unpackKernel(k *Kernel, cache string, logf func(string, ...any)) error {
	tmp := filepath.Join(cache, fmt.Sprintf("%s.tmp%d", k.Package, os.Getpid()))
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	logf("kvmtest: apt-get download %s into %s (once; kept there)", k.Package, cache)
	dl := exec.Command("apt-get", "download", "-q", k.Package)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w\n%s", k.Package, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, k.Package+"_*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s left %d .deb files in %s, want 1", k.Package, len(debs), tmp)
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg", "-x", debs[0], root).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg -x %s: %w\n%s", debs[0], err, out)
	}
	if out, err := exec.Command("depmod", "-b", root, k.Release).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod -b %s %s: %w\n%s", root, k.Release, err, out)
	}
	if _, err := os.Stat(filepath.Join(root, "boot", "vmlinuz-"+k.Release)); err != nil {
		return fmt.Errorf("%s holds no boot/vmlinuz-%s: %w", debs[0], k.Release, err)
	}
	return os.Rename(root, k.Root)
}

// Modules returns the files of the named modules and of everything they
// depend on, in an order that insmod can load them (dependencies first),
// as modules.dep says. A module built into the kernel (modules.builtin) is
// left out.
func (k *Kernel) Modules(names ...string) ([]string, error) {
	dep, err := os.ReadFile(filepath.Join(k.ModulesDir(), "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	builtin, _ := os.ReadFile(filepath.Join(k.ModulesDir(), "modules.builtin"))
	rel, err := resolveModules(string(dep), string(builtin), names)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Release, err)
	}
	for i, r := range rel {
		rel[i] = filepath.Join(k.ModulesDir(), r)
	}
	return rel, nil
}

// moduleName is the name modprobe knows a module file by: the base name
// without .ko (and a compression suffix), '-' read as '_'.
func moduleName(path string) string {
	b := filepath.Base(path)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// resolveModules orders names and their dependencies from the text of
// modules.dep ("path: dep dep...", paths relative to the modules
// directory); names found in modules.builtin are skipped.
func resolveModules(depText, builtinText string, names []string) ([]string, error) {
	deps := map[string][]string{} // path -> dependency paths
	byName := map[string]string{} // name -> path
	for _, line := range strings.Split(depText, "\n") {
		path, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		path = strings.TrimSpace(path)
		deps[path] = strings.Fields(rest)
		byName[moduleName(path)] = path
	}
	builtin := map[string]bool{}
	for _, line := range strings.Split(builtinText, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			builtin[moduleName(line)] = true
		}
	}
	var out []string
	done := map[string]bool{}
	var load func(path string, chain []string) error
	load = func(path string, chain []string) error {
		if done[path] {
			return nil
		}
		for _, c := range chain {
			if c == path {
				return fmt.Errorf("modules.dep: dependency cycle through %s", path)
			}
		}
		ds, ok := deps[path]
		if !ok {
			return fmt.Errorf("modules.dep: %s is listed as a dependency but has no entry", path)
		}
		// modprobe loads the last dependency first; each one's own
		// dependencies come before it anyway.
		for i := len(ds) - 1; i >= 0; i-- {
			if err := load(ds[i], append(chain, path)); err != nil {
				return err
			}
		}
		done[path] = true
		out = append(out, path)
		return nil
	}
	var errs []error
	for _, n := range names {
		name := strings.ReplaceAll(n, "-", "_")
		path, ok := byName[name]
		switch {
		case ok:
			errs = append(errs, load(path, nil))
		case builtin[name]:
		default:
			errs = append(errs, fmt.Errorf("no module %s in modules.dep nor modules.builtin", n))
		}
	}
	return out, errors.Join(errs...)
}

// lockFile takes an exclusive flock on path, waiting for it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// exitDetail adds a command's stderr to its error.
func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}

// extractVmlinux writes to dst the ELF kernel compressed inside the bzImage
// src (the payload its setup header points at), if it has the PVH entry
// point that qemu needs to boot an ELF kernel.
func extractVmlinux(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	payload, err := bzImagePayload(b)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	var elfData []byte
	switch {
	case bytes.HasPrefix(payload, []byte("\xfd7zXZ\x00")):
		// The kernel's build appends the uncompressed size after the
		// stream: --single-stream ignores it.
		cmd := exec.Command("xz", "-dc", "--single-stream")
		cmd.Stdin = bytes.NewReader(payload)
		if elfData, err = cmd.Output(); err != nil {
			return fmt.Errorf("xz -d of the payload of %s: %w", src, exitDetail(err))
		}
	case bytes.HasPrefix(payload, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return err
		}
		zr.Multistream(false)
		if elfData, err = io.ReadAll(zr); err != nil {
			return fmt.Errorf("gunzip the payload of %s: %w", src, err)
		}
	default:
		return fmt.Errorf("%s: payload compressed with neither xz nor gzip (starts with % x)", src, payload[:min(6, len(payload))])
	}
	if err := checkPVH(elfData); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	tmp := fmt.Sprintf("%s.tmp%d", dst, os.Getpid())
	if err := os.WriteFile(tmp, elfData, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// bzImagePayload returns the compressed kernel of a bzImage, as its setup
// header (boot protocol 2.08 and later) locates it.
func bzImagePayload(b []byte) ([]byte, error) {
	if len(b) < 0x250 || string(b[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage (no HdrS setup header)")
	}
	if v := binary.LittleEndian.Uint16(b[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("boot protocol %#x has no payload fields (2.08 and later)", v)
	}
	setupSects := int(b[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(b[0x248:]))
	end := start + int(binary.LittleEndian.Uint32(b[0x24c:]))
	if start >= len(b) || end > len(b) || start >= end {
		return nil, errors.New("payload outside the file")
	}
	return b[start:end], nil
}

// checkPVH checks that an ELF kernel has the Xen PVH entry note
// (XEN_ELFNOTE_PHYS32_ENTRY), without which qemu refuses to boot it.
func checkPVH(elfData []byte) error {
	f, err := elf.NewFile(bytes.NewReader(elfData))
	if err != nil {
		return fmt.Errorf("payload is not an ELF kernel: %w", err)
	}
	const phys32Entry = 18
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return err
		}
		for len(notes) >= 12 {
			namesz := int(binary.LittleEndian.Uint32(notes))
			descsz := int(binary.LittleEndian.Uint32(notes[4:]))
			typ := binary.LittleEndian.Uint32(notes[8:])
			name := notes[12:min(len(notes), 12+namesz)]
			if typ == phys32Entry && string(bytes.TrimRight(name, "\x00")) == "Xen" {
				return nil
			}
			next := 12 + (namesz+3)&^3 + (descsz+3)&^3
			if next > len(notes) {
				break
			}
			notes = notes[next:]
		}
	}
	return errors.New("the ELF kernel has no PVH entry note (CONFIG_PVH)")
}

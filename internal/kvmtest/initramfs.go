package kvmtest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// guestModules are what the guests load, with their dependencies: the
// virtio PCI transport and block device (the disk), and the ACPI button
// with evdev (the power button as /dev/input/event*, which the init
// watches). The serial console (8250) and ACPI itself are built into
// Debian's kernel.
var guestModules = []string{"virtio_pci", "virtio_blk", "button", "evdev"}

// initScript is the counter guest's /init, run by busybox sh. @MODULES@
// becomes the module files in load order.
//
// The counter lives in the first 512-byte sector of /dev/vda, as the line
// "kvmtest-counter <n>" padded with zero bytes. Each value is written and
// fsync'ed (a cache flush down to qemu, which with cache='none' reaches the
// image file) before "synced <n>" is printed: a value printed is a value
// on the disk. The power button only sets a flag that the loop reads
// between two values, so that a graceful stop leaves on the disk exactly
// the last value printed.
const initScript = `#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /run /tmp
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in @MODULES@; do
	insmod "/lib/modules/$m" || echo "kvmtest: insmod $m failed"
done
# The ACPI button driver registers the power button as an input device:
# any event on it asks for a stop.
for i in /sys/class/input/input*; do
	[ "$(cat "$i/name" 2>/dev/null)" = "Power Button" ] || continue
	for e in "$i"/event*; do
		[ -e "$e" ] || continue
		(dd if="/dev/input/${e##*/}" of=/dev/null bs=4096 count=1 2>/dev/null; touch /run/stop) &
	done
done

i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1))
	if [ $i -gt 100 ]; then
		echo "kvmtest: no disk /dev/vda"
		poweroff -f
	fi
	sleep 0.1
done
n=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -d '\000' | sed -n '1s/^kvmtest-counter \([0-9][0-9]*\)$/\1/p')
n=${n:-0}
echo "kvmtest: counter resumes after $n"
while [ ! -e /run/stop ]; do
	n=$((n + 1))
	if ! echo "kvmtest-counter $n" | dd of=/dev/vda bs=512 count=1 conv=notrunc,sync,fsync 2>/dev/null; then
		echo "kvmtest: writing $n to /dev/vda failed"
		poweroff -f
	fi
	echo "synced $n"
	sleep 0.1
done
echo "kvmtest: power button: stopped at $n"
poweroff -f
`

// Kit is what the counter guests boot, as host paths that every node sees
// alike.
type Kit struct {
	Kernel *Kernel
	// Image is the kernel image (Kernel.BootImage); Initrd the initramfs.
	Image  string
	Initrd string
}

// NewKit fetches the kernel (FetchKernel) and writes the initramfs built
// from it and busybox into CacheDir, under a name that is the hash of its
// content, so that concurrent runs share it and never see half a file.
// Call it before creating the cluster: nodes that overlay a parent of
// CacheDir (e.g. /var/cache for /var/cache/libvirt) should find it in the
// lower layer at boot.
func NewKit(logf func(string, ...any)) (*Kit, error) {
	k, err := FetchKernel(logf)
	if err != nil {
		return nil, err
	}
	image, err := k.BootImage(logf)
	if err != nil {
		return nil, err
	}
	bb, err := staticBusybox()
	if err != nil {
		return nil, err
	}
	img, err := BuildInitramfs(k, bb)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(img)
	path := filepath.Join(CacheDir(), "initrd-"+hex.EncodeToString(sum[:6])+".img")
	if _, err := os.Stat(path); err != nil {
		tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
		if err := os.WriteFile(tmp, img, 0o644); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return nil, err
		}
		pruneInitrds(path)
	}
	return &Kit{Kernel: k, Image: image, Initrd: path}, nil
}

// pruneInitrds removes the initramfs files of the cache other than keep
// that no run has written for a day: each change of the init script or of
// the kernel leaves one behind.
func pruneInitrds(keep string) {
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(keep), "initrd-*.img"))
	for _, p := range old {
		if fi, err := os.Stat(p); err == nil && p != keep && time.Since(fi.ModTime()) > 24*time.Hour {
			_ = os.Remove(p)
		}
	}
}

// staticBusybox finds busybox and checks that it needs no shared library
// (the initramfs has none).
func staticBusybox() (string, error) {
	p, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("no busybox: apt-get install busybox-static")
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked and the guest has no libraries: apt-get install busybox-static", p)
		}
	}
	return p, nil
}

// BuildInitramfs returns the counter guest's initramfs, a gzip'd newc cpio
// archive: busybox as /bin/busybox, the modules that guestModules need in
// /lib/modules, /dev/console, and the init script. The same inputs give
// the same bytes.
func BuildInitramfs(k *Kernel, busybox string) ([]byte, error) {
	mods, err := k.Modules(guestModules...)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	w := newCpioWriter(gz)
	for _, d := range []string{"bin", "dev", "lib", "lib/modules", "proc", "run", "sys", "tmp"} {
		w.dir(d)
	}
	// The kernel opens /dev/console for the init's standard streams
	// before any devtmpfs is mounted.
	w.chardev("dev/console", 0o600, 5, 1)
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, err
	}
	w.file("bin/busybox", 0o755, bb)
	var names []string
	for _, m := range mods {
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		names = append(names, filepath.Base(m))
		w.file("lib/modules/"+filepath.Base(m), 0o644, b)
	}
	w.file("init", 0o755, []byte(strings.Replace(initScript, "@MODULES@", strings.Join(names, " "), 1)))
	if err := w.close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// cpioWriter writes the "newc" cpio format that the kernel unpacks into
// its rootfs: per entry a 110-byte ASCII header, the name and the data,
// each padded to 4 bytes. Times and owners are zero, inodes counted from 1.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func newCpioWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w} }

const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioChar = 0o020000
)

func (c *cpioWriter) entry(name string, mode, rdevMajor, rdevMinor int, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize (with its NUL), check.
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	var b bytes.Buffer
	b.WriteString(hdr)
	b.WriteString(name)
	b.WriteByte(0)
	pad4(&b)
	b.Write(data)
	pad4(&b)
	_, c.err = c.w.Write(b.Bytes())
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

func (c *cpioWriter) dir(name string) { c.entry(name, cpioDir|0o755, 0, 0, nil) }
func (c *cpioWriter) file(name string, perm int, data []byte) {
	c.entry(name, cpioReg|perm, 0, 0, data)
}
func (c *cpioWriter) chardev(name string, perm, major, minor int) {
	c.entry(name, cpioChar|perm, major, minor, nil)
}

// close writes the trailer entry.
func (c *cpioWriter) close() error {
	c.ino = -1 // the trailer's inode is 0
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.err
}

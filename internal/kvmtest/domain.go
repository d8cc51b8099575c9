package kvmtest

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/safekit-oss/safekit/internal/testcluster"
)

// Where the domains keep their files in a node.
const (
	// ImagesDir holds one directory per domain, the one a kvm module
	// replicates (its VM_PATH/VM_NAME).
	ImagesDir = "/var/lib/libvirt/images"
	// SerialDir holds the serial logs, outside any replicated directory:
	// each node keeps what the guest printed while it ran there.
	SerialDir = "/var/log/kvmtest"
)

// Domain is a libvirt domain of a test guest, run by qemu under TCG.
type Domain struct {
	// Name is the libvirt domain name.
	Name string
	// MemoryMiB is the guest's memory: 128 for Counter (Debian's kernel
	// runs out of memory below 96), 32 for Idle.
	MemoryMiB int
	// Kernel and Initrd are host paths, the same in every node, that the
	// domain boots directly; "" boots the firmware (which finds nothing to
	// boot and waits).
	Kernel, Initrd string
	// Cmdline is the kernel command line.
	Cmdline string
	// Disk is the counter's disk; nil for a diskless domain.
	Disk *Disk
	// Serial is the file in the node that the first serial port (the
	// guest's console) is appended to: SerialDir/<Name>.serial.
	Serial string
}

// Disk is a domain's disk image, a sparse raw file seen by the guest as
// /dev/vda.
type Disk struct {
	// Path is the image in the node: ImagesDir/<name>/<name>.img.
	Path string
	// SizeMiB is the image's size (sparse): 64.
	SizeMiB int
	// Cache is the disk's cache mode: "none", that is O_DIRECT on the
	// image, so that a flush from the guest reaches the file.
	Cache string
	// IO is the I/O mode: "native" (Linux AIO, which needs cache="none")
	// or "threads".
	IO string
}

// counterCmdline: the console on the first serial port with few kernel
// messages, a panic that ends the domain (a reboot, and on_reboot is
// destroy) instead of hanging it, and what shortens a boot under TCG (no
// speculation mitigations, no delay-loop calibration or timer checks, no
// PS/2 probing).
const counterCmdline = "console=ttyS0 quiet panic=-1 mitigations=off nokaslr lpj=4000000 no_timer_check tsc=reliable i8042.nokbd i8042.noaux"

// Counter is the domain of a counter guest (see the package doc) named
// name, with a 64 MiB disk in ImagesDir/<name>/.
func (k *Kit) Counter(name string) *Domain {
	return &Domain{
		Name:      name,
		MemoryMiB: 128,
		Kernel:    k.Image,
		Initrd:    k.Initrd,
		Cmdline:   counterCmdline,
		Disk: &Disk{
			Path:    filepath.Join(ImagesDir, name, name+".img"),
			SizeMiB: 64,
			Cache:   "none",
			IO:      "native",
		},
		Serial: filepath.Join(SerialDir, name+".serial"),
	}
}

// Idle is a diskless domain for tests that need many: only the firmware
// (SeaBIOS), which finds nothing to boot and then waits without
// rebooting, in 32 MiB. It boots in a fraction of a second, costs about 1%
// of a core and 40 MB of host memory, and ignores the ACPI power button: a
// virsh shutdown leaves it running, virsh destroy stops it.
func Idle(name string) *Domain {
	return &Domain{
		Name:      name,
		MemoryMiB: 32,
		Serial:    filepath.Join(SerialDir, name+".serial"),
	}
}

// ImageDir is the directory of the domain's image, "" without a disk.
func (d *Domain) ImageDir() string {
	if d.Disk == nil {
		return ""
	}
	return filepath.Dir(d.Disk.Path)
}

// XML is the domain's libvirt XML.
func (d *Domain) XML() (string, error) {
	zero := uint(0)
	dom := &libvirtxml.Domain{
		// "qemu" is TCG: no KVM acceleration is assumed.
		Type:   "qemu",
		Name:   d.Name,
		Memory: &libvirtxml.DomainMemory{Value: uint(d.MemoryMiB), Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			Kernel:  d.Kernel,
			Initrd:  d.Initrd,
			Cmdline: d.Cmdline,
		},
		// ACPI carries the power button of virsh shutdown.
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Emulator: "/usr/bin/qemu-system-x86_64",
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: d.Serial, Append: "on"}},
				Target: &libvirtxml.DomainSerialTarget{Port: &zero},
			}},
			// Nothing the guests do not use: no USB, no balloon.
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			MemBalloon:  &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if d.Kernel == "" {
		// SeaBIOS retries the boot after 60 s by default, which would
		// stop the domain (on_reboot is destroy).
		never := -1
		dom.OS.BIOS = &libvirtxml.DomainBIOS{RebootTimeout: &never}
	}
	if d.Disk != nil {
		dom.Devices.Disks = []libvirtxml.DomainDisk{{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw", Cache: d.Disk.Cache, IO: d.Disk.IO},
			Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: d.Disk.Path}},
			Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
		}}
	}
	s, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("domain %s: %w", d.Name, err)
	}
	return s, nil
}

// Define defines the domain in n's libvirt (virsh define), and creates the
// directory of its serial log. Define it on every node that may run it,
// as a kvm module needs.
func (d *Domain) Define(n *testcluster.Node) error {
	x, err := d.XML()
	if err != nil {
		return err
	}
	if _, _, err := n.Run("mkdir", "-p", filepath.Dir(d.Serial)); err != nil {
		return err
	}
	cmd := n.Command("virsh", "-c", URI, "define", "/dev/stdin")
	cmd.Stdin = strings.NewReader(x)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: virsh define %s: %w: %s", n.Name, d.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CreateImage creates the domain's image in n, sparse and zeroed (a
// counter of 0), with its directory. It fails if the image exists.
func (d *Domain) CreateImage(n *testcluster.Node) error {
	if d.Disk == nil {
		return fmt.Errorf("domain %s has no disk", d.Name)
	}
	script := `set -e; mkdir -p "$1"; test ! -e "$2" || { echo "$2 exists" >&2; exit 1; }; truncate -s "$3M" "$2"`
	_, _, err := n.Run("sh", "-c", script, "sh", d.ImageDir(), d.Disk.Path, strconv.Itoa(d.Disk.SizeMiB))
	return err
}

// Start, Shutdown (the ACPI power button) and Destroy run virsh on n.
func (d *Domain) Start(n *testcluster.Node) error {
	_, err := Virsh(n, "start", d.Name)
	return err
}

func (d *Domain) Shutdown(n *testcluster.Node) error {
	_, err := Virsh(n, "shutdown", d.Name)
	return err
}

func (d *Domain) Destroy(n *testcluster.Node) error {
	_, err := Virsh(n, "destroy", d.Name)
	return err
}

// State is what `virsh domstate` says of the domain on n ("running",
// "shut off"...).
func (d *Domain) State(n *testcluster.Node) (string, error) {
	out, err := Virsh(n, "domstate", d.Name)
	return strings.TrimSpace(out), err
}

// DiskCounter reads the counter from the domain's image on n (the guest
// must be stopped for the value to be final): 0 for a blank image.
func (d *Domain) DiskCounter(n *testcluster.Node) (int, error) {
	if d.Disk == nil {
		return 0, fmt.Errorf("domain %s has no disk", d.Name)
	}
	p, err := NodePath(n, d.Disk.Path)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sector := make([]byte, 512)
	if _, err := f.ReadAt(sector, 0); err != nil {
		return 0, fmt.Errorf("%s: %s: %w", n.Name, d.Disk.Path, err)
	}
	return parseSector(sector)
}

// parseSector reads the counter sector the guest writes: zero bytes (a
// blank image) or "kvmtest-counter <n>\n" padded with zero bytes.
func parseSector(b []byte) (int, error) {
	s := strings.TrimRight(string(b), "\x00")
	if s == "" {
		return 0, nil
	}
	line, _, _ := strings.Cut(s, "\n")
	v, ok := strings.CutPrefix(line, "kvmtest-counter ")
	if n, err := strconv.Atoi(v); ok && err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("the first sector holds %q, not a kvmtest counter", line)
}

// CopyImage copies the domain's image from one node to another, as a plain
// sparse copy (cp --sparse=always) through the host, creating the image
// directory on the target. Both nodes must be up; the guest stopped.
func (d *Domain) CopyImage(from, to *testcluster.Node) error {
	if d.Disk == nil {
		return fmt.Errorf("domain %s has no disk", d.Name)
	}
	if _, _, err := to.Run("mkdir", "-p", d.ImageDir()); err != nil {
		return err
	}
	src, dst := from.HostPath(d.Disk.Path), to.HostPath(d.Disk.Path)
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy %s from %s to %s: %w: %s", d.Disk.Path, from.Name, to.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NodePath is the host path of file p of node n. While n runs it is
// n.HostPath(p); once n is down (Node.Kill), a file of a private directory
// is still found in the upper layer of the node's overlay, kept for
// inspection.
func NodePath(n *testcluster.Node, p string) (string, error) {
	if n.InitPID() != 0 {
		return n.HostPath(p), nil
	}
	p = filepath.Clean(p)
	entries, err := os.ReadDir(filepath.Join(n.Dir, "overlay"))
	if err != nil {
		return "", fmt.Errorf("%s is down and has no overlay: %w", n.Name, err)
	}
	best, bestTarget := "", ""
	for _, e := range entries {
		// Each entry is testcluster.OverlayName of the overlaid directory.
		target, err := url.PathUnescape(e.Name())
		if err != nil || testcluster.OverlayName(target) != e.Name() {
			continue
		}
		if p != target && !strings.HasPrefix(p, strings.TrimSuffix(target, "/")+"/") {
			continue
		}
		cand := filepath.Join(n.Dir, "overlay", e.Name(), "upper", strings.TrimPrefix(p, target))
		if _, err := os.Lstat(cand); err == nil && len(target) > len(bestTarget) {
			best, bestTarget = cand, target
		}
	}
	if best == "" {
		return "", fmt.Errorf("%s is down and %s is in none of its overlays (%s)", n.Name, p, filepath.Join(n.Dir, "overlay"))
	}
	return best, nil
}

// Package kvmadvice checks the libvirt domain that a KVM module protects
// and warns about settings that defeat the protection: a disk cache that
// delays writes, a domain libvirt starts on its own, a disk image that is not
// replicated, snapshot metadata left behind. confcheck, config and the
// console show the warnings; they never block a configuration, since the
// domain may legitimately be defined later.
package kvmadvice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/safekit-oss/safekit/safe"
)

// Domain is what the advice reads of a libvirt domain.
type Domain struct {
	XML       string
	Autostart bool
	// SnapshotDir is where libvirt keeps the domain's snapshot metadata;
	// HasSnapshots tells whether it holds any.
	SnapshotDir  string
	HasSnapshots bool
}

// Source finds a domain by name; ErrNoDomain when it is not defined here.
type Source func(name string) (*Domain, error)

// ErrNoDomain is returned by a Source for a domain that is not defined.
var ErrNoDomain = errors.New("domain not defined")

// Libvirt reads domains the way libvirt stores them on this node:
// /etc/libvirt/qemu/<name>.xml and its autostart link, or `virsh dumpxml
// --inactive` when the file is not there.
func Libvirt(name string) (*Domain, error) {
	d := &Domain{SnapshotDir: filepath.Join("/var/lib/libvirt/qemu/snapshot", name)}
	data, err := os.ReadFile(filepath.Join("/etc/libvirt/qemu", name+".xml"))
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, verr := exec.CommandContext(ctx, "virsh", "dumpxml", "--inactive", name).Output()
		if verr != nil {
			return nil, ErrNoDomain
		}
		data = out
	}
	d.XML = string(data)
	if _, err := os.Lstat(filepath.Join("/etc/libvirt/qemu/autostart", name+".xml")); err == nil {
		d.Autostart = true
	}
	if entries, err := os.ReadDir(d.SnapshotDir); err == nil && len(entries) > 0 {
		d.HasSnapshots = true
	}
	return d, nil
}

// Advise returns the warnings for the module's domain: the <user><var
// name="VM_NAME"> of cfg names it. Nothing when the module has no VM_NAME.
func Advise(cfg *safe.Config, src Source) []string {
	name, ok := cfg.Var("VM_NAME")
	if !ok || name == "" {
		return nil
	}
	d, err := src(name)
	if errors.Is(err, ErrNoDomain) {
		return []string{fmt.Sprintf("libvirt domain %s is not defined on this node: define it here too (virsh define) before starting the module", name)}
	}
	if err != nil {
		return []string{fmt.Sprintf("libvirt domain %s could not be read: %v", name, err)}
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(d.XML); err != nil {
		return []string{fmt.Sprintf("the XML of libvirt domain %s could not be read: %v", name, err)}
	}
	var dirs []string
	if cfg.RFS != nil {
		for _, r := range cfg.RFS.Replicated {
			dirs = append(dirs, r.Dir)
		}
	}
	var out []string
	if dom.Devices != nil {
		for _, disk := range dom.Devices.Disks {
			if disk.Device != "" && disk.Device != "disk" {
				continue // cdrom, floppy, lun
			}
			target := diskTarget(disk)
			if disk.Driver == nil || disk.Driver.Cache != "none" {
				cache := "the hypervisor default"
				if disk.Driver != nil && disk.Driver.Cache != "" {
					cache = "cache='" + disk.Driver.Cache + "'"
				}
				out = append(out, fmt.Sprintf("disk %s of domain %s uses %s: set <driver cache='none'/> (virsh edit %s on both nodes) so that the guest's writes reach the replicated directory before they are acknowledged", target, name, cache, name))
			}
			if file := diskFile(disk); file != "" && !under(file, dirs) {
				out = append(out, fmt.Sprintf("disk %s of domain %s is %s, outside every replicated directory (%s): it would not follow the VM to the other node; move it into %s", target, name, file, strings.Join(dirs, ", "), suggestDir(dirs, cfg)))
			}
		}
	}
	if d.Autostart {
		out = append(out, fmt.Sprintf("domain %s has autostart on: libvirt would start it at boot on both nodes; run virsh autostart --disable %s on both nodes and let the module start it", name, name))
	}
	if d.HasSnapshots && !under(d.SnapshotDir, dirs) {
		out = append(out, fmt.Sprintf("domain %s has snapshots whose metadata (%s) is not replicated: add <replicated dir=\"%s\"/> to the module", name, d.SnapshotDir, d.SnapshotDir))
	}
	return out
}

func diskTarget(d libvirtxml.DomainDisk) string {
	if d.Target != nil && d.Target.Dev != "" {
		return d.Target.Dev
	}
	return "(no target)"
}

func diskFile(d libvirtxml.DomainDisk) string {
	if d.Source == nil {
		return ""
	}
	if d.Source.File != nil {
		return d.Source.File.File
	}
	if d.Source.Block != nil {
		return d.Source.Block.Dev
	}
	return ""
}

func under(path string, dirs []string) bool {
	clean := filepath.Clean(path)
	for _, d := range dirs {
		if clean == d || strings.HasPrefix(clean, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

func suggestDir(dirs []string, cfg *safe.Config) string {
	if v, ok := cfg.Var("VM_PATH"); ok && v != "" {
		return v
	}
	if len(dirs) > 0 {
		return dirs[0]
	}
	return "a replicated directory"
}

// Package kvmtest is the real KVM stack for multi-node tests: a Debian
// kernel and a busybox initramfs that boot as a libvirt guest under qemu
// (TCG: no hardware acceleration is assumed), a libvirtd and virtlogd of
// their own in every testcluster node, lifecycle events collected from all
// nodes with their timestamps, and the guest's serial log read back.
//
// The guests are made to be checked from outside:
//
//   - a counter guest (Counter) boots from its kernel and initramfs, reads
//     the counter at the start of its disk (/dev/vda, raw, no file system),
//     then every 100 ms writes the next value to the disk, syncs it and only
//     then prints "synced <n>" on its serial console; the ACPI power button
//     (virsh shutdown) makes it stop between two writes and power off, so
//     that the last value printed is the value on the disk;
//   - an idle domain (Idle) is only the firmware, with no disk and 32 MiB:
//     it finds nothing to boot and waits, for tests that need many domains.
//
// The kernel is Debian's (the package that linux-image-amd64 depends on),
// fetched once with apt-get download into CacheDir and never installed on
// the host, and booted uncompressed (PVH) to save the seconds its
// decompression takes under TCG; the initramfs is generated from
// busybox-static and the kernel's virtio, ACPI button and evdev modules.
//
// Paths inside a node: the images under /var/lib/libvirt/images/<domain>/
// (the directory a kvm module replicates), the serial logs under
// /var/log/kvmtest/ and the kernel and initramfs in CacheDir, all outside
// the replicated directory. PrivateDirs lists what each node must have of
// its own for libvirt and these logs.
package kvmtest

package kvmtest_test

// TestKVMTwoNodes needs root, the packages of the apt-get line of .ci/run
// and apt's package lists (it downloads Debian's kernel once into
// kvmtest.CacheDir): it skips elsewhere, saying what is missing, and fails
// in CI. The other tests are pure.

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/safekit-oss/safekit/internal/kvmtest"
	"github.com/safekit-oss/safekit/internal/testcluster"
)

func TestParseSerial(t *testing.T) {
	log := "[    0.5] some kernel line\r\n" +
		"kvmtest: counter resumes after 0\r\n" +
		"synced 1\r\nsynced 2\r\nsynced 3\r\n" +
		"kvmtest: power button: stopped at 3\r\n" +
		"kvmtest: counter resumes after 3\r\n" +
		"synced 4\r\nsyn[  3.1] garbled\r\nsynced 5\r\n" +
		"synced 6" // half a line: the guest is writing it
	got := kvmtest.ParseSerial([]byte(log))
	want := []kvmtest.Boot{{Resumed: 0, First: 1, Last: 3, Stopped: true}, {Resumed: 3, First: 4, Last: 5}}
	if !slices.Equal(got, want) {
		t.Errorf("ParseSerial = %+v, want %+v", got, want)
	}
	if got := kvmtest.ParseSerial([]byte("synced 1")); got != nil {
		t.Errorf("no whole line: %+v, want none", got)
	}
}

func at(s string) time.Time {
	t, err := time.Parse("15:04:05.000", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestIntervals(t *testing.T) {
	evs := []kvmtest.Event{
		{Time: at("10:00:00.000"), Node: "node1", Domain: "vm1", Event: "Resumed", Detail: "Unpaused"},
		{Time: at("10:00:00.001"), Node: "node1", Domain: "vm1", Event: "Started", Detail: "Booted"},
		{Time: at("10:00:05.000"), Node: "node1", Domain: "vm1", Event: "Shutdown", Detail: "Finished after guest request"},
		{Time: at("10:00:05.100"), Node: "node1", Domain: "vm1", Event: "Stopped", Detail: "Shutdown"},
		{Time: at("10:00:06.000"), Node: "node2", Domain: "vm1", Event: "Started", Detail: "Booted"},
		{Time: at("10:00:07.000"), Node: "node1", Domain: "idle1", Event: "Started", Detail: "Booted"},
		{Time: at("10:00:08.000"), Node: "node2", Event: kvmtest.EventLost, Detail: kvmtest.LostKilled},
		{Time: at("10:00:09.000"), Node: "node1", Domain: "vm1", Event: "Started", Detail: "Booted"},
	}
	got := kvmtest.Intervals(evs)
	want := []kvmtest.Interval{
		{Node: "node1", Domain: "vm1", From: at("10:00:00.000"), To: at("10:00:05.100")},
		{Node: "node2", Domain: "vm1", From: at("10:00:06.000"), To: at("10:00:08.000")},
		{Node: "node1", Domain: "idle1", From: at("10:00:07.000")},
		{Node: "node1", Domain: "vm1", From: at("10:00:09.000")},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Intervals:\n got %v\nwant %v", got, want)
	}
	if err := kvmtest.CheckExclusive(evs, "vm1"); err != nil {
		t.Errorf("CheckExclusive: %v", err)
	}
	if got := kvmtest.RunningAt(evs, "vm1", at("10:00:07.500")); !slices.Equal(got, []string{"node2"}) {
		t.Errorf("RunningAt 10:00:07.500 = %v, want [node2]", got)
	}

	// A watch lost for another reason than a killed node leaves the
	// domain's state unknown: counted as running.
	evs[6].Detail = "virsh event ended: exit status 1"
	if err := kvmtest.CheckExclusive(evs, "vm1"); err == nil || !strings.Contains(err.Error(), "two nodes at once") {
		t.Errorf("CheckExclusive with node2 lost, not killed: %v, want an overlap", err)
	}
}

func TestResolveModulesOrder(t *testing.T) {
	// modules.dep as depmod writes it for Debian's 6.1 kernel.
	dep := "kernel/drivers/virtio/virtio.ko:\n" +
		"kernel/drivers/virtio/virtio_ring.ko:\n" +
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko:\n" +
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko:\n" +
		"kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
	dir := t.TempDir()
	k := &kvmtest.Kernel{Release: "6.1.0-test", Root: dir}
	if err := os.MkdirAll(k.ModulesDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.ModulesDir(), "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.ModulesDir(), "modules.builtin"), []byte("kernel/drivers/input/evdev.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := k.Modules("virtio_pci", "virtio-blk", "evdev")
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i] = filepath.Base(got[i])
	}
	want := []string{"virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko", "virtio_pci_legacy_dev.ko", "virtio_pci.ko", "virtio_blk.ko"}
	if !slices.Equal(got, want) {
		t.Errorf("load order %v, want %v", got, want)
	}
	if _, err := k.Modules("nosuch"); err == nil || !strings.Contains(err.Error(), "no module nosuch") {
		t.Errorf("unknown module: %v", err)
	}
}

func TestDomainXML(t *testing.T) {
	kit := &kvmtest.Kit{Image: "/cache/vmlinux", Initrd: "/cache/initrd.img"}
	for _, d := range []*kvmtest.Domain{kit.Counter("vm1"), kvmtest.Idle("idle1")} {
		x, err := d.XML()
		if err != nil {
			t.Fatal(err)
		}
		var dom libvirtxml.Domain
		if err := dom.Unmarshal(x); err != nil {
			t.Fatalf("%s: %v\n%s", d.Name, err, x)
		}
		if dom.Type != "qemu" {
			t.Errorf("%s: type %q, want qemu (TCG)", d.Name, dom.Type)
		}
		if d.Disk != nil && (dom.OS.Kernel != "/cache/vmlinux" || dom.OS.Initrd != "/cache/initrd.img" || !strings.Contains(dom.OS.Cmdline, "console=ttyS0")) {
			t.Errorf("%s: does not boot the kit's kernel on a serial console:\n%s", d.Name, x)
		}
		if d.Disk == nil && (dom.OS.Kernel != "" || dom.OS.BIOS == nil || dom.OS.BIOS.RebootTimeout == nil || *dom.OS.BIOS.RebootTimeout != -1) {
			t.Errorf("%s: want the firmware only, never rebooting:\n%s", d.Name, x)
		}
		if dom.Features == nil || dom.Features.ACPI == nil {
			t.Errorf("%s: no ACPI, so no power button for virsh shutdown:\n%s", d.Name, x)
		}
		if s := dom.Devices.Serials; len(s) != 1 || s[0].Source.File.Path != "/var/log/kvmtest/"+d.Name+".serial" || s[0].Source.File.Append != "on" {
			t.Errorf("%s: serial %+v, want appended to /var/log/kvmtest/%s.serial", d.Name, s, d.Name)
		}
	}
	x, _ := kit.Counter("vm1").XML()
	var dom libvirtxml.Domain
	_ = dom.Unmarshal(x)
	if len(dom.Devices.Disks) != 1 {
		t.Fatalf("counter: %d disks, want 1", len(dom.Devices.Disks))
	}
	disk := dom.Devices.Disks[0]
	if disk.Source.File.File != "/var/lib/libvirt/images/vm1/vm1.img" || disk.Driver.Cache != "none" || disk.Target.Bus != "virtio" {
		t.Errorf("counter disk: %s", x)
	}
	if dom.Memory.Value > 128 || dom.Memory.Unit != "MiB" {
		t.Errorf("counter memory %d %s, want at most 128 MiB", dom.Memory.Value, dom.Memory.Unit)
	}
}

// nsOf is the inode naming pid's PID namespace.
func nsOf(pid int) string {
	l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	return l
}

// processesIn lists the host pids and command names of the processes in
// PID namespace ns.
func processesIn(ns string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || nsOf(pid) != ns {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		out = append(out, e.Name()+" "+strings.TrimSpace(string(comm)))
	}
	return out
}

// qemuRSS adds up the resident memory of the qemu processes of node n.
func qemuRSS(n *testcluster.Node) int {
	total := 0
	for _, p := range processesIn(nsOf(n.InitPID())) {
		pid, comm, _ := strings.Cut(p, " ")
		if comm != "qemu-system-x86" {
			continue
		}
		b, _ := os.ReadFile("/proc/" + pid + "/status")
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				total += kb << 10
			}
		}
	}
	return total
}

// TestKVMTwoNodes runs the guest on a two-node cluster: its own libvirt in
// each node, a graceful stop that leaves the last synced value on the
// disk, the image copied to the other node where the counter goes on,
// diskless domains, and a node killed under its running guest.
func TestKVMTwoNodes(t *testing.T) {
	kit := kvmtest.Prepare(t)
	c := testcluster.New(t, testcluster.Options{Nodes: 2, NoDaemon: true, PrivateDirs: kvmtest.PrivateDirs})
	n1, n2 := c.Node("node1"), c.Node("node2")

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(c.Nodes))
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = kvmtest.StartLibvirt(n) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("libvirtd and virtlogd up in both nodes in %v", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat("/run/libvirt/libvirt-sock"); err == nil {
		t.Log("a host libvirtd socket exists: the nodes do not see it (private /run), and StartLibvirt checked they reach their own")
	}

	w := kvmtest.NewWatcher()
	t.Cleanup(func() {
		w.Close()
		if t.Failed() {
			t.Logf("events:\n%s", kvmtest.FormatEvents(w.Events()))
		}
	})
	for _, n := range c.Nodes {
		if err := w.Watch(n); err != nil {
			t.Fatal(err)
		}
	}

	vm := kit.Counter("vm1")
	if err := vm.CreateImage(n1); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if err := vm.Define(n); err != nil {
			t.Fatal(err)
		}
	}

	const (
		bootTimeout = 60 * time.Second
		stopTimeout = 30 * time.Second
	)
	// stop shuts vm down gracefully on n and returns the last synced
	// value, checked against the disk.
	stop := func(t *testing.T, n *testcluster.Node) int {
		t.Helper()
		since := time.Now()
		if err := vm.Shutdown(n); err != nil {
			t.Fatal(err)
		}
		e, err := w.WaitFor(n.Name, vm.Name, "Stopped", "Shutdown", since, stopTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: stopped %v after virsh shutdown", n.Name, e.Time.Sub(since).Round(time.Millisecond))
		boots, err := vm.Boots(n)
		if err != nil {
			t.Fatal(err)
		}
		last := boots[len(boots)-1]
		if !last.Stopped {
			t.Errorf("%s: the guest did not say it stopped on the power button: %+v", n.Name, last)
		}
		disk, err := vm.DiskCounter(n)
		if err != nil {
			t.Fatal(err)
		}
		if disk != last.Last {
			t.Errorf("%s: the disk holds %d, the guest last synced %d", n.Name, disk, last.Last)
		}
		return last.Last
	}
	// boot starts vm on n and checks that it resumes after resumed.
	boot := func(t *testing.T, n *testcluster.Node, resumed int) {
		t.Helper()
		before, err := vm.Boots(n)
		if err != nil {
			t.Fatal(err)
		}
		since := time.Now()
		if err := vm.Start(n); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WaitFor(n.Name, vm.Name, "Started", "Booted", since, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := vm.WaitSynced(n, resumed, bootTimeout); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: boot to the first synced value: %v", n.Name, time.Since(since).Round(time.Millisecond))
		boots, err := vm.Boots(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(boots) != len(before)+1 {
			t.Fatalf("%s: %d boots in the serial log, want %d", n.Name, len(boots), len(before)+1)
		}
		if b := boots[len(boots)-1]; b.Resumed != resumed || b.First != resumed+1 {
			t.Errorf("%s: boot %+v, want it to resume after %d with %d", n.Name, b, resumed, resumed+1)
		}
	}

	last := 0
	if !t.Run("boot and sync on node1", func(t *testing.T) {
		boot(t, n1, 0)
		v, err := vm.WaitSynced(n1, 20, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("node1: synced %d", v)
	}) {
		return
	}
	if !t.Run("graceful shutdown keeps the last value", func(t *testing.T) {
		last = stop(t, n1)
	}) {
		return
	}
	if !t.Run("restart continues from the disk", func(t *testing.T) {
		boot(t, n1, last)
		last = stop(t, n1)
	}) {
		return
	}
	if !t.Run("image copied to node2 continues there", func(t *testing.T) {
		if err := vm.CopyImage(n1, n2); err != nil {
			t.Fatal(err)
		}
		boot(t, n2, last)
		if _, err := vm.WaitSynced(n2, last+10, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		last = stop(t, n2)
		if err := vm.CopyImage(n2, n1); err != nil {
			t.Fatal(err)
		}
	}) {
		return
	}

	t.Run("diskless domains", func(t *testing.T) {
		count := 5
		if os.Getenv("SAFEKIT_FULL") != "" {
			count = 50
		}
		var idles []*kvmtest.Domain
		for i := range count {
			d := kvmtest.Idle(fmt.Sprintf("idle%d", i+1))
			if err := d.Define(n2); err != nil {
				t.Fatal(err)
			}
			idles = append(idles, d)
		}
		// each runs op on every domain, a few at a time, as libvirtd
		// serves several clients at once.
		each := func(op func(*kvmtest.Domain, *testcluster.Node) error) {
			t.Helper()
			sem := make(chan struct{}, 4)
			errs := make([]error, len(idles))
			var wg sync.WaitGroup
			for i, d := range idles {
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					errs[i] = op(d, n2)
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		since := time.Now()
		each((*kvmtest.Domain).Start)
		for _, d := range idles {
			if _, err := w.WaitFor(n2.Name, d.Name, "Started", "Booted", since, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%d diskless domains started in %v; their qemu processes use %d MiB of host memory", count, time.Since(since).Round(time.Millisecond), qemuRSS(n2)>>20)
		since = time.Now()
		each((*kvmtest.Domain).Destroy)
		for _, d := range idles {
			if _, err := w.WaitFor(n2.Name, d.Name, "Stopped", "Destroyed", since, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("and destroyed in %v", time.Since(since).Round(time.Millisecond))
		if out, err := kvmtest.Virsh(n2, "list", "--name"); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("after destroy, running on node2: %q (%v)", out, err)
		}
	})

	t.Run("node killed under its guest", func(t *testing.T) {
		boot(t, n1, last)
		seen, err := vm.WaitSynced(n1, last+5, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		ns := nsOf(n1.InitPID())
		qemu := slices.ContainsFunc(processesIn(ns), func(p string) bool { return strings.HasSuffix(p, " qemu-system-x86") })
		if !qemu {
			t.Fatalf("no qemu process in node1: %v", processesIn(ns))
		}
		if err := n1.Kill(); err != nil {
			t.Fatal(err)
		}
		if left := processesIn(ns); len(left) > 0 {
			t.Errorf("processes of node1 left after Kill: %v", left)
		}
		if _, err := w.Wait(10*time.Second, func(e kvmtest.Event) bool {
			return e.Node == n1.Name && e.Event == kvmtest.EventLost && e.Detail == kvmtest.LostKilled
		}); err != nil {
			t.Errorf("no Lost event for the killed node1: %v\n%s", err, kvmtest.FormatEvents(w.Events()))
		}
		img, err := kvmtest.NodePath(n1, vm.Disk.Path)
		if err != nil {
			t.Fatal(err)
		}
		disk, err := vm.DiskCounter(n1)
		if err != nil {
			t.Fatal(err)
		}
		printed, err := vm.LastSynced(n1)
		if err != nil {
			t.Fatal(err)
		}
		// A value is synced before it is printed: the disk may be one
		// ahead of the log, never behind.
		if disk < printed || disk > printed+1 || printed < seen {
			t.Errorf("after the crash: disk %d, last printed %d (seen %d before the kill)", disk, printed, seen)
		}
		t.Logf("node1 killed: its image stays in %s with counter %d (last printed %d)", img, disk, printed)

		// Booted again, node1 has its definitions and its image back,
		// and nothing running.
		if err := n1.Start(); err != nil {
			t.Fatal(err)
		}
		if err := kvmtest.StartLibvirt(n1); err != nil {
			t.Fatal(err)
		}
		if err := w.Watch(n1); err != nil {
			t.Fatal(err)
		}
		if st, err := vm.State(n1); err != nil || st != "shut off" {
			t.Errorf("vm1 on node1 after its restart: %q (%v), want shut off", st, err)
		}
		if again, err := vm.DiskCounter(n1); err != nil || again != disk {
			t.Errorf("image on node1 after its restart: counter %d (%v), want %d", again, err, disk)
		}
	})

	evs := w.Events()
	if err := kvmtest.CheckExclusive(evs, vm.Name); err != nil {
		t.Error(err)
	}
	var ivs []string
	for _, iv := range kvmtest.Intervals(evs) {
		if iv.Domain == vm.Name {
			ivs = append(ivs, iv.String())
		}
	}
	if len(ivs) != 4 {
		t.Errorf("vm1 ran %d times, want 4:\n%s", len(ivs), strings.Join(ivs, "\n"))
	}
	t.Logf("vm1 ran:\n  %s\nevents:\n%s", strings.Join(ivs, "\n  "), kvmtest.FormatEvents(evs))
}

// TestInitramfs checks the archive with cpio(1), when it is there: the
// kernel's unpacker and cpio read the same newc format.
func TestInitramfs(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio(1) to list the archive with (the format is also checked by TestKVMTwoNodes, which boots it)")
	}
	dir := t.TempDir()
	k := &kvmtest.Kernel{Release: "6.1.0-test", Root: dir}
	if err := os.MkdirAll(k.ModulesDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	var dep strings.Builder
	for _, m := range []string{"virtio_pci", "virtio_blk", "button", "evdev"} {
		p := filepath.Join(k.ModulesDir(), "kernel", m+".ko")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("module "+m), 0o644); err != nil {
			t.Fatal(err)
		}
		dep.WriteString("kernel/" + m + ".ko:\n")
	}
	if err := os.WriteFile(filepath.Join(k.ModulesDir(), "modules.dep"), []byte(dep.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bb := filepath.Join(dir, "busybox")
	if err := os.WriteFile(bb, []byte("not really busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := kvmtest.BuildInitramfs(k, bb)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := kvmtest.BuildInitramfs(k, bb)
	if !bytes.Equal(img, again) {
		t.Error("two builds differ: the initramfs name (its hash) would change on every run")
	}
	zr, err := gzip.NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = zr
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, out)
	}
	for _, want := range []string{"init", "bin/busybox", "dev/console", "lib/modules/virtio_blk.ko", "lib/modules/evdev.ko"} {
		found := false
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			found = found || (len(f) > 0 && f[len(f)-1] == want)
		}
		if !found {
			t.Errorf("%s not in the archive:\n%s", want, out)
		}
	}
	if !strings.Contains(string(out), "crw-------") {
		t.Errorf("dev/console is not a character device:\n%s", out)
	}
}

package kvmadvice

import (
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/safe"
)

func domainXML(cache, image string) string {
	driver := `<driver name='qemu' type='qcow2'/>`
	if cache != "" {
		driver = `<driver name='qemu' type='qcow2' cache='` + cache + `'/>`
	}
	return `<domain type='qemu'><name>vm1</name><memory unit='MiB'>128</memory><os><type>hvm</type></os>
<devices>
<disk type='file' device='disk'>` + driver + `<source file='` + image + `'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><source file='/isos/debian.iso'/><target dev='sda' bus='sata'/></disk>
</devices></domain>`
}

func kvmConfig(t *testing.T) *safe.Config {
	t.Helper()
	u := safe.ParseUserconfig([]byte(`<safe><macro name="VM_PATH" value="/var/lib/libvirt/images"/><macro name="VM_NAME" value="vm1"/>
<service mode="mirror"><heart><heartbeat name="default"/></heart>
<rfs><replicated dir="%VM_PATH%/%VM_NAME%"/></rfs>
<user><var name="VM_PATH" value="%VM_PATH%/%VM_NAME%"/><var name="VM_NAME" value="%VM_NAME%"/></user></service></safe>`), safe.Options{})
	if u.Diags.HasErrors() {
		t.Fatal(u.Diags.Err())
	}
	return u.Config
}

func source(d *Domain) Source { return func(string) (*Domain, error) { return d, nil } }

func TestBadDomainGetsTheThreeWarnings(t *testing.T) {
	d := &Domain{XML: domainXML("writeback", "/var/lib/libvirt/images/other.qcow2"), Autostart: true}
	got := Advise(kvmConfig(t), source(d))
	want := []string{
		"disk vda of domain vm1 uses cache='writeback': set <driver cache='none'/>",
		"disk vda of domain vm1 is /var/lib/libvirt/images/other.qcow2, outside every replicated directory (/var/lib/libvirt/images/vm1)",
		"domain vm1 has autostart on: libvirt would start it at boot on both nodes; run virsh autostart --disable vm1",
	}
	if len(got) != len(want) {
		t.Fatalf("got %d warnings, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("warning %d:\n  got  %s\n  want %s...", i, got[i], want[i])
		}
	}
}

func TestGoodDomainGetsNone(t *testing.T) {
	d := &Domain{XML: domainXML("none", "/var/lib/libvirt/images/vm1/vm1.qcow2")}
	if got := Advise(kvmConfig(t), source(d)); len(got) != 0 {
		t.Fatalf("warnings for a correct domain:\n%s", strings.Join(got, "\n"))
	}
}

func TestDefaultCacheAndSnapshots(t *testing.T) {
	d := &Domain{XML: domainXML("", "/var/lib/libvirt/images/vm1/vm1.qcow2"), SnapshotDir: "/var/lib/libvirt/qemu/snapshot/vm1", HasSnapshots: true}
	got := Advise(kvmConfig(t), source(d))
	if len(got) != 2 || !strings.Contains(got[0], "uses the hypervisor default") || !strings.Contains(got[1], `add <replicated dir="/var/lib/libvirt/qemu/snapshot/vm1"/>`) {
		t.Fatalf("got:\n%s", strings.Join(got, "\n"))
	}
}

func TestUndefinedDomainAndNoVMName(t *testing.T) {
	missing := func(string) (*Domain, error) { return nil, ErrNoDomain }
	if got := Advise(kvmConfig(t), missing); len(got) != 1 || !strings.Contains(got[0], "is not defined on this node") {
		t.Fatalf("got %v", got)
	}
	u := safe.ParseUserconfig([]byte(`<safe><service mode="light"><user/></service></safe>`), safe.Options{})
	if got := Advise(u.Config, missing); got != nil {
		t.Fatalf("a module without VM_NAME got %v", got)
	}
}

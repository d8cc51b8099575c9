package kvmtest

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
)

// URI is the libvirt connection of every virsh this package runs; the
// node's /etc/libvirt/libvirt.conf makes it the default of a plain virsh
// in the node too (unless LIBVIRT_DEFAULT_URI says otherwise).
const URI = "qemu:///system"

// PrivateDirs are the directories each node needs of its own
// (testcluster.Options.PrivateDirs) for its libvirt and the serial logs:
// configuration and domain definitions, images and state, logs, caches.
// /run is private in every node already (libvirt's sockets and pid files,
// /var/run being a link to it).
var PrivateDirs = []string{"/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt", SerialDir}

// Configuration files written into the node's private /etc/libvirt.
var libvirtConf = map[string]string{
	// The node's sockets, in its private /run, for root only, without
	// authentication (polkit is not there).
	"libvirtd.conf": `unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`,
	"virtlogd.conf": `log_outputs = "3:file:/var/log/libvirt/virtlogd.log"
`,
	// qemu runs as root; libvirt changes no file ownership or label, puts
	// qemu in no cgroup (the node's cgroup is the host's, and no
	// systemd-machined is there) and in no private /dev namespace.
	"qemu.conf": `user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
`,
	"libvirt.conf": `uri_default = "` + URI + `"
`,
}

// qemuAccount is the account Debian's libvirt was built to run qemu as
// (libvirt-qemu): its qemu driver refuses to start when the account does
// not exist, even with user = "root" in qemu.conf. The package that would
// create it (libvirt-daemon-system) also starts a host libvirtd, so
// StartLibvirt adds it to a copy of /etc/passwd and /etc/group mounted in
// the node only.
const qemuAccount = "libvirt-qemu"

// startScript prepares the node's libvirt and starts its daemons ($1: the
// qemu account line suffix). The daemons daemonize (-d) into the node:
// their parent is the node's init, they die with the node.
const startScript = `set -e
if [ -S /run/libvirt/libvirt-sock ]; then
	echo "a libvirtd already listens on /run/libvirt/libvirt-sock in this node" >&2
	exit 1
fi
mkdir -p /run/kvmtest /var/log/libvirt /var/lib/libvirt/images /var/cache/libvirt /var/log/kvmtest
if ! getent passwd ` + qemuAccount + ` >/dev/null; then
	cp /etc/passwd /run/kvmtest/passwd
	echo "` + qemuAccount + `:x:64055:64055:qemu for libvirt (kvmtest, this node only):/var/lib/libvirt:/usr/sbin/nologin" >>/run/kvmtest/passwd
	mount --bind /run/kvmtest/passwd /etc/passwd
fi
if ! getent group ` + qemuAccount + ` >/dev/null; then
	cp /etc/group /run/kvmtest/group
	echo "` + qemuAccount + `:x:64055:" >>/run/kvmtest/group
	mount --bind /run/kvmtest/group /etc/group
fi
virtlogd -d -f /etc/libvirt/virtlogd.conf
libvirtd -d -f /etc/libvirt/libvirtd.conf
`

// libvirtReadyTimeout bounds how long StartLibvirt waits for libvirtd to
// answer (it probes qemu's capabilities on its first start in a node).
const libvirtReadyTimeout = 60 * time.Second

// StartLibvirt starts virtlogd and libvirtd in node n, each with the
// configuration above in the node's /etc/libvirt, and waits until libvirtd
// answers with the node's hostname: proof that virsh in the node talks to
// the node's own daemon, not the host's. n needs PrivateDirs. Call it
// again after Node.Kill and Node.Start: the daemons die with the node.
func StartLibvirt(n *testcluster.Node) error {
	if u := os.Getenv("LIBVIRT_DEFAULT_URI"); u != "" && u != URI {
		return fmt.Errorf("LIBVIRT_DEFAULT_URI=%s would send a plain virsh in the nodes elsewhere than their own daemon: unset it", u)
	}
	if _, _, err := n.Run("mkdir", "-p", "/etc/libvirt"); err != nil {
		return err
	}
	for name, content := range libvirtConf {
		if err := os.WriteFile(n.HostPath("/etc/libvirt/"+name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("%s: %w", n.Name, err)
		}
	}
	if _, _, err := n.Run("sh", "-c", startScript); err != nil {
		return fmt.Errorf("start libvirt: %w (logs in the node's /var/log/libvirt)", err)
	}
	deadline := time.Now().Add(libvirtReadyTimeout)
	for {
		out, err := Virsh(n, "hostname")
		host := strings.TrimSpace(out)
		if err == nil && host == n.Name {
			return nil
		}
		if err == nil {
			return fmt.Errorf("%s: virsh reaches a libvirtd on host %q, not the node's own", n.Name, host)
		}
		if time.Now().After(deadline) {
			tail, _, _ := n.Run("tail", "-n", "20", "/var/log/libvirt/libvirtd.log")
			return fmt.Errorf("libvirtd does not answer after %v: %w\n--- %s /var/log/libvirt/libvirtd.log ---\n%s", libvirtReadyTimeout, err, n.Name, tail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Virsh runs `virsh -c qemu:///system args...` in n and returns its
// standard output; the error carries the node, the command and virsh's
// message.
func Virsh(n *testcluster.Node, args ...string) (string, error) {
	out, _, err := n.Run(append([]string{"virsh", "-c", URI}, args...)...)
	return out, err
}

// Tool is a program run on the host, with the Debian package that brings
// it.
type Tool struct{ Name, Pkg string }

// tools are the programs the stack needs.
var tools = []Tool{
	{"libvirtd", "libvirt-daemon"},
	{"virtlogd", "libvirt-daemon"},
	{"virsh", "libvirt-clients"},
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"busybox", "busybox-static"},
	{"apt-get", "apt"},
	{"dpkg", "dpkg"},
	{"depmod", "kmod"},
}

// MissingTools returns the programs of the KVM stack, and extra, that are
// not on PATH, each as "name (package)".
func MissingTools(extra ...Tool) []string {
	var missing []string
	for _, tool := range append(slices.Clip(tools), extra...) {
		if _, err := exec.LookPath(tool.Name); err != nil {
			missing = append(missing, tool.Name+" ("+tool.Pkg+")")
		}
	}
	return missing
}

// Need checks what the KVM stack needs on the host (root, the programs of
// libvirt, qemu, busybox-static, apt and kmod): outside CI a test without
// them skips saying what is missing, in CI it fails (testenv.Need).
func Need(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	if missing := MissingTools(); len(missing) > 0 {
		testenv.Need(t, "the KVM stack: "+strings.Join(missing, ", ")+" (the apt-get line of .ci/run installs them)")
	}
	if _, err := staticBusybox(); err != nil {
		testenv.Need(t, err.Error())
	}
}

// Prepare checks the host (Need) and returns the kit, fetching the kernel
// on first use; call it before testcluster.New (see NewKit).
func Prepare(t testing.TB) *Kit {
	t.Helper()
	Need(t)
	start := time.Now()
	k, err := NewKit(t.Logf)
	if err != nil {
		t.Fatalf("kvmtest: %v", err)
	}
	t.Logf("kvmtest: kernel %s, initramfs %s (%v)", k.Kernel.Release, k.Initrd, time.Since(start).Round(time.Millisecond))
	return k
}

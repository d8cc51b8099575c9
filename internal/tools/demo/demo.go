package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/internal/kvmtest"
	"github.com/safekit-oss/safekit/internal/testcluster"
)

// The module and the domain it protects share the name, as SafeKit's own
// KVM walkthrough does.
const vmName = "vm1"

// Bounds of the waits. Generous: the guest runs under TCG on a machine
// that may be busy; a healthy run takes a fraction of each.
const (
	aloneTimeout  = 2 * time.Minute // prim: prestart, start_prim, the VM booting
	secondTimeout = 3 * time.Minute // start: the full resynchronisation of the image
	guestTimeout  = 2 * time.Minute // the guest's first synced value
	pollEvery     = 300 * time.Millisecond
)

// consoleUser is the console user the demo creates (SafeKit's default).
const consoleUser = "admin"

type demo struct {
	o         *out
	bin       string
	templates string
	harness   string
	checking  bool

	kit    *kvmtest.Kit
	c      *testcluster.Cluster
	n1, n2 *testcluster.Node
	vm     *kvmtest.Domain
	w      *kvmtest.Watcher // -check only
	pwd    string           // console password
}

// step runs f as one step of the demo.
func (d *demo) step(ctx context.Context, title string, f func() error) error {
	if ctx.Err() != nil {
		return errInterrupted
	}
	d.o.Step(title)
	err := f()
	if err != nil && ctx.Err() != nil {
		err = errInterrupted
	}
	d.o.End(err)
	return err
}

func (d *demo) logf(format string, a ...any) {
	d.o.Printf("    %s\n", fmt.Sprintf(format, a...))
}

// up brings the demo up, from the guest's kernel to the module running
// on both nodes and the console password.
func (d *demo) up(ctx context.Context) error {
	steps := []struct {
		title string
		f     func(context.Context) error
	}{
		{"This machine: root, libvirt, qemu, busybox, ip, nsenter", d.preflight},
		{"The guest: a Debian kernel (downloaded once) and a busybox initramfs", d.guest},
		{"Two nodes on this machine (network, PID and mount namespaces), each with its safekitd", d.nodes},
		{"A libvirtd in each node", d.libvirt},
		{"The virtual machine " + vmName + ", defined on both nodes, its disk on node1", d.domain},
		{"The cluster, configured from node1", d.cluster},
		{"Module " + vmName + " from the project's kvm template, configured on both nodes", d.module},
		{"Start: " + vmName + " primary on node1", d.startPrim},
		{"Start: node2 secondary (its copy of the VM's disk is synchronised)", d.startSecond},
		{"A console user on both nodes", d.console},
		{"The guest runs on node1 and writes to its replicated disk", d.guestRuns},
	}
	for _, s := range steps {
		if err := d.step(ctx, s.title, func() error { return s.f(ctx) }); err != nil {
			return err
		}
	}
	return nil
}

// tools are the programs the demo runs on this machine beside the KVM
// stack (kvmtest.MissingTools), with the Debian package of each
// (scripts/demo.sh installs them).
var tools = []kvmtest.Tool{
	{Name: "ip", Pkg: "iproute2"},
	{Name: "nsenter", Pkg: "util-linux"},
}

func (d *demo) preflight(context.Context) error {
	if missing := kvmtest.MissingTools(tools...); len(missing) > 0 {
		return fmt.Errorf("missing on this machine: %s; scripts/demo.sh (make demo) installs them", strings.Join(missing, ", "))
	}
	for _, f := range []string{filepath.Join(d.bin, "safekit"), filepath.Join(d.bin, "safekitd"), filepath.Join(d.templates, "kvm.safe")} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%w: run make build", err)
		}
	}
	return nil
}

// guest fetches the kernel and builds the initramfs, showing how much of
// the kernel package has arrived while apt-get downloads it.
func (d *demo) guest(ctx context.Context) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if mb := scratchMB(kvmtest.CacheDir()); mb > 0 {
				d.o.Status("downloading and unpacking the kernel package into %s: %d MB", kvmtest.CacheDir(), mb)
			} else {
				d.o.Status("looking for the kernel in %s, building the initramfs", kvmtest.CacheDir())
			}
			select {
			case <-done:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	})
	kit, err := kvmtest.NewKit(d.logf)
	close(done)
	wg.Wait()
	if err != nil {
		return err
	}
	d.kit = kit
	d.logf("kernel %s (kept in %s for the next runs), initramfs %s", kit.Kernel.Release, kvmtest.CacheDir(), filepath.Base(kit.Initrd))
	return ctx.Err()
}

// scratchMB adds up the files of the scratch directories (*.tmp*) where
// kvmtest downloads and unpacks a kernel package.
func scratchMB(cache string) int64 {
	dirs, _ := filepath.Glob(filepath.Join(cache, "*.tmp*"))
	var total int64
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				if fi, err := e.Info(); err == nil {
					total += fi.Size()
				}
			}
			return nil
		})
	}
	return total >> 20
}

func (d *demo) nodes(ctx context.Context) error {
	d.o.Status("creating the namespaces and the bridge, starting safekitd in each node")
	c, err := testcluster.Create(testcluster.Options{Nodes: 2, PrivateDirs: kvmtest.PrivateDirs, Bin: d.bin}, d.logf)
	if err != nil {
		return err
	}
	d.c, d.n1, d.n2 = c, c.Node("node1"), c.Node("node2")
	for _, n := range c.Nodes {
		d.logf("%s: address %s, safekitd pid %d, its files in %s", n.Name, n.Addr("default"), n.DaemonPID(), n.Dir)
	}
	d.logf("this machine is %s on the nodes' network: it reaches them directly", c.HostAddr("default"))
	return ctx.Err()
}

func (d *demo) libvirt(ctx context.Context) error {
	d.o.Status("starting virtlogd and libvirtd in both nodes (the first start probes qemu)")
	errs := make([]error, len(d.c.Nodes))
	var wg sync.WaitGroup
	for i, n := range d.c.Nodes {
		wg.Go(func() { errs[i] = kvmtest.StartLibvirt(n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if d.checking {
		// Every lifecycle event of both nodes from now on: the check
		// proves with them that the VM never ran on both at once.
		d.w = kvmtest.NewWatcher()
		for _, n := range d.c.Nodes {
			if err := d.w.Watch(n); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// domain creates the VM's disk image on node1 and defines the same
// domain on both nodes; node2 gets the image from the replication when it
// starts as secondary, into the directory made for it here.
func (d *demo) domain(ctx context.Context) error {
	d.vm = d.kit.Counter(vmName)
	d.o.Status("creating the disk image on node1")
	if err := d.vm.CreateImage(d.n1); err != nil {
		return err
	}
	d.logf("node1: %s, %d MiB (sparse): the guest keeps a counter at its start", d.vm.Disk.Path, d.vm.Disk.SizeMiB)
	if _, _, err := d.n2.Run("mkdir", "-p", d.vm.ImageDir()); err != nil {
		return err
	}
	d.logf("node2: %s, empty: the module's replication fills it", d.vm.ImageDir())
	for _, n := range d.c.Nodes {
		d.o.Status("defining %s on %s", vmName, n.Name)
		if err := d.vm.Define(n); err != nil {
			return err
		}
		if err := d.show1(n, "virsh", "domblklist", "--details", vmName); err != nil {
			return err
		}
	}
	d.logf("the disk has cache='none' and the domain no autostart: the module starts it where it is primary")
	return ctx.Err()
}

// show1 runs a command in n and shows it with its output.
func (d *demo) show1(n *testcluster.Node, args ...string) error {
	stdout, stderr, err := n.Run(args...)
	d.o.Command(n.Name, strings.Join(args, " "), stdout+stderr)
	return err
}

// sk runs safekit in n, shows it and returns what it printed (stdout
// and stderr); shown replaces the arguments on screen (secrets) when not
// empty.
func (d *demo) sk(n *testcluster.Node, shown string, args ...string) (string, error) {
	// One buffer for both, so that a warning stays where safekit printed
	// it (after the banner of its node, with -H).
	var b bytes.Buffer
	cmd := n.Command(append([]string{"safekit"}, args...)...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if shown == "" {
		shown = strings.Join(quoteArgs(args), " ")
	}
	d.o.Command(n.Name, "safekit "+shown, b.String())
	if err != nil {
		return b.String(), fmt.Errorf("%s: safekit %s: %w", n.Name, shown, err)
	}
	return b.String(), nil
}

// quoteArgs quotes the arguments a shell would not take as they are
// ("*").
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "*? ") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return out
}

var rcmdPasswordRE = regexp.MustCompile(`safekit webservercfg -rcmdpasswd ([^"\s]+)`)

// cluster writes cluster.xml on node1, applies it, gives node2 the
// password of distributed commands that node1's safekitd generated, and
// copies the configuration to node2, as docs/cluster.md says.
func (d *demo) cluster(ctx context.Context) error {
	if _, err := d.sk(d.n1, "", "cluster", "create", d.n1.Addr("default"), d.n2.Addr("default")); err != nil {
		return err
	}
	if _, err := d.sk(d.n1, "", "cluster", "config"); err != nil {
		return err
	}
	logPath := filepath.Join(d.n1.Dir, "safekitd.log")
	b, err := os.ReadFile(logPath)
	if err != nil {
		return err
	}
	m := rcmdPasswordRE.FindSubmatch(b)
	if m == nil {
		return fmt.Errorf("node1's safekitd logged no password for distributed commands (%s)", logPath)
	}
	d.logf("node1's safekitd generated the password of distributed commands (rcmdadmin) and logged it; node2 gets the same:")
	if _, err := d.sk(d.n2, "webservercfg -rcmdpasswd <node1's password>", "webservercfg", "-rcmdpasswd", string(m[1])); err != nil {
		return err
	}
	if _, err := d.sk(d.n1, "", "-H", "*", "-G"); err != nil {
		return err
	}
	return ctx.Err()
}

var macroRE = regexp.MustCompile(`(<macro name="(VM_PATH|VM_NAME)" value=")[^"]*(")`)

// module installs the kvm template on node1, sets its macros, configures
// it there and exports it to node2 with -E.
func (d *demo) module(ctx context.Context) error {
	// Both nodes list the templates in their console (Configuration ›
	// New module), as an installed node does.
	for _, n := range d.c.Nodes {
		dst := n.HostPath(filepath.Join(testcluster.NodeSAFE, "Application_Modules", "generic"))
		if err := copyDir(d.templates, dst); err != nil {
			return err
		}
	}
	// A bare name is looked up in SAFE/Application_Modules.
	if _, err := d.sk(d.n1, "", "module", "install", "-m", vmName, "kvm.safe"); err != nil {
		return err
	}
	conf := filepath.Join(testcluster.NodeSAFE, "modules", vmName, "conf", "userconfig.xml")
	hostConf := d.n1.HostPath(conf)
	b, err := os.ReadFile(hostConf)
	if err != nil {
		return err
	}
	values := map[string]string{"VM_PATH": kvmtest.ImagesDir, "VM_NAME": vmName}
	set := 0
	edited := macroRE.ReplaceAllStringFunc(string(b), func(s string) string {
		sm := macroRE.FindStringSubmatch(s)
		set++
		return sm[1] + values[sm[2]] + sm[3]
	})
	if set != len(values) {
		return fmt.Errorf("%s: found %d of the macros VM_PATH and VM_NAME, want both", conf, set)
	}
	if err := os.WriteFile(hostConf, []byte(edited), 0o644); err != nil {
		return err
	}
	var lines []string
	for _, l := range strings.Split(edited, "\n") {
		if macroRE.MatchString(l) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	d.o.Command("node1", "vi "+conf+"   # the macros", strings.Join(lines, "\n"))
	out, err := d.sk(d.n1, "", "config", "-m", vmName)
	if err != nil {
		return err
	}
	exported, err := d.sk(d.n1, "", "-H", "*", "-E", vmName)
	if err != nil {
		return err
	}
	// The domain follows the configuration advice of the kvm module
	// (cache='none', no autostart, its disk replicated): a warning here
	// means the demo no longer shows a well configured VM.
	if strings.Contains(out+exported, "warning:") {
		if d.checking {
			return errors.New("safekit config gave warnings (above) for the demo's domain")
		}
		d.logf("safekit config gave warnings (above): the demo goes on")
	}
	return ctx.Err()
}

// copyDir copies the regular files of src into dst.
func copyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) startPrim(ctx context.Context) error {
	if _, err := d.sk(d.n1, "", "prim", "-m", vmName); err != nil {
		return err
	}
	err := d.waitFor(ctx, aloneTimeout, func() (bool, string, error) {
		st := d.state(d.n1)
		vm := d.domstate(d.n1)
		return st == "ALONE Ready" && vm == "running", fmt.Sprintf("node1: %s, VM %s", st, vm), nil
	})
	if err != nil {
		return err
	}
	if err := d.show1(d.n1, "safekit", "log", "-m", vmName, "-s", "12"); err != nil {
		return err
	}
	return d.showUserlog(d.n1, "start_prim")
}

// showUserlog shows the newest log of script in n: what the kvm
// template's script did.
func (d *demo) showUserlog(n *testcluster.Node, script string) error {
	logs, err := filepath.Glob(n.HostPath(filepath.Join(testcluster.NodeSAFEVAR, "modules", vmName, "userlog_*_"+script+".ulog")))
	if err != nil || len(logs) == 0 {
		return fmt.Errorf("%s: no log of script %s in %s/modules/%s", n.Name, script, testcluster.NodeSAFEVAR, vmName)
	}
	newest := logs[len(logs)-1] // the names sort by date
	b, err := os.ReadFile(newest)
	if err != nil {
		return err
	}
	d.o.Command(n.Name, "cat "+filepath.Join(testcluster.NodeSAFEVAR, "modules", vmName, filepath.Base(newest)), string(b))
	return nil
}

func (d *demo) startSecond(ctx context.Context) error {
	if _, err := d.sk(d.n2, "", "start", "-m", vmName); err != nil {
		return err
	}
	err := d.waitFor(ctx, secondTimeout, func() (bool, string, error) {
		s1, s2 := d.state(d.n1), d.state(d.n2)
		status := fmt.Sprintf("node1: %s, node2: %s", s1, s2)
		if copied, total, ok := d.resync(d.n2); ok && s2 != "SECOND Ready" {
			status += fmt.Sprintf(", resynchronisation %d of %d MB", copied>>20, total>>20)
		}
		return s1 == "PRIM Ready" && s2 == "SECOND Ready", status, nil
	})
	if err != nil {
		return err
	}
	return d.show1(d.n2, "safekit", "log", "-m", vmName, "-s", "6")
}

// resync reads the resynchronisation's progress from the resources of
// the module in n (bytes copied and to copy).
func (d *demo) resync(n *testcluster.Node) (copied, total int64, ok bool) {
	out, _, err := n.Safekit("state", "-m", vmName, "-v")
	if err != nil {
		return 0, 0, false
	}
	res := map[string]int64{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && strings.HasPrefix(f[0], "rfs.rei_copy_size_") {
			res[f[0]], _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	total, ok = res["rfs.rei_copy_size_total"]
	return res["rfs.rei_copy_size_metric"], total, ok && total > 0
}

func (d *demo) console(ctx context.Context) error {
	d.pwd = password()
	for _, n := range d.c.Nodes {
		if _, err := d.sk(n, "webservercfg -passwd <password> -user "+consoleUser, "webservercfg", "-passwd", d.pwd, "-user", consoleUser); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// password makes a console password that is easy to type: 12 letters and
// digits without the ones that look alike (60 bits).
func password() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func (d *demo) guestRuns(ctx context.Context) error {
	d.o.Status("waiting for the guest to boot on node1 and sync its first values")
	last, err := d.vm.WaitSynced(d.n1, 10, guestTimeout)
	if err != nil {
		return err
	}
	d.logf("the guest synced its counter up to %d on node1 (its serial console: %s in node1)", last, d.vm.Serial)
	return ctx.Err()
}

// state is `safekit state -m vm1 -lq` in n ("PRIM Ready"), or why there is
// none.
func (d *demo) state(n *testcluster.Node) string {
	out, _, err := n.Safekit("state", "-m", vmName, "-lq")
	st := strings.TrimSpace(out)
	if st == "" {
		if err != nil {
			return "no answer"
		}
		return "no state"
	}
	return st
}

// domstate is what virsh domstate says of the VM in n.
func (d *demo) domstate(n *testcluster.Node) string {
	st, err := d.vm.State(n)
	if err != nil {
		return "unknown"
	}
	return st
}

// waitFor polls cond until it holds, showing its status; past timeout it
// fails with the last status and the end of the module logs.
func (d *demo) waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, status, err := cond()
		if err != nil {
			return err
		}
		if ok {
			d.logf("%s", status)
			return nil
		}
		d.o.Status("%s", status)
		if time.Now().After(deadline) {
			return fmt.Errorf("not there after %v: %s\n%s", timeout, status, d.moduleLogs())
		}
		select {
		case <-ctx.Done():
			return errInterrupted
		case <-time.After(pollEvery):
		}
	}
}

// moduleLogs is the end of the module's log on each node, for a failure.
func (d *demo) moduleLogs() string {
	var b strings.Builder
	for _, n := range d.c.Nodes {
		out, _, err := n.Safekit("log", "-m", vmName, "-s", "25")
		if err != nil {
			out += err.Error()
		}
		fmt.Fprintf(&b, "--- the module log of %s ends with ---\n%s\n", n.Name, strings.TrimRight(out, "\n"))
	}
	return b.String()
}

// teardown removes the cluster: every process of the nodes (daemons,
// libvirt, qemu), their mounts, namespaces, links and files.
func (d *demo) teardown() error {
	if d.w != nil {
		d.w.Close()
	}
	if d.c == nil {
		return nil
	}
	d.o.Step(fmt.Sprintf("Removing cluster %d: the nodes' processes (safekitd, libvirtd, qemu), mounts, namespaces, bridge and %s", d.c.ID, d.c.Dir))
	d.o.Status("killing the nodes")
	err := d.c.Close()
	d.o.End(err)
	return err
}

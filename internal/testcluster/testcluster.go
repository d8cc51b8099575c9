package testcluster

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testenv"
)

// Options describe a cluster. The zero value is two nodes on one lan, each
// running the safekitd of the repository's bin/.
type Options struct {
	// Nodes is the number of nodes, named node1..nodeN. Default 2, at most
	// 200.
	Nodes int
	// Lans names the networks, in order: lan i is interface eth<i> in every
	// node, on 10.<200+i>.<id>.0/24. Default ["default"], at most 56.
	Lans []string
	// PrivateDirs are absolute directories each node gets its own
	// copy-on-write copy of (e.g. /var/lib/libvirt). Nothing is created or
	// changed on the host: a directory missing on the host is created inside
	// the node on an overlay of its deepest existing ancestor, which must
	// not be /.
	PrivateDirs []string
	// Bin is the directory holding safekit and safekitd. Default: bin/ of
	// the repository. Only checked when a daemon runs.
	Bin string
	// NoDaemon boots the nodes without safekitd (StartDaemon starts it).
	NoDaemon bool
	// DaemonArgs are passed to safekitd after --listen :9010.
	DaemonArgs []string
	// NodeFlag forces `--node node<i>` on the daemon's command line. It is
	// passed anyway when safekitd lists -node in its usage, so the zero
	// value works both before and after the daemon knows the flag.
	NodeFlag bool
	// Dir is the cluster directory (node directories, logs). Default
	// /tmp/sktc-<id>: short, because unix socket paths under it must stay
	// below 108 bytes. It must not exist or be empty, and is removed by
	// Teardown (a failed test gets the end of the nodes' logs first).
	Dir string
	// InitBin is the testcluster binary used as the nodes' init. Default:
	// built with `go build` from this repository into Dir, else
	// Bin/testcluster.
	InitBin string
}

// Cluster is a set of nodes on this machine.
type Cluster struct {
	Nodes []*Node
	Lans  []string
	// Dir holds one directory per node (Node.Dir).
	Dir string
	// ID is the cluster's number: the third byte of its addresses and the
	// digits after "sktc" in its names.
	ID int

	t    testing.TB // nil outside tests
	logf func(string, ...any)

	mu       sync.Mutex // guards st and closed
	st       *state
	closed   bool
	nsenter  string
	initBin  string
	nodeFlag bool
}

var lanNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// New creates a cluster for a test and registers its teardown. Without
// root, ip or nsenter the test is skipped outside CI (failed in CI),
// saying what is missing.
func New(t testing.TB, o Options) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Need(t, "root (network, PID and mount namespaces)")
	}
	for _, tool := range []struct{ name, pkg string }{{"ip", "iproute2"}, {"nsenter", "util-linux"}} {
		if _, err := exec.LookPath(tool.name); err != nil {
			testenv.Need(t, tool.name+" (apt-get install "+tool.pkg+")")
		}
	}
	c, err := create(o, false, t.Logf)
	if err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	c.t = t
	t.Cleanup(c.Teardown)
	return c
}

// Up creates a cluster that outlives the calling process (`testcluster
// up`): Sweep leaves it alone, only Close (`testcluster down`) removes it.
func Up(o Options, logf func(string, ...any)) (*Cluster, error) {
	return create(o, true, logf)
}

// Create creates a cluster owned by this process, for a program that is not
// a test (benchreport): as with New, its nodes die with the process and
// Sweep removes what is left; Close removes it.
func Create(o Options, logf func(string, ...any)) (*Cluster, error) {
	return create(o, false, logf)
}

// Clusters lists the ids of the clusters made by Up that still exist.
func Clusters() []int {
	var out []int
	for _, id := range clusterIDs() {
		if st, err := readState(id); err == nil && st.Owner == 0 {
			out = append(out, id)
		}
	}
	return out
}

// Open returns the cluster made by Up with this id; id 0 means the only
// one.
func Open(id int, logf func(string, ...any)) (*Cluster, error) {
	if id == 0 {
		ids := Clusters()
		switch len(ids) {
		case 0:
			return nil, errors.New("no cluster is up: create one with `testcluster up`")
		case 1:
			id = ids[0]
		default:
			return nil, fmt.Errorf("several clusters are up (%v): choose one with -c", ids)
		}
	}
	st, err := readState(id)
	if err != nil {
		return nil, fmt.Errorf("cluster %d: %w", id, err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("nsenter not found (apt-get install util-linux): %w", err)
	}
	c := &Cluster{Lans: st.Options.Lans, Dir: st.Dir, ID: id, logf: logf, st: st, nsenter: nsenter, initBin: st.InitBin, nodeFlag: st.NodeFlag}
	for i := range st.Options.Nodes {
		c.Nodes = append(c.Nodes, c.newNode(i+1))
	}
	for i, ns := range st.Nodes {
		c.Nodes[i].init, c.Nodes[i].daemon = ns.Init, ns.Daemon
	}
	return c, nil
}

// resolve applies the defaults of o and checks it.
func resolve(o Options) (Options, error) {
	var errs []error
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if o.Nodes < 1 || o.Nodes > maxNodes {
		errs = append(errs, fmt.Errorf("Options.Nodes = %d: want 1 to %d", o.Nodes, maxNodes))
	}
	if len(o.Lans) == 0 {
		o.Lans = []string{"default"}
	}
	if len(o.Lans) > maxLans {
		errs = append(errs, fmt.Errorf("Options.Lans: %d lans, at most %d", len(o.Lans), maxLans))
	}
	seen := map[string]bool{}
	for _, l := range o.Lans {
		if !lanNameRE.MatchString(l) {
			errs = append(errs, fmt.Errorf("Options.Lans: %q: a lan name is letters, digits, '_', '.' and '-'", l))
		}
		if seen[l] {
			errs = append(errs, fmt.Errorf("Options.Lans: %q twice", l))
		}
		seen[l] = true
	}
	o.PrivateDirs = append([]string(nil), o.PrivateDirs...)
	for i, d := range o.PrivateDirs {
		clean := filepath.Clean(d)
		switch {
		case !filepath.IsAbs(d):
			errs = append(errs, fmt.Errorf("Options.PrivateDirs: %q is not absolute", d))
		case clean == "/":
			errs = append(errs, errors.New("Options.PrivateDirs: / cannot be private"))
		case strings.ContainsAny(d, ",:\\"):
			// They separate overlay mount options.
			errs = append(errs, fmt.Errorf("Options.PrivateDirs: %q: ',', ':' and '\\' are not supported", d))
		}
		o.PrivateDirs[i] = clean
	}
	if o.Bin == "" {
		o.Bin = filepath.Join(testenv.RepoRoot(), "bin")
	}
	abs, err := filepath.Abs(o.Bin)
	if err != nil {
		errs = append(errs, fmt.Errorf("Options.Bin: %w", err))
	}
	o.Bin = abs
	if under(o.Bin, NodeSAFE) || under(o.Bin, NodeSAFEVAR) {
		errs = append(errs, fmt.Errorf("Options.Bin = %s: inside the nodes %s and %s are their own, so the binaries must live elsewhere (e.g. the repository's bin/)", o.Bin, NodeSAFE, NodeSAFEVAR))
	}
	if !o.NoDaemon {
		for _, b := range []string{"safekitd", "safekit"} {
			if _, err := os.Stat(filepath.Join(o.Bin, b)); err != nil {
				errs = append(errs, fmt.Errorf("no %s in Options.Bin = %s: run `make build`, set Bin, or set NoDaemon", b, o.Bin))
			}
		}
	}
	if o.Dir != "" {
		if o.Dir, err = filepath.Abs(o.Dir); err != nil {
			errs = append(errs, fmt.Errorf("Options.Dir: %w", err))
		}
		if entries, err := os.ReadDir(o.Dir); err == nil && len(entries) > 0 {
			errs = append(errs, fmt.Errorf("Options.Dir = %s is not empty: Teardown removes it, so give a new or empty directory", o.Dir))
		}
	}
	return o, errors.Join(errs...)
}

// create makes a cluster; persistent ones have no owner process.
func create(o Options, persistent bool, logf func(string, ...any)) (c *Cluster, err error) {
	o, err = resolve(o)
	if err != nil {
		return nil, err
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("nsenter not found (apt-get install util-linux): %w", err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("ip not found (apt-get install iproute2): %w", err)
	}
	c = &Cluster{Lans: o.Lans, logf: logf, nsenter: nsenter, nodeFlag: o.NodeFlag}
	if !o.NoDaemon && !c.nodeFlag {
		c.nodeFlag = daemonKnowsNodeFlag(filepath.Join(o.Bin, "safekitd"))
	}

	unlock, err := lockHarness()
	if err != nil {
		return nil, err
	}
	if err := sweepLocked(logf); err != nil {
		logf("testcluster: sweeping leftovers of dead runs: %v", err)
	}
	c.ID, err = reserveID(len(o.Lans))
	if err != nil {
		unlock()
		return nil, err
	}
	c.Dir = o.Dir
	if c.Dir == "" {
		c.Dir = stateDir(c.ID)
	}
	c.st = &state{ID: c.ID, Dir: c.Dir, Options: o, NodeFlag: c.nodeFlag}
	if !persistent {
		c.st.Owner = os.Getpid()
		c.st.OwnerStart, _, _ = procStat(c.st.Owner)
	}
	for i := range o.Nodes {
		c.Nodes = append(c.Nodes, c.newNode(i+1))
		c.st.Nodes = append(c.st.Nodes, nodeState{})
	}
	// From here on Close undoes whatever was done.
	defer func() {
		if err != nil {
			if cerr := c.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
			}
			c = nil
		}
	}()
	err = writeState(c.st)
	if err == nil {
		err = os.MkdirAll(c.Dir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(c.Dir, markerFile), []byte(strconv.Itoa(c.ID)+"\n"), 0o644)
	}
	if err == nil {
		err = c.setupNet()
	}
	unlock()
	if err != nil {
		return c, err
	}
	for _, n := range c.Nodes {
		for _, d := range []string{"safe", "safevar", "overlay"} {
			if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
				return c, err
			}
		}
	}
	if c.initBin, err = findInitBin(o, c.Dir); err != nil {
		return c, err
	}
	c.st.InitBin = c.initBin
	if err := c.save(); err != nil {
		return c, err
	}
	for _, n := range c.Nodes {
		if err := n.boot(); err != nil {
			return c, err
		}
	}
	if !o.NoDaemon {
		for _, n := range c.Nodes {
			if err := n.StartDaemon(); err != nil {
				return c, err
			}
		}
		if err := c.waitDaemons(); err != nil {
			return c, err
		}
	}
	return c, nil
}

// waitDaemons waits for every node's daemon, in parallel.
func (c *Cluster) waitDaemons() error {
	errs := make([]error, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Go(func() { errs[i] = n.WaitDaemon(daemonReadyTimeout) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// daemonReadyTimeout bounds how long New and Start wait for a daemon to
// answer `safekit level`.
const daemonReadyTimeout = 30 * time.Second

// daemonKnowsNodeFlag tells whether safekitd's usage lists -node.
func daemonKnowsNodeFlag(safekitd string) bool {
	out, _ := exec.Command(safekitd, "-h").CombinedOutput()
	return regexp.MustCompile(`(?m)^\s+-node\b`).Match(out)
}

// reserveID picks a cluster id whose subnets collide with no route of the
// host and creates its state directory: mkdir is atomic, so two processes
// never get the same id. Called with the harness lock held.
func reserveID(lans int) (int, error) {
	used, err := hostPrefixes()
	if err != nil {
		return 0, err
	}
	for id := 1; id <= maxID; id++ {
		clash := false
		for l := range lans {
			_, sub, _ := net.ParseCIDR(subnetPrefix(id, l) + ".0/24")
			for _, u := range used {
				if u.Contains(sub.IP) || sub.Contains(u.IP) {
					clash = true
				}
			}
		}
		if clash {
			continue
		}
		err := os.Mkdir(stateDir(id), 0o755)
		if err == nil {
			return id, nil
		}
		if !os.IsExist(err) {
			return 0, err
		}
	}
	return 0, fmt.Errorf("no free cluster id: every 10.200-%d.<1-254>.0/24 is routed or taken by /tmp/sktc-*; run `testcluster sweep` or `testcluster down`", 200+lans-1)
}

// hostPrefixes lists the IPv4 destinations routed on the host, in every
// table, except the default routes.
func hostPrefixes() ([]*net.IPNet, error) {
	out, err := exec.Command("ip", "-4", "-o", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("ip route show table all: %w", err)
	}
	var nets []*net.IPNet
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		// An optional route type (local, broadcast...) precedes the
		// destination.
		for _, tok := range f[:min(2, len(f))] {
			if tok == "default" {
				break
			}
			if !strings.Contains(tok, "/") {
				tok += "/32"
			}
			if _, n, err := net.ParseCIDR(tok); err == nil {
				nets = append(nets, n)
				break
			}
		}
	}
	return nets, nil
}

// setupNet creates the namespaces, bridges and veths, and addresses them.
func (c *Cluster) setupNet() error {
	var host bytes.Buffer
	for _, n := range c.Nodes {
		fmt.Fprintf(&host, "netns add %s\n", n.netns)
	}
	for l := range c.Lans {
		br := bridgeName(c.ID, l)
		fmt.Fprintf(&host, "link add %s type bridge\n", br)
		fmt.Fprintf(&host, "addr add %s.1/24 dev %s\n", subnetPrefix(c.ID, l), br)
		fmt.Fprintf(&host, "link set %s up\n", br)
		for _, n := range c.Nodes {
			// The node end is created directly in the namespace: named eth0
			// on the host it would clash with the host's own eth0.
			v := vethName(c.ID, n.Index, l)
			fmt.Fprintf(&host, "link add %s type veth peer name %s netns %s\n", v, nodeIfName(l), n.netns)
			fmt.Fprintf(&host, "link set %s master %s up\n", v, br)
		}
	}
	if err := ipBatch("", &host, false); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		var b bytes.Buffer
		b.WriteString("link set lo up\n")
		for l, lan := range c.Lans {
			fmt.Fprintf(&b, "addr add %s/24 dev %s\n", n.Addr(lan), nodeIfName(l))
			fmt.Fprintf(&b, "link set %s up\n", nodeIfName(l))
		}
		if err := ipBatch(n.netns, &b, false); err != nil {
			return err
		}
	}
	return nil
}

// findInitBin returns the init binary, copied or built into dir so that the
// nodes of the cluster keep one binary for their whole life.
func findInitBin(o Options, dir string) (string, error) {
	dst := filepath.Join(dir, "testcluster")
	if o.InitBin != "" {
		return dst, copyFile(o.InitBin, dst)
	}
	src := filepath.Join(testenv.RepoRoot(), "internal", "tools", "testcluster")
	goTool, goErr := exec.LookPath("go")
	if _, err := os.Stat(src); err == nil && goErr == nil {
		cmd := exec.Command(goTool, "build", "-o", dst, "./internal/tools/testcluster")
		cmd.Dir = testenv.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build ./internal/tools/testcluster (the nodes' init): %w\n%s", err, out)
		}
		return dst, nil
	}
	cand := filepath.Join(o.Bin, "testcluster")
	out, err := exec.Command(cand, "protocol").Output()
	if err != nil {
		return "", fmt.Errorf("no init binary: go or the source is missing (%v), and %s does not run (%v): build it with scripts/testcluster", goErr, cand, err)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(Protocol) {
		return "", fmt.Errorf("%s speaks protocol %s, this package %d: rebuild it with scripts/testcluster", cand, got, Protocol)
	}
	return dst, copyFile(cand, dst)
}

// copyFile puts src at dst: a hard link when both are on one file system,
// else a copy. A copy is written through a descriptor that a process this
// one forks meanwhile (another cluster being built) holds until it execs,
// and executing a file open for writing fails with ETXTBSY: the nodes'
// init would then not start.
func copyFile(src, dst string) error {
	if os.Link(src, dst) == nil {
		return nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// save records the processes of the nodes in the state file.
func (c *Cluster) save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.Nodes {
		n.mu.Lock()
		c.st.Nodes[i] = nodeState{Init: n.init, Daemon: n.daemon}
		n.mu.Unlock()
	}
	if c.closed {
		return nil
	}
	return writeState(c.st)
}

// Node returns the node called name (node1...); it panics on an unknown
// name, a bug in the test.
func (c *Cluster) Node(name string) *Node {
	n, err := c.lookup(name)
	if err != nil {
		panic(err)
	}
	return n
}

func (c *Cluster) lookup(name string) (*Node, error) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("cluster %d has no node %q (node1 to node%d)", c.ID, name, len(c.Nodes))
}

// lanIndex is the position of lan, which is also its interface number.
func (c *Cluster) lanIndex(lan string) (int, error) {
	for i, l := range c.Lans {
		if l == lan {
			return i, nil
		}
	}
	return 0, fmt.Errorf("cluster %d has no lan %q (lans: %s)", c.ID, lan, strings.Join(c.Lans, ", "))
}

// HostAddr is the host's own address on lan (the bridge): what nodes see
// as the address of the machine.
func (c *Cluster) HostAddr(lan string) string {
	l, err := c.lanIndex(lan)
	if err != nil {
		panic(err)
	}
	return subnetPrefix(c.ID, l) + ".1"
}

// ClusterXML is a cluster.xml naming every node with its address on every
// lan, lans in order (so the first carries the commands by default).
func (c *Cluster) ClusterXML() string {
	var b strings.Builder
	b.WriteString("<cluster>\n <lans>\n")
	for _, lan := range c.Lans {
		fmt.Fprintf(&b, "  <lan name=%q>\n", lan)
		for _, n := range c.Nodes {
			fmt.Fprintf(&b, "   <node name=%q addr=%q/>\n", n.Name, n.Addr(lan))
		}
		b.WriteString("  </lan>\n")
	}
	b.WriteString(" </lans>\n</cluster>\n")
	return b.String()
}

// Teardown ends every process of every node and removes the namespaces,
// links, bridges and directories of the cluster. It may be called more than
// once, and runs (through t.Cleanup) after a failed test too, which then
// gets the end of each node's logs.
func (c *Cluster) Teardown() {
	if c.t != nil && c.t.Failed() {
		c.dumpLogs()
	}
	if err := c.Close(); err != nil {
		if c.t != nil {
			c.t.Errorf("testcluster teardown: %v", err)
		} else {
			c.logf("testcluster teardown: %v", err)
		}
	}
}

// Close is Teardown with the error returned.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.kill())
	}
	errs = append(errs, removeNet(c.ID))
	errs = append(errs, removeClusterDir(c.Dir, c.ID))
	// The state directory goes last and once: its removal frees the id,
	// which another process may reserve at once (a second removal would
	// then take its new cluster's files).
	if c.Dir != stateDir(c.ID) {
		errs = append(errs, removeClusterDir(stateDir(c.ID), c.ID))
	}
	return errors.Join(errs...)
}

// dumpLogs logs the end of every node's logs, for a failed test.
func (c *Cluster) dumpLogs() {
	for _, n := range c.Nodes {
		for _, f := range []string{"safekitd.log", "init.log"} {
			if tail := tailFile(filepath.Join(n.Dir, f), 40); tail != "" {
				c.logf("--- %s %s (last lines) ---\n%s", n.Name, f, tail)
			}
		}
	}
}

// tailFile returns the last lines of a file ("" when missing or empty).
func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

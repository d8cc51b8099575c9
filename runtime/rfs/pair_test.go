package rfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/safe"
)

// needFUSE skips (or fails in CI) a test that mounts.
func needFUSE(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		testenv.Need(t, "/dev/fuse")
	}
}

// node is one side of a two-node test: its replicated directory, its
// state, its Replica.
type tnode struct {
	name  string
	dir   string // the replicated directory (mount point)
	state string
	cfg   Config
	r     *Replica
	logMu sync.Mutex
	log   []string
}

func (n *tnode) backing() string { return n.dir + DefaultSuffix }

func (n *tnode) logged(sub string) bool {
	n.logMu.Lock()
	defer n.logMu.Unlock()
	for _, l := range n.log {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

type pairOpts struct {
	async       string
	lockTimeout time.Duration
	zone        int
	key         []byte
	tls         bool
	notrep      []safe.NotReplicated
}

// pair is a primary and a secondary on this machine, each with its own
// tree, talking over loopback TCP.
type pair struct {
	t    *testing.T
	a, b *tnode
	opts pairOpts
}

func newNode(t *testing.T, root, name string, o pairOpts) *tnode {
	n := &tnode{name: name, dir: filepath.Join(root, name, "data"), state: filepath.Join(root, name, "state")}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rep := []safe.Replicated{{Dir: n.dir, NotReplicated: o.notrep}}
	if err := Configure(rep, "", nil); err != nil {
		t.Fatal(err)
	}
	key := o.key
	if key == nil {
		key = []byte("cluster key")
	}
	n.cfg = Config{Module: "m", ID: 1, Dirs: rep, StateDir: n.state, Async: o.async, LockTimeout: o.lockTimeout,
		ZoneSize: o.zone, Key: key, TLS: o.tls, SendTimeout: 5 * time.Second, ReiTimeout: 30 * time.Second,
		Log: func(origin, level, msg string) {
			n.logMu.Lock()
			n.log = append(n.log, origin+" | "+level+" | "+msg)
			n.logMu.Unlock()
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "%s: %s | %s | %s\n", name, origin, level, msg)
			}
		}}
	t.Cleanup(func() {
		if n.r != nil {
			n.r.Close()
		}
		cleanStale(n.dir)
		Deconfigure(rep, "")
		if out, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(out, []byte(n.dir)) {
			t.Errorf("%s is still mounted", n.dir)
		}
	})
	return n
}

func (n *tnode) open(t *testing.T) {
	r, err := Open(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.r = r
}

// newPair mounts a as primary (listening) and b as secondary, and runs
// the first (full) reintegration unless noSync.
func newPair(t *testing.T, o pairOpts) *pair {
	needFUSE(t)
	root := t.TempDir()
	// Let unprivileged test processes reach the mounts.
	os.Chmod(root, 0o755)
	os.Chmod(filepath.Dir(root), 0o755)
	p := &pair{t: t, opts: o, a: newNode(t, root, "a", o), b: newNode(t, root, "b", o)}
	p.a.open(t)
	p.b.open(t)
	if err := p.a.r.Mount(Primary); err != nil {
		t.Fatal(err)
	}
	if err := p.a.r.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := p.b.r.Mount(Secondary); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pair) resync(full bool) {
	p.t.Helper()
	p.resyncWith(ResyncOptions{Full: full})
}

func (p *pair) resyncWith(o ResyncOptions) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := p.b.r.Resync(ctx, p.a.r.Addr(), o); err != nil {
		p.t.Fatalf("resync: %v", err)
	}
	waitFor(p.t, "the primary to see the secondary in sync", func() bool { return p.a.r.Stats().UpToDate })
}

// settle waits until the secondary applied everything sent so far.
func (p *pair) settle() {
	p.t.Helper()
	s := p.a.r.sess.Load()
	if s == nil {
		return
	}
	if _, err := s.send(&msg{typ: opNop}, mark{}, true).result(); err != nil {
		p.t.Fatalf("barrier: %v", err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// compareTrees fails the test on any difference between two backing
// directories: kinds, content, holes, modes, owners, mtimes, xattrs,
// symlink targets.
func compareTrees(t testing.TB, a, b string) {
	t.Helper()
	if diffs := treeDiff(a, b); len(diffs) > 0 {
		if len(diffs) > 20 {
			diffs = append(diffs[:20], "...")
		}
		t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
	}
}

func treeDiff(a, b string) []string {
	var diffs []string
	seen := map[string]bool{}
	filepath.Walk(a, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			diffs = append(diffs, err.Error())
			return nil
		}
		rel := strings.TrimPrefix(p, a)
		seen[rel] = true
		diffs = append(diffs, entryDiff(rel, p, b+rel)...)
		return nil
	})
	filepath.Walk(b, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !seen[strings.TrimPrefix(p, b)] {
			diffs = append(diffs, fmt.Sprintf("%s: only in the secondary", strings.TrimPrefix(p, b)))
		}
		return nil
	})
	return diffs
}

func entryDiff(rel, pa, pb string) []string {
	ea, err := statEntry(pa, "")
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", rel, err)}
	}
	eb, err := statEntry(pb, "")
	if err != nil {
		return []string{fmt.Sprintf("%s: missing on the secondary: %v", rel, err)}
	}
	var d []string
	if ea.Mode != eb.Mode || ea.UID != eb.UID || ea.GID != eb.GID {
		d = append(d, fmt.Sprintf("%s: mode/owner %o %d:%d vs %o %d:%d", rel, ea.Mode, ea.UID, ea.GID, eb.Mode, eb.UID, eb.GID))
	}
	if ea.Mtime != eb.Mtime && rel != "" {
		d = append(d, fmt.Sprintf("%s: mtime %v vs %v", rel, time.Unix(0, ea.Mtime), time.Unix(0, eb.Mtime)))
	}
	if ea.Target != eb.Target || ea.Rdev != eb.Rdev {
		d = append(d, fmt.Sprintf("%s: target/rdev %q %d vs %q %d", rel, ea.Target, ea.Rdev, eb.Target, eb.Rdev))
	}
	if !sameXattrs(ea.Xattrs, eb.Xattrs) {
		d = append(d, fmt.Sprintf("%s: xattrs %v vs %v", rel, ea.Xattrs, eb.Xattrs))
	}
	if ea.isReg() {
		if ea.Size != eb.Size {
			d = append(d, fmt.Sprintf("%s: size %d vs %d", rel, ea.Size, eb.Size))
		} else if !sameContent(pa, pb) {
			d = append(d, fmt.Sprintf("%s: content differs", rel))
		}
		if ma, mb := holeMap(pa), holeMap(pb); ma != mb {
			d = append(d, fmt.Sprintf("%s: data extents %s vs %s", rel, ma, mb))
		}
	}
	return d
}

func sameContent(a, b string) bool {
	fa, err1 := os.Open(a)
	fb, err2 := os.Open(b)
	if err1 != nil || err2 != nil {
		return false
	}
	defer fa.Close()
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return (ea == nil) == (eb == nil)
		}
	}
}

// holeMap lists the data extents of a file (SEEK_DATA / SEEK_HOLE).
func holeMap(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	fi, _ := f.Stat()
	var parts []string
	for _, s := range segments(int(f.Fd()), 0, fi.Size()) {
		parts = append(parts, fmt.Sprintf("%d+%d", s[0], s[1]))
	}
	return strings.Join(parts, ",")
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func isErrno(err error, e syscall.Errno) bool { return errors.Is(err, e) }

func execCommand(name string, args ...string) *osexec.Cmd { return osexec.Command(name, args...) }

package rfs

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func (n *tnode) restart(t *testing.T, role Role) {
	t.Helper()
	if err := n.r.Close(); err != nil {
		t.Fatal(err)
	}
	n.open(t)
	if err := n.r.Mount(role); err != nil {
		t.Fatal(err)
	}
	if role == Primary {
		if err := n.r.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
}

// crash makes the node's last run look like it never unmounted cleanly.
func (n *tnode) crash(t *testing.T) {
	t.Helper()
	n.r.Close()
	p := filepath.Join(n.state, "state.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var st state
	json.Unmarshal(b, &st)
	st.Clean = false
	b, _ = json.Marshal(st)
	os.WriteFile(p, b, 0o600)
}

// resyncMode runs a reintegration and returns its mode and bytes copied,
// as the primary reports them.
func (p *pair) resyncMode(full bool) (string, int64) {
	p.t.Helper()
	return p.resyncModeWith(ResyncOptions{Full: full})
}

func (p *pair) resyncModeWith(o ResyncOptions) (string, int64) {
	p.t.Helper()
	drain(p.a.r)
	p.resyncWith(o)
	var mode string
	for {
		select {
		case e := <-p.a.r.Events():
			switch e := e.(type) {
			case ReintegrationStarted:
				mode = e.Mode
			case ReintegrationDone:
				if !e.OK {
					p.t.Fatalf("reintegration: %v", e.Err)
				}
				return mode, e.Copied
			}
		case <-time.After(30 * time.Second):
			p.t.Fatal("no ReintegrationDone")
		}
	}
}

func drain(r *Replica) {
	for {
		select {
		case <-r.Events():
		default:
			return
		}
	}
}

func writeAt(t *testing.T, path string, data []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func bigFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := randBytes(1 << 20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		buf[0]++
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBitmapReintegrationCopiesOnlyDirtyZones: after a clean stop of the
// secondary, only the zones written meanwhile are copied.
func TestBitmapReintegrationCopiesOnlyDirtyZones(t *testing.T) {
	const size, zone = 256 << 20, 1 << 20
	p := newPair(t, pairOpts{zone: zone})
	bigFile(t, filepath.Join(p.a.dir, "disk.img"), size)
	if mode, copied := p.resyncMode(false); mode != modeFull || copied != size {
		t.Fatalf("first start: mode %s, copied %d, want full %d", mode, copied, size)
	}
	p.b.r.Close()
	waitEvent[SecondaryLost](t, p.a.r, 5*time.Second)
	// 1% of the zones change while the secondary is away.
	for _, z := range []int64{3, 100, 200} {
		writeAt(t, filepath.Join(p.a.dir, "disk.img"), randBytes(4096), z*zone+1234)
	}
	rep := p.a.r.Diff()
	if len(rep.Files) != 1 || rep.Bytes != 3*zone {
		t.Errorf("rfsdiff: %+v, want disk.img with 3 zones", rep)
	}
	p.b.open(t)
	if err := p.b.r.Mount(Secondary); err != nil {
		t.Fatal(err)
	}
	mode, copied := p.resyncMode(false)
	t.Logf("mode %s, copied %d bytes of %d (%.2f%%)", mode, copied, size, 100*float64(copied)/size)
	if mode != modeBitmap || copied >= size*3/100 {
		t.Fatalf("mode %s copied %d, want bitmap and < 3%% of %d", mode, copied, size)
	}
	compareTrees(t, p.a.backing(), p.b.backing())
}

// TestChecksumReintegrationAfterCrash: when the primary crashed, the
// bitmaps are not trusted; zones are compared by checksums and only those
// that differ are copied.
func TestChecksumReintegrationAfterCrash(t *testing.T) {
	const size, zone = 64 << 20, 1 << 20
	p := newPair(t, pairOpts{zone: zone})
	bigFile(t, filepath.Join(p.a.dir, "f"), size)
	writeFile(t, filepath.Join(p.a.dir, "small"), []byte("small"))
	p.resyncMode(false)
	p.b.r.Close()
	writeAt(t, filepath.Join(p.a.dir, "f"), randBytes(100), 7*zone)
	p.a.crash(t)
	p.a.open(t)
	if err := p.a.r.Mount(Primary); err != nil {
		t.Fatal(err)
	}
	p.a.r.Listen("127.0.0.1:0")
	writeAt(t, filepath.Join(p.a.dir, "f"), randBytes(100), 9*zone)
	p.b.open(t)
	p.b.r.Mount(Secondary)
	mode, copied := p.resyncMode(false)
	if mode != modeChecksum || copied > 2*zone {
		t.Fatalf("after a crash of the primary: mode %s copied %d, want checksum and 2 zones", mode, copied)
	}
	compareTrees(t, p.a.backing(), p.b.backing())

	// An unclean stop of the secondary too.
	p.b.crash(t)
	writeAt(t, filepath.Join(p.a.dir, "f"), randBytes(100), 20*zone)
	p.b.open(t)
	p.b.r.Mount(Secondary)
	// What the secondary wrote before its crash is not trusted either.
	writeAt(t, filepath.Join(p.b.backing(), "f"), []byte("garbage"), 30*zone)
	mode, copied = p.resyncMode(false)
	if mode != modeChecksum || copied > 2*zone {
		t.Fatalf("after a crash of the secondary: mode %s copied %d, want checksum and 2 zones", mode, copied)
	}
	compareTrees(t, p.a.backing(), p.b.backing())

	// fullsync copies everything.
	p.b.restart(t, Secondary)
	mode, copied = p.resyncMode(true)
	if mode != modeFull || copied != size+5 {
		t.Fatalf("fullsync: mode %s copied %d, want full %d", mode, copied, size+5)
	}
	compareTrees(t, p.a.backing(), p.b.backing())
}

// TestNamespaceChangesWhileAway: entries created, renamed, removed, with
// their metadata, while the secondary was stopped, are reproduced.
func TestNamespaceChangesWhileAway(t *testing.T) {
	p := newPair(t, pairOpts{zone: 1 << 20})
	a := p.a.dir
	os.MkdirAll(filepath.Join(a, "d1/d2"), 0o755)
	writeFile(t, filepath.Join(a, "d1/d2/f"), randBytes(3<<20))
	writeFile(t, filepath.Join(a, "d1/g"), []byte("g"))
	writeFile(t, filepath.Join(a, "gone"), []byte("gone"))
	os.Symlink("d1/g", filepath.Join(a, "l"))
	p.resyncMode(false)
	p.b.r.Close()

	os.Rename(filepath.Join(a, "d1"), filepath.Join(a, "r1"))
	os.Remove(filepath.Join(a, "gone"))
	os.Remove(filepath.Join(a, "l"))
	os.Symlink("r1/g", filepath.Join(a, "l"))
	os.MkdirAll(filepath.Join(a, "new/deep"), 0o700)
	writeFile(t, filepath.Join(a, "new/deep/h"), randBytes(12345))
	os.Chmod(filepath.Join(a, "r1/g"), 0o600)
	os.Lchown(filepath.Join(a, "r1/g"), 11, 12)
	unix.Setxattr(filepath.Join(a, "r1/d2/f"), "user.tag", []byte("t"), 0)
	writeFile(t, filepath.Join(a, "gone"), []byte("a new file with an old name"))
	os.Truncate(filepath.Join(a, "r1/d2/f"), 1<<20)
	os.Chtimes(filepath.Join(a, "new"), time.Unix(5000, 0), time.Unix(6000, 0))

	// Something the primary never had, written while the secondary was
	// stopped.
	writeFile(t, filepath.Join(p.b.backing(), "extra"), []byte("x"))
	p.b.open(t)
	p.b.r.Mount(Secondary)
	mode, _ := p.resyncMode(false)
	if mode != modeChecksum {
		// The extra file was written while the secondary was stopped.
		t.Fatalf("mode %s, want checksum (the secondary changed while stopped)", mode)
	}
	compareTrees(t, p.a.backing(), p.b.backing())

	// The same, without the secondary changing: bitmaps.
	p.b.r.Close()
	os.Rename(filepath.Join(a, "r1"), filepath.Join(a, "r2"))
	writeAt(t, filepath.Join(a, "r2/d2/f"), randBytes(10), 5)
	os.Remove(filepath.Join(a, "gone"))
	os.Mkdir(filepath.Join(a, "n2"), 0o711)
	p.b.open(t)
	p.b.r.Mount(Secondary)
	if mode, _ := p.resyncMode(false); mode != modeBitmap {
		t.Fatalf("mode %s, want bitmap", mode)
	}
	compareTrees(t, p.a.backing(), p.b.backing())
}

// TestReintegrationWhileWriting: the application keeps writing (and
// renaming) while a full, a bitmap and a checksum reintegration run; no
// live write is overwritten by an older copy.
func TestReintegrationWhileWriting(t *testing.T) {
	const size, zone = 64 << 20, 1 << 20
	p := newPair(t, pairOpts{zone: zone})
	path := filepath.Join(p.a.dir, "vm.img")
	bigFile(t, path, size)
	for i := 0; i < 20; i++ {
		writeFile(t, filepath.Join(p.a.dir, "small"+string(rune('a'+i))), randBytes(1000*i))
	}
	for _, want := range []string{modeFull, modeBitmap, modeChecksum} {
		switch want {
		case modeBitmap:
			p.b.r.Close()
			writeAt(t, path, randBytes(5000), 3*zone-100)
			p.b.open(t)
			p.b.r.Mount(Secondary)
		case modeChecksum:
			p.b.crash(t)
			writeAt(t, path, randBytes(5000), 7*zone-100)
			p.b.open(t)
			p.b.r.Mount(Secondary)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var n atomic.Int64
		var once sync.Once
		halt := func() { once.Do(func() { close(stop); wg.Wait() }) }
		t.Cleanup(halt) // before the unmounts
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				f, _ := os.OpenFile(path, os.O_RDWR, 0)
				defer f.Close()
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for {
					select {
					case <-stop:
						return
					default:
					}
					off := r.Int64N(size - 8192)
					f.WriteAt(randBytes(1+r.IntN(8192)), off)
					n.Add(1)
					if w == 0 && r.IntN(10) == 0 {
						os.Rename(filepath.Join(p.a.dir, "smalla"), filepath.Join(p.a.dir, "smallz2"))
						os.Rename(filepath.Join(p.a.dir, "smallz2"), filepath.Join(p.a.dir, "smalla"))
					}
				}
			}(w)
		}
		time.Sleep(50 * time.Millisecond)
		mode, copied := p.resyncMode(false)
		halt()
		p.settle()
		t.Logf("%s reintegration copied %d bytes with %d concurrent writes", mode, copied, n.Load())
		if mode != want {
			t.Fatalf("mode %s, want %s", mode, want)
		}
		compareTrees(t, p.a.backing(), p.b.backing())
	}
}

// TestAbnormalDelta: too far apart synctimestamps refuse an incremental
// reintegration; fullsync is then the way, or an external
// synchronisation.
func TestAbnormalDelta(t *testing.T) {
	p := newPair(t, pairOpts{})
	writeFile(t, filepath.Join(p.a.dir, "f"), []byte("x"))
	p.resyncMode(false)
	p.b.r.Close()
	p.b.open(t)
	p.b.r.st.update(func(s *state) { s.LastSync -= int64(5 * time.Minute) })
	p.b.r.Mount(Secondary)
	err := p.b.r.Resync(context.Background(), p.a.r.Addr(), ResyncOptions{})
	if err == nil || err.Error() != MsgAbnormalDelta {
		t.Fatalf("resync: %v, want %q", err, MsgAbnormalDelta)
	}
	if !p.b.logged(MsgAbnormalDelta) {
		t.Error("the refusal is not in the module log")
	}
	if mode, _ := p.resyncMode(true); mode != modeFull {
		t.Fatalf("fullsync: mode %s", mode)
	}
	// An external synchronisation is not refused either: the secondary's
	// copy is then a restored backup, whatever its history says.
	p.b.r.Close()
	p.b.open(t)
	p.b.r.st.update(func(s *state) { s.LastSync -= int64(5 * time.Minute) })
	p.b.r.Mount(Secondary)
	if mode, _ := p.resyncModeWith(ResyncOptions{External: "bk"}); mode != modeExternal {
		t.Fatalf("external synchronisation: mode %s", mode)
	}
}

// TestVerifyFindsACorruptedByte: rfsverify on the secondary reports a
// byte changed behind replication's back.
func TestVerifyFindsACorruptedByte(t *testing.T) {
	p := newPair(t, pairOpts{zone: 1 << 20})
	writeFile(t, filepath.Join(p.a.dir, "ok"), randBytes(3<<20))
	writeFile(t, filepath.Join(p.a.dir, "bad"), randBytes(3<<20))
	p.resyncMode(false)
	ctx := context.Background()
	rep, err := p.b.r.Verify(ctx, p.a.r.Addr())
	if err != nil || len(rep) != 0 {
		t.Fatalf("verify of equal trees: %v %v", rep, err)
	}
	writeAt(t, filepath.Join(p.b.backing(), "bad"), []byte{'!'}, 2<<20+17)
	rep, err = p.b.r.Verify(ctx, p.a.r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 1 || !strings.Contains(rep[0], "bad: content differs") || !strings.Contains(rep[0], "1 of 3 zones") {
		t.Fatalf("verify: %q", rep)
	}
	// The live stream is untouched by the verification.
	writeFile(t, filepath.Join(p.a.dir, "after"), []byte("after"))
	p.settle()
	if b, _ := os.ReadFile(filepath.Join(p.b.backing(), "after")); string(b) != "after" {
		t.Fatal("replication stopped after a verification")
	}
}

// TestDateReintegration (secondforce -d): on a pair never synchronised,
// whose secondary holds an older copy, only the files modified on the
// primary since the date are copied, whole; older files are left as they
// are, even when they differ; the tree is aligned (a missing file
// created, an extra one removed).
func TestDateReintegration(t *testing.T) {
	p := newPair(t, pairOpts{zone: 1 << 20})
	since := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	before := since.Add(-24 * time.Hour)
	a, b := p.a.dir, p.b.backing()
	newer := randBytes(3<<20 + 5)
	writeFile(t, filepath.Join(a, "old"), []byte("the primary's old file"))
	os.Chtimes(filepath.Join(a, "old"), before, before)
	writeFile(t, filepath.Join(a, "new"), newer)
	os.Mkdir(filepath.Join(a, "d"), 0o755)
	writeFile(t, filepath.Join(a, "d/missing"), []byte("missing"))
	// The secondary's copy: the old file differs (the administrator says
	// it does not matter), the new one is stale, one file is extra.
	writeFile(t, filepath.Join(b, "old"), []byte("the secondary's own old file"))
	secOld := before.Add(-time.Hour)
	os.Chtimes(filepath.Join(b, "old"), secOld, secOld)
	writeFile(t, filepath.Join(b, "new"), []byte("stale"))
	writeFile(t, filepath.Join(b, "extra"), []byte("extra"))

	mode, copied := p.resyncModeWith(ResyncOptions{Since: since})
	if mode != modeDate || copied != int64(len(newer))+int64(len("missing")) {
		t.Fatalf("mode %s copied %d, want date and %d (new and d/missing)", mode, copied, len(newer)+len("missing"))
	}
	if !p.a.logged("Reintegration of the secondary (date)") {
		t.Error("the primary did not log the date mode")
	}
	if got, _ := os.ReadFile(filepath.Join(b, "old")); string(got) != "the secondary's own old file" {
		t.Errorf("old file on the secondary: %q, want it left as it was", got)
	}
	if fi, err := os.Stat(filepath.Join(b, "old")); err != nil || !fi.ModTime().Equal(secOld) {
		t.Errorf("old file on the secondary: mtime changed (%v, want %v)", fi.ModTime(), secOld)
	}
	if _, err := os.Stat(filepath.Join(b, "extra")); !os.IsNotExist(err) {
		t.Errorf("extra file still on the secondary (%v)", err)
	}
	for _, f := range []string{"new", "d/missing", "d"} {
		if diffs := entryDiff(f, filepath.Join(p.a.backing(), f), filepath.Join(b, f)); len(diffs) > 0 {
			t.Errorf("%s not copied: %v", f, diffs)
		}
	}
	// What was left is the administrator's: rfsverify says so.
	rep, err := p.b.r.Verify(context.Background(), p.a.r.Addr())
	if err != nil || len(rep) != 1 || !strings.Contains(rep[0], "old: content differs") {
		t.Fatalf("verify after a synchronisation by date: %q %v, want old only", rep, err)
	}
}

// TestExternalReintegration (rfssync external): on a pair never
// synchronised, whose secondary holds a restored copy of the primary's
// files with one changed zone, every file is compared zone by zone (same
// size and date included) and only that zone is copied.
func TestExternalReintegration(t *testing.T) {
	const size, zone = 32 << 20, 1 << 20
	p := newPair(t, pairOpts{zone: zone})
	bigFile(t, filepath.Join(p.a.dir, "disk.img"), size)
	writeFile(t, filepath.Join(p.a.dir, "same"), randBytes(3<<20))
	// The backup, restored on the secondary with its dates.
	for _, f := range []string{"disk.img", "same"} {
		data, err := os.ReadFile(filepath.Join(p.a.backing(), f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(p.b.backing(), f), data)
	}
	// One zone changed on the primary after the backup, size and date
	// kept, so that only a comparison of the contents finds it.
	img := filepath.Join(p.a.dir, "disk.img")
	writeAt(t, img, randBytes(100), 5*zone+17)
	for _, f := range []string{"disk.img", "same"} {
		fi, err := os.Stat(filepath.Join(p.a.backing(), f))
		if err != nil {
			t.Fatal(err)
		}
		os.Chtimes(filepath.Join(p.b.backing(), f), fi.ModTime(), fi.ModTime())
	}

	mode, copied := p.resyncModeWith(ResyncOptions{External: "backup-1"})
	if mode != modeExternal || copied != zone {
		t.Fatalf("mode %s copied %d, want external and one zone (%d)", mode, copied, zone)
	}
	if !p.a.logged("Reintegration of the secondary (external)") {
		t.Error("the primary did not log the external mode")
	}
	compareTrees(t, p.a.backing(), p.b.backing())
	// The pair is now synchronised: a clean restart of the secondary is a
	// bitmap reintegration.
	p.b.restart(t, Secondary)
	if mode, _ := p.resyncMode(false); mode != modeBitmap {
		t.Fatalf("after the external synchronisation: mode %s, want bitmap", mode)
	}
}

// TestFileJobDateAndExternal: what the date and external modes copy of a
// file both nodes have, from its size and times on each node, against
// the checksum mode's shortcut (same size and date, older than the last
// synchronisation: skipped).
func TestFileJobDateAndExternal(t *testing.T) {
	now := time.Now().UnixNano()
	since := now - int64(48*time.Hour)
	old := now - int64(72*time.Hour)
	reg := func(size, mtime int64) entry {
		return entry{Name: "f", Mode: syscall.S_IFREG | 0o644, Size: size, Mtime: mtime, Ctime: mtime}
	}
	for _, tc := range []struct {
		mode     string
		le, re   entry
		copy     bool
		wantKind string
	}{
		{modeChecksum, reg(10, old), reg(10, old), false, ""},
		{modeExternal, reg(10, old), reg(10, old), true, modeChecksum},
		{modeExternal, reg(10, old), reg(20, now), true, modeChecksum},
		{modeDate, reg(10, old), reg(20, now), false, ""},
		{modeDate, reg(10, since), reg(10, since), true, modeFull},
		{modeDate, reg(10, now), reg(10, now), true, modeFull},
	} {
		w := &reint{mode: tc.mode, lastSync: now, since: since}
		j, ok := w.fileJob(&rdir{}, "f", tc.le, tc.re, false)
		if ok != tc.copy || (ok && j.kind != tc.wantKind) {
			t.Errorf("%s, primary %+v, secondary %+v: copy %v kind %q, want %v %q", tc.mode, tc.le, tc.re, ok, j.kind, tc.copy, tc.wantKind)
		}
	}
}

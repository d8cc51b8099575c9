package rfs

import (
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReintegrationHoles: a zone copied by a reintegration gets the
// primary's holes and data in place, whatever the secondary had there:
// holes punched on the primary while the secondary was away, data where
// the secondary had a hole, a hole where the secondary had data.
func TestReintegrationHoles(t *testing.T) {
	const zone = 1 << 20
	p := newPair(t, pairOpts{zone: zone})
	f := filepath.Join(p.a.dir, "img")
	bigFile(t, f, 8*zone)
	p.resyncMode(false)
	p.b.r.Close()
	waitEvent[SecondaryLost](t, p.a.r, 5*time.Second)

	fd, err := unix.Open(filepath.Join(p.a.backing(), "img"), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Zone 1: a hole in its middle. Zone 2: a hole over all of it, then
	// data in its middle.
	for _, h := range [][2]int64{{zone + 256<<10, 512 << 10}, {2 * zone, zone}} {
		if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, h[0], h[1]); err != nil {
			unix.Close(fd)
			t.Skipf("no hole punching on this file system: %v", err)
		}
	}
	unix.Close(fd)
	// Through the mount, so that the bitmaps see the change; the holes
	// above were made behind replication's back: the checksums find them.
	writeAt(t, f, randBytes(64<<10), 2*zone+300<<10)
	p.a.crash(t)
	p.a.open(t)
	if err := p.a.r.Mount(Primary); err != nil {
		t.Fatal(err)
	}
	p.a.r.Listen("127.0.0.1:0")

	// The secondary's own copy: data where zone 2's hole is, and a hole
	// where zone 3 has data.
	writeAt(t, filepath.Join(p.b.backing(), "img"), randBytes(4096), 2*zone+8192)
	bfd, err := unix.Open(filepath.Join(p.b.backing(), "img"), unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = unix.Fallocate(bfd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 3*zone, 4096)
	unix.Close(bfd)
	if err != nil {
		t.Fatal(err)
	}
	p.b.open(t)
	if err := p.b.r.Mount(Secondary); err != nil {
		t.Fatal(err)
	}
	if mode, copied := p.resyncMode(false); mode != modeChecksum || copied > 3*zone {
		t.Fatalf("mode %s, copied %d: want checksum and at most 3 zones", mode, copied)
	}
	compareTrees(t, p.a.backing(), p.b.backing())
	if a, b := holeMap(filepath.Join(p.a.backing(), "img")), holeMap(filepath.Join(p.b.backing(), "img")); a != b {
		t.Fatalf("holes differ: primary %s, secondary %s", a, b)
	}
}

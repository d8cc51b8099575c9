package rfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
)

// entry is what the reintegration compares of a directory entry.
type entry struct {
	Name   string            `json:"n"`
	Mode   uint32            `json:"m"`
	UID    uint32            `json:"u"`
	GID    uint32            `json:"g"`
	Size   int64             `json:"s"`
	Atime  int64             `json:"a"`
	Mtime  int64             `json:"t"`
	Ctime  int64             `json:"c,omitempty"`
	Ino    uint64            `json:"i,omitempty"`
	Rdev   uint64            `json:"r,omitempty"`
	Target string            `json:"l,omitempty"`
	Xattrs map[string][]byte `json:"x,omitempty"`
}

func (e *entry) typ() uint32 { return e.Mode & syscall.S_IFMT }
func (e *entry) isDir() bool { return e.typ() == syscall.S_IFDIR }
func (e *entry) isReg() bool { return e.typ() == syscall.S_IFREG }

func statEntry(path, name string) (entry, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return entry{}, err
	}
	e := entry{Name: name, Mode: st.Mode, UID: st.Uid, GID: st.Gid, Size: st.Size,
		Atime: st.Atim.Nano(), Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Ino: st.Ino, Rdev: st.Rdev}
	if e.typ() == syscall.S_IFLNK {
		t, err := os.Readlink(path)
		if err != nil {
			return entry{}, err
		}
		e.Target = t
	}
	e.Xattrs = xattrs(path)
	return e, nil
}

// xattrs reads the extended attributes of path (not following a
// symlink).
func xattrs(path string) map[string][]byte {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(path, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(path, buf)
		}
	}
	if err != nil || n == 0 {
		return nil
	}
	m := map[string][]byte{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		sz, err := unix.Lgetxattr(path, name, nil)
		if err != nil {
			continue
		}
		v := make([]byte, sz)
		if sz, err = unix.Lgetxattr(path, name, v); err == nil {
			m[name] = v[:sz]
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// listDir lists a directory with the metadata of each entry, by name.
func listDir(path string) ([]entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]entry, 0, len(names))
	for _, n := range names {
		e, err := statEntry(path+"/"+n, n)
		if err != nil {
			continue // gone meanwhile
		}
		out = append(out, e)
	}
	return out, nil
}

func sameXattrs(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// zoneSums reads a file zone by zone and returns one xxhash64 per zone.
// Zones wholly in a hole are not read.
func zoneSums(f *os.File, size, zone int64, buf []byte) ([]uint64, error) {
	var sums []uint64
	for off := int64(0); off < size; off += zone {
		n := min(zone, size-off)
		s, err := zoneSum(f, off, n, buf)
		if err != nil {
			return nil, err
		}
		sums = append(sums, s)
	}
	return sums, nil
}

func zoneSum(f *os.File, off, n int64, buf []byte) (uint64, error) {
	if d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA); errors.Is(err, unix.ENXIO) || (err == nil && d >= off+n) {
		return zeroSum(n), nil
	}
	b := buf[:n]
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return xxhash.Sum64(b), nil
}

var zeroSums sync.Map // length -> xxhash64 of that many zeros

func zeroSum(n int64) uint64 {
	if s, ok := zeroSums.Load(n); ok {
		return s.(uint64)
	}
	d := xxhash.New()
	z := make([]byte, 64<<10)
	for left := n; left > 0; {
		k := min(left, int64(len(z)))
		d.Write(z[:k])
		left -= k
	}
	zeroSums.Store(n, d.Sum64())
	return d.Sum64()
}

func encodeSums(size int64, sums []uint64) []byte {
	b := binary.AppendVarint(nil, size)
	for _, s := range sums {
		b = binary.BigEndian.AppendUint64(b, s)
	}
	return b
}

func decodeSums(b []byte) (int64, []uint64, error) {
	size, n := binary.Varint(b)
	if n <= 0 || (len(b)-n)%8 != 0 {
		return 0, nil, errShort
	}
	b = b[n:]
	sums := make([]uint64, len(b)/8)
	for i := range sums {
		sums[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	return size, sums, nil
}

// segments finds the data extents of [off, off+n): holes are not sent.
func segments(fd int, off, n int64) [][2]int64 {
	end := off + n
	var segs [][2]int64
	for pos := off; pos < end; {
		d, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if err != nil || d >= end {
			if err != nil && !errors.Is(err, unix.ENXIO) {
				// No SEEK_DATA here: everything is data.
				return [][2]int64{{off, n}}
			}
			break
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil || h > end {
			h = end
		}
		segs = append(segs, [2]int64{d, h - d})
		pos = h
	}
	return segs
}

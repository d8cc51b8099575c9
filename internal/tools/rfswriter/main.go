// Command rfswriter is the application of the file replication acceptance
// tests (compat-tests/rfs_test.go): run inside a node, it writes
// self-describing records to a replicated file and logs each acknowledged
// write to a file that is not replicated; run on the other node after a
// failover, it checks that every acknowledged write is there, byte for
// byte.
//
//	rfswriter log   -file F -ack A -n N [-rec 512] [-seed S]
//	rfswriter image -file F -ack A -n N -size BYTES -first K [-seed S]
//	rfswriter check-log   -file F -ack A [-rec 512] [-seed S]
//	rfswriter check-image -file F -size BYTES [-seed S] ACK...
//	rfswriter patch -file F [-seed S] OFF:LEN...
//
// log writes record i (1..N) at offset (i-1)*rec, each write followed by
// fdatasync, then appends "i" to the ack file: a database-like workload.
// image opens a sparse image with O_DIRECT (as qemu with cache=none) and
// writes 4 KiB blocks numbered K..K+N-1 at pseudo-random aligned offsets;
// a write is acknowledged when pwrite returns (the replication is
// synchronous: no fsync is needed for the secondary to hold it). Both stop
// at the first error, saying it, and exit 1. patch overwrites the given
// ranges of an existing file with pseudo-random bytes, then fsyncs.
//
// The ack file is written after the call returned and never synced: the
// tests kill processes, never the kernel, so the page cache survives.
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// blockSize is the size of an image write (and its alignment).
const blockSize = 4096

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fl := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	file := fl.String("file", "", "the replicated file")
	ack := fl.String("ack", "", "the (not replicated) log of acknowledged writes")
	n := fl.Int("n", 0, "writes to do")
	rec := fl.Int("rec", 512, "log: record size in bytes")
	seed := fl.Uint64("seed", 1, "varies the data and the offsets")
	size := fl.Int64("size", 256<<20, "image: size of the sparse image in bytes")
	first := fl.Uint64("first", 1, "image: number of the first block written")
	_ = fl.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "log":
		err = writeLog(*file, *ack, *n, *rec, *seed)
	case "image":
		err = writeImage(*file, *ack, *n, *size, *first, *seed)
	case "check-log":
		err = checkLog(*file, *ack, *rec, *seed)
	case "check-image":
		err = checkImage(*file, fl.Args(), *size, *seed)
	case "patch":
		err = patch(*file, fl.Args(), *seed)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rfswriter:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rfswriter log|image|check-log|check-image [flags] (see the package doc)")
	os.Exit(2)
}

// splitmix64 is the generator of offsets and data: a pure function, so
// that the checker recomputes what the writer wrote.
func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// fill makes b the content of write seq at off: a header (seq, off, seed)
// then data derived from all three.
func fill(b []byte, seq, off, seed uint64) {
	binary.LittleEndian.PutUint64(b[0:], seq)
	binary.LittleEndian.PutUint64(b[8:], off)
	binary.LittleEndian.PutUint64(b[16:], seed)
	x := splitmix64(seed ^ seq*0x100000001b3 ^ off)
	for i := 24; i < len(b); i += 8 {
		x = splitmix64(x)
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], x)
		copy(b[i:], w[:])
	}
}

// blockOffset is where image write seq goes.
func blockOffset(seq, seed uint64, size int64) uint64 {
	return splitmix64(seed*0x9e3779b97f4a7c15^seq) % uint64(size/blockSize) * blockSize
}

func openAck(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

func writeLog(path, ackPath string, n, rec int, seed uint64) error {
	if rec < 24 {
		return fmt.Errorf("-rec %d: at least 24", rec)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	ack, err := openAck(ackPath)
	if err != nil {
		return err
	}
	defer ack.Close()
	b := make([]byte, rec)
	for i := 1; i <= n; i++ {
		off := uint64(i-1) * uint64(rec)
		fill(b, uint64(i), off, seed)
		if _, err := f.WriteAt(b, int64(off)); err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("fdatasync after write %d: %w", i, err)
		}
		if _, err := fmt.Fprintf(ack, "%d\n", i); err != nil {
			return err
		}
	}
	return nil
}

func writeImage(path, ackPath string, n int, size int64, first, seed uint64) error {
	if size < blockSize || size%blockSize != 0 {
		return fmt.Errorf("-size %d: a multiple of %d", size, blockSize)
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_DIRECT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s with O_DIRECT: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Size < size {
		// Sparse, as a freshly created VM image.
		if err := unix.Ftruncate(fd, size); err != nil {
			return err
		}
	}
	ack, err := openAck(ackPath)
	if err != nil {
		return err
	}
	defer ack.Close()
	// O_DIRECT wants an aligned buffer: a page of its own.
	b, err := unix.Mmap(-1, 0, blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return err
	}
	defer unix.Munmap(b)
	for seq := first; seq < first+uint64(n); seq++ {
		off := blockOffset(seq, seed, size)
		fill(b, seq, off, seed)
		if _, err := unix.Pwrite(fd, b, int64(off)); err != nil {
			return fmt.Errorf("write %d at %d: %w", seq, off, err)
		}
		if _, err := fmt.Fprintf(ack, "%d\n", seq); err != nil {
			return err
		}
	}
	return nil
}

// readAcks returns the acknowledged numbers of an ack file, in order. A
// torn last line (the writer was killed while appending) is ignored.
func readAcks(path string) ([]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 64)
		if err != nil {
			break
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

func checkLog(path, ackPath string, rec int, seed uint64) error {
	acks, err := readAcks(ackPath)
	if err != nil {
		return err
	}
	for i, v := range acks {
		if v != uint64(i+1) {
			return fmt.Errorf("%s: line %d says %d: not a log of rfswriter log", ackPath, i+1, v)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	want := make([]byte, rec)
	var bad []string
	for i := 1; i <= len(acks); i++ {
		off := uint64(i-1) * uint64(rec)
		fill(want, uint64(i), off, seed)
		end := off + uint64(rec)
		switch {
		case end > uint64(len(data)):
			bad = append(bad, fmt.Sprintf("write %d (bytes %d-%d): missing, the file has %d bytes", i, off, end, len(data)))
		case string(data[off:end]) != string(want):
			bad = append(bad, fmt.Sprintf("write %d (bytes %d-%d): different content", i, off, end))
		}
		if len(bad) >= 10 {
			break
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: acknowledged writes lost or damaged:\n%s", path, strings.Join(bad, "\n"))
	}
	fmt.Printf("%s: the %d acknowledged writes are intact\n", path, len(acks))
	return nil
}

func checkImage(path string, ackPaths []string, size int64, seed uint64) error {
	if len(ackPaths) == 0 {
		return errors.New("check-image: name the ack files")
	}
	// last acknowledged write of each block; the writes that may have
	// reached the file without an acknowledgement (the one in flight when
	// each writer was killed).
	last := map[uint64]uint64{}
	maybe := map[uint64]bool{}
	total := 0
	for _, p := range ackPaths {
		acks, err := readAcks(p)
		if err != nil {
			return err
		}
		for _, seq := range acks {
			off := blockOffset(seq, seed, size)
			last[off] = max(last[off], seq)
			maybe[seq] = true
		}
		if len(acks) > 0 {
			maybe[acks[len(acks)-1]+1] = true
		}
		total += len(acks)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, want := make([]byte, blockSize), make([]byte, blockSize)
	var bad []string
	for off, seq := range last {
		if _, err := f.ReadAt(got, int64(off)); err != nil {
			bad = append(bad, fmt.Sprintf("block at %d (write %d): %v", off, seq, err))
			continue
		}
		s := binary.LittleEndian.Uint64(got)
		ok := s >= seq && maybe[s] && blockOffset(s, seed, size) == off
		if ok {
			fill(want, s, off, seed)
			ok = string(got) == string(want)
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("block at %d: want write %d (or a later write to it), found a block saying write %d", off, seq, s))
		}
		if len(bad) >= 10 {
			break
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: acknowledged writes lost or damaged:\n%s", path, strings.Join(bad, "\n"))
	}
	fmt.Printf("%s: the %d acknowledged writes (%d blocks) are intact\n", path, total, len(last))
	return nil
}

func patch(path string, ranges []string, seed uint64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for i, r := range ranges {
		o, l, ok := strings.Cut(r, ":")
		off, err1 := strconv.ParseInt(o, 10, 64)
		n, err2 := strconv.Atoi(l)
		if !ok || err1 != nil || err2 != nil || off < 0 || n < 24 {
			return fmt.Errorf("range %q: want OFF:LEN, LEN >= 24", r)
		}
		b := make([]byte, n)
		fill(b, seed+uint64(i), uint64(off), seed)
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}
	return f.Sync()
}

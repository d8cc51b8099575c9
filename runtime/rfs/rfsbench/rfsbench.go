// Package rfsbench measures replicated writes against the raw directory on
// this machine, for `make bench`: a primary and a secondary of one module
// on two trees of the same file system, talking over loopback TCP (so the
// figures are pessimistic: both ends share the CPUs). It needs root and
// /dev/fuse.
package rfsbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safekit-oss/safekit/runtime/rfs"
	"github.com/safekit-oss/safekit/safe"
)

// Options of a measurement; zero values get defaults.
type Options struct {
	// Dir is a scratch directory on the file system to measure (default:
	// a new directory under os.TempDir()); it is removed afterwards.
	Dir string
	// Async is "second" (default) or "none".
	Async string
	// SeqBytes written in 1 MiB writes, then one fdatasync (default 256
	// MiB).
	SeqBytes int64
	// SyncWrites: 4 KiB write + fdatasync pairs timed (default 1000).
	SyncWrites int
}

// Result of one measurement.
type Result struct {
	Async string
	// Sequential 1 MiB writes + fdatasync, MiB/s.
	SeqRaw, SeqRepl float64
	// 4 KiB write + fdatasync latency.
	SyncRawP50, SyncRawP99, SyncReplP50, SyncReplP99 time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("async=%s seq 1MiB+fdatasync: raw %.0f MiB/s, replicated %.0f MiB/s (x%.2f); 4KiB write+fdatasync p50 raw %v replicated %v (x%.2f), p99 raw %v replicated %v (x%.2f)",
		r.Async, r.SeqRaw, r.SeqRepl, r.SeqRepl/r.SeqRaw, r.SyncRawP50, r.SyncReplP50, float64(r.SyncReplP50)/float64(r.SyncRawP50),
		r.SyncRawP99, r.SyncReplP99, float64(r.SyncReplP99)/float64(r.SyncRawP99))
}

// Measure sets up the pair, measures raw and replicated, and tears
// everything down.
func Measure(ctx context.Context, o Options) (res Result, err error) {
	if o.Async == "" {
		o.Async = "second"
	}
	if o.SeqBytes == 0 {
		o.SeqBytes = 256 << 20
	}
	if o.SyncWrites == 0 {
		o.SyncWrites = 1000
	}
	res.Async = o.Async
	base := o.Dir
	if base == "" {
		if base, err = os.MkdirTemp("", "rfsbench"); err != nil {
			return res, err
		}
	}
	defer os.RemoveAll(base)
	raw := filepath.Join(base, "raw")
	var reps [2]*rfs.Replica
	var dirs [2][]safe.Replicated
	for i, n := range []string{"a", "b"} {
		d := filepath.Join(base, n, "data")
		if err := os.MkdirAll(d, 0o755); err != nil {
			return res, err
		}
		dirs[i] = []safe.Replicated{{Dir: d}}
		if err := rfs.Configure(dirs[i], "", nil); err != nil {
			return res, err
		}
		defer rfs.Deconfigure(dirs[i], "")
		r, err := rfs.Open(rfs.Config{Module: "bench", ID: 1, Dirs: dirs[i], StateDir: filepath.Join(base, n, "state"),
			Async: o.Async, Key: []byte("bench")})
		if err != nil {
			return res, err
		}
		defer r.Close()
		reps[i] = r
	}
	if err := reps[0].Mount(rfs.Primary); err != nil {
		return res, err
	}
	if err := reps[0].Listen("127.0.0.1:0"); err != nil {
		return res, err
	}
	if err := reps[1].Mount(rfs.Secondary); err != nil {
		return res, err
	}
	if err := reps[1].Resync(ctx, reps[0].Addr(), rfs.ResyncOptions{}); err != nil {
		return res, err
	}
	os.MkdirAll(raw, 0o755)
	repl := dirs[0][0].Dir
	// Interleaved, twice, best of each: the disk of a VM is noisy.
	for range 2 {
		for _, t := range []struct {
			dir string
			mbs *float64
			p50 *time.Duration
			p99 *time.Duration
		}{{raw, &res.SeqRaw, &res.SyncRawP50, &res.SyncRawP99}, {repl, &res.SeqRepl, &res.SyncReplP50, &res.SyncReplP99}} {
			mbs, err := seq(filepath.Join(t.dir, "seq"), o.SeqBytes)
			if err != nil {
				return res, err
			}
			*t.mbs = max(*t.mbs, mbs)
			p50, p99, err := syncLatency(filepath.Join(t.dir, "sync"), o.SyncWrites)
			if err != nil {
				return res, err
			}
			if *t.p50 == 0 || p50 < *t.p50 {
				*t.p50, *t.p99 = p50, p99
			}
		}
	}
	return res, nil
}

func seq(path string, size int64) (float64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return 0, err
	}
	return float64(size) / (1 << 20) / time.Since(start).Seconds(), nil
}

func syncLatency(path string, n int) (p50, p99 time.Duration, err error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, 4096)
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		buf[0] = byte(i)
		t0 := time.Now()
		if _, err := f.WriteAt(buf, int64(i%256)*4096); err != nil {
			return 0, 0, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0, err
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], lat[len(lat)*99/100], nil
}

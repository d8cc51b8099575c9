package rfs

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// proxy sits between the secondary and the primary; it can freeze (stop
// forwarding, as a hung secondary) or cut the connections (a killed one).
type proxy struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go p.pipe(c, u)
			go p.pipe(u, c)
		}
	}()
	return p
}

func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		for p.frozen.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		n, err := src.Read(buf)
		if n > 0 {
			for p.frozen.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func waitEvent[T Event](t *testing.T, r *Replica, within time.Duration) T {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case e := <-r.Events():
			if v, ok := e.(T); ok {
				return v
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T within %v", zero, within)
			return zero
		}
	}
}

// TestAsyncNoneAppliesBeforeReturning: with async="none" a write has
// reached the secondary's disk when it returns.
func TestAsyncNoneAppliesBeforeReturning(t *testing.T) {
	for _, async := range []string{"none", "second"} {
		t.Run(async, func(t *testing.T) {
			p := newPair(t, pairOpts{async: async})
			p.resync(false)
			f, err := os.Create(filepath.Join(p.a.dir, "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for i := 0; i < 200; i++ {
				data := randBytes(4096)
				if _, err := f.WriteAt(data, int64(i)*4096); err != nil {
					t.Fatal(err)
				}
				if err := unix.Fdatasync(int(f.Fd())); err != nil {
					t.Fatal(err)
				}
				if async == "none" {
					got := make([]byte, 4096)
					g, _ := os.Open(filepath.Join(p.b.backing(), "f"))
					g.ReadAt(got, int64(i)*4096)
					g.Close()
					if !bytes.Equal(got, data) {
						t.Fatalf("write %d returned before the secondary applied it", i)
					}
				}
			}
			f.Close()
			p.settle()
			compareTrees(t, p.a.backing(), p.b.backing())
		})
	}
}

// TestODirectAndCopyFileRange: O_DIRECT writes (qemu cache=none) and cp,
// which uses copy_file_range, are replicated.
func TestODirectAndCopyFileRange(t *testing.T) {
	p := newPair(t, pairOpts{})
	p.resync(false)
	fd, err := unix.Open(filepath.Join(p.a.dir, "direct"), unix.O_CREAT|unix.O_RDWR|unix.O_DIRECT, 0o644)
	if err != nil {
		t.Fatalf("open O_DIRECT through the mount: %v", err)
	}
	buf, _ := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	copy(buf, randBytes(1<<20))
	for i := 0; i < 8; i++ {
		if _, err := unix.Pwrite(fd, buf[:(i+1)*4096], int64(i)<<20); err != nil {
			t.Fatalf("O_DIRECT pwrite: %v", err)
		}
	}
	unix.Fdatasync(fd)
	unix.Close(fd)
	unix.Munmap(buf)

	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, src, randBytes(5<<20+123))
	if out, err := run("cp", src, filepath.Join(p.a.dir, "copied")); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	// copy_file_range between two files of the mount.
	in, _ := os.Open(filepath.Join(p.a.dir, "copied"))
	out, _ := os.Create(filepath.Join(p.a.dir, "copied2"))
	n, err := unix.CopyFileRange(int(in.Fd()), nil, int(out.Fd()), nil, 5<<20, 0)
	if err != nil && err != unix.ENOSYS && err != unix.EXDEV {
		t.Fatalf("copy_file_range: %v", err)
	}
	if err != nil || n < 5<<20 {
		io.Copy(out, in)
	}
	in.Close()
	out.Close()
	p.settle()
	compareTrees(t, p.a.backing(), p.b.backing())
}

func run(name string, args ...string) ([]byte, error) {
	return execCommand(name, args...).CombinedOutput()
}

// TestSecondaryLostWritersContinue: a secondary that stops answering is
// dropped within locktimeout, writers go on, and what it missed is in the
// bitmaps; a killed one is dropped at once.
func TestSecondaryLostWritersContinue(t *testing.T) {
	const lock = time.Second
	p := newPair(t, pairOpts{lockTimeout: lock, zone: 1 << 20})
	px := newProxy(t, p.a.r.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.b.r.Resync(ctx, px.addr(), ResyncOptions{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(p.a.dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteAt(randBytes(1<<20), 0)
	px.frozen.Store(true)
	start := time.Now()
	var worst time.Duration
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		if _, err := f.WriteAt(randBytes(4096), int64(i)<<20); err != nil {
			t.Fatal(err)
		}
		worst = max(worst, time.Since(t0))
	}
	ev := waitEvent[SecondaryLost](t, p.a.r, 5*time.Second)
	t.Logf("dropped after %v: %s; slowest write %v", time.Since(start), ev.Reason, worst)
	if !strings.Contains(ev.Reason, "locktimeout") {
		t.Errorf("reason %q does not name locktimeout", ev.Reason)
	}
	if worst > lock+2*time.Second {
		t.Fatalf("a writer waited %v, locktimeout is %v", worst, lock)
	}
	// Every zone written after the freeze is dirty, including those in
	// flight when the secondary was dropped.
	st := p.a.r.st.get()
	df := st.Track.Files[key(0, "f")]
	if df == nil {
		t.Fatal("no bitmap for the file written while the secondary hung")
	}
	zs := map[int64]bool{}
	for _, z := range df.zones() {
		zs[z] = true
	}
	for i := int64(0); i < 20; i++ {
		if !zs[i] {
			t.Errorf("zone %d written while the secondary hung is not dirty (%v)", i, df.zones())
		}
	}
	px.frozen.Store(false)
	px.cut()
}

func TestSecondaryKilledIsDroppedAtOnce(t *testing.T) {
	p := newPair(t, pairOpts{lockTimeout: 30 * time.Second})
	px := newProxy(t, p.a.r.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.b.r.Resync(ctx, px.addr(), ResyncOptions{}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var writes atomic.Int64
	go func() {
		f, _ := os.Create(filepath.Join(p.a.dir, "busy"))
		defer f.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f.WriteAt(randBytes(64<<10), int64(i%64)<<16)
			writes.Add(1)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	px.cut()
	waitEvent[SecondaryLost](t, p.a.r, 5*time.Second)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dropped after %v", d)
	}
	n := writes.Load()
	waitFor(t, "writes to go on", func() bool { return writes.Load() > n+10 })
	close(stop)
}

// TestAuthentication: a secondary with another key is refused; TLS works.
func TestAuthentication(t *testing.T) {
	p := newPair(t, pairOpts{tls: true})
	p.resync(false)
	writeFile(t, filepath.Join(p.a.dir, "f"), []byte("over TLS"))
	p.settle()
	compareTrees(t, p.a.backing(), p.b.backing())

	q := newPair(t, pairOpts{})
	q.b.r.cfg.Key = []byte("another key")
	err := q.b.r.Resync(context.Background(), q.a.r.Addr(), ResyncOptions{})
	if err == nil || !strings.Contains(err.Error(), "cluster key") {
		t.Fatalf("resync with another key: %v", err)
	}
}

package rfs

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// applier is the secondary's end of the stream: it applies the primary's
// operations to the backing directories (not through the read-only
// mount), in stream order, with their metadata.
//
// One goroutine reads frames and, with async="second", acknowledges each
// on receipt; one applies them in order and, with async="none",
// acknowledges after applying (an fsync after its own fdatasync); one
// writes the acknowledgements and replies.
type applier struct {
	r    *Replica
	conn net.Conn
	mode string

	q      chan *msg
	budget *budget

	ackMu sync.Mutex
	// wmu serialises writes to the connection: acknowledgements are
	// written by the goroutine that advances them (one wake-up less per
	// operation), replies by the acker.
	wmu     sync.Mutex
	sentR   uint64
	sentA   uint64
	replies [][]byte
	errMsg  []byte
	kick    chan struct{}
	recv    atomic.Uint64
	applied atomic.Uint64

	roots  []int // backing directories (O_PATH)
	fds    map[string]*os.File
	bufZ   []byte
	synced atomic.Bool
	// reintegrating: until the end of the reintegration that opens every
	// stream, a missing entry is expected (the walk has not reached it, or
	// a live operation came before the walk's first message) and not an
	// error.
	reintegrating bool
	begun         bool
	lastMB        int64

	endApplied chan struct{}
	done       chan struct{}
	err        error
	stopOnce   sync.Once
	verify     bool // a verification session: read-only requests only
	report     []string
	// failed: an operation could not be applied; the stream ends there.
	failed bool
}

// budget bounds the bytes received and not yet applied.
type budget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	used  int
	limit int
	shut  bool
}

func newBudget(limit int) *budget {
	b := &budget{limit: limit}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *budget) take(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.limit && !b.shut {
		b.cond.Wait()
	}
	b.used += n
	return !b.shut
}

func (b *budget) give(n int) {
	b.mu.Lock()
	b.used -= n
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *budget) close() {
	b.mu.Lock()
	b.shut = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

func newApplier(r *Replica, conn net.Conn, mode string) (*applier, error) {
	a := &applier{r: r, conn: conn, mode: mode, q: make(chan *msg, 4096), budget: newBudget(128 << 20),
		kick: make(chan struct{}, 1), fds: map[string]*os.File{}, reintegrating: true, endApplied: make(chan struct{}), done: make(chan struct{})}
	for _, d := range r.dirs {
		fd, err := unix.Open(d.backing, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			a.closeRoots()
			return nil, fmt.Errorf("replicated directory %s: %w", d.backing, err)
		}
		a.roots = append(a.roots, fd)
	}
	return a, nil
}

func (a *applier) closeRoots() {
	for _, fd := range a.roots {
		unix.Close(fd)
	}
	a.roots = nil
}

func (a *applier) start() {
	go a.reader()
	go a.acker()
	go a.applyLoop()
}

// stop ends the stream and waits until what was received is applied.
func (a *applier) stop() {
	a.stopOnce.Do(func() { a.conn.Close() })
	<-a.done
}

func (a *applier) reader() {
	defer close(a.q)
	br := bufio.NewReaderSize(a.conn, 1<<20)
	hdr := make([]byte, frameHeader)
	for {
		typ, seq, body, err := readFrame(br, hdr)
		if err != nil {
			a.setErr(fmt.Errorf("stream from the primary ended: %w", err))
			return
		}
		m, err := decodeMsg(typ, seq, body)
		if err != nil {
			a.setErr(err)
			return
		}
		if !a.budget.take(len(body)) {
			return
		}
		a.recv.Store(seq)
		if a.r.cfg.Async == "second" && m.typ != opList && m.typ != opSums && m.typ != opEnd && m.typ != opNop && m.typ != opTick {
			a.ackNow()
		}
		a.q <- m
	}
}

func (a *applier) setErr(err error) {
	a.ackMu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.ackMu.Unlock()
}

// ackNow writes the acknowledgement counters.
func (a *applier) ackNow() {
	recv, applied := a.recv.Load(), a.applied.Load()
	if a.r.cfg.Async != "second" {
		recv = applied
	}
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if recv <= a.sentR && applied <= a.sentA {
		return
	}
	a.sentR, a.sentA = max(a.sentR, recv), max(a.sentA, applied)
	b := binary.AppendUvarint(nil, a.sentR)
	b = binary.AppendUvarint(b, a.sentA)
	a.conn.SetWriteDeadline(time.Now().Add(a.r.cfg.SendTimeout))
	if err := writeFrame(a.conn, ansAck, 0, b); err != nil {
		a.conn.Close()
	}
}

func (a *applier) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// acker writes replies, then the acknowledgement counters, coalescing
// what accumulated since the last write.
func (a *applier) acker() {
	bw := bufio.NewWriterSize(a.conn, 64<<10)
	for {
		select {
		case <-a.kick:
		case <-a.done:
			return
		}
		a.ackMu.Lock()
		reps, em := a.replies, a.errMsg
		a.replies, a.errMsg = nil, nil
		a.ackMu.Unlock()
		a.wmu.Lock()
		a.conn.SetWriteDeadline(time.Now().Add(a.r.cfg.SendTimeout))
		for _, r := range reps {
			bw.Write(r)
		}
		recv, applied := a.recv.Load(), a.applied.Load()
		if a.r.cfg.Async != "second" {
			recv = applied
		}
		if recv > a.sentR || applied > a.sentA {
			a.sentR, a.sentA = max(a.sentR, recv), max(a.sentA, applied)
			b := binary.AppendUvarint(nil, a.sentR)
			b = binary.AppendUvarint(b, a.sentA)
			writeFrame(bw, ansAck, 0, b)
		}
		if em != nil {
			bw.Write(em)
		}
		if err := bw.Flush(); err != nil {
			a.conn.Close()
		}
		a.wmu.Unlock()
	}
}

func (a *applier) reply(seq uint64, body []byte) {
	b := make([]byte, frameHeader, frameHeader+len(body))
	binary.BigEndian.PutUint32(b[0:4], uint32(9+len(body)))
	b[4] = ansReply
	binary.BigEndian.PutUint64(b[5:13], seq)
	a.ackMu.Lock()
	a.replies = append(a.replies, append(b, body...))
	a.ackMu.Unlock()
}

func (a *applier) applyLoop() {
	defer func() {
		for k, f := range a.fds {
			f.Close()
			delete(a.fds, k)
		}
		a.closeRoots()
		a.budget.close()
		// Drain: the reader may be blocked on a full queue.
		for range a.q {
		}
		a.conn.Close()
		a.ackMu.Lock()
		err := a.err
		a.ackMu.Unlock()
		if err == nil {
			err = errors.New("stream closed")
		}
		if !a.verify {
			a.r.app.CompareAndSwap(a, nil)
			a.r.emit(PrimaryLost{Reason: err.Error(), Incomplete: a.failed || a.reintegrating})
		}
		close(a.done)
	}()
	for m := range a.q {
		err := a.apply(m)
		a.budget.give(len(m.data) + 64)
		if err != nil && !(a.reintegrating && tolerable(err)) {
			err = fmt.Errorf("%s %s: %w", opName(m.typ), a.r.dirs[min(int(m.dir), len(a.r.dirs)-1)].local(m.path), err)
			a.r.logf("nfsbox", "E", "Replication failed: %v", err)
			a.failed = true
			a.r.st.update(func(s *state) { s.Inconsistent = true })
			b := binary.AppendUvarint(nil, uint64(errnoOf(err)))
			b = putStr(b, err.Error())
			f := make([]byte, 0, frameHeader+len(b))
			f = binary.BigEndian.AppendUint32(f, uint32(9+len(b)))
			f = append(f, ansErr)
			f = binary.BigEndian.AppendUint64(f, m.seq)
			a.ackMu.Lock()
			a.errMsg = append(f, b...)
			a.ackMu.Unlock()
			a.setErr(err)
			a.poke()
			// Let the acker send the error before closing.
			time.Sleep(100 * time.Millisecond)
			return
		}
		a.applied.Store(m.seq)
		a.ackMu.Lock()
		pending := len(a.replies) > 0
		a.ackMu.Unlock()
		if pending || a.r.cfg.Async == "second" {
			a.poke()
		} else {
			a.ackNow()
		}
	}
}

// tolerable errors during a reintegration: the walk will reach the entry.
func tolerable(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EEXIST) ||
		errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EISDIR)
}

func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

func opName(t byte) string {
	names := map[byte]string{opWrite: "write", opFsync: "fsync", opSetattr: "setattr", opAlloc: "fallocate",
		opCreate: "create", opMknod: "mknod", opMkdir: "mkdir", opSymlink: "symlink", opUnlink: "unlink",
		opRmdir: "rmdir", opRename: "rename", opSetxattr: "setxattr", opRemovexattr: "removexattr",
		opZone: "zone", opRemoveAll: "remove", opList: "list", opSums: "checksum", opEnd: "end",
		opTick: "tick", opBegin: "begin", opNop: "nop", opProgress: "progress"}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("op%d", t)
}

// resolve opens the parent of rel beneath the backing directory, never
// through a symlink, and returns it with the last name.
func (a *applier) resolve(dir uint8, rel string) (int, string, func(), error) {
	if int(dir) >= len(a.roots) {
		return -1, "", nil, fmt.Errorf("replicated directory #%d: this node has %d", dir, len(a.roots))
	}
	if rel == "" || strings.HasPrefix(rel, "/") {
		return -1, "", nil, fmt.Errorf("path %q: %w", rel, unix.EINVAL)
	}
	parent, name := path.Split(rel)
	if name == "." || name == ".." {
		return -1, "", nil, fmt.Errorf("path %q: %w", rel, unix.EINVAL)
	}
	if parent == "" {
		return a.roots[dir], name, func() {}, nil
	}
	fd, err := unix.Openat2(a.roots[dir], strings.TrimSuffix(parent, "/"), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, "", nil, err
	}
	return fd, name, func() { unix.Close(fd) }, nil
}

// file returns a cached read-write descriptor of a regular file.
func (a *applier) file(dir uint8, rel string) (*os.File, error) {
	k := key(int(dir), rel)
	if f, ok := a.fds[k]; ok {
		return f, nil
	}
	if int(dir) >= len(a.roots) {
		return nil, fmt.Errorf("replicated directory #%d: this node has %d", dir, len(a.roots))
	}
	fd, err := unix.Openat2(a.roots[dir], rel, &unix.OpenHow{
		Flags:   unix.O_RDWR | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	if len(a.fds) >= 256 {
		for k2, f := range a.fds {
			f.Close()
			delete(a.fds, k2)
			break
		}
	}
	f := os.NewFile(uintptr(fd), rel)
	a.fds[k] = f
	return f, nil
}

// forget closes the cached descriptors at or below rel.
func (a *applier) forget(dir uint8, rel string) {
	p := key(int(dir), rel)
	for k, f := range a.fds {
		if under(k, p) {
			f.Close()
			delete(a.fds, k)
		}
	}
}

// procPath names an entry by its parent's descriptor, for the calls that
// have no *at form.
func procPath(pfd int, name string) string { return fmt.Sprintf("/proc/self/fd/%d/%s", pfd, name) }

// validRel accepts a relative path without "." or ".." components: the
// primary's paths name entries below the replicated directory only.
func validRel(p string) bool {
	if p == "" {
		return true
	}
	if strings.HasPrefix(p, "/") {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

func (a *applier) apply(m *msg) error {
	if !validRel(m.path) || (m.typ == opRename && !validRel(m.path2)) || int(m.dir) >= len(a.r.dirs) {
		return fmt.Errorf("%s: path %q %q of directory #%d: %w", opName(m.typ), m.path, m.path2, m.dir, unix.EINVAL)
	}
	if a.verify && m.typ != opList && m.typ != opSums && m.typ != opNop && m.typ != opEnd {
		return fmt.Errorf("%s during a verification: %w", opName(m.typ), unix.EPERM)
	}
	switch m.typ {
	case opWrite:
		f, err := a.file(m.dir, m.path)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(m.data, m.off); err != nil {
			return err
		}
		if m.valid&vKillSUID != 0 {
			killSUIDfd(int(f.Fd()))
		}
	case opFsync:
		if m.valid&(vAtime|vMtime) != 0 {
			if err := a.setattr(m); err != nil {
				return err
			}
		}
		// With async="second" the secondary's durability is its memory
		// (acknowledged on receipt); its copy is flushed at the end of a
		// reintegration and at a clean stop, and a crash makes it unclean.
		if a.r.cfg.Async == "none" {
			f, err := a.file(m.dir, m.path)
			if err != nil {
				return err
			}
			if errno := fsyncFd(int(f.Fd()), m.flags&1 != 0); errno != 0 {
				return errno
			}
		}
	case opAlloc:
		f, err := a.file(m.dir, m.path)
		if err != nil {
			return err
		}
		if err := unix.Fallocate(int(f.Fd()), m.flags, m.off, m.n); err != nil {
			return err
		}
	case opZone:
		return a.zone(m)
	case opSetattr:
		return a.setattr(m)
	case opCreate, opMknod, opMkdir, opSymlink:
		return a.create(m)
	case opUnlink, opRmdir, opRemoveAll:
		pfd, name, done, err := a.resolve(m.dir, m.path)
		if err != nil {
			return err
		}
		defer done()
		a.forget(m.dir, m.path)
		switch m.typ {
		case opUnlink:
			return unix.Unlinkat(pfd, name, 0)
		case opRmdir:
			return unix.Unlinkat(pfd, name, unix.AT_REMOVEDIR)
		}
		err = os.RemoveAll(procPath(pfd, name))
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return err
	case opRename:
		p1, n1, done1, err := a.resolve(m.dir, m.path)
		if err != nil {
			return err
		}
		defer done1()
		p2, n2, done2, err := a.resolve(m.dir, m.path2)
		if err != nil {
			return err
		}
		defer done2()
		a.forget(m.dir, m.path)
		a.forget(m.dir, m.path2)
		return unix.Renameat2(p1, n1, p2, n2, uint(m.flags))
	case opSetxattr, opRemovexattr:
		return a.withPath(m, func(p string) error {
			if m.typ == opSetxattr {
				return unix.Lsetxattr(p, m.name, m.data, int(m.flags))
			}
			return unix.Lremovexattr(p, m.name)
		})
	case opList:
		d := a.r.dirs[min(int(m.dir), len(a.r.dirs)-1)]
		es, err := listDir(d.local(m.path))
		var b []byte
		if err == nil {
			b, _ = json.Marshal(es)
		}
		a.reply(m.seq, b)
	case opSums:
		a.reply(m.seq, a.sums(m))
	case opBegin:
		a.beginReintegration(m)
	case opProgress:
		a.r.stats.copied.Store(m.off)
		a.r.stats.total.Store(m.n)
		if mb := m.off >> 20; mb != a.lastMB {
			a.lastMB = mb
			a.r.logf("reintegre", "I", "%dMB copied", mb)
		}
		a.r.emit(Progress{Copied: m.off, Total: m.n})
	case opTick:
		a.r.st.update(func(s *state) { s.LastSync = m.mtime })
		a.reply(m.seq, nil)
	case opEnd:
		return a.end(m)
	case opNop:
		a.reply(m.seq, nil)
	default:
		return fmt.Errorf("unknown operation %d: %w", m.typ, unix.EINVAL)
	}
	return nil
}

// withPath runs fn with a path naming m's entry without following a
// symlink in its directories.
func (a *applier) withPath(m *msg, fn func(p string) error) error {
	if m.path == "" {
		return fn(a.r.dirs[min(int(m.dir), len(a.r.dirs)-1)].backing)
	}
	pfd, name, done, err := a.resolve(m.dir, m.path)
	if err != nil {
		return err
	}
	defer done()
	return fn(procPath(pfd, name))
}

func (a *applier) create(m *msg) error {
	pfd, name, done, err := a.resolve(m.dir, m.path)
	if err != nil {
		return err
	}
	defer done()
	perm := m.mode & 07777
	switch m.typ {
	case opCreate:
		a.forget(m.dir, m.path)
		fd, err := unix.Openat(pfd, name, unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if err != nil {
			return err
		}
		unix.Close(fd)
	case opMknod:
		err = unix.Mknodat(pfd, name, m.mode, int(m.rdev))
	case opMkdir:
		err = unix.Mkdirat(pfd, name, perm)
		if errors.Is(err, unix.EEXIST) {
			var st unix.Stat_t
			if unix.Fstatat(pfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				err = nil
			}
		}
	case opSymlink:
		err = unix.Symlinkat(m.path2, pfd, name)
	}
	if err != nil {
		return err
	}
	return a.setattrAt(pfd, name, m)
}

func (a *applier) setattr(m *msg) error {
	if m.path == "" {
		d := a.r.dirs[min(int(m.dir), len(a.r.dirs)-1)]
		fd, err := unix.Open(d.backing, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return a.setattrAt(fd, "", m)
	}
	pfd, name, done, err := a.resolve(m.dir, m.path)
	if err != nil {
		return err
	}
	defer done()
	if m.valid&vSize != 0 {
		f, err := a.file(m.dir, m.path)
		if err != nil {
			return err
		}
		if err := f.Truncate(m.n); err != nil {
			return err
		}
	}
	return a.setattrAt(pfd, name, m)
}

// setattrAt sets owner, then mode (a chown may clear suid/sgid), then
// times, as the primary has them.
func (a *applier) setattrAt(pfd int, name string, m *msg) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	isLink := m.mode&unix.S_IFMT == unix.S_IFLNK
	if m.valid&(vUID|vGID) != 0 {
		uid, gid := -1, -1
		if m.valid&vUID != 0 {
			uid = int(m.uid)
		}
		if m.valid&vGID != 0 {
			gid = int(m.gid)
		}
		if err := unix.Fchownat(pfd, name, uid, gid, flags); err != nil {
			return err
		}
	}
	if m.valid&vMode != 0 && !isLink {
		p := procPath(pfd, name)
		if name == "" {
			p = fmt.Sprintf("/proc/self/fd/%d", pfd)
		}
		if err := unix.Chmod(p, m.mode&07777); err != nil {
			return err
		}
	}
	if m.valid&(vAtime|vMtime) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if m.valid&vAtime != 0 {
			ts[0] = unix.NsecToTimespec(m.atime)
		}
		if m.valid&vMtime != 0 {
			ts[1] = unix.NsecToTimespec(m.mtime)
		}
		if name == "" {
			p := fmt.Sprintf("/proc/self/fd/%d", pfd)
			return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, 0)
		}
		if err := unix.UtimesNanoAt(pfd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return nil
}

// zone makes [off, off+n) of a file what the primary has: holes where it
// has holes, its data elsewhere.
func (a *applier) zone(m *msg) error {
	f, err := a.file(m.dir, m.path)
	if err != nil {
		return err
	}
	segs, data, err := decodeSegs(m.data)
	if err != nil {
		return err
	}
	// Holes where the primary has holes: only between the data segments
	// (sorted, apart), so that data over data is rewritten in place, not
	// deallocated first.
	pos, end := m.off, m.off+m.n
	for i := 0; i <= len(segs); i++ {
		next := end
		if i < len(segs) {
			next = segs[i][0]
		}
		if next > pos {
			if err := a.hole(f, pos, next-pos); err != nil {
				return err
			}
		}
		if i < len(segs) {
			pos = max(pos, segs[i][0]+segs[i][1])
		}
	}
	for _, s := range segs {
		if _, err := f.WriteAt(data[:s[1]], s[0]); err != nil {
			return err
		}
		data = data[s[1]:]
	}
	return nil
}

// hole makes [off, off+n) of f read as zeros: a hole where the file system
// can punch one, written zeros elsewhere.
func (a *applier) hole(f *os.File, off, n int64) error {
	if unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n) == nil {
		return nil
	}
	if len(a.bufZ) < int(n) {
		a.bufZ = make([]byte, n)
	}
	clear(a.bufZ[:n])
	_, err := f.WriteAt(a.bufZ[:n], off)
	return err
}

func (a *applier) sums(m *msg) []byte {
	d := a.r.dirs[min(int(m.dir), len(a.r.dirs)-1)]
	f, err := os.Open(d.local(m.path))
	if err != nil {
		return encodeSums(-1, nil)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return encodeSums(-1, nil)
	}
	zone := m.n
	if len(a.bufZ) < int(zone) {
		a.bufZ = make([]byte, zone)
	}
	sums, err := zoneSums(f, fi.Size(), zone, a.bufZ)
	clear(a.bufZ)
	if err != nil {
		return encodeSums(-1, nil)
	}
	return encodeSums(fi.Size(), sums)
}

func (a *applier) beginReintegration(m *msg) {
	if !a.begun {
		a.begun = true
		a.synced.Store(false)
		if m.name != "bitmap" {
			a.r.st.update(func(s *state) { s.Inconsistent = true })
		}
		a.r.emit(ReintegrationStarted{Mode: m.name})
	}
	a.r.logf("reintegre", "I", "Updating directory tree from %s", a.r.dirs[min(int(m.dir), len(a.r.dirs)-1)].backing)
}

// syncEnd is the body of opEnd: the synchronisation both nodes record.
type syncEnd struct {
	Epoch    string `json:"epoch"`
	LastSync int64  `json:"last_sync"`
	Copied   int64  `json:"copied"`
	Files    int64  `json:"files"`
	// Report: differences found by a verification.
	Report []string `json:"report,omitempty"`
}

func (a *applier) end(m *msg) error {
	var e syncEnd
	if err := json.Unmarshal(m.data, &e); err != nil {
		return err
	}
	if a.verify {
		a.reply(m.seq, nil)
		a.endReport(e)
		return nil
	}
	for _, f := range a.fds {
		f.Sync()
	}
	for _, d := range a.r.dirs {
		syncDir(d.backing)
	}
	err := a.r.st.update(func(s *state) {
		s.Epoch, s.LastSync, s.Inconsistent = e.Epoch, e.LastSync, false
		s.Track = track{Epoch: e.Epoch}
	})
	if err != nil {
		return err
	}
	a.r.wasClean.Store(true)
	a.reintegrating = false
	a.synced.Store(true)
	a.r.logf("reintegre", "I", "Copied %d MB in %d files", e.Copied>>20, e.Files)
	a.reply(m.seq, nil)
	close(a.endApplied)
	return nil
}

// endReport is set by Verify.
func (a *applier) endReport(e syncEnd) {
	a.ackMu.Lock()
	a.report = e.Report
	a.ackMu.Unlock()
	close(a.endApplied)
}

func decodeSegs(b []byte) ([][2]int64, []byte, error) {
	d := decoder{b: b}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(b)) {
		return nil, nil, errShort
	}
	segs := make([][2]int64, n)
	total := int64(0)
	for i := range segs {
		segs[i] = [2]int64{d.varint(), int64(d.uvarint())}
		total += segs[i][1]
	}
	if d.err != nil || total != int64(len(d.b)) {
		return nil, nil, errShort
	}
	return segs, d.b, nil
}

func encodeSegs(segs [][2]int64) []byte {
	b := binary.AppendUvarint(nil, uint64(len(segs)))
	for _, s := range segs {
		b = binary.AppendVarint(b, s[0])
		b = binary.AppendUvarint(b, uint64(s[1]))
	}
	return b
}

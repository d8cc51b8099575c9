package rfs

import (
	"context"
	"math"
	"strings"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The interception: a loopback file system over the backing directory whose
// every mutating operation is applied locally and replicated (rdir.send).
//
// Paths sent to the secondary are computed from go-fuse's inode tree. The
// tree changes when the bridge returns from a namespace operation, after
// our node method; so namespace operations run, bridge included, under
// rdir.ns held for writing (rawFS below), and every path computation under
// ns held for reading. The order of namespace operations and of the paths
// used by data operations is then the same on the stream as locally.

// node is a replicated inode.
type node struct {
	*fs.LoopbackNode
	d *rdir
}

var (
	_ fs.NodeWrapChilder    = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeMknoder        = (*node)(nil)
	_ fs.NodeMkdirer        = (*node)(nil)
	_ fs.NodeSymlinker      = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRmdirer        = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeSetxattrer     = (*node)(nil)
	_ fs.NodeRemovexattrer  = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.NodeTmpfiler       = (*node)(nil)
	_ fs.NodeIoctler        = (*node)(nil)
)

func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &node{LoopbackNode: ops.(*fs.LoopbackNode), d: n.d}
}

// rel is the node's path relative to the replicated directory; false when
// the node is no longer in the tree (unlinked while open).
func (n *node) rel() (string, bool) {
	return relOf(n.EmbeddedInode(), n.d.rootInode())
}

func relOf(in, root *fs.Inode) (string, bool) {
	var parts []string
	for in != root {
		name, p := in.Parent()
		if p == nil {
			return "", false
		}
		parts = append(parts, name)
		in = p
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, "/"), true
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func (n *node) ino() uint64 { return n.EmbeddedInode().StableAttr().Ino }

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 && !n.d.primary() {
		return nil, 0, syscall.EROFS
	}
	fh, ff, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 {
		return nil, 0, errno
	}
	return &file{LoopbackFile: fh.(*fs.LoopbackFile), n: n}, ff, 0
}

// entryMeta is what the secondary sets on a new entry so that both copies
// carry the same metadata.
func entryMeta(m *msg, st *syscall.Stat_t) {
	m.mode = st.Mode
	m.uid, m.gid = st.Uid, st.Gid
	m.atime = st.Atim.Nano()
	m.mtime = st.Mtim.Nano()
	m.rdev = st.Rdev
	m.valid = vMode | vUID | vGID | vAtime | vMtime
}

// parentTimes sends the times of a directory whose entries changed.
func (d *rdir) parentTimes(rel string) *pending {
	if !d.filt.replicated(rel, true) {
		return nil
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(d.local(rel), &st); err != nil {
		return nil
	}
	return d.send(&msg{typ: opSetattr, path: rel, atime: st.Atim.Nano(), mtime: st.Mtim.Nano(), valid: vAtime | vMtime}, mark{})
}

func (n *node) newEntry(typ byte, name string, target string, whole bool) {
	dir, ok := n.rel()
	if !ok {
		return
	}
	rel := join(dir, name)
	if !n.d.filt.replicated(rel, typ == opMkdir) {
		return
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(n.d.local(rel), &st); err != nil {
		return
	}
	m := &msg{typ: typ, path: rel, path2: target}
	entryMeta(m, &st)
	mk := mark{}
	if whole {
		mk = mark{kind: markWhole, key: n.d.key(rel)}
	}
	p := n.d.send(m, mk)
	p2 := n.d.parentTimes(dir)
	p.wait()
	p2.wait()
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	if !n.d.primary() {
		return nil, nil, 0, syscall.EROFS
	}
	ch, fh, ff, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	n.newEntry(opCreate, name, "", true)
	return ch, &file{LoopbackFile: fh.(*fs.LoopbackFile), n: ch.Operations().(*node)}, ff, 0
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.d.primary() {
		return nil, syscall.EROFS
	}
	ch, errno := n.LoopbackNode.Mknod(ctx, name, mode, rdev, out)
	if errno == 0 {
		n.newEntry(opMknod, name, "", mode&syscall.S_IFMT == syscall.S_IFREG)
	}
	return ch, errno
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.d.primary() {
		return nil, syscall.EROFS
	}
	ch, errno := n.LoopbackNode.Mkdir(ctx, name, mode, out)
	if errno == 0 {
		n.newEntry(opMkdir, name, "", false)
	}
	return ch, errno
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.d.primary() {
		return nil, syscall.EROFS
	}
	ch, errno := n.LoopbackNode.Symlink(ctx, target, name, out)
	if errno == 0 {
		n.newEntry(opSymlink, name, target, false)
	}
	return ch, errno
}

func (n *node) remove(typ byte, name string, do func() syscall.Errno) syscall.Errno {
	if !n.d.primary() {
		return syscall.EROFS
	}
	if errno := do(); errno != 0 {
		return errno
	}
	dir, ok := n.rel()
	if !ok {
		return 0
	}
	rel := join(dir, name)
	n.d.reint(rel)
	if !n.d.filt.replicated(rel, typ == opRmdir) {
		return 0
	}
	p := n.d.send(&msg{typ: typ, path: rel}, mark{kind: markGone, key: n.d.key(rel)})
	p2 := n.d.parentTimes(dir)
	p.wait()
	p2.wait()
	return 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.remove(opUnlink, name, func() syscall.Errno { return n.LoopbackNode.Unlink(ctx, name) })
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.remove(opRmdir, name, func() syscall.Errno { return n.LoopbackNode.Rmdir(ctx, name) })
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if !n.d.primary() {
		return syscall.EROFS
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	var st syscall.Stat_t
	dir1, ok1 := n.rel()
	dir2, ok2 := np.rel()
	src, dst := join(dir1, name), join(dir2, newName)
	isDir := false
	if ok1 && syscall.Lstat(n.d.local(src), &st) == nil {
		isDir = st.Mode&syscall.S_IFMT == syscall.S_IFDIR
	}
	if errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags); errno != 0 {
		return errno
	}
	if !ok1 || !ok2 {
		return 0
	}
	n.d.reint(src)
	n.d.reint(dst)
	d := n.d
	r1, r2 := d.filt.replicated(src, isDir), d.filt.replicated(dst, isDir)
	var ps []*pending
	switch {
	case flags&unix.RENAME_EXCHANGE != 0 && r1 && r2:
		ps = append(ps, d.send(&msg{typ: opRename, path: src, path2: dst, flags: flags},
			mark{kind: markCks, key: d.key(dst)}))
		d.storeMark(mark{kind: markCks, key: d.key(src)})
	case flags&unix.RENAME_EXCHANGE != 0:
		// One side is not replicated: the secondary gets what is now
		// under the replicated name, whole.
		for _, rel := range []string{src, dst} {
			if d.filt.replicated(rel, isDir) {
				ps = append(ps, d.send(&msg{typ: opRemoveAll, path: rel}, mark{kind: markGone, key: d.key(rel)}))
				ps = append(ps, d.pushTree(rel)...)
			}
		}
	case r1 && r2:
		ps = append(ps, d.send(&msg{typ: opRename, path: src, path2: dst, flags: flags},
			mark{kind: markCks, key: d.key(dst)}))
	case r1:
		// Moved out of what is replicated: the secondary loses it.
		ps = append(ps, d.send(&msg{typ: opRemoveAll, path: src}, mark{kind: markGone, key: d.key(src)}))
	case r2:
		// Moved in: the secondary receives it whole.
		ps = append(ps, d.send(&msg{typ: opRemoveAll, path: dst}, mark{kind: markGone, key: d.key(dst)}))
		ps = append(ps, d.pushTree(dst)...)
	}
	ps = append(ps, d.parentTimes(dir1))
	if dir2 != dir1 {
		ps = append(ps, d.parentTimes(dir2))
	}
	for _, p := range ps {
		p.wait()
	}
	return 0
}

// Link: hard links are not replicated (as in SafeKit): refused.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// Tmpfile: an O_TMPFILE file has no name to replicate it under, and can
// only get one through a hard link: refused, so that programs fall back to
// named temporary files.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// CopyFileRange would copy inside this daemon, around Write: ENOSYS makes
// the kernel fall back to reads and writes, which are replicated.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// Ioctl could change a file behind replication's back.
func (n *node) Ioctl(ctx context.Context, f fs.FileHandle, cmd uint32, arg uint64, input []byte, output []byte) (int32, syscall.Errno) {
	return 0, syscall.ENOTTY
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if !n.d.primary() {
		return syscall.EROFS
	}
	d := n.d
	if ff, ok := f.(*file); ok {
		f = ff.LoopbackFile
	}
	d.ns.RLock()
	rel, ok := n.rel()
	size, setSize := in.GetSize()
	unlock := func() {}
	if setSize {
		unlock = d.locks.lock(n.ino(), 0, math.MaxInt64)
	}
	var before syscall.Stat_t
	syscall.Lstat(d.local(rel), &before)
	errno := n.LoopbackNode.Setattr(ctx, f, in, out)
	if errno == 0 && in.Valid&fuse.FATTR_KILL_SUIDGID != 0 {
		killSUID(d.local(rel))
	}
	var p *pending
	if errno == 0 && ok && d.filt.replicated(rel, before.Mode&syscall.S_IFMT == syscall.S_IFDIR) {
		p = d.sendAttr(rel, in, setSize, int64(size), before.Size)
	}
	unlock()
	d.ns.RUnlock()
	p.wait()
	return errno
}

// sendAttr replicates a setattr with the values it produced here (the
// kernel may have cleared suid/sgid on chown, a truncate set mtime).
func (d *rdir) sendAttr(rel string, in *fuse.SetAttrIn, setSize bool, size, oldSize int64) *pending {
	var st syscall.Stat_t
	if syscall.Lstat(d.local(rel), &st) != nil {
		return nil
	}
	m := &msg{typ: opSetattr, path: rel}
	if _, ok := in.GetMode(); ok || in.Valid&fuse.FATTR_KILL_SUIDGID != 0 {
		m.valid |= vMode
	}
	if _, ok := in.GetUID(); ok {
		m.valid |= vUID | vMode
	}
	if _, ok := in.GetGID(); ok {
		m.valid |= vGID | vMode
	}
	if _, ok := in.GetATime(); ok {
		m.valid |= vAtime
	}
	if _, ok := in.GetMTime(); ok || setSize {
		m.valid |= vMtime | vAtime
	}
	mk := mark{}
	if setSize {
		m.valid |= vSize
		m.n = size
		lo, hi := oldSize, size
		if lo > hi {
			lo, hi = hi, lo
		}
		mk = mark{kind: markRange, key: d.key(rel), off: lo, n: hi - lo}
	}
	m.mode, m.uid, m.gid = st.Mode, st.Uid, st.Gid
	m.atime, m.mtime = st.Atim.Nano(), st.Mtim.Nano()
	if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		m.valid &^= vMode
	}
	return d.send(m, mk)
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return n.xattr(opSetxattr, attr, data, flags, func() syscall.Errno { return n.LoopbackNode.Setxattr(ctx, attr, data, flags) })
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return n.xattr(opRemovexattr, attr, nil, 0, func() syscall.Errno { return n.LoopbackNode.Removexattr(ctx, attr) })
}

func (n *node) xattr(typ byte, attr string, data []byte, flags uint32, do func() syscall.Errno) syscall.Errno {
	if !n.d.primary() {
		return syscall.EROFS
	}
	d := n.d
	d.ns.RLock()
	errno := do()
	var p *pending
	if rel, ok := n.rel(); errno == 0 && ok && d.filt.replicated(rel, n.StableAttr().Mode&syscall.S_IFMT == syscall.S_IFDIR) {
		p = d.send(&msg{typ: typ, path: rel, name: attr, data: append([]byte(nil), data...), flags: flags}, mark{})
	}
	d.ns.RUnlock()
	p.wait()
	return errno
}

// file is an open replicated file.
type file struct {
	*fs.LoopbackFile
	n *node

	mu      sync.Mutex
	written bool // since the last time sync: the secondary's mtime lags
}

var (
	_ fs.FileWriter          = (*file)(nil)
	_ fs.FileWritever        = (*file)(nil)
	_ fs.FileFsyncer         = (*file)(nil)
	_ fs.FileFlusher         = (*file)(nil)
	_ fs.FileAllocater       = (*file)(nil)
	_ fs.FilePassthroughFder = (*file)(nil)
	_ fs.FileIoctler         = (*file)(nil)
)

// PassthroughFd must say no: with kernel passthrough the kernel writes the
// backing file itself and this daemon, hence the secondary, never sees the
// data.
func (f *file) PassthroughFd() (int, bool) { return 0, false }

func (f *file) Ioctl(ctx context.Context, cmd uint32, arg uint64, input []byte, output []byte) (int32, syscall.Errno) {
	return 0, syscall.ENOTTY
}

// withFd runs fn with the backing descriptor.
func (f *file) withFd(fn func(fd int)) {
	// LoopbackFile hides its descriptor; PassthroughFd of the embedded
	// type exposes it without enabling passthrough (that is decided by
	// our own PassthroughFd above).
	fd, ok := f.LoopbackFile.PassthroughFd()
	if ok {
		fn(fd)
	}
}

func (f *file) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	return f.write(ctx, data, nil, off)
}

func (f *file) Writev(ctx context.Context, data [][]byte, off int64) (uint32, syscall.Errno) {
	return f.write(ctx, nil, data, off)
}

func (f *file) write(ctx context.Context, data []byte, iov [][]byte, off int64) (uint32, syscall.Errno) {
	d := f.n.d
	if !d.primary() {
		return 0, syscall.EROFS
	}
	d.r.stats.writes.Add(1)
	kill := d.takeKill(ctx)
	n := int64(len(data))
	for _, b := range iov {
		n += int64(len(b))
	}
	d.ns.RLock()
	rel, ok := f.n.rel()
	unlock := d.locks.lock(f.n.ino(), off, n)
	var p *pending
	if ok && d.filt.replicated(rel, false) {
		m := &msg{typ: opWrite, path: rel, off: off, data: data, iov: iov}
		if kill {
			m.valid = vKillSUID
		}
		p = d.send(m, mark{kind: markRange, key: d.key(rel), off: off, n: n})
	}
	d.ns.RUnlock()
	var w uint32
	var errno syscall.Errno
	if iov != nil {
		w, errno = f.LoopbackFile.Writev(ctx, iov, off)
	} else {
		w, errno = f.LoopbackFile.Write(ctx, data, off)
	}
	if kill && errno == 0 {
		f.withFd(func(fd int) { killSUIDfd(fd) })
	}
	if errno != 0 && p != nil {
		// The secondary may hold data the primary failed to write: send
		// the range as it is here.
		p.wait()
		p = nil
		d.repair(rel, f.n.ino(), off, n)
	}
	unlock()
	p.wait()
	f.mu.Lock()
	f.written = true
	f.mu.Unlock()
	return w, errno
}

// syncTimes sends the file's times when it was written since the last
// time: the secondary's own writes give it its own mtime.
func (f *file) syncTimes() *pending {
	f.mu.Lock()
	w := f.written
	f.written = false
	f.mu.Unlock()
	if !w {
		return nil
	}
	d := f.n.d
	d.ns.RLock()
	defer d.ns.RUnlock()
	rel, ok := f.n.rel()
	if !ok || !d.filt.replicated(rel, false) {
		return nil
	}
	var st syscall.Stat_t
	var err error
	f.withFd(func(fd int) { err = syscall.Fstat(fd, &st) })
	if err != nil {
		return nil
	}
	return d.send(&msg{typ: opSetattr, path: rel, atime: st.Atim.Nano(), mtime: st.Mtim.Nano(), valid: vAtime | vMtime}, mark{})
}

func (f *file) Flush(ctx context.Context) syscall.Errno {
	if f.n.d.primary() {
		f.syncTimes().wait()
	}
	return f.LoopbackFile.Flush(ctx)
}

// Fsync honours datasync (the stock loopback always fsyncs), on both
// nodes: "send, then do the local operation, then wait for both".
func (f *file) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	d := f.n.d
	if !d.primary() {
		var errno syscall.Errno
		f.withFd(func(fd int) { errno = fsyncFd(fd, flags&1 != 0) })
		return errno
	}
	f.mu.Lock()
	written := f.written
	f.written = false
	f.mu.Unlock()
	d.ns.RLock()
	rel, ok := f.n.rel()
	var p *pending
	if ok && d.filt.replicated(rel, false) {
		m := &msg{typ: opFsync, path: rel, flags: flags & 1}
		var st syscall.Stat_t
		// The file's times travel with the fsync: the secondary's own
		// writes gave it its own mtime.
		if f.withFd(func(fd int) { syscall.Fstat(fd, &st) }); written && st.Mtim.Nano() != 0 {
			m.atime, m.mtime, m.valid = st.Atim.Nano(), st.Mtim.Nano(), vAtime|vMtime
		}
		p = d.send(m, mark{})
	}
	d.ns.RUnlock()
	errno := syscall.EBADF
	f.withFd(func(fd int) { errno = fsyncFd(fd, flags&1 != 0) })
	p.wait()
	return errno
}

func fsyncFd(fd int, datasync bool) syscall.Errno {
	var err error
	if datasync {
		err = unix.Fdatasync(fd)
	} else {
		err = unix.Fsync(fd)
	}
	return fs.ToErrno(err)
}

// Allocate forwards every fallocate mode and range.
func (f *file) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	d := f.n.d
	if !d.primary() {
		return syscall.EROFS
	}
	lo, n := int64(off), int64(size)
	mk := mark{kind: markRange, off: lo, n: n}
	if mode&(unix.FALLOC_FL_COLLAPSE_RANGE|unix.FALLOC_FL_INSERT_RANGE) != 0 {
		// The content after off moves.
		n = math.MaxInt64 - lo
		mk.n = -1
	}
	d.ns.RLock()
	rel, ok := f.n.rel()
	unlock := d.locks.lock(f.n.ino(), lo, n)
	var p *pending
	if ok && d.filt.replicated(rel, false) {
		mk.key = d.key(rel)
		p = d.send(&msg{typ: opAlloc, path: rel, off: lo, n: int64(size), flags: mode}, mk)
		if mk.n < 0 {
			d.reint(rel)
		}
	}
	d.ns.RUnlock()
	errno := f.LoopbackFile.Allocate(ctx, off, size, mode)
	if errno != 0 && p != nil {
		p.wait()
		p = nil
		d.repair(rel, f.n.ino(), lo, n)
	}
	unlock()
	p.wait()
	f.mu.Lock()
	f.written = true
	f.mu.Unlock()
	return errno
}

// Setattr through a handle goes to the node's Setattr (the bridge calls
// the node first), which replicates it.

// killSUID clears suid, and sgid when group-executable, as the kernel does
// on a write by a process without CAP_FSETID: with
// CAP_HANDLE_KILLPRIV_V2 this daemon must do it, and its own writes (as
// root) would not.
func killSUID(path string) {
	var st syscall.Stat_t
	if syscall.Lstat(path, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return
	}
	if m, ok := killedMode(st.Mode); ok {
		syscall.Chmod(path, m)
	}
}

func killSUIDfd(fd int) {
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil {
		return
	}
	if m, ok := killedMode(st.Mode); ok {
		syscall.Fchmod(fd, m)
	}
}

func killedMode(mode uint32) (uint32, bool) {
	m := mode & 07777
	n := m &^ syscall.S_ISUID
	if m&syscall.S_ISGID != 0 && m&syscall.S_IXGRP != 0 {
		n &^= syscall.S_ISGID
	}
	return n, n != m
}

// rawFS wraps go-fuse's bridge to hold rdir.ns around namespace operations
// (bridge tree update included), and to see the WRITE flags the node API
// does not pass on.
type rawFS struct {
	fuse.RawFileSystem
	d *rdir
}

func (r *rawFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	r.d.ns.RLock()
	defer r.d.ns.RUnlock()
	return r.RawFileSystem.Lookup(cancel, h, name, out)
}

func (r *rawFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	r.d.ns.Lock()
	defer r.d.ns.Unlock()
	return r.RawFileSystem.Create(cancel, in, name, out)
}

func (r *rawFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	r.d.ns.Lock()
	defer r.d.ns.Unlock()
	return r.RawFileSystem.Mknod(cancel, in, name, out)
}

func (r *rawFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	r.d.ns.Lock()
	defer r.d.ns.Unlock()
	return r.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (r *rawFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	r.d.ns.Lock()
	defer r.d.ns.Unlock()
	return r.RawFileSystem.Symlink(cancel, h, target, name, out)
}

func (r *rawFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	r.d.ns.Lock()
	defer r.d.ns.Unlock()
	return r.RawFileSystem.Unlink(cancel, h, name)
}

func (r *rawFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	r.d.ns.Lock()
	defer r.d.ns.Unlock()
	return r.RawFileSystem.Rmdir(cancel, h, name)
}

func (r *rawFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	r.d.ns.Lock()
	defer r.d.ns.Unlock()
	return r.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (r *rawFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		r.d.kills.Store(cancel, true)
		defer r.d.kills.Delete(cancel)
	}
	return r.RawFileSystem.Write(cancel, in, data)
}

func (r *rawFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if in.WriteFlags&fuse.WRITE_KILL_SUIDGID != 0 {
		r.d.kills.Store(cancel, true)
		defer r.d.kills.Delete(cancel)
	}
	return r.RawFileSystem.Writev(cancel, in, data)
}

// takeKill tells whether the WRITE being served asked to clear suid/sgid.
func (d *rdir) takeKill(ctx context.Context) bool {
	c, ok := ctx.(*fuse.Context)
	if !ok {
		return false
	}
	_, kill := d.kills.Load(c.Cancel)
	return kill
}

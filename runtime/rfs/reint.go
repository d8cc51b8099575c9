package rfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// MsgAbnormalDelta is the guide's refusal when the two nodes' last
// synchronisations are too far apart; only a full copy is then allowed.
const MsgAbnormalDelta = "Automatic synchronization cannot be applied due to an abnormal delta between the dates of the last synchronization"

// maxSyncDelta is the largest difference between the two nodes'
// synctimestamps for which an incremental reintegration is allowed.
const maxSyncDelta = 90 * time.Second

// mtimeGrace: without usable bitmaps, files modified after the last
// synchronisation minus this are compared (User's Guide §5.4).
const mtimeGrace = time.Hour

// Reintegration modes.
const (
	modeFull     = "full"     // copy everything
	modeBitmap   = "bitmap"   // copy the zones the bitmaps name
	modeChecksum = "checksum" // compare zone checksums of recent or changed files
	modeDate     = "date"     // copy whole the files modified since a date (secondforce -d)
	modeExternal = "external" // compare zone checksums of every file (rfssync external)
	modeVerify   = "verify"   // compare every file, change nothing, report
)

var errMoved = errors.New("renamed or removed during the reintegration")

// Listen accepts the secondary's connections on addr (the flow lan
// address and the replication port). A connection is served when this node
// is primary, refused otherwise.
func (r *Replica) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("rfs: module %s: listen on %s: %w", r.cfg.Module, addr, err)
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		ln.Close()
		return errors.New("rfs: closed")
	}
	r.ln = ln
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.serveConn(c)
			}()
		}
	}()
	return nil
}

// Addr is the listening address (tests listen on port 0).
func (r *Replica) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln == nil {
		return ""
	}
	return r.ln.Addr().String()
}

func (r *Replica) decide(h *hello) welcome {
	if r.Role() != Primary {
		return welcome{Err: fmt.Sprintf("module %s is not primary on this node", r.cfg.Module)}
	}
	if h.Claim.Dirs != len(r.dirs) {
		return welcome{Err: fmt.Sprintf("module %s replicates %d directories here and %d on the other node: the configurations differ", r.cfg.Module, len(r.dirs), h.Claim.Dirs)}
	}
	w := welcome{Async: r.cfg.Async}
	if h.Purpose == modeVerify {
		w.Mode = modeVerify
		return w
	}
	st := r.st.get()
	delta := time.Duration(st.LastSync - h.Claim.LastSync).Abs()
	// A date or an external synchronisation is asked for a copy restored
	// from a backup: neither node's synchronisation history applies.
	switch {
	case h.Claim.Full:
		w.Mode = modeFull
	case h.Claim.Since != 0:
		w.Mode = modeDate
	case h.Claim.External != "":
		w.Mode = modeExternal
	case h.Claim.Epoch == "" || st.Epoch == "":
		w.Mode = modeFull
	case delta > maxSyncDelta:
		w.Err = MsgAbnormalDelta
	case h.Claim.Clean && h.Claim.Epoch == st.Track.Epoch && !st.Track.Untrusted:
		w.Mode = modeBitmap
	default:
		w.Mode = modeChecksum
	}
	return w
}

func (r *Replica) serveConn(c net.Conn) {
	conn, h, w, err := serverHandshake(c, &r.cfg, r.decide)
	if err != nil {
		c.Close()
		if h != nil && h.Purpose != "" {
			r.logf("reintegre", "E", "Reintegration refused: %v", err)
		}
		return
	}
	s := newSession(r, conn)
	if w.Mode == modeVerify {
		s.start()
		rw := newReint(r, s, modeVerify, h.Claim)
		err := rw.run()
		if err != nil {
			r.logf("reintegre", "E", "Verification failed: %v", err)
		}
		s.closeGracefully("verification ended")
		return
	}
	if old := r.sess.Swap(s); old != nil {
		old.fail("a new stream from the secondary replaces it")
	}
	s.start()
	r.stats.copied.Store(0)
	r.stats.total.Store(0)
	r.logf("reintegre", "I", "Reintegration of the secondary (%s)", w.Mode)
	switch w.Mode {
	case modeDate:
		r.logf("reintegre", "I", "Files modified since %s are copied whole, older files are left as they are on the secondary", time.Unix(0, h.Claim.Since).UTC().Format(time.RFC3339))
	case modeExternal:
		r.logf("reintegre", "I", "External synchronization %s: every file is compared zone by zone", h.Claim.External)
	}
	r.emit(ReintegrationStarted{Mode: w.Mode})
	rw := newReint(r, s, w.Mode, h.Claim)
	err = rw.run()
	if err != nil {
		s.fail(fmt.Sprintf("reintegration: %v", err))
		r.emit(ReintegrationDone{OK: false, Err: err, Copied: rw.copied.Load()})
		return
	}
	r.emit(ReintegrationDone{OK: true, Copied: rw.copied.Load()})
	go s.ticker()
}

// reint is one reintegration (or verification) run by the primary.
type reint struct {
	r        *Replica
	s        *session
	mode     string
	tr       track
	lastSync int64
	since    int64 // modeDate: unix ns
	zone     int64

	jobs   chan job
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error
	copied atomic.Int64
	total  atomic.Int64
	files  atomic.Int64

	bwMu   sync.Mutex
	bwNext time.Time

	repMu  sync.Mutex
	report []string

	dirTimes []dirFix
}

type dirFix struct {
	d   *rdir
	rel string
	e   entry
}

type job struct {
	d     *rdir
	rel   string
	ino   uint64
	kind  string // modeFull, modeBitmap (zones), modeChecksum
	zones []int64
}

func newReint(r *Replica, s *session, mode string, cl claim) *reint {
	st := r.st.get()
	return &reint{r: r, s: s, mode: mode, tr: st.Track, lastSync: cl.LastSync, since: cl.Since, zone: int64(r.cfg.ZoneSize)}
}

func (w *reint) fail(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

func (w *reint) failed() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *reint) note(format string, args ...any) {
	w.repMu.Lock()
	w.report = append(w.report, fmt.Sprintf(format, args...))
	w.repMu.Unlock()
}

// run compares the trees, copies what differs while the application
// writes, and ends with the end-of-reintegration message.
func (w *reint) run() error {
	w.jobs = make(chan job, 1024)
	for i := 0; i < w.r.cfg.NbRei; i++ {
		w.wg.Add(1)
		go w.worker()
	}
	stopProgress := make(chan struct{})
	go w.progress(stopProgress)
	defer close(stopProgress)

	type item struct {
		d     *rdir
		rel   string
		only  string
		force bool
	}
	walk := func(items []item) error {
		for len(items) > 0 {
			it := items[0]
			items = items[1:]
			if err := w.failed(); err != nil {
				return err
			}
			if w.s.isDead() {
				return errDropped
			}
			subs, err := w.walkDir(it.d, it.rel, it.only, it.force)
			if err != nil {
				return err
			}
			for _, s := range subs {
				items = append(items, item{d: it.d, rel: s, force: it.force})
			}
		}
		return nil
	}
	var items []item
	for _, d := range w.r.dirs {
		if w.mode != modeVerify {
			w.s.send(&msg{typ: opBegin, dir: uint8(d.idx), name: w.mode}, mark{}, false)
		}
		items = append(items, item{d: d})
	}
	err := walk(items)
	close(w.jobs)
	w.wg.Wait()
	if err == nil {
		err = w.failed()
	}
	// Entries renamed during the walk may have escaped it, or a copy in
	// progress: compare them again, until nothing moves.
	for round := 0; err == nil && round < 20; round++ {
		keys := w.s.takeRevisits()
		if len(keys) == 0 {
			break
		}
		sort.Strings(keys)
		w.jobs = make(chan job, 1024)
		w.wg.Add(1)
		go w.worker()
		var items []item
		for _, k := range keys {
			i, rel := splitKey(k)
			if rel == "" {
				items = append(items, item{d: w.r.dirs[i], force: true})
				continue
			}
			items = append(items, item{d: w.r.dirs[i], rel: parentOf(rel), only: filepath.Base(rel), force: true})
		}
		err = walk(items)
		close(w.jobs)
		w.wg.Wait()
		if err == nil {
			err = w.failed()
		}
	}
	if err != nil {
		return err
	}
	if w.mode != modeVerify {
		// Directory times last: creating their entries changed them.
		for i := len(w.dirTimes) - 1; i >= 0; i-- {
			f := w.dirTimes[i]
			f.d.ns.RLock()
			if e, err := statEntry(f.d.local(f.rel), f.e.Name); err == nil && e.Ino == f.e.Ino {
				w.s.send(metaMsg(f.d, f.rel, e, vMode|vUID|vGID|vAtime|vMtime), mark{}, false)
			}
			f.d.ns.RUnlock()
		}
	}
	end := syncEnd{Epoch: newEpoch(), LastSync: time.Now().UnixNano(), Copied: w.copied.Load(), Files: w.files.Load(), Report: w.report}
	body, _ := json.Marshal(end)
	if w.mode != modeVerify {
		w.s.send(&msg{typ: opProgress, off: w.copied.Load(), n: max(w.total.Load(), w.copied.Load())}, mark{}, false)
	}
	if _, err := w.s.send(&msg{typ: opEnd, data: body}, mark{}, true).result(); err != nil {
		return err
	}
	if w.mode == modeVerify {
		return nil
	}
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return errDropped
	}
	s.inSync.Store(true)
	return w.r.st.update(func(st *state) {
		st.Epoch, st.LastSync = end.Epoch, end.LastSync
		st.Track = track{Epoch: end.Epoch}
	})
}

func parentOf(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return ""
}

func (w *reint) progress(stop chan struct{}) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c, tot := w.copied.Load(), max(w.total.Load(), w.copied.Load())
			w.r.stats.copied.Store(c)
			w.r.stats.total.Store(tot)
			w.r.emit(Progress{Copied: c, Total: tot})
			if w.mode != modeVerify {
				w.s.send(&msg{typ: opProgress, off: c, n: tot}, mark{}, false)
			}
		}
	}
}

// metaMsg sets an entry's metadata on the secondary as it is here.
func metaMsg(d *rdir, rel string, e entry, valid uint32) *msg {
	m := &msg{typ: opSetattr, dir: uint8(d.idx), path: rel, mode: e.Mode, uid: e.UID, gid: e.GID,
		atime: e.Atime, mtime: e.Mtime, valid: valid}
	if e.typ() == syscall.S_IFLNK {
		m.valid &^= vMode
	}
	return m
}

// walkDir compares one directory of both nodes (all its entries, or only
// the one named only) under the namespace lock, creates and removes
// entries, fixes metadata, and queues the file copies. It returns the
// sub-directories to walk.
func (w *reint) walkDir(d *rdir, rel, only string, force bool) ([]string, error) {
	d.ns.RLock()
	defer d.ns.RUnlock()
	local, err := listDir(d.local(rel))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil, nil // renamed or removed meanwhile: a revisit follows
		}
		return nil, fmt.Errorf("%s: %w", d.local(rel), err)
	}
	body, err := w.s.send(&msg{typ: opList, dir: uint8(d.idx), path: rel}, mark{}, true).result()
	if err != nil {
		return nil, err
	}
	var remote []entry
	if len(body) > 0 {
		if err := json.Unmarshal(body, &remote); err != nil {
			return nil, fmt.Errorf("listing of %s from the secondary: %w", rel, err)
		}
	}
	if rel == "" && only == "" {
		if root, err := statEntry(d.backing, ""); err == nil {
			w.dirTimes = append(w.dirTimes, dirFix{d: d, rel: "", e: root})
		}
	}
	rmap := make(map[string]entry, len(remote))
	for _, e := range remote {
		rmap[e.Name] = e
	}
	lmap := make(map[string]bool, len(local))
	for _, e := range local {
		lmap[e.Name] = true
	}
	for _, e := range remote {
		crel := join(rel, e.Name)
		if (only != "" && e.Name != only) || (lmap[e.Name] && d.filt.replicated(crel, e.isDir())) {
			continue
		}
		if w.mode == modeVerify {
			w.note("%s: only on the secondary", d.local(crel))
			continue
		}
		w.s.send(&msg{typ: opRemoveAll, dir: uint8(d.idx), path: crel}, mark{}, false)
	}
	var subs []string
	for _, le := range local {
		if only != "" && le.Name != only {
			continue
		}
		crel := join(rel, le.Name)
		if !d.filt.replicated(crel, le.isDir()) {
			continue
		}
		re, ok := rmap[le.Name]
		if ok && (re.typ() != le.typ() || re.Target != le.Target || (!le.isDir() && !le.isReg() && re.Rdev != le.Rdev)) {
			if w.mode == modeVerify {
				w.note("%s: not the same kind of entry on the secondary", d.local(crel))
				continue
			}
			w.s.send(&msg{typ: opRemoveAll, dir: uint8(d.idx), path: crel}, mark{}, false)
			ok = false
		}
		if !ok {
			if w.mode == modeVerify {
				w.note("%s: missing on the secondary", d.local(crel))
				continue
			}
			w.s.send(createMsg(d, crel, le), mark{}, false)
			for k, v := range le.Xattrs {
				w.s.send(&msg{typ: opSetxattr, dir: uint8(d.idx), path: crel, name: k, data: v}, mark{}, false)
			}
			switch {
			case le.isDir():
				subs = append(subs, crel)
				w.dirTimes = append(w.dirTimes, dirFix{d: d, rel: crel, e: le})
			case le.isReg():
				w.queue(job{d: d, rel: crel, ino: le.Ino, kind: modeFull})
			}
			continue
		}
		w.fixMeta(d, crel, le, re)
		switch {
		case le.isDir():
			subs = append(subs, crel)
			w.dirTimes = append(w.dirTimes, dirFix{d: d, rel: crel, e: le})
		case le.isReg():
			if j, ok := w.fileJob(d, crel, le, re, force); ok {
				w.queue(j)
			} else if re.Mtime != le.Mtime && w.mode != modeVerify && w.mode != modeDate {
				w.s.send(metaMsg(d, crel, le, vAtime|vMtime), mark{}, false)
			}
		}
	}
	return subs, nil
}

func (w *reint) queue(j job) {
	w.jobs <- j
}

// fixMeta aligns owner, mode, xattrs and (but for directories and
// regular files, done later) times.
func (w *reint) fixMeta(d *rdir, crel string, le, re entry) {
	var valid uint32
	if le.Mode != re.Mode {
		valid |= vMode
	}
	if le.UID != re.UID || le.GID != re.GID {
		valid |= vUID | vGID | vMode
	}
	if !le.isDir() && !le.isReg() && le.Mtime != re.Mtime {
		valid |= vAtime | vMtime
	}
	if w.mode == modeVerify {
		if valid != 0 || !sameXattrs(le.Xattrs, re.Xattrs) {
			w.note("%s: metadata differ on the secondary", d.local(crel))
		}
		return
	}
	if valid != 0 {
		w.s.send(metaMsg(d, crel, le, valid), mark{}, false)
	}
	if !sameXattrs(le.Xattrs, re.Xattrs) {
		for k := range re.Xattrs {
			if _, ok := le.Xattrs[k]; !ok {
				w.s.send(&msg{typ: opRemovexattr, dir: uint8(d.idx), path: crel, name: k}, mark{}, false)
			}
		}
		for k, v := range le.Xattrs {
			w.s.send(&msg{typ: opSetxattr, dir: uint8(d.idx), path: crel, name: k, data: v}, mark{}, false)
		}
	}
}

// fileJob decides what to copy of a file both nodes have.
func (w *reint) fileJob(d *rdir, crel string, le, re entry, force bool) (job, bool) {
	j := job{d: d, rel: crel, ino: le.Ino, kind: modeChecksum}
	k := d.key(crel)
	switch {
	case w.mode == modeFull:
		j.kind = modeFull
	case w.mode == modeVerify || w.mode == modeExternal || force:
	case w.mode == modeDate:
		// Older files are the administrator's (User's Guide §13.7.4.8):
		// left as they are, times included.
		if le.Mtime < w.since {
			return j, false
		}
		j.kind = modeFull
	case w.mode == modeBitmap:
		f := w.tr.Files[k]
		switch {
		case w.tr.needsCks(k) || re.Size != le.Size && f == nil:
		case f != nil && f.Whole:
			j.kind = modeFull
		case f != nil:
			j.kind, j.zones = modeBitmap, f.zones()
		default:
			return j, false
		}
	default: // checksum
		recent := max(le.Mtime, le.Ctime) >= w.lastSync-int64(mtimeGrace)
		if re.Size == le.Size && re.Mtime == le.Mtime && !recent {
			return j, false
		}
	}
	return j, true
}

func createMsg(d *rdir, crel string, e entry) *msg {
	m := &msg{dir: uint8(d.idx), path: crel, mode: e.Mode, uid: e.UID, gid: e.GID, atime: e.Atime, mtime: e.Mtime,
		rdev: e.Rdev, valid: vMode | vUID | vGID | vAtime | vMtime}
	switch e.typ() {
	case syscall.S_IFDIR:
		m.typ = opMkdir
	case syscall.S_IFREG:
		m.typ = opCreate
	case syscall.S_IFLNK:
		m.typ, m.path2 = opSymlink, e.Target
		m.valid &^= vMode
	default:
		m.typ = opMknod
	}
	return m
}

func (w *reint) worker() {
	defer w.wg.Done()
	buf := make([]byte, w.zone)
	for j := range w.jobs {
		if w.failed() != nil || w.s.isDead() {
			continue
		}
		err := w.copyFile(j, buf)
		switch {
		case errors.Is(err, errMoved):
			w.s.revisit(j.d.idx, j.rel)
		case err != nil:
			w.fail(err)
		}
	}
}

// copyFile copies the zones of one file the job names (all of them,
// those of the bitmap, or those whose checksums differ), then its size
// and times.
func (w *reint) copyFile(j job, buf []byte) error {
	d := j.d
	f, err := os.OpenFile(d.local(j.rel), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return errMoved
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || st.Ino != j.ino {
		return errMoved
	}
	nz := (st.Size + w.zone - 1) / w.zone
	var zones []int64
	switch j.kind {
	case modeFull:
		for z := int64(0); z < nz; z++ {
			zones = append(zones, z)
		}
	case modeBitmap:
		for _, z := range j.zones {
			if z < nz {
				zones = append(zones, z)
			}
		}
	case modeChecksum:
		// Both nodes hash at the same time: the secondary its copy, this
		// node its own while it waits for the answer.
		p := w.s.send(&msg{typ: opSums, dir: uint8(d.idx), path: j.rel, n: w.zone}, mark{}, true)
		sums := make([]uint64, nz)
		for z := int64(0); z < nz; z++ {
			off := z * w.zone
			unlock := d.locks.lock(j.ino, off, w.zone)
			sum, err := zoneSum(f, off, min(w.zone, st.Size-off), buf)
			unlock()
			if err != nil {
				return fmt.Errorf("%s: %w", d.local(j.rel), err)
			}
			sums[z] = sum
		}
		body, err := p.result()
		if err != nil {
			return err
		}
		rsize, rsums, err := decodeSums(body)
		if err != nil {
			return err
		}
		for z, sum := range sums {
			if z >= len(rsums) || rsums[z] != sum {
				zones = append(zones, int64(z))
			}
		}
		if w.mode == modeVerify {
			if len(zones) > 0 || rsize != st.Size {
				w.note("%s: content differs on the secondary (%d of %d zones, size %d here, %d there)", d.local(j.rel), len(zones), nz, st.Size, rsize)
			}
			return nil
		}
	}
	w.total.Add(int64(len(zones)) * w.zone)
	for _, z := range zones {
		n, err := w.copyZone(d, j.rel, f, j.ino, z, buf, false)
		if err != nil {
			return err
		}
		w.copied.Add(n)
		w.limit(n)
	}
	w.files.Add(1)
	return w.finishFile(d, j.rel, f, j.ino, false)
}

// copyZone sends zone z of a file under its range lock, so that a live
// write to it is ordered on the stream before or after the copy, never
// overwritten by an older copy. nsHeld: the caller holds d.ns.
func (w *reint) copyZone(d *rdir, rel string, f *os.File, ino uint64, z int64, buf []byte, nsHeld bool) (int64, error) {
	if !nsHeld {
		d.ns.RLock()
		defer d.ns.RUnlock()
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(d.local(rel), &st); err != nil || st.Ino != ino {
		return 0, errMoved
	}
	off := z * w.zone
	unlock := d.locks.lock(ino, off, w.zone)
	defer unlock()
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return 0, err
	}
	if off >= st.Size {
		return 0, nil
	}
	n := min(w.zone, st.Size-off)
	segs := segments(int(f.Fd()), off, n)
	data := buf[:0]
	for _, s := range segs {
		b := buf[len(data) : len(data)+int(s[1])]
		if _, err := f.ReadAt(b, s[0]); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("%s: %w", d.local(rel), err)
		}
		data = buf[:len(data)+int(s[1])]
	}
	p := w.s.send(&msg{typ: opZone, dir: uint8(d.idx), path: rel, off: off, n: n, iov: [][]byte{encodeSegs(segs), data}}, mark{}, false)
	if p == nil {
		return 0, errDropped
	}
	return int64(len(data)), nil
}

// finishFile gives the secondary's copy the size, owner, mode and times
// the file has here, under the whole-file lock.
func (w *reint) finishFile(d *rdir, rel string, f *os.File, ino uint64, nsHeld bool) error {
	if !nsHeld {
		d.ns.RLock()
		defer d.ns.RUnlock()
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(d.local(rel), &st); err != nil || st.Ino != ino {
		return errMoved
	}
	unlock := d.locks.lock(ino, 0, 1<<62)
	defer unlock()
	e, err := statEntry(d.local(rel), "")
	if err != nil {
		return errMoved
	}
	m := metaMsg(d, rel, e, vSize|vMode|vUID|vGID|vAtime|vMtime)
	m.n = e.Size
	p := w.s.send(m, mark{}, false)
	if p == nil {
		return errDropped
	}
	p.wait()
	return nil
}

// limit keeps the reintegration under reiallowedbw.
func (w *reint) limit(n int64) {
	bw := int64(w.r.cfg.ReiAllowedBW) * 1024
	if bw <= 0 || n <= 0 {
		return
	}
	w.bwMu.Lock()
	now := time.Now()
	t := w.bwNext
	if t.Before(now) {
		t = now
	}
	w.bwNext = t.Add(time.Duration(n * int64(time.Second) / bw))
	w.bwMu.Unlock()
	if d := t.Sub(now); d > 0 {
		time.Sleep(d)
	}
}

// pushTree sends an entry that became replicated (moved in from an
// excluded path) with everything below it. The caller holds d.ns.
func (d *rdir) pushTree(rel string) []*pending {
	s := d.r.sess.Load()
	if s == nil || !d.primary() {
		d.storeMark(mark{kind: markCks, key: d.key(rel)})
		return nil
	}
	w := &reint{r: d.r, s: s, mode: modeFull, zone: int64(d.r.cfg.ZoneSize)}
	buf := make([]byte, w.zone)
	var ps []*pending
	root := d.local(rel)
	filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		crel := rel + strings.TrimPrefix(p, root)
		if !d.filt.replicated(crel, de.IsDir()) {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		e, err := statEntry(p, de.Name())
		if err != nil {
			return nil
		}
		ps = append(ps, s.send(createMsg(d, crel, e), mark{kind: markCks, key: d.key(crel)}, false))
		for k, v := range e.Xattrs {
			s.send(&msg{typ: opSetxattr, dir: uint8(d.idx), path: crel, name: k, data: v}, mark{}, false)
		}
		if e.isReg() {
			f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return nil
			}
			defer f.Close()
			for z := int64(0); z*w.zone < e.Size; z++ {
				if _, err := w.copyZone(d, crel, f, e.Ino, z, buf, true); err != nil {
					break
				}
			}
			w.finishFile(d, crel, f, e.Ino, true)
		}
		return nil
	})
	if e, err := statEntry(root, ""); err == nil && e.isDir() {
		ps = append(ps, s.send(metaMsg(d, rel, e, vMode|vUID|vGID|vAtime|vMtime), mark{}, false))
	}
	return ps
}

// repair resends a range whose local operation failed after it was sent,
// so that the secondary holds what the primary holds. The caller holds the
// range lock.
func (d *rdir) repair(rel string, ino uint64, off, n int64) {
	s := d.r.sess.Load()
	d.ns.RLock()
	defer d.ns.RUnlock()
	if s == nil {
		d.storeMark(mark{kind: markRange, key: d.key(rel), off: off, n: n})
		return
	}
	f, err := os.OpenFile(d.local(rel), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return
	}
	defer f.Close()
	var st syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) != nil || st.Ino != ino {
		return
	}
	end := min(off+n, st.Size)
	buf := make([]byte, min(int64(8<<20), max(end-off, 0)))
	for o := off; o < end; o += int64(len(buf)) {
		k := min(int64(len(buf)), end-o)
		segs := segments(int(f.Fd()), o, k)
		data := buf[:0]
		for _, sg := range segs {
			b := buf[len(data) : len(data)+int(sg[1])]
			f.ReadAt(b, sg[0])
			data = buf[:len(data)+int(sg[1])]
		}
		s.send(&msg{typ: opZone, dir: uint8(d.idx), path: rel, off: o, n: k, iov: [][]byte{encodeSegs(segs), data}}, mark{kind: markRange, key: d.key(rel), off: o, n: k}, false).wait()
	}
	m := &msg{typ: opSetattr, dir: uint8(d.idx), path: rel, n: st.Size, valid: vSize}
	s.send(m, mark{kind: markRange, key: d.key(rel), off: 0, n: -1}, false).wait()
}

// ResyncOptions say what a resynchronisation copies. The zero value lets
// the primary choose from both nodes' synchronisation state: the zones
// the bitmaps name, or the differing zones of changed files, or
// everything the first time. Full wins over Since, Since over External.
type ResyncOptions struct {
	// Full copies everything (fullsync, rfssync full).
	Full bool
	// Since (secondforce -d) copies whole the files modified on the
	// primary at or after it; the other files both nodes have are left as
	// they are. The tree itself (missing and extra entries, owners,
	// modes) is aligned as in the other modes.
	Since time.Time
	// External (rfssync external: the secondary holds a restored backup)
	// compares every file both nodes have zone by zone, without the
	// size and date shortcut, and copies the differing zones.
	External string
}

// claim is what this node says of its copy when it asks to be
// resynchronised.
func (r *Replica) claim(o ResyncOptions) claim {
	st := r.st.get()
	clean := r.wasClean.Load() && !st.Inconsistent &&
		(st.Track.Epoch != st.Epoch || (st.Track.empty() && !st.Track.Untrusted))
	host, _ := os.Hostname()
	c := claim{Epoch: st.Epoch, LastSync: st.LastSync, Clean: clean, Full: o.Full, Zone: int64(r.cfg.ZoneSize), Dirs: len(r.dirs), Node: host}
	switch {
	case o.Full:
	case !o.Since.IsZero():
		c.Since = o.Since.UnixNano()
	default:
		c.External = o.External
	}
	return c
}

func (r *Replica) connect(ctx context.Context, peer, purpose string, o ResyncOptions) (*applier, *welcome, error) {
	dl := net.Dialer{Timeout: 10 * time.Second}
	c, err := dl.DialContext(ctx, "tcp", peer)
	if err != nil {
		return nil, nil, fmt.Errorf("rfs: module %s: connecting to the primary at %s: %w", r.cfg.Module, peer, err)
	}
	conn, w, err := clientHandshake(c, &r.cfg, purpose, r.claim(o))
	if err != nil {
		c.Close()
		return nil, w, err
	}
	a, err := newApplier(r, conn, w.Mode)
	if err != nil {
		conn.Close()
		return nil, w, err
	}
	return a, w, nil
}

// Resync, on the secondary, connects to the primary (peer: its flow lan
// address and the replication port) and has it reintegrate this node's
// copy while the application keeps running there. It returns when the
// end-of-reintegration message is applied: the copy is then up to date,
// and the stream goes on with the live writes until SetRole, Unmount or a
// PrimaryLost event. o says what to copy. Cancelling ctx abandons the
// reintegration.
func (r *Replica) Resync(ctx context.Context, peer string, o ResyncOptions) error {
	if r.Role() != Secondary {
		return fmt.Errorf("rfs: module %s: resynchronisation needs the secondary role (now %v)", r.cfg.Module, r.Role())
	}
	a, _, err := r.connect(ctx, peer, "resync", o)
	if err != nil {
		if err.Error() == MsgAbnormalDelta {
			r.logf("reintegre", "E", "%s", MsgAbnormalDelta)
		}
		return err
	}
	if old := r.app.Swap(a); old != nil {
		old.stop()
	}
	a.start()
	select {
	case <-a.endApplied:
		return nil
	case <-a.done:
		select {
		case <-a.endApplied:
			return nil
		default:
		}
		a.ackMu.Lock()
		err := a.err
		a.ackMu.Unlock()
		return fmt.Errorf("reintegration from %s: %w", peer, err)
	case <-ctx.Done():
		a.stop()
		return ctx.Err()
	}
}

// Verify (rfsverify), on the secondary: the primary compares every
// replicated file's zone checksums and the metadata of every entry with
// this node's copy, and the differences are returned, one line each.
// Run it when nothing writes on the primary: with async="second" a
// compared zone may lag by what is still being applied.
func (r *Replica) Verify(ctx context.Context, peer string) ([]string, error) {
	a, _, err := r.connect(ctx, peer, modeVerify, ResyncOptions{})
	if err != nil {
		return nil, err
	}
	a.verify = true
	a.start()
	defer a.stop()
	select {
	case <-a.endApplied:
		a.ackMu.Lock()
		defer a.ackMu.Unlock()
		return a.report, nil
	case <-a.done:
		return nil, fmt.Errorf("verification with %s: %w", peer, a.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// DiffFile is one file a reintegration would copy.
type DiffFile struct {
	Path  string // as the application sees it
	Bytes int64  // to copy (whole file, or its dirty zones)
	Whole bool
}

// DiffReport is what rfsdiff shows.
type DiffReport struct {
	Files []DiffFile
	Bytes int64
	// Checksum: paths renamed while the secondary was away: compared by
	// checksums, at most their size copied.
	Checksum []string
	// Unusable: the bitmaps were lost (crash): the next reintegration
	// compares checksums of the files changed since the last
	// synchronisation.
	Unusable bool
}

// Diff (rfsdiff), on the primary while ALONE: what a reintegration of a
// secondary that stopped cleanly would copy, from the bitmaps.
func (r *Replica) Diff() DiffReport {
	st := r.st.get()
	rep := DiffReport{Unusable: st.Track.Untrusted}
	zone := int64(r.cfg.ZoneSize)
	for _, k := range st.Track.sortedKeys() {
		i, rel := splitKey(k)
		if i >= len(r.dirs) {
			continue
		}
		var fst syscall.Stat_t
		if syscall.Lstat(r.dirs[i].local(rel), &fst) != nil {
			continue
		}
		f := st.Track.Files[k]
		df := DiffFile{Path: filepath.Join(r.dirs[i].dir, rel), Whole: f.Whole}
		if f.Whole {
			df.Bytes = fst.Size
		} else {
			for _, z := range f.zones() {
				df.Bytes += max(0, min(zone, fst.Size-z*zone))
			}
		}
		rep.Files = append(rep.Files, df)
		rep.Bytes += df.Bytes
	}
	for _, k := range st.Track.Cks {
		i, rel := splitKey(k)
		if i < len(r.dirs) {
			rep.Checksum = append(rep.Checksum, filepath.Join(r.dirs[i].dir, rel))
		}
	}
	return rep
}

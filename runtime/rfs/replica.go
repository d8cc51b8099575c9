package rfs

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Role of the node for the replicated directories.
type Role int32

const (
	// Stopped: not mounted.
	Stopped Role = iota
	// Primary: the mount is read-write and every change is replicated.
	Primary
	// Secondary: the mount is read-only (EROFS); the copy is updated by
	// the primary's stream, applied to the backing directory.
	Secondary
)

func (r Role) String() string {
	switch r {
	case Primary:
		return "primary"
	case Secondary:
		return "secondary"
	}
	return "stopped"
}

// Event is something the module process must know: see the types below.
type Event interface{ event() }

// SecondaryLost (primary): the secondary was dropped (no acknowledgement
// within locktimeout, connection lost, an operation it could not apply).
// The application goes on; changes are tracked for its return. The module
// goes ALONE.
type SecondaryLost struct{ Reason string }

// PrimaryLost (secondary): the primary's stream ended. Everything received
// was applied first, unless Incomplete: an operation could not be applied
// here, or a reintegration was in progress; this copy then misses changes
// the primary may have acknowledged.
type PrimaryLost struct {
	Reason     string
	Incomplete bool
}

// ReintegrationStarted: a secondary connected; Mode is "bitmap",
// "checksum" or "full".
type ReintegrationStarted struct{ Mode string }

// Progress of a reintegration: bytes copied and to copy (the total grows
// while the tree is compared).
type Progress struct{ Copied, Total int64 }

// ReintegrationDone: the secondary is up to date (OK), or not.
type ReintegrationDone struct {
	OK     bool
	Err    error
	Copied int64
}

// Degraded (primary): a replicated directory cannot be served any more
// (the FUSE server stopped). SafeKit's answer is stopstart.
type Degraded struct{ Err error }

func (SecondaryLost) event()        {}
func (PrimaryLost) event()          {}
func (ReintegrationStarted) event() {}
func (Progress) event()             {}
func (ReintegrationDone) event()    {}
func (Degraded) event()             {}

// Stats are counters for the rfs.* resources.
type Stats struct {
	// Writes counts WRITE requests the mount served: it proves writes go
	// through this daemon (not kernel passthrough).
	Writes int64
	// RepBytes and ReiBytes: bytes sent by live replication and by
	// reintegration; RepBW and ReiBW their rate over the last 3 s (KB/s).
	RepBytes, ReiBytes int64
	RepBW, ReiBW       int64
	// Copied and Total of the reintegration in progress or last done.
	Copied, Total int64
	// Connected: a secondary (on the primary) or primary (on the
	// secondary) is attached; UpToDate: the reintegration ended.
	Connected, UpToDate bool
}

type counters struct {
	writes, repBytes, reiBytes atomic.Int64
	copied, total              atomic.Int64
	bwMu                       sync.Mutex
	bwAt                       time.Time
	bwRep, bwRei               int64
	repBW, reiBW               int64
}

// Replica owns the replicated directories of one module on this node: the
// mounts, the stream to or from the peer, the dirty tracking.
type Replica struct {
	cfg    Config
	st     *store
	dirs   []*rdir
	role   atomic.Int32
	events chan Event
	stats  counters

	sess atomic.Pointer[session] // primary: the stream to the secondary

	app atomic.Pointer[applier] // secondary: the stream from the primary
	// wasClean: the last run stopped cleanly and nothing changed since, or
	// a reintegration ended since.
	wasClean atomic.Bool

	mu     sync.Mutex // Mount, SetRole, Unmount, Listen, Close
	ln     net.Listener
	wg     sync.WaitGroup
	closed bool
}

// rdir is one replicated directory.
type rdir struct {
	r       *Replica
	idx     int
	dir     string // where the application sees it
	backing string // where the content is
	filt    *filter
	// ns orders namespace changes against path computations (fs.go).
	ns    sync.RWMutex
	locks *rangeLocks
	kills sync.Map // WRITEs asking to clear suid/sgid, by request

	bfd      *os.File // the backing directory, opened before mounting over it
	root     *node
	server   *fuse.Server
	stopping atomic.Bool
}

// Open prepares the replicated directories of a module; it mounts
// nothing.
func Open(cfg Config) (*Replica, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	st, err := openStore(cfg.StateDir, cfg.ZoneSize)
	if err != nil {
		return nil, err
	}
	r := &Replica{cfg: cfg, st: st, events: make(chan Event, 1024)}
	for i, d := range cfg.Dirs {
		f, _ := newFilter(d)
		dir := filepath.Clean(d.Dir)
		r.dirs = append(r.dirs, &rdir{r: r, idx: i, dir: dir, backing: Backing(dir, cfg.Suffix), filt: f, locks: newRangeLocks()})
	}
	if len(cfg.Key) == 0 {
		cfg.Log("rfs", "W", "no cluster key: the replication stream is not authenticated")
	}
	return r, nil
}

// Events delivers what the module process must act on. It is buffered;
// when nobody reads, Progress events are the first dropped.
func (r *Replica) Events() <-chan Event { return r.events }

func (r *Replica) emit(e Event) {
	select {
	case r.events <- e:
	default:
		if _, ok := e.(Progress); !ok {
			// Make room for what matters.
			select {
			case <-r.events:
			default:
			}
			select {
			case r.events <- e:
			default:
			}
		}
	}
}

func (r *Replica) logf(origin, level, format string, args ...any) {
	r.cfg.Log(origin, level, fmt.Sprintf(format, args...))
}

// Role is the current role.
func (r *Replica) Role() Role { return Role(r.role.Load()) }

// Stats returns the counters.
func (r *Replica) Stats() Stats {
	c := &r.stats
	c.bwMu.Lock()
	now := time.Now()
	rep, rei := c.repBytes.Load(), c.reiBytes.Load()
	if dt := now.Sub(c.bwAt); dt >= 3*time.Second || c.bwAt.IsZero() {
		if !c.bwAt.IsZero() {
			c.repBW = (rep - c.bwRep) * int64(time.Second) / int64(dt) / 1024
			c.reiBW = (rei - c.bwRei) * int64(time.Second) / int64(dt) / 1024
		}
		c.bwAt, c.bwRep, c.bwRei = now, rep, rei
	}
	s := Stats{Writes: c.writes.Load(), RepBytes: rep, ReiBytes: rei, RepBW: c.repBW, ReiBW: c.reiBW,
		Copied: c.copied.Load(), Total: c.total.Load()}
	c.bwMu.Unlock()
	if ses := r.sess.Load(); ses != nil {
		s.Connected, s.UpToDate = true, ses.inSync.Load()
	}
	if a := r.app.Load(); a != nil {
		s.Connected, s.UpToDate = true, a.synced.Load()
	}
	return s
}

func (d *rdir) primary() bool { return d.r.Role() == Primary }

func (d *rdir) local(rel string) string {
	if rel == "" {
		return d.backing
	}
	return d.backing + "/" + rel
}

func (d *rdir) key(rel string) string { return key(d.idx, rel) }

func (d *rdir) rootInode() *fs.Inode { return d.root.EmbeddedInode() }

func (d *rdir) storeMark(m mark) { d.r.st.mark(m) }

// send replicates m, or records it in the bitmaps when no secondary is
// attached (or it was just dropped).
func (d *rdir) send(m *msg, mk mark) *pending {
	m.dir = uint8(d.idx)
	if s := d.r.sess.Load(); s != nil {
		if p := s.send(m, mk, false); p != nil {
			return p
		}
	}
	d.r.st.mark(mk)
	return nil
}

// reint notes, during a reintegration, an entry whose name changed: the
// walk may have missed it, it is compared again at the end.
func (d *rdir) reint(rel string) {
	if s := d.r.sess.Load(); s != nil && !s.inSync.Load() {
		s.revisit(d.idx, rel)
	}
}

// Mount mounts every replicated directory over its symlink, read-write
// (Primary) or read-only (Secondary).
func (r *Replica) Mount(role Role) error {
	if role != Primary && role != Secondary {
		return fmt.Errorf("rfs mount: role %v: want primary or secondary", role)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Role() != Stopped {
		return fmt.Errorf("rfs: module %s: already mounted as %v", r.cfg.Module, r.Role())
	}
	for _, d := range r.cfg.Dirs {
		for _, t := range d.ToCheck {
			p := filepath.Join(Backing(d.Dir, r.cfg.Suffix), t)
			if _, err := os.Lstat(p); err != nil {
				return fmt.Errorf("<tocheck path=%q> of %s: %s does not exist (is its file system mounted?): replication does not start", t, d.Dir, p)
			}
		}
	}
	st := r.st.get()
	modified := false
	if st.Clean && st.CleanAt > 0 {
		modified = r.modifiedSince(st.CleanAt)
		if modified {
			r.logf("rfs", "W", "replicated files were changed while the module was stopped: the next reintegration compares checksums")
		}
	}
	r.wasClean.Store(st.Clean && !modified)
	for i, d := range r.dirs {
		if err := d.mount(); err != nil {
			for _, m := range r.dirs[:i] {
				m.unmount()
			}
			return err
		}
	}
	r.role.Store(int32(role))
	err := r.st.update(func(s *state) {
		if !r.wasClean.Load() && s.Track.Epoch != "" {
			s.Track.Untrusted = true
		}
		s.Clean = false
		if role == Primary {
			ensureTracking(s)
		}
	})
	return err
}

// ensureTracking starts the bitmaps of a node that becomes primary,
// relative to its last synchronisation.
func ensureTracking(s *state) {
	if s.Track.Epoch != s.Epoch || s.Epoch == "" {
		s.Track = track{Epoch: s.Epoch}
	}
}

// SetRole switches between primary and secondary without unmounting.
// Leaving Primary ends the stream to the secondary once what was sent is
// applied (bounded by locktimeout); leaving Secondary applies what was
// received, then ends the stream from the primary.
func (r *Replica) SetRole(role Role) error {
	if role != Primary && role != Secondary {
		return fmt.Errorf("rfs: role %v: want primary or secondary", role)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.Role()
	if cur == Stopped {
		return fmt.Errorf("rfs: module %s is not mounted", r.cfg.Module)
	}
	if cur == role {
		return nil
	}
	if role == Secondary {
		r.role.Store(int32(Secondary))
		if s := r.sess.Load(); s != nil {
			s.closeGracefully("the primary becomes secondary")
		}
		return nil
	}
	if a := r.app.Swap(nil); a != nil {
		a.stop()
	}
	err := r.st.update(ensureTracking)
	r.role.Store(int32(Primary))
	return err
}

// Unmount ends the streams, stops the processes that still use the
// directories, unmounts them and puts the symlinks back.
func (r *Replica) Unmount() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unmountLocked()
}

func (r *Replica) unmountLocked() error {
	if r.Role() == Stopped {
		return nil
	}
	if s := r.sess.Load(); s != nil {
		s.closeGracefully("module stop")
	}
	if a := r.app.Swap(nil); a != nil {
		a.stop()
	}
	r.role.Store(int32(Secondary)) // no new writes while processes are stopped
	var errs []error
	for _, d := range r.dirs {
		if err := d.unmount(); err != nil {
			errs = append(errs, err)
		}
	}
	r.role.Store(int32(Stopped))
	for _, d := range r.dirs {
		syncDir(d.backing)
	}
	if len(errs) == 0 {
		errs = append(errs, r.st.update(func(s *state) {
			s.Clean, s.CleanAt = true, time.Now().UnixNano()
		}))
	}
	return errors.Join(errs...)
}

// Close unmounts and stops listening.
func (r *Replica) Close() error {
	r.mu.Lock()
	r.closed = true
	ln := r.ln
	r.ln = nil
	r.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	err := r.Unmount()
	r.wg.Wait()
	return err
}

func syncDir(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	unix.Syncfs(fd)
	unix.Close(fd)
}

// modifiedSince tells whether an entry of a backing directory changed
// after t (unix ns): the module was stopped, the directory was a symlink
// and nothing tracked the change.
func (r *Replica) modifiedSince(t int64) bool {
	found := errors.New("found")
	for _, d := range r.dirs {
		err := filepath.WalkDir(d.backing, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			var st syscall.Stat_t
			if syscall.Lstat(p, &st) == nil && st.Ctim.Nano() > t && p != d.backing {
				return found
			}
			return nil
		})
		if err == found {
			return true
		}
	}
	return false
}

// mount puts the FUSE mount over the directory.
func (d *rdir) mount() error {
	cleanStale(d.dir)
	fi, err := os.Lstat(d.dir)
	switch {
	case err == nil && fi.Mode()&os.ModeSymlink != 0:
		if err := os.Remove(d.dir); err != nil {
			return fmt.Errorf("replicated directory %s: removing its symlink: %w", d.dir, err)
		}
	case err == nil && fi.IsDir():
		if mountedOurs(d.dir, d.backing) {
			return fmt.Errorf("replicated directory %s is already mounted by another process: stop it first", d.dir)
		}
		// An empty directory left by an interrupted start.
		if err := os.Remove(d.dir); err != nil {
			return fmt.Errorf("replicated directory %s is a directory, not the symlink to %s: is the module configured? (%w)", d.dir, d.backing, err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return fmt.Errorf("replicated directory %s: %v: run safekit config for this module", d.dir, err)
	}
	var bst syscall.Stat_t
	if err := syscall.Stat(d.backing, &bst); err != nil {
		os.Symlink(d.backing, d.dir)
		return fmt.Errorf("replicated directory %s: its content %s: %w: run safekit config for this module", d.dir, d.backing, err)
	}
	if err := os.Mkdir(d.dir, os.FileMode(bst.Mode&0o777)); err != nil {
		os.Symlink(d.backing, d.dir)
		return fmt.Errorf("replicated directory %s: %w", d.dir, err)
	}
	os.Chown(d.dir, int(bst.Uid), int(bst.Gid))
	fail := func(err error) error {
		if d.bfd != nil {
			d.bfd.Close()
			d.bfd = nil
		}
		os.Remove(d.dir)
		os.Symlink(d.backing, d.dir)
		return fmt.Errorf("replicated directory %s: mount: %w", d.dir, err)
	}
	// The backing directory is opened first and reached through its
	// descriptor, so that nothing resolves the path we mount over.
	bfd, err := os.OpenFile(d.backing, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return fail(err)
	}
	d.bfd = bfd
	lroot := &fs.LoopbackRoot{Path: fmt.Sprintf("/proc/self/fd/%d", bfd.Fd()), Dev: uint64(bst.Dev)}
	ln := &fs.LoopbackNode{RootData: lroot}
	d.root = &node{LoopbackNode: ln, d: d}
	lroot.RootNode = d.root
	sec := time.Second
	opts := &fs.Options{
		EntryTimeout:    &sec,
		AttrTimeout:     &sec,
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			DirectMountStrict: true,
			AllowOther:        true,
			FsName:            d.backing,
			Name:              "safekit",
			MaxWrite:          1 << 20,
			EnableLocks:       true,
			// Kernel permission checks: this daemon runs as root.
			Options: append([]string{"default_permissions"}, d.r.cfg.MountOptions...),
			// Without HANDLE_KILLPRIV_V2 every write costs a GETXATTR
			// round trip; with it, this daemon clears suid/sgid.
			ExtraCapabilities: fuse.CAP_ASYNC_DIO | fuse.CAP_HANDLE_KILLPRIV_V2,
			// Passthrough would let the kernel write the backing file
			// without us: nothing would be replicated.
			DisabledCapabilities: fuse.CAP_PASSTHROUGH | fuse.CAP_WRITEBACK_CACHE,
		},
	}
	raw := &rawFS{RawFileSystem: fs.NewNodeFS(d.root, opts), d: d}
	srv, err := fuse.NewServer(raw, d.dir, &opts.MountOptions)
	if err != nil {
		return fail(err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return fail(err)
	}
	d.server = srv
	d.stopping.Store(false)
	go func() {
		// The server ends only at our unmount, or when the kernel
		// aborted the connection: then the directory is unusable.
		srv.Wait()
		if !d.stopping.Load() {
			d.r.logf("rfs", "E", "the replicated directory %s stopped being served", d.dir)
			d.r.emit(Degraded{Err: fmt.Errorf("replicated directory %s: FUSE server ended", d.dir)})
		}
	}()
	return nil
}

// unmount stops what uses the directory, unmounts it and restores the
// symlink.
func (d *rdir) unmount() error {
	if d.server == nil {
		return nil
	}
	d.stopping.Store(true)
	stopUsers(d.dir, d.r.logf)
	err := d.server.Unmount()
	if err != nil {
		d.r.logf("rfs", "W", "unmount %s: %v: detaching it", d.dir, err)
		if err := unix.Unmount(d.dir, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("replicated directory %s: unmount: %w", d.dir, err)
		}
	}
	d.server.Wait()
	d.server = nil
	d.root = nil
	if d.bfd != nil {
		d.bfd.Close()
		d.bfd = nil
	}
	if err := os.Remove(d.dir); err != nil {
		return fmt.Errorf("replicated directory %s: after unmount: %w", d.dir, err)
	}
	if err := os.Symlink(d.backing, d.dir); err != nil {
		return fmt.Errorf("replicated directory %s: restoring its symlink: %w", d.dir, err)
	}
	return nil
}

// cleanStale removes a mount left by a process that died (ENOTCONN). A
// stat may still be answered from the kernel's attribute cache: opening
// the directory asks the (dead) server.
func cleanStale(dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		return
	}
	if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
		unix.Unmount(dir, unix.MNT_DETACH)
	}
}

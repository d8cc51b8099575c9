package rfs

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/safe"
)

// DefaultSuffix is what a replicated directory's real content is renamed
// with at configuration (<rfs mountoversuffix>).
const DefaultSuffix = "_For_SafeKit_Replication"

// Defaults of the <rfs> attributes this package uses (User's Guide §13.7).
const (
	DefaultLockTimeout = 100 * time.Second
	DefaultSendTimeout = 30 * time.Second
	DefaultReiTimeout  = 150 * time.Second
	DefaultNbRei       = 6
	DefaultZoneSize    = 8 << 20
)

// Port is the replication TCP port of module id: 5600+(id-1)*4.
func Port(id int) int { return 5600 + (id-1)*4 }

// Config is what a Replica needs; the zero value of a field means its
// default.
type Config struct {
	// Module is the module name, used in messages.
	Module string
	// ID is the module id; the peer must present the same.
	ID int
	// Dirs are the <replicated> directories.
	Dirs []safe.Replicated
	// Suffix renames each directory's real content; default DefaultSuffix.
	Suffix string
	// Async is "second" (default: the secondary acknowledges on receipt and
	// applies in order) or "none" (it acknowledges after applying, and an
	// fsync after its own fdatasync).
	Async string
	// LockTimeout: a replicated operation not acknowledged within it drops
	// the secondary (the primary goes on alone). Default 100s.
	LockTimeout time.Duration
	// SendTimeout bounds one send to the secondary. Default 30s.
	SendTimeout time.Duration
	// ReiTimeout bounds one reintegration request (a directory listing, the
	// checksums of a file). Default 150s.
	ReiTimeout time.Duration
	// NbRei is the number of parallel reintegration readers. Default 6.
	NbRei int
	// NbRemConn is accepted for compatibility; one ordered stream is always
	// used (see doc.go).
	NbRemConn int
	// ReiAllowedBW caps the reintegration in KB/s; 0 = no cap.
	ReiAllowedBW int
	// ZoneSize is the dirty-tracking and reintegration zone in bytes
	// (ruzone_blocksize). Default 8 MiB.
	ZoneSize int
	// StateDir keeps the dirty bitmaps and the synchronisation state, e.g.
	// SAFEVAR/modules/AM/rfs. Required.
	StateDir string
	// Key is the cluster key that authenticates both ends; nil means none
	// (a warning is logged).
	Key []byte
	// TLS encrypts the stream (ephemeral certificates; authenticated by the
	// key bound to the TLS session).
	TLS bool
	// Log receives module log lines (origin as in the product: "rfs",
	// "reintegre", "nfsbox"; level I, W, E).
	Log func(origin, level, msg string)
	// MountOptions adds options to the FUSE mount (tests).
	MountOptions []string
}

// FromSafe builds a Config from a validated <rfs>; the caller fills
// StateDir, Key, TLS and Log.
func FromSafe(module string, id int, r *safe.RFS) Config {
	c := Config{Module: module, ID: id}
	if r == nil {
		return c
	}
	c.Dirs = r.Replicated
	c.Suffix = r.MountOverSuffix
	c.Async = r.Async
	c.LockTimeout = r.LockTimeout.D()
	c.SendTimeout = r.SendTimeout.D()
	c.ReiTimeout = r.ReiTimeout.D()
	c.NbRei = r.NbRei
	c.NbRemConn = r.NbRemConn
	c.ReiAllowedBW = r.ReiAllowedBW
	c.ZoneSize = r.RUZoneBlockSize
	return c
}

func (c *Config) setDefaults() {
	if c.Suffix == "" {
		c.Suffix = DefaultSuffix
	}
	if c.Async == "" {
		c.Async = "second"
	}
	if c.LockTimeout <= 0 {
		c.LockTimeout = DefaultLockTimeout
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = DefaultSendTimeout
	}
	if c.ReiTimeout <= 0 {
		c.ReiTimeout = DefaultReiTimeout
	}
	if c.NbRei <= 0 {
		c.NbRei = DefaultNbRei
	}
	if c.ZoneSize <= 0 {
		c.ZoneSize = DefaultZoneSize
	}
	if c.Log == nil {
		c.Log = func(string, string, string) {}
	}
}

func (c *Config) validate() error {
	var errs []string
	if c.Async != "second" && c.Async != "none" {
		errs = append(errs, fmt.Sprintf("<rfs async=%q>: want \"second\" or \"none\"", c.Async))
	}
	if c.ZoneSize%4096 != 0 {
		errs = append(errs, fmt.Sprintf("<rfs ruzone_blocksize=%d>: want a multiple of 4096", c.ZoneSize))
	}
	if c.StateDir == "" {
		errs = append(errs, "rfs: no state directory (Config.StateDir)")
	}
	if len(c.Dirs) == 0 {
		errs = append(errs, "rfs: no <replicated> directory")
	}
	for _, d := range c.Dirs {
		if _, err := newFilter(d); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// filter says which entries of one replicated directory are replicated.
type filter struct {
	paths []string         // excluded relative paths (and what is below)
	excl  []*regexp.Regexp // regexpath: excluded when matching
	only  []*regexp.Regexp // regexpath="!...": only matching entries
}

func newFilter(d safe.Replicated) (*filter, error) {
	f := &filter{}
	for _, n := range d.NotReplicated {
		switch {
		case n.Path != "":
			p := filepath.Clean(n.Path)
			if filepath.IsAbs(p) || p == ".." || strings.HasPrefix(p, "../") {
				return nil, fmt.Errorf("<replicated dir=%q>: <notreplicated path=%q> must be relative to the directory", d.Dir, n.Path)
			}
			f.paths = append(f.paths, p)
		case n.RegexPath != "":
			expr, only := n.RegexPath, false
			if strings.HasPrefix(expr, "!") {
				expr, only = expr[1:], true
			}
			re, err := regexp.CompilePOSIX(expr)
			if err != nil {
				return nil, fmt.Errorf("<replicated dir=%q>: <notreplicated regexpath=%q>: %v", d.Dir, n.RegexPath, err)
			}
			if only {
				f.only = append(f.only, re)
			} else {
				f.excl = append(f.excl, re)
			}
		}
	}
	return f, nil
}

// replicated tells whether the entry at rel (relative to the replicated
// directory, "" for the directory itself) is replicated. Regular
// expressions are matched against the relative path. The "!" form selects
// the non-directory entries to replicate: directories are always
// replicated under it, so that the selected files have a place to live.
func (f *filter) replicated(rel string, isDir bool) bool {
	if rel == "" || rel == "." {
		return true
	}
	for _, p := range f.paths {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return false
		}
	}
	for _, re := range f.excl {
		if re.MatchString(rel) {
			return false
		}
	}
	// An excluded directory excludes what is below it.
	if i := strings.LastIndexByte(rel, '/'); i > 0 {
		for _, re := range f.excl {
			for dir := rel[:i]; ; {
				if re.MatchString(dir) {
					return false
				}
				j := strings.LastIndexByte(dir, '/')
				if j < 0 {
					break
				}
				dir = dir[:j]
			}
		}
	}
	if len(f.only) > 0 && !isDir {
		for _, re := range f.only {
			if re.MatchString(rel) {
				return true
			}
		}
		return false
	}
	return true
}

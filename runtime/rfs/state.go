package rfs

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// state is what a node remembers about its replicated data, in
// StateDir/state.json. Both roles keep the same record.
type state struct {
	// Epoch names the last completed synchronisation of the pair; both
	// nodes record the same value at the end of a reintegration. "" means
	// this node never synchronised.
	Epoch string `json:"epoch"`
	// LastSync is the synctimestamp (unix ns): set at the end of a
	// reintegration and refreshed while the pair is in sync.
	LastSync int64 `json:"last_sync"`
	// Clean: the last run ended with a clean unmount, everything flushed.
	// It is false on disk while the directories are mounted, so a crash
	// leaves it false.
	Clean bool `json:"clean"`
	// CleanAt is when the last clean unmount happened (unix ns): entries
	// changed after it were changed while the module was stopped.
	CleanAt int64 `json:"clean_at"`
	// Inconsistent: this node's copy is being rebuilt by a reintegration
	// that is not bitmap-based, or an operation failed to apply: until a
	// reintegration ends, it is not a state the primary had.
	Inconsistent bool `json:"inconsistent"`

	// Track is what this node changed since the epoch that its peer does
	// not have (kept while primary).
	Track track `json:"track"`
}

// track holds the dirty-zone bitmaps of the primary.
type track struct {
	// Epoch is the synchronisation the marks are relative to.
	Epoch string `json:"epoch"`
	// Untrusted: marks were lost (the process crashed while tracking): the
	// bitmaps cannot be used and a checksum comparison is needed.
	Untrusted bool `json:"untrusted"`
	// Files: per file ("dir index/relative path"), the zones written.
	Files map[string]*dirtyFile `json:"files,omitempty"`
	// Cks: entries (and what is below) whose content on the peer is
	// unknown (renamed while the peer was away): compared by checksums.
	Cks []string `json:"cks,omitempty"`
}

type dirtyFile struct {
	// Whole: the file is new since the epoch, copied in full.
	Whole bool     `json:"whole,omitempty"`
	Zones []uint64 `json:"zones,omitempty"` // bitset
}

func (t *track) empty() bool { return len(t.Files) == 0 && len(t.Cks) == 0 }

func newEpoch() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// key names an entry in the tracking maps.
func key(dir int, rel string) string { return strconv.Itoa(dir) + "/" + rel }

func splitKey(k string) (int, string) {
	i := strings.IndexByte(k, '/')
	d, _ := strconv.Atoi(k[:i])
	return d, k[i+1:]
}

// under tells whether key k is p or below it.
func under(k, p string) bool {
	if strings.HasSuffix(p, "/") {
		return strings.HasPrefix(k, p)
	}
	return k == p || strings.HasPrefix(k, p+"/")
}

// store guards the state and writes it.
type store struct {
	path string
	zone int64
	mu   sync.Mutex
	st   state
}

func openStore(dir string, zone int) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("rfs state directory %s: %w", dir, err)
	}
	s := &store{path: filepath.Join(dir, "state.json"), zone: int64(zone)}
	b, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.st.Clean = true
	case err != nil:
		return nil, fmt.Errorf("rfs state %s: %w", s.path, err)
	default:
		if err := json.Unmarshal(b, &s.st); err != nil {
			// A torn state is an unclean one: the bitmaps are not used.
			s.st = state{Epoch: "", Clean: false}
		}
	}
	return s, nil
}

// save writes the state atomically; the caller holds mu.
func (s *store) save() error {
	b, err := json.Marshal(&s.st)
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("rfs state %s: %w", tmp, err)
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		return fmt.Errorf("rfs state %s: %w", s.path, err)
	}
	return nil
}

func (s *store) update(fn func(st *state)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.st)
	return s.save()
}

func (s *store) get() state {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Track = s.st.Track.clone()
	return st
}

func (t track) clone() track {
	c := track{Epoch: t.Epoch, Untrusted: t.Untrusted, Cks: append([]string(nil), t.Cks...)}
	if t.Files != nil {
		c.Files = make(map[string]*dirtyFile, len(t.Files))
		for k, f := range t.Files {
			c.Files[k] = &dirtyFile{Whole: f.Whole, Zones: append([]uint64(nil), f.Zones...)}
		}
	}
	return c
}

// mark records a change the peer does not have (n < 0: to the end of the
// file, recorded as the whole file).
func (s *store) mark(m mark) {
	if m.key == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &s.st.Track
	switch m.kind {
	case markRange:
		if t.Files == nil {
			t.Files = map[string]*dirtyFile{}
		}
		f := t.Files[m.key]
		if f == nil {
			f = &dirtyFile{}
			t.Files[m.key] = f
		}
		if f.Whole {
			return
		}
		if m.n < 0 {
			// To the end of the file (collapse, insert): the whole file.
			f.Whole, f.Zones = true, nil
			return
		}
		if m.n == 0 {
			return
		}
		first, last := m.off/s.zone, (m.off+m.n-1)/s.zone
		for z := first; z <= last; z++ {
			w := int(z / 64)
			for len(f.Zones) <= w {
				f.Zones = append(f.Zones, 0)
			}
			f.Zones[w] |= 1 << (z % 64)
		}
	case markWhole:
		if t.Files == nil {
			t.Files = map[string]*dirtyFile{}
		}
		t.Files[m.key] = &dirtyFile{Whole: true}
	case markCks:
		for k := range t.Files {
			if under(k, m.key) {
				delete(t.Files, k)
			}
		}
		for _, c := range t.Cks {
			if under(m.key, c) {
				return
			}
		}
		t.Cks = append(t.Cks, m.key)
	case markGone:
		for k := range t.Files {
			if under(k, m.key) {
				delete(t.Files, k)
			}
		}
	}
}

// zonesOf lists the dirty zones of a file (nil, true: whole file).
func (f *dirtyFile) zones() []int64 {
	var z []int64
	for w, word := range f.Zones {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			z = append(z, int64(w*64+b))
			word &^= 1 << b
		}
	}
	return z
}

// needsCks tells whether k is at or below an entry renamed while the peer
// was away.
func (t *track) needsCks(k string) bool {
	for _, c := range t.Cks {
		if under(k, c) {
			return true
		}
	}
	return false
}

func (t *track) sortedKeys() []string {
	ks := make([]string, 0, len(t.Files))
	for k := range t.Files {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// markKind says what a replicated operation changed, for the bitmaps.
type markKind uint8

const (
	markNone  markKind = iota
	markRange          // bytes of a file
	markWhole          // a new file
	markCks            // a renamed entry: compare by checksums
	markGone           // a removed entry: forget its marks
)

type mark struct {
	kind markKind
	key  string
	off  int64
	n    int64
}

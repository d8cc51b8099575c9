package modlog

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Options tunes a Store. The zero value is what the daemon uses.
type Options struct {
	// MaxEntries is how many entries the log keeps; older ones are pruned,
	// a little at a time, so the file holds between MaxEntries and
	// MaxEntries plus 1% (at most 1000) entries. Default 100000.
	MaxEntries int
	// NoSync skips fsync on append: a crash may lose the last entries or
	// corrupt the file. For tests and benchmarks only.
	NoSync bool
}

// DefaultMaxEntries is Options.MaxEntries when unset.
const DefaultMaxEntries = 100000

const (
	// lockTimeout bounds the wait for the file lock that bbolt takes on
	// open, so that opening the log of a module whose process holds it
	// fails instead of hanging.
	lockTimeout = 5 * time.Second
	// batchDelay is how long a group commit waits for more appends before
	// it starts (bbolt's default is 10ms). An append that finds no other in
	// flight does not wait at all, see Append; under concurrency the appends
	// that queue up while a commit is being fsync'd share the next one.
	batchDelay = time.Millisecond
	// maxPruneEvery is the largest number of appends between two prunes.
	maxPruneEvery = 1000
)

var (
	bucketAll  = []byte("entries") // every entry, by Seq
	bucketMain = []byte("main")    // copies of the main entries, so that the non-verbose reads skip the others
)

// Store is the log of one module. It is safe for concurrent use.
type Store struct {
	path       string
	db         *bolt.DB
	maxEntries uint64
	pruneEvery uint64
	inflight   atomic.Int64 // appends in progress

	mu      sync.Mutex       // guards the fan-out below
	nextPub uint64           // Seq of the next entry to hand to subscribers
	early   map[uint64]Entry // committed entries whose predecessors are not yet published
	subs    map[*Sub]struct{}
	closed  bool
}

// Open opens (or creates) the log at path. Only one process may have it
// open at a time: Open fails after a few seconds if another one holds it.
func Open(path string, opts Options) (*Store, error) {
	maxEntries := opts.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      lockTimeout,
		NoSync:       opts.NoSync,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("module log %s: %w", path, err)
	}
	db.MaxBatchDelay = batchDelay
	var last uint64
	err = db.Update(func(tx *bolt.Tx) error {
		all, err := tx.CreateBucketIfNotExists(bucketAll)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketMain); err != nil {
			return err
		}
		last = all.Sequence()
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("module log %s: %w", path, err)
	}
	return &Store{
		path:       path,
		db:         db,
		maxEntries: uint64(maxEntries),
		pruneEvery: uint64(min(maxPruneEvery, max(1, maxEntries/100))),
		nextPub:    last + 1,
		early:      make(map[uint64]Entry),
		subs:       make(map[*Sub]struct{}),
	}, nil
}

// Close ends the subscriptions and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	for sub := range s.subs {
		delete(s.subs, sub)
		close(sub.c)
	}
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("module log %s: close: %w", s.path, err)
	}
	return nil
}

// Append writes e durably and returns it with its Seq (and Time, when e
// had none). Concurrent appends are committed together.
func (s *Store) Append(e Entry) (Entry, error) {
	if !validLevel(e.Level) {
		return Entry{}, fmt.Errorf("module log: level %q is not one of %s", e.Level, Levels)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	// bbolt may run fn more than once (when another append of the same
	// batch fails); each run starts again from e.
	var out Entry
	fn := func(tx *bolt.Tx) error {
		out = e
		return s.put(tx, &out)
	}
	// Batch waits batchDelay for company; alone, commit at once.
	var err error
	if s.inflight.Add(1) == 1 {
		err = s.db.Update(fn)
	} else {
		err = s.db.Batch(fn)
	}
	s.inflight.Add(-1)
	if err != nil {
		return Entry{}, fmt.Errorf("module log %s: append: %w", s.path, err)
	}
	s.publish(out)
	return out, nil
}

// put stores e under the bucket's next sequence number and prunes now and
// then, in the caller's transaction.
func (s *Store) put(tx *bolt.Tx, e *Entry) error {
	all := tx.Bucket(bucketAll)
	seq, err := all.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	k, v := key(seq), e.marshal()
	if err := all.Put(k, v); err != nil {
		return err
	}
	main := tx.Bucket(bucketMain)
	if Main(e.Level) {
		if err := main.Put(k, v); err != nil {
			return err
		}
	}
	if seq%s.pruneEvery == 0 && seq > s.maxEntries {
		if err := prune(all, seq-s.maxEntries); err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		if err := prune(main, seq-s.maxEntries); err != nil {
			return fmt.Errorf("prune: %w", err)
		}
	}
	return nil
}

// prune deletes the entries up to Seq upTo.
func prune(b *bolt.Bucket, upTo uint64) error {
	c := b.Cursor()
	// A fresh First after each Delete: Next after Delete can skip a key.
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Last returns the last n entries (only the main ones unless verbose),
// oldest first.
func (s *Store) Last(n int, verbose bool) ([]Entry, error) {
	out := make([]Entry, 0, min(max(n, 0), 1024))
	if n <= 0 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := bucket(tx, verbose).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			e, err := unmarshal(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("module log %s: %w", s.path, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// After returns the entries with a Seq greater than seq (only the main
// ones unless verbose), oldest first, at most limit of them (no limit when
// limit <= 0). A reader that lost entries resumes with the Seq of the last
// one it has.
func (s *Store) After(seq uint64, verbose bool, limit int) ([]Entry, error) {
	out := []Entry{}
	if seq == math.MaxUint64 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := bucket(tx, verbose).Cursor()
		for k, v := c.Seek(key(seq + 1)); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			e, err := unmarshal(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("module log %s: %w", s.path, err)
	}
	return out, nil
}

func bucket(tx *bolt.Tx, verbose bool) *bolt.Bucket {
	if verbose {
		return tx.Bucket(bucketAll)
	}
	return tx.Bucket(bucketMain)
}

// key is the big-endian Seq, so that bbolt's byte order is Seq order.
func key(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

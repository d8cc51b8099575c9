package cmdlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Kinds of commands.
const (
	KindSafekit = "safekit" // a `safekit` command line, from a user, a script or the console
	KindCluster = "cluster" // an action of the daemon itself
)

// Ops of records besides level letters.
const (
	OpStart = "START"
	OpEnd   = "END"
)

// Record is one line of the command log.
type Record struct {
	// Time is when the record was written.
	Time time.Time
	// Kind is KindSafekit or KindCluster; empty on END records.
	Kind string
	// Module is the module the command is about, if any; empty on END
	// records.
	Module string
	// ID is the entry id of the command's START record, which its END
	// record repeats; 0 for notes.
	ID uint64
	// Op is OpStart, OpEnd, or the level letter of a note (I, E...).
	Op string
	// Text is the arguments of START, the exit code of END, or the note.
	Text string
}

// timeLayout is the product's timestamp in text exports.
const timeLayout = "2006-01-02 15:04:05.000000"

// String renders the record as `safekit cmdlog` does, in local time:
//
//	| 2021-07-27 14:37:33.205122 |   safekit |   mirror |  6883 | START | config -m mirror
//	| 2021-07-27 14:37:34.193280 |           |          |  6883 |   END | 0
func (r Record) String() string {
	return fmt.Sprintf("| %s | %9s | %8s | %5d | %5s | %s",
		r.Time.Local().Format(timeLayout), r.Kind, r.Module, r.ID, r.Op, r.Text)
}

const (
	// MaxRecords is how many records the log keeps; it is pruned every
	// pruneEvery appends, so it holds at most MaxRecords+pruneEvery-1.
	MaxRecords = 50000
	pruneEvery = 500
	// lockTimeout bounds the wait for the file lock that bbolt takes on
	// open: a second daemon fails instead of hanging.
	lockTimeout = 5 * time.Second
	// batchDelay is how long a group commit waits for more appends (bbolt's
	// default is 10ms); an append alone does not wait, see add.
	batchDelay = time.Millisecond
)

var bucketRecords = []byte("records")

// Store is the command log of a node. It is safe for concurrent use.
type Store struct {
	path       string
	db         *bolt.DB
	maxRecords uint64
	inflight   atomic.Int64 // appends in progress
}

// Open opens (or creates) the command log at path.
func Open(path string) (*Store, error) {
	return open(path, MaxRecords, false)
}

// open lets tests prune sooner and skip fsync.
func open(path string, maxRecords uint64, noSync bool) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      lockTimeout,
		NoSync:       noSync,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("command log %s: %w", path, err)
	}
	db.MaxBatchDelay = batchDelay
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketRecords)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("command log %s: %w", path, err)
	}
	return &Store{path: path, db: db, maxRecords: maxRecords}, nil
}

// Close closes the file.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("command log %s: close: %w", s.path, err)
	}
	return nil
}

// Start records the start of a command and returns its entry id, to be
// given to End. args are the command line after `safekit`.
func (s *Store) Start(kind, module string, args []string) (uint64, error) {
	r, err := s.add(Record{Kind: kind, Module: module, Op: OpStart, Text: strings.Join(args, " ")})
	if err != nil {
		return 0, fmt.Errorf("command log: start of %q: %w", r.Text, err)
	}
	return r.ID, nil
}

// End records the exit code of the command that Start numbered id.
func (s *Store) End(id uint64, code int) error {
	if _, err := s.add(Record{ID: id, Op: OpEnd, Text: strconv.Itoa(code)}); err != nil {
		return fmt.Errorf("command log: end of %d: %w", id, err)
	}
	return nil
}

// Note records a line that is not a command, such as
// `cluster | mirror | 0 | I | update cluster state`.
func (s *Store) Note(kind, module, level, text string) error {
	if len(level) != 1 {
		return fmt.Errorf("command log: note level %q is not one letter", level)
	}
	if _, err := s.add(Record{Kind: kind, Module: module, Op: level, Text: text}); err != nil {
		return fmt.Errorf("command log: note %q: %w", text, err)
	}
	return nil
}

// add writes r durably; a START gets its own key as ID.
func (s *Store) add(r Record) (Record, error) {
	r.Time = time.Now()
	// bbolt may run fn more than once; each run starts again from r.
	var out Record
	fn := func(tx *bolt.Tx) error {
		out = r
		b := tx.Bucket(bucketRecords)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if out.Op == OpStart {
			out.ID = seq
		}
		if err := b.Put(key(seq), out.marshal()); err != nil {
			return err
		}
		if seq%pruneEvery == 0 && seq > s.maxRecords {
			if err := prune(b, seq-s.maxRecords); err != nil {
				return fmt.Errorf("prune: %w", err)
			}
		}
		return nil
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
		return r, fmt.Errorf("%s: %w", s.path, err)
	}
	return out, nil
}

// prune deletes the records up to key upTo.
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

// Last returns the last n records, oldest first.
func (s *Store) Last(n int) ([]Record, error) {
	out := make([]Record, 0, min(max(n, 0), 1024))
	if n <= 0 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			r, err := unmarshal(v)
			if err != nil {
				return fmt.Errorf("record %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("command log %s: %w", s.path, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// key is the big-endian sequence number, so that bbolt's byte order is
// the order of writing.
func key(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

// encodingV1 is the first byte of a stored record; another layout would get
// another number so that old files stay readable.
const encodingV1 = 1

// marshal encodes a record: version, varint unix nanoseconds, uvarint ID,
// uvarint-prefixed kind, module and op, then the text.
func (r *Record) marshal() []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+3+len(r.Kind)+len(r.Module)+len(r.Op)+len(r.Text))
	b = append(b, encodingV1)
	b = binary.AppendVarint(b, r.Time.UnixNano())
	b = binary.AppendUvarint(b, r.ID)
	for _, s := range []string{r.Kind, r.Module, r.Op} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return append(b, r.Text...)
}

var errCorrupt = errors.New("corrupt record")

// unmarshal decodes a value written by marshal, copying out of b.
func unmarshal(b []byte) (Record, error) {
	if len(b) == 0 || b[0] != encodingV1 {
		return Record{}, fmt.Errorf("%w (unknown encoding)", errCorrupt)
	}
	b = b[1:]
	ns, n := binary.Varint(b)
	if n <= 0 {
		return Record{}, fmt.Errorf("%w (time)", errCorrupt)
	}
	b = b[n:]
	id, n := binary.Uvarint(b)
	if n <= 0 {
		return Record{}, fmt.Errorf("%w (id)", errCorrupt)
	}
	b = b[n:]
	var fields [3]string
	for i := range fields {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return Record{}, fmt.Errorf("%w (field %d)", errCorrupt, i+1)
		}
		fields[i], b = string(b[n:n+int(l)]), b[n+int(l):]
	}
	return Record{Time: time.Unix(0, ns), ID: id, Kind: fields[0], Module: fields[1], Op: fields[2], Text: string(b)}, nil
}

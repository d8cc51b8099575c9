package modlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Entry is one line of the module log.
type Entry struct {
	// Seq is the entry's position in the log, assigned by Append: 1, 2, 3...
	// It never goes back, even when old entries are pruned.
	Seq uint64 `json:"seq"`
	// Time is when the line was logged; Append sets it when zero.
	Time time.Time `json:"time"`
	// Origin is the component that logged the line, as the product names
	// it: heart, heartplug, userplug, customscript, errd, rfsplug...
	Origin string `json:"origin"`
	// Level is one letter: U, E, C, S (main messages) or I, W, D (verbose).
	Level string `json:"level"`
	// Msg is the message, in the product's words ("Local state ALONE Ready").
	Msg string `json:"msg"`
}

// Levels lists the level letters, main ones first.
const Levels = "UECSIWD"

// timeLayout is the product's timestamp in text exports.
const timeLayout = "2006-01-02 15:04:05.000000"

// Main reports whether a line of this level is a main message: shown by the
// non-verbose log and copied to syslog.
func Main(level string) bool {
	switch level {
	case "U", "E", "C", "S":
		return true
	}
	return false
}

// validLevel reports whether level is one of Levels.
func validLevel(level string) bool {
	return len(level) == 1 && strings.Contains(Levels, level)
}

// String renders the line as in the product's text exports, in local time:
//
//	| 2026-11-25 20:42:25.123456 |        heart | E | Local state ALONE Ready
func (e Entry) String() string {
	return fmt.Sprintf("| %s | %12s | %s | %s", e.Time.Local().Format(timeLayout), e.Origin, e.Level, e.Msg)
}

// encodingV1 is the first byte of a stored entry; another layout would get
// another number so that old files stay readable.
const encodingV1 = 1

// marshal encodes everything but Seq, which is the key:
// version, varint unix nanoseconds, uvarint-prefixed origin and level, msg.
func (e *Entry) marshal() []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+2+len(e.Origin)+len(e.Level)+len(e.Msg))
	b = append(b, encodingV1)
	b = binary.AppendVarint(b, e.Time.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(e.Origin)))
	b = append(b, e.Origin...)
	b = binary.AppendUvarint(b, uint64(len(e.Level)))
	b = append(b, e.Level...)
	return append(b, e.Msg...)
}

var errCorrupt = errors.New("corrupt entry")

// unmarshal decodes a value written by marshal. It copies out of b, which
// bbolt only lends for the length of a transaction.
func unmarshal(seq uint64, b []byte) (Entry, error) {
	if len(b) == 0 || b[0] != encodingV1 {
		return Entry{}, fmt.Errorf("entry %d: %w (unknown encoding)", seq, errCorrupt)
	}
	b = b[1:]
	ns, n := binary.Varint(b)
	if n <= 0 {
		return Entry{}, fmt.Errorf("entry %d: %w (time)", seq, errCorrupt)
	}
	b = b[n:]
	origin, b, ok := cutString(b)
	if !ok {
		return Entry{}, fmt.Errorf("entry %d: %w (origin)", seq, errCorrupt)
	}
	level, b, ok := cutString(b)
	if !ok {
		return Entry{}, fmt.Errorf("entry %d: %w (level)", seq, errCorrupt)
	}
	return Entry{Seq: seq, Time: time.Unix(0, ns), Origin: origin, Level: level, Msg: string(b)}, nil
}

// cutString reads a uvarint-prefixed string from the front of b.
func cutString(b []byte) (string, []byte, bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return "", nil, false
	}
	b = b[n:]
	return string(b[:l]), b[l:], true
}

package farm

import (
	"io"
	"log"
	"strings"
)

// newLogger routes memberlist's log to logf: memberlist writes to stderr
// unless given a logger, and the daemon's stderr is nobody's log.
func newLogger(logf func(level, format string, args ...any)) *log.Logger {
	if logf == nil {
		return log.New(io.Discard, "", 0)
	}
	return log.New(logWriter(logf), "", 0)
}

// logWriter receives one memberlist line per Write ("[WARN] memberlist:
// ..."): the bracketed level becomes "W" (WARN, ERR, ERROR) or "D" (DEBUG,
// INFO, anything else) and is cut off.
type logWriter func(level, format string, args ...any)

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	level := "D"
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if tag, msg, ok := strings.Cut(rest, "] "); ok {
			switch tag {
			case "WARN", "ERR", "ERROR":
				level = "W"
			}
			line = msg
		}
	}
	w(level, "%s", line)
	return len(p), nil
}

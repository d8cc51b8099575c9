package modlog

import (
	"fmt"
	"io"

	"github.com/sirupsen/logrus"
)

// Field names of the logrus entries that NewLogger's hook reads.
const (
	FieldOrigin = "origin" // the Entry's Origin
	FieldLevel  = "level"  // the Entry's Level letter
)

// defaultOrigin is the Origin of a logrus entry without an "origin" field.
const defaultOrigin = "log"

// NewLogger returns a logger that writes to the module log s: each entry
// becomes an Entry with the fields "origin" and "level" (see Log), and main
// messages also go to sys as `<module> | <origin> | <msg>`. logrus's own
// output is discarded.
func NewLogger(module string, s *Store, sys Syslog) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetFormatter(discardFormatter{})
	l.SetLevel(logrus.TraceLevel)
	l.AddHook(&hook{module: module, store: s, sys: sys})
	return l
}

// Log writes one line to the module log behind l (see NewLogger):
//
//	modlog.Log(log, "heart", "E", "Local state %s %s", state, readiness)
func Log(l *logrus.Logger, origin, level, format string, args ...any) {
	l.WithFields(logrus.Fields{FieldOrigin: origin, FieldLevel: level}).
		Log(logrusLevel(level), fmt.Sprintf(format, args...))
}

// logrusLevel maps a SafeKit letter to the nearest logrus level, for hooks
// other than ours.
func logrusLevel(level string) logrus.Level {
	switch level {
	case "C":
		return logrus.ErrorLevel
	case "W":
		return logrus.WarnLevel
	case "D":
		return logrus.DebugLevel
	}
	return logrus.InfoLevel
}

// letter maps a logrus level to a SafeKit letter, for entries logged
// without the "level" field.
func letter(l logrus.Level) string {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel:
		return "C"
	case logrus.WarnLevel:
		return "W"
	case logrus.InfoLevel:
		return "I"
	}
	return "D"
}

// hook appends logrus entries to the store.
type hook struct {
	module string
	store  *Store
	sys    Syslog
}

func (h *hook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *hook) Fire(le *logrus.Entry) error {
	e := Entry{Time: le.Time, Origin: defaultOrigin, Level: letter(le.Level), Msg: le.Message}
	if v, ok := le.Data[FieldOrigin].(string); ok {
		e.Origin = v
	}
	if v, ok := le.Data[FieldLevel].(string); ok {
		e.Level = v
	}
	// Syslog first: it does not block, and gets the line even if the
	// store fails.
	if Main(e.Level) {
		h.sys.Send(e.Level, h.module+" | "+e.Origin+" | "+e.Msg)
	}
	_, err := h.store.Append(e)
	return err
}

// discardFormatter skips formatting the output that is discarded anyway.
type discardFormatter struct{}

func (discardFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

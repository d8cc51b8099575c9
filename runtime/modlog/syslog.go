package modlog

import (
	"log/syslog"
	"os"
)

// Syslog receives the main messages of module logs (§6.2 of the reference:
// `journalctl -t safekit`). Send must not block.
type Syslog interface {
	// Send passes one message; level is its SafeKit letter (U, E, C or S).
	Send(level, msg string)
	// Close releases the connection.
	Close() error
}

// NopSyslog drops everything: for hosts without syslog and for tests.
type NopSyslog struct{}

// Send implements Syslog.
func (NopSyslog) Send(string, string) {}

// Close implements Syslog.
func (NopSyslog) Close() error { return nil }

const (
	// syslogTag is the identifier journald shows (`journalctl -t safekit`).
	syslogTag = "safekit"
	// syslogSocket is where the local syslog daemon (or journald) listens.
	syslogSocket = "/dev/log"
	// syslogQueue is how many messages wait for a slow syslog before new
	// ones are dropped.
	syslogQueue = 256
)

// DialSyslog connects to the local syslog with the tag "safekit". Without
// /dev/log (a container, a test machine) or when the connection fails it
// returns NopSyslog: the module log itself is what matters.
func DialSyslog() Syslog {
	return dialSyslog(syslogSocket)
}

func dialSyslog(socket string) Syslog {
	if _, err := os.Stat(socket); err != nil {
		return NopSyslog{}
	}
	// journald's and rsyslog's /dev/log are datagram sockets; some
	// syslog daemons listen on a stream one.
	w, err := syslog.Dial("unixgram", socket, syslog.LOG_DAEMON|syslog.LOG_NOTICE, syslogTag)
	if err != nil {
		w, err = syslog.Dial("unix", socket, syslog.LOG_DAEMON|syslog.LOG_NOTICE, syslogTag)
	}
	if err != nil {
		return NopSyslog{}
	}
	s := &syslogWriter{w: w, q: make(chan syslogMsg, syslogQueue), done: make(chan struct{})}
	go s.run()
	return s
}

type syslogMsg struct{ level, msg string }

// syslogWriter writes from its own goroutine: a write to /dev/log blocks
// when the syslog daemon does not read, and an append must not.
type syslogWriter struct {
	w    *syslog.Writer
	q    chan syslogMsg
	done chan struct{}
}

// Send queues the message, or drops it when the queue is full.
func (s *syslogWriter) Send(level, msg string) {
	select {
	case s.q <- syslogMsg{level, msg}:
	default:
	}
}

func (s *syslogWriter) run() {
	defer close(s.done)
	for m := range s.q {
		// Errors are ignored: log/syslog reconnects on the next write, and
		// there is nowhere better to report them.
		switch m.level {
		case "C":
			_ = s.w.Err(m.msg)
		default:
			_ = s.w.Notice(m.msg)
		}
	}
}

// Close writes what is queued and disconnects. Send must not be called
// after Close.
func (s *syslogWriter) Close() error {
	close(s.q)
	<-s.done
	return s.w.Close()
}

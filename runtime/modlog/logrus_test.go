package modlog

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSyslog records what it is sent.
type fakeSyslog struct {
	mu   sync.Mutex
	msgs []string
}

func (f *fakeSyslog) Send(level, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, level+" "+msg)
}

func (f *fakeSyslog) Close() error { return nil }

func TestLoggerHook(t *testing.T) {
	s := openStore(t, Options{NoSync: true})
	sys := &fakeSyslog{}
	l := NewLogger("mirror", s, sys)

	Log(l, "heartplug", "U", "Action %s called by %s", "prim", "admin")
	Log(l, "heart", "E", "Local state %s %s", "ALONE", "Ready")
	Log(l, "errd", "I", "Process %s running", "sqlservr")
	Log(l, "pingcheck", "C", "Resource ping.testR2 set to down by pingcheck")
	Log(l, "userplug", "S", "Script start_prim > userlog_x.ulog")
	Log(l, "rfsplug", "W", "slow")
	Log(l, "rfsplug", "D", "debug %d", 42)
	l.Warn("without fields")

	es, err := s.Last(100, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Origin+" "+e.Level+" "+e.Msg)
	}
	want := []string{
		"heartplug U Action prim called by admin",
		"heart E Local state ALONE Ready",
		"errd I Process sqlservr running",
		"pingcheck C Resource ping.testR2 set to down by pingcheck",
		"userplug S Script start_prim > userlog_x.ulog",
		"rfsplug W slow",
		"rfsplug D debug 42",
		"log W without fields",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("store:\n got %q\nwant %q", got, want)
	}
	if es[0].Time.IsZero() || time.Since(es[0].Time) > time.Minute {
		t.Errorf("entry time %v is not logrus's", es[0].Time)
	}

	wantSys := []string{
		"U mirror | heartplug | Action prim called by admin",
		"E mirror | heart | Local state ALONE Ready",
		"C mirror | pingcheck | Resource ping.testR2 set to down by pingcheck",
		"S mirror | userplug | Script start_prim > userlog_x.ulog",
	}
	if strings.Join(sys.msgs, "\n") != strings.Join(wantSys, "\n") {
		t.Errorf("syslog:\n got %q\nwant %q", sys.msgs, wantSys)
	}
}

func TestDialSyslogWithoutSocket(t *testing.T) {
	if _, ok := dialSyslog(filepath.Join(t.TempDir(), "no-log")).(NopSyslog); !ok {
		t.Error("dialSyslog without a socket is not a NopSyslog")
	}
}

// listenSyslog stands for /dev/log: a datagram socket in a temporary
// directory.
func listenSyslog(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return path, ln
}

func TestSyslogWriter(t *testing.T) {
	path, ln := listenSyslog(t)
	sys := dialSyslog(path)
	if _, ok := sys.(*syslogWriter); !ok {
		t.Fatalf("dialSyslog(%s) = %T", path, sys)
	}
	defer sys.Close()
	sys.Send("E", "mirror | heart | Local state ALONE Ready")
	sys.Send("C", "mirror | errd | Process x not running")

	if err := ln.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// <facility*8+severity>timestamp safekit[pid]: msg
	for _, want := range []struct{ pri, msg string }{
		{"<29>", "mirror | heart | Local state ALONE Ready"}, // daemon.notice
		{"<27>", "mirror | errd | Process x not running"},    // daemon.err
	} {
		buf := make([]byte, 1024)
		n, err := ln.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.TrimSuffix(string(buf[:n]), "\n")
		tag := fmt.Sprintf(" safekit[%d]: ", os.Getpid())
		if !strings.HasPrefix(got, want.pri) || !strings.HasSuffix(got, tag+want.msg) {
			t.Errorf("syslog datagram %q, want %s...%s%s", got, want.pri, tag, want.msg)
		}
	}
}

// A syslog that does not read must not block Send, and therefore not the
// module log.
func TestSyslogWriterNeverBlocks(t *testing.T) {
	path, ln := listenSyslog(t)
	sys := dialSyslog(path)
	store := openStore(t, Options{NoSync: true})
	l := NewLogger("mirror", store, sys)
	const n = 10 * syslogQueue
	for i := range n {
		Log(l, "heart", "E", "message %d", i)
	}
	if es, err := store.Last(n, false); err != nil || len(es) != n {
		t.Fatalf("store has %d entries (%v), want %d", len(es), err, n)
	}
	// Once syslog is gone, the blocked write fails and Close returns; its
	// error (connection refused) does not matter here.
	ln.Close()
	_ = sys.Close()
}

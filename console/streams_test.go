package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/safekit-oss/safekit/runtime/modlog"
)

// readJSON reads the next websocket message into v within 10 s.
func readJSON(t *testing.T, conn *websocket.Conn, v any) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := conn.ReadJSON(v); err != nil {
		t.Fatalf("websocket: %v", err)
	}
}

func appendLog(t *testing.T, m *fakeModule, level, msg string) modlog.Entry {
	t.Helper()
	e, err := m.store.Append(modlog.Entry{Origin: "test", Level: level, Msg: msg})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// nextEntry reads log messages up to the next entry.
func nextEntry(t *testing.T, conn *websocket.Conn) modlog.Entry {
	t.Helper()
	for {
		var m LogMessage
		readJSON(t, conn, &m)
		if m.Entry != nil {
			return *m.Entry
		}
	}
}

func TestWSLog(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	m := n.addModule("m1", lightModule, true)
	for i := range 3 {
		appendLog(t, m, "E", fmt.Sprintf("before %d", i))
	}
	mon := n.login("mon")
	conn, _, err := mon.dial("/api/v1.0/modules/m1/ws/log?n=2", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, want := range []string{"before 1", "before 2"} {
		if e := nextEntry(t, conn); e.Msg != want {
			t.Fatalf("backlog: %+v, want %s", e, want)
		}
	}
	appendLog(t, m, "I", "verbose only")
	last := appendLog(t, m, "E", "main")
	if e := nextEntry(t, conn); e.Msg != "main" || e.Seq != last.Seq {
		t.Errorf("live: %+v (the verbose message is not in the main log)", e)
	}
	// A reader that lost its connection resumes after the last seq it has.
	resumed, _, err := mon.dial("/api/v1.0/modules/m1/ws/log?verbose=1&after=3", "")
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	for _, want := range []string{"verbose only", "main"} {
		if e := nextEntry(t, resumed); e.Msg != want {
			t.Errorf("resumed: %+v, want %s", e, want)
		}
	}
}

// TestWSLogWithoutProcess: the log of a module that has no process (not
// configured) is read again every second, and said so.
func TestWSLogWithoutProcess(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	m := n.addModule("m2", lightModule, false)
	appendLog(t, m, "E", "config script said")
	conn, _, err := n.login("mon").dial("/api/v1.0/modules/m2/ws/log?n=10", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var first LogMessage
	readJSON(t, conn, &first)
	if !strings.Contains(first.Error, "module m2 is not configured") {
		t.Errorf("first message: %+v", first)
	}
	if e := nextEntry(t, conn); e.Msg != "config script said" {
		t.Errorf("backlog: %+v", e)
	}
	appendLog(t, m, "E", "later")
	if e := nextEntry(t, conn); e.Msg != "later" {
		t.Errorf("polled: %+v", e)
	}
}

// TestWSSlowReaderMemory: a websocket reader that never reads does not make
// the daemon hold the log: while 10,000 lines of 1 KB are written, the heap
// stays within a bound, the messages that do not fit are dropped and
// counted, and once the reader reads again it learns what it missed (every
// seq is either received or counted).
func TestWSSlowReaderMemory(t *testing.T) {
	const lines, lineSize = 10000, 1024
	// memoryBound is what the daemon may hold for a stuck reader: its queue
	// of messages and the buffers, with room for the test's own garbage.
	const memoryBound = 4 << 20
	n := newTestNode(t, "node1", nodeOptions{})
	m := n.addModule("m1", lightModule, true)
	mon := n.login("mon")
	// From the first seq, so that every line is either received or counted.
	conn, _, err := mon.dial("/api/v1.0/modules/m1/ws/log?after=0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base, peak := heap(), uint64(0)
	line := strings.Repeat("x", lineSize)
	start := time.Now()
	for i := range lines {
		appendLog(t, m, "E", fmt.Sprintf("%05d %s", i, line))
		if i%1000 == 999 {
			peak = max(peak, heap())
		}
	}
	t.Logf("%d lines of %d bytes written in %s; heap %d KiB before, peak growth %d KiB (bound %d KiB)",
		lines, lineSize, time.Since(start).Round(time.Millisecond), base>>10, (peak-min(peak, base))>>10, memoryBound>>10)
	if peak > base+memoryBound {
		t.Errorf("the heap grew by %d KiB while the reader was stuck (bound %d KiB)", (peak-base)>>10, memoryBound>>10)
	}
	// The reader reads again: new lines reach it, after the count of what
	// it missed.
	got, missed := map[uint64]bool{}, uint64(0)
	var lastSeq, sent uint64
	done := make(chan error, 1)
	go func() {
		for {
			var msg LogMessage
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := conn.ReadJSON(&msg); err != nil {
				done <- &readError{fmt.Errorf("after %d messages, %d missed, last %d: %w", len(got), missed, lastSeq, err)}
				return
			}
			switch {
			case msg.Missed > 0:
				if msg.After != sent {
					done <- fmt.Errorf("missed %d after %d, but the last message received is %d", msg.Missed, msg.After, sent)
					return
				}
				missed += msg.Missed
			case msg.Entry != nil:
				got[msg.Entry.Seq] = true
				sent, lastSeq = msg.Entry.Seq, msg.Entry.Seq
				if strings.HasPrefix(msg.Entry.Msg, "end") {
					done <- nil
					return
				}
			}
		}
	}()
	for k := 0; ; k++ {
		appendLog(t, m, "E", fmt.Sprintf("end %d", k))
		select {
		case err := <-done:
			var re *readError
			if errors.As(err, &re) && time.Since(start) > writeWait {
				// A machine this slow kept the reader stuck for longer
				// than writeWait: the daemon rightly closed it.
				t.Logf("the daemon closed the stuck reader (%v)", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if missed == 0 || uint64(len(got))+missed != lastSeq {
				t.Errorf("received %d messages and %d missed, up to seq %d", len(got), missed, lastSeq)
			}
			t.Logf("received %d messages, %d dropped and counted", len(got), missed)
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readError is a websocket that ended.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

func TestWSUserlog(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", lightModule, true)
	dir := n.roots.Module("m1").UserVar()
	first := "userlog_2026-11-25T100000_start_prim.ulog"
	writeTestFile(t, filepath.Join(dir, first), "----------- start_prim\nhello\n")
	mon := n.login("mon")
	conn, _, err := mon.dial("/api/v1.0/modules/m1/ws/userlog?file="+first, "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	read := func(c *websocket.Conn) UserlogMessage {
		var m UserlogMessage
		readJSON(t, c, &m)
		return m
	}
	if m := read(conn); m.File != first {
		t.Fatalf("first message: %+v", m)
	}
	if m := read(conn); m.Data != "----------- start_prim\nhello\n" {
		t.Fatalf("content: %+v", m)
	}
	f, err := os.OpenFile(filepath.Join(dir, first), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// An é written in two halves arrives whole.
	f.Write([]byte("world \xc3"))
	if m := read(conn); m.Data != "world " {
		t.Errorf("appended: %+v", m)
	}
	f.Write([]byte("\xa9\n"))
	if m := read(conn); m.Data != "é\n" {
		t.Errorf("second half: %+v", m)
	}

	// latest: follows the newest run of a script, and the next one.
	latest, _, err := mon.dial("/api/v1.0/modules/m1/ws/userlog?file=latest:start_prim", "")
	if err != nil {
		t.Fatal(err)
	}
	defer latest.Close()
	if m := read(latest); m.File != first {
		t.Fatalf("latest: %+v", m)
	}
	for m := read(latest); !strings.HasSuffix(m.Data, "é\n"); m = read(latest) {
	}
	second := "userlog_2026-11-25T100500_start_prim.ulog"
	writeTestFile(t, filepath.Join(dir, second), "second run\n")
	if m := read(latest); m.File != second {
		t.Fatalf("next run: %+v", m)
	}
	if m := read(latest); m.Data != "second run\n" {
		t.Errorf("next run content: %+v", m)
	}

	// A name that is not a userlog is refused before the upgrade.
	if _, resp, err := mon.dial("/api/v1.0/modules/m1/ws/userlog?file=../../etc/passwd", ""); err == nil || resp.StatusCode != 400 {
		t.Errorf("bad name: %v", err)
	}
}

func TestEventsLocal(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	m := n.addModule("m1", lightModule, true)
	n.addModule("m2", lightModule, false)
	conn, _, err := n.login("mon").dial("/api/v1.0/ws/events-local", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	seen := map[string]Event{}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			var e Event
			readJSON(t, conn, &e)
			seen[e.Module] = e
		}
	}
	waitFor("both modules", func() bool {
		e1, e2 := seen["m1"], seen["m2"]
		return e1.Snapshot != nil && e1.Snapshot.State == "ALONE" && e1.Node == "node1" && e2.Module == "m2" && e2.Snapshot == nil && !e2.Configured
	})
	m.set("STOP", "NotReady")
	waitFor("m1 stopped", func() bool { return seen["m1"].Snapshot.State == "STOP" })
	if err := os.RemoveAll(n.roots.Module("m2").Dir()); err != nil {
		t.Fatal(err)
	}
	waitFor("m2 removed", func() bool { return seen["m2"].Removed })
	if b, _ := json.Marshal(seen["m1"]); !strings.Contains(string(b), `"node":"node1","module":"m1","configured":true,"snapshot":{`) {
		t.Errorf("event: %s", b)
	}
}

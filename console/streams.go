package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/module"
)

// LogMessage is a message of GET .../ws/log.
type LogMessage struct {
	Entry *modlog.Entry `json:"entry,omitempty"`
	// Missed counts the messages dropped here, because the reader did not
	// keep up; After is the seq of the last message received before them:
	// GET .../log?after=After returns them.
	Missed uint64 `json:"missed,omitempty"`
	After  uint64 `json:"after,omitempty"`
	// Error says why the log is not followed live for now (the module has
	// no process); the stream goes on when it has one again.
	Error string `json:"error,omitempty"`
}

// logRetry is how long the log follower waits before it opens the log
// stream again (the module process restarted) or reads the log of a module
// without a process once more.
const logRetry = time.Second

// logLastSeq is the seq of the last message of a module log (0 when
// empty).
func (s *Server) logLastSeq(ctx context.Context, name string) (uint64, error) {
	var last []modlog.Entry
	if err := s.localGet(ctx, "/v1/modules/"+name+"/log?n=1&verbose=1", &last); err != nil {
		return 0, err
	}
	if len(last) == 0 {
		return 0, nil
	}
	return last[0].Seq, nil
}

// logAfter returns the messages of a module log after seq, at most limit.
// Seqs count every message, verbose or not: those after seq are among the
// last (last seq - seq) ones.
func (s *Server) logAfter(ctx context.Context, name string, after uint64, verbose bool, limit int) ([]modlog.Entry, error) {
	last, err := s.logLastSeq(ctx, name)
	if err != nil || last <= after {
		return []modlog.Entry{}, err
	}
	var entries []modlog.Entry
	v := map[bool]string{false: "0", true: "1"}[verbose]
	if err := s.localGet(ctx, fmt.Sprintf("/v1/modules/%s/log?n=%d&verbose=%s", name, min(last-after, maxLogAfter), v), &entries); err != nil {
		return nil, err
	}
	out := []modlog.Entry{}
	for _, e := range entries {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

// logFollower feeds a websocket with a module log.
type logFollower struct {
	s       *Server
	c       *wsConn
	name    string
	verbose bool
	// last is the seq of the last message taken (sent or dropped); known
	// once started.
	last    uint64
	started bool
	// missed counts the messages dropped since sent, the last one sent
	// before them being gapAfter.
	missed, sent, gapAfter uint64
	lastErr                string
}

func (s *Server) handleWSLog(w http.ResponseWriter, r *http.Request) {
	name, ok := moduleName(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	f := &logFollower{s: s, name: name, verbose: q.Get("verbose") == "1"}
	if v := q.Get("after"); v != "" {
		after, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("after needs the seq of a message, not %q", v))
			return
		}
		f.last, f.started = after, true
	}
	n := 0
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("n needs a number of messages, not %q", v))
			return
		}
	}
	c, ok := s.upgrade(w, r)
	if !ok {
		return
	}
	defer c.finish()
	f.c = c
	ctx, cancel := c.context()
	defer cancel()
	f.run(ctx, n)
}

// run follows the log until ctx ends: the stream of the module process,
// opened again after the last message taken when it ends, or the log read
// every logRetry while the module has no process.
func (f *logFollower) run(ctx context.Context, n int) {
	v := map[bool]string{false: "0", true: "1"}[f.verbose]
	for {
		path := fmt.Sprintf("/v1/modules/%s/log/stream?verbose=%s&n=%d", f.name, v, n)
		if f.started {
			path = fmt.Sprintf("/v1/modules/%s/log/stream?verbose=%s&after=%d", f.name, v, f.last)
		}
		resp, err := f.s.local(ctx, http.MethodGet, path)
		if err == nil {
			f.lastErr = ""
			f.read(resp.Body)
			resp.Body.Close()
		} else if ctx.Err() == nil {
			f.poll(ctx, n, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(logRetry):
		}
	}
}

// read takes the messages of a log stream until it ends.
func (f *logFollower) read(body io.Reader) {
	dec := json.NewDecoder(body)
	for {
		var se module.StreamEntry
		if err := dec.Decode(&se); err != nil {
			return
		}
		if se.Missed > 0 {
			f.drop(se.Missed)
		}
		if se.Entry != nil {
			f.take(*se.Entry)
		} else {
			// A keepalive: a good time to tell of a gap.
			f.flushMissed()
		}
	}
}

// poll reads the log of a module that has no process.
func (f *logFollower) poll(ctx context.Context, n int, why error) {
	if msg := why.Error(); msg != f.lastErr {
		f.lastErr = msg
		f.c.trySend(LogMessage{Error: fmt.Sprintf("the log of module %s is not followed live: %s", f.name, msg)})
	}
	if !f.started {
		var backlog []modlog.Entry
		v := map[bool]string{false: "0", true: "1"}[f.verbose]
		if err := f.s.localGet(ctx, fmt.Sprintf("/v1/modules/%s/log?n=%d&verbose=%s", f.name, n, v), &backlog); err != nil {
			return
		}
		last, err := f.s.logLastSeq(ctx, f.name)
		if err != nil {
			return
		}
		for _, e := range backlog {
			f.take(e)
		}
		f.last, f.started = last, true
		return
	}
	entries, err := f.s.logAfter(ctx, f.name, f.last, f.verbose, maxLogAfter)
	if err != nil {
		return
	}
	for _, e := range entries {
		f.take(e)
	}
}

// take hands a message to the websocket, or drops it when the queue is
// full: the daemon never waits for a reader.
func (f *logFollower) take(e modlog.Entry) {
	if f.started && e.Seq <= f.last {
		return
	}
	f.last, f.started = e.Seq, true
	if !f.flushMissed() || !f.c.trySend(LogMessage{Entry: &e}) {
		f.drop(1)
		return
	}
	f.sent = e.Seq
}

// drop counts dropped messages.
func (f *logFollower) drop(n uint64) {
	if f.missed == 0 {
		f.gapAfter = f.sent
	}
	f.missed += n
}

// flushMissed tells the reader of the messages it missed; false when the
// queue is still full.
func (f *logFollower) flushMissed() bool {
	if f.missed == 0 {
		return true
	}
	if !f.c.trySend(LogMessage{Missed: f.missed, After: f.gapAfter}) {
		return false
	}
	f.missed = 0
	return true
}

// UserlogMessage is a message of GET .../ws/userlog: File starts a file,
// whose content follows from its start in Data messages.
type UserlogMessage struct {
	File  string `json:"file,omitempty"`
	Data  string `json:"data,omitempty"`
	Error string `json:"error,omitempty"`
}

const (
	// userlogPoll is how often a script log is looked at for new bytes.
	userlogPoll = 200 * time.Millisecond
	// userlogChunk is the most bytes of a Data message.
	userlogChunk = 32 << 10
)

func (s *Server) handleWSUserlog(w http.ResponseWriter, r *http.Request) {
	mod, ok := s.installedModule(w, r)
	if !ok {
		return
	}
	file := r.URL.Query().Get("file")
	script, latest := strings.CutPrefix(file, "latest:")
	if latest && (script == "" || strings.ContainsAny(script, "/\\")) {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("latest: needs a script name, not %q", script))
		return
	}
	if !latest {
		if _, err := userlogPath(mod, file); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
	}
	c, ok := s.upgrade(w, r)
	if !ok {
		return
	}
	defer c.finish()
	ctx, cancel := c.context()
	defer cancel()
	t := &tail{c: c, mod: mod}
	if latest {
		t.followLatest(ctx, script)
	} else {
		t.follow(ctx, file)
	}
}

// tail feeds a websocket with script logs as they grow. It waits for the
// reader: the bytes stay in the file meanwhile.
type tail struct {
	c   *wsConn
	mod layout.Module
	f   *os.File
	off int64
	buf []byte
}

func (t *tail) open(name string) bool {
	p, _ := userlogPath(t.mod, name)
	f, err := os.Open(p)
	if err != nil {
		t.c.sendWait(UserlogMessage{Error: fmt.Sprintf("cannot read %s: %v", name, err)})
		return false
	}
	if t.f != nil {
		t.f.Close()
	}
	t.f, t.off = f, 0
	return t.c.sendWait(UserlogMessage{File: name})
}

// pump sends what the file has beyond what was sent; false once the
// websocket is gone. A character cut by the end of what is written waits
// for its end.
func (t *tail) pump() (more, alive bool) {
	if t.buf == nil {
		t.buf = make([]byte, userlogChunk)
	}
	n, _ := t.f.ReadAt(t.buf, t.off)
	chunk := t.buf[:n]
	for i := len(chunk) - 1; i >= 0 && i >= len(chunk)-utf8.UTFMax; i-- {
		if utf8.RuneStart(chunk[i]) {
			if !utf8.FullRune(chunk[i:]) {
				chunk = chunk[:i]
			}
			break
		}
	}
	if len(chunk) == 0 {
		return false, true
	}
	t.off += int64(len(chunk))
	return n == len(t.buf), t.c.sendWait(UserlogMessage{Data: string(chunk)})
}

// follow sends one file, then what is appended to it.
func (t *tail) follow(ctx context.Context, name string) {
	if !t.open(name) {
		return
	}
	defer t.f.Close()
	for {
		more, alive := t.pump()
		if !alive {
			return
		}
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(userlogPoll):
		}
	}
}

// followLatest follows the newest log of a script, and the next run's when
// it starts.
func (t *tail) followLatest(ctx context.Context, script string) {
	defer func() {
		if t.f != nil {
			t.f.Close()
		}
	}()
	current := ""
	for {
		if logs, err := userlogs(t.mod); err == nil {
			for _, l := range logs {
				if l.Script == script {
					if l.Name != current {
						if !t.open(l.Name) {
							return
						}
						current = l.Name
					}
					break
				}
			}
		}
		for t.f != nil {
			more, alive := t.pump()
			if !alive {
				return
			}
			if !more {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(userlogPoll):
		}
	}
}

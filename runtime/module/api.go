package module

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/modlog"
)

// The module process answers the daemon over HTTP on a local socket. The
// daemon forwards the CLI's and the console's requests here; this process
// is the only one that touches the module's automaton and log.

// CommandRequest is POST /command.
type CommandRequest struct {
	Action string `json:"action"`
	// Arg is fullsync (prim, primforce, second) or nosync (swap).
	Arg      string `json:"arg,omitempty"`
	Identity string `json:"identity,omitempty"`
	By       string `json:"by,omitempty"`
	// Sync is the policy of rfssync.
	Sync automaton.SyncPolicy `json:"rfssync,omitzero"`
	// Since is the date of secondforce -d.
	Since time.Time `json:"since,omitzero"`
}

// ResourceRequest is POST /resource.
type ResourceRequest struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	By       string `json:"by,omitempty"`
	Identity string `json:"identity,omitempty"`
	Quiet    bool   `json:"quiet,omitempty"`
	Force    bool   `json:"force,omitempty"`
}

// SettingRequest is POST /setting.
type SettingRequest struct {
	Name string `json:"name"`
	On   bool   `json:"on"`
	By   string `json:"by,omitempty"`
}

// LoopRequest is POST /loop.
type LoopRequest struct {
	Op       string `json:"op"`
	Identity string `json:"identity,omitempty"`
}

// PrintRequest is POST /print.
type PrintRequest struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
}

// ErrorResponse is the body of a failed request.
type ErrorResponse struct {
	Error string `json:"error"`
}

// StreamEntry is one line of /log/stream: an entry, or a notice of entries
// dropped because the reader was slow.
type StreamEntry struct {
	Entry  *modlog.Entry `json:"entry,omitempty"`
	Missed uint64        `json:"missed,omitempty"`
}

// Handler returns the HTTP API of the module.
func (d *Driver) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /command", d.handleCommand)
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, d.Snapshot()) })
	mux.HandleFunc("GET /events", d.handleEvents)
	mux.HandleFunc("POST /resource", d.handleResource)
	mux.HandleFunc("POST /setting", d.handleSetting)
	mux.HandleFunc("POST /loop", d.handleLoop)
	mux.HandleFunc("GET /checkloop", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"reached": d.LoopReached()})
	})
	mux.HandleFunc("POST /print", d.handlePrint)
	mux.HandleFunc("GET /log", d.handleLog)
	mux.HandleFunc("GET /log/stream", d.handleLogStream)
	mux.HandleFunc("POST /cluster", d.handleCluster)
	mux.HandleFunc("POST /rfs/verify", d.handleVerify)
	mux.HandleFunc("GET /rfs/diff", d.handleDiff)
	d.errdRoutes(mux)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, ErrorResponse{Error: err.Error()})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("bad request: %w", err))
		return false
	}
	return true
}

// answer maps an automaton error to a status.
func answer(w http.ResponseWriter, err error, ok any) {
	var refused *automaton.Refused
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, ok)
	case errors.As(err, &refused):
		writeErr(w, http.StatusConflict, err)
	case errors.Is(err, automaton.ErrLoopLimit):
		writeJSON(w, http.StatusOK, map[string]bool{"reached": true})
	default:
		writeErr(w, http.StatusInternalServerError, err)
	}
}

func (d *Driver) handleCommand(w http.ResponseWriter, r *http.Request) {
	var req CommandRequest
	if !decode(w, r, &req) {
		return
	}
	err := d.Post(r.Context(), automaton.Command{Action: req.Action, Arg: req.Arg, Identity: req.Identity, By: req.By, Sync: req.Sync, Since: req.Since})
	answer(w, err, d.Snapshot())
}

func (d *Driver) handleResource(w http.ResponseWriter, r *http.Request) {
	var req ResourceRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Name == "" || (req.Value != "up" && req.Value != "down" && req.Value != "init" && req.Value != "unknown") {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("set needs -r resource and -v up|down (not %q)", req.Value))
		return
	}
	err := d.Post(r.Context(), automaton.SetResource{Name: req.Name, Value: req.Value, By: req.By, Identity: req.Identity, Quiet: req.Quiet, Force: req.Force})
	answer(w, err, map[string]bool{"ok": true})
}

func (d *Driver) handleSetting(w http.ResponseWriter, r *http.Request) {
	var req SettingRequest
	if !decode(w, r, &req) {
		return
	}
	switch req.Name {
	case "checker", "errd", "failover", "boot":
	default:
		writeErr(w, http.StatusBadRequest, fmt.Errorf("unknown setting %q", req.Name))
		return
	}
	err := d.Post(r.Context(), automaton.Setting{Name: req.Name, On: req.On, By: req.By})
	answer(w, err, map[string]bool{"ok": true})
}

func (d *Driver) handleLoop(w http.ResponseWriter, r *http.Request) {
	var req LoopRequest
	if !decode(w, r, &req) {
		return
	}
	err := d.Post(r.Context(), automaton.Loop{Op: req.Op, Identity: req.Identity})
	answer(w, err, map[string]bool{"reached": false})
}

func (d *Driver) handlePrint(w http.ResponseWriter, r *http.Request) {
	var req PrintRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Level) != 1 || !strings.Contains(modlog.Levels, req.Level) {
		writeErr(w, http.StatusBadRequest, fmt.Errorf("unknown log level %q (expected one of %s)", req.Level, modlog.Levels))
		return
	}
	d.Logf("userplug", req.Level, "%s", req.Msg)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (d *Driver) handleLog(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(r.URL.Query().Get("n"))
	if n <= 0 {
		n = 300
	}
	entries, err := d.store.Last(n, r.URL.Query().Get("verbose") == "1")
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, entries)
}

// handleEvents streams the module state as NDJSON, one snapshot per change.
func (d *Driver) handleEvents(w http.ResponseWriter, r *http.Request) {
	c, cancel := d.Subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	for {
		select {
		case s := <-c:
			if enc.Encode(s) != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		case <-r.Context().Done():
			return
		}
	}
}

// handleLogStream follows the log: the entries after ?after=seq (or the
// last ?n=), then each new one, as NDJSON. A slow reader gets a missed
// count instead of slowing the module down.
func (d *Driver) handleLogStream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	verbose := q.Get("verbose") == "1"
	sub := d.store.Subscribe(verbose, 1024)
	defer sub.Close()
	var backlog []modlog.Entry
	var err error
	if after, perr := strconv.ParseUint(q.Get("after"), 10, 64); perr == nil {
		backlog, err = d.store.After(after, verbose, 100000)
	} else {
		n, _ := strconv.Atoi(q.Get("n"))
		backlog, err = d.store.Last(n, verbose)
	}
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	fl, _ := w.(http.Flusher)
	var last uint64
	send := func(se StreamEntry) bool {
		if enc.Encode(se) != nil {
			return false
		}
		if fl != nil {
			fl.Flush()
		}
		return true
	}
	for i := range backlog {
		last = backlog[i].Seq
		if !send(StreamEntry{Entry: &backlog[i]}) {
			return
		}
	}
	if fl != nil {
		fl.Flush()
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case e := <-sub.C:
			if e.Seq <= last {
				continue
			}
			if n := sub.Missed(); n > 0 && !send(StreamEntry{Missed: n}) {
				return
			}
			last = e.Seq
			if !send(StreamEntry{Entry: &e}) {
				return
			}
		case <-keepalive.C:
			if !send(StreamEntry{}) {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

// idle waits until the module rests (no transition in progress).
func (d *Driver) idle(ctx context.Context) {
	c, cancel := d.Subscribe()
	defer cancel()
	for {
		select {
		case s := <-c:
			if !s.Busy {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// handleCluster applies a new cluster configuration (safekit -G): the
// heartbeats restart with the new addresses and key.
func (d *Driver) handleCluster(w http.ResponseWriter, r *http.Request) {
	if d.reloadCluster == nil {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
		return
	}
	if err := d.reloadCluster(); err != nil {
		d.Logf("heart", "E", "New cluster configuration not applied to the heartbeats: %v", err)
		writeErr(w, http.StatusConflict, err)
		return
	}
	d.Logf("heart", "I", "New cluster configuration applied to the heartbeats")
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// VerifyResponse is POST /rfs/verify.
type VerifyResponse struct {
	Differences []string `json:"differences"`
}

// handleVerify compares the secondary's copy with the primary's
// (safekit rfsverify): only on a SECOND.
func (d *Driver) handleVerify(w http.ResponseWriter, r *http.Request) {
	s := d.Snapshot()
	if d.replication == nil {
		writeErr(w, http.StatusConflict, fmt.Errorf("module %s has no file replication running", d.mod.Name))
		return
	}
	if s.State != automaton.Second || s.Ready != automaton.Ready {
		writeErr(w, http.StatusConflict, fmt.Errorf("rfsverify runs on the secondary, SECOND Ready; module %s is %s %s here", d.mod.Name, s.State, s.Ready))
		return
	}
	diffs, err := d.replication.verify(r.Context())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	d.Logf("rfsplug", "I", "rfsverify: %d difference(s)", len(diffs))
	writeJSON(w, http.StatusOK, VerifyResponse{Differences: append([]string{}, diffs...)})
}

// handleDiff reports what a resynchronisation would copy (safekit
// rfsdiff): on the primary.
func (d *Driver) handleDiff(w http.ResponseWriter, r *http.Request) {
	if d.replication == nil {
		writeErr(w, http.StatusConflict, fmt.Errorf("module %s has no file replication running", d.mod.Name))
		return
	}
	writeJSON(w, http.StatusOK, d.replication.r.Diff())
}

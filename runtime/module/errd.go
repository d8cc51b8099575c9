package module

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/errd"
	"github.com/safekit-oss/safekit/runtime/scripts"
	"github.com/safekit-oss/safekit/safe"
)

// Process monitoring (<errd>, User's Guide §13.10): the automaton says
// when a <proc> is monitored (StartErrd, StopErrd); here each monitored
// <proc> is polled by its own loop (runtime/errd), kept with the
// checkers' runs under the key proc.<name> so that a poll of a stopped
// monitoring is dropped as a checker's late result is, and each poll
// reaches the automaton as ProcPolled. Handlers run here too.

// errdProcs are the <proc>s of cfg as the automaton sees them.
func errdProcs(cfg *safe.Config) []automaton.Proc {
	if cfg.Errd == nil {
		return nil
	}
	var out []automaton.Proc
	for _, p := range cfg.Errd.Procs {
		out = append(out, automaton.Proc{Name: p.Name, Class: p.Class, Action: p.Action, Services: p.RestartServices})
	}
	return out
}

// errdStatus is what `safekit errd list` shows of the polls, shared
// between the polling loops and the API.
type errdStatus struct {
	mu sync.Mutex
	// count is the number found by the last poll of each monitored <proc>
	// (absent: not polled since its monitoring started).
	count map[string]int
	// on are the <proc>s monitored.
	on map[string]bool
}

func (s *errdStatus) set(name string, on bool, count int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == nil {
		s.count, s.on = map[string]int{}, map[string]bool{}
	}
	s.on[name] = on
	if count < 0 {
		delete(s.count, name)
	} else {
		s.count[name] = count
	}
}

func (s *errdStatus) get(name string) (on bool, count int, polled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	count, polled = s.count[name]
	return s.on[name], count, polled
}

// execErrd executes the errd actions of the automaton.
func (d *Driver) execErrd(a automaton.Action) {
	switch a := a.(type) {
	case automaton.StartErrd:
		d.startErrd(a.Proc)
	case automaton.StopErrd:
		d.stopErrd(a.Proc)
	case automaton.RunHandler:
		d.runHandler(a.Proc)
	}
}

// errdKey is the key of a <proc>'s run among the checkers' runs.
func errdKey(p automaton.Proc) automaton.Checker {
	return automaton.Checker{Class: "proc", Ident: p.Name}
}

// configProc is the <proc> of cfg named name.
func (d *Driver) configProc(name string) (safe.Proc, bool) {
	if d.cfg.Errd != nil {
		for _, p := range d.cfg.Errd.Procs {
			if p.Name == name {
				return p, true
			}
		}
	}
	return safe.Proc{}, false
}

// pollTimer is <errd polltimer>.
func (d *Driver) pollTimer() safe.Duration {
	if d.cfg.Errd != nil && d.cfg.Errd.PollTimer > 0 {
		return d.cfg.Errd.PollTimer
	}
	return safe.Duration(errd.DefaultPollTimer)
}

// startErrd starts the polling loop of a <proc> until stopErrd.
func (d *Driver) startErrd(p automaton.Proc) {
	key := errdKey(p)
	if _, ok := d.checkers[key.Resource()]; ok {
		return
	}
	sp, ok := d.configProc(p.Name)
	if !ok {
		return
	}
	w, err := errd.New(sp)
	if err != nil {
		d.Logf("errd", "C", "Monitoring of %s not started: %v", key.Resource(), err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &checkerRun{c: key, cancel: cancel, done: make(chan struct{}), origin: "errd"}
	d.checkers[key.Resource()] = run
	d.errd.set(p.Name, true, -1)
	every := d.pollTimer().D()
	d.Logf("errd", "I", "Monitoring of %s started (%s, every %s, first poll in %s)", key.Resource(), w, every, every*time.Duration(max(1, sp.StartAfter)))
	go func() {
		defer close(run.done)
		lastErr := ""
		errd.Run(ctx, every, sp.StartAfter, func(ctx context.Context) errd.Result {
			n, err := w.Count(ctx)
			return errd.Result{Count: n, Err: err}
		}, func(r errd.Result) {
			if r.Err != nil {
				if r.Err.Error() != lastErr {
					d.Logf("errd", "E", "Monitoring of %s: %v", key.Resource(), r.Err)
				}
				lastErr = r.Err.Error()
				return
			}
			lastErr = ""
			d.errd.set(p.Name, true, r.Count)
			ok, msg := errd.Verdict(sp, r.Count)
			d.sendFrom(ctx, run, automaton.ProcPolled{Name: p.Name, OK: ok, Msg: msg})
		})
	}()
}

// stopErrd stops the polling of a <proc> and waits for its loop to end.
func (d *Driver) stopErrd(p automaton.Proc) {
	key := errdKey(p)
	run := d.checkers[key.Resource()]
	if run == nil {
		return
	}
	delete(d.checkers, key.Resource())
	run.cancel()
	<-run.done
	d.errd.set(p.Name, false, -1)
	d.Logf("errd", "I", "Monitoring of %s stopped", key.Resource())
}

// runHandler runs the handler of a <proc> as the scripts run, with its
// output in a userlog file, and its arguments those of a custom checker:
// the module name and the resource (proc.<name>). It is bounded by the
// module's forcestoptimeout.
func (d *Driver) runHandler(p automaton.Proc) {
	path := p.Action
	if !filepath.IsAbs(path) {
		path = filepath.Join(d.mod.UserBin(), path)
	}
	discard, capKB := d.userlog()
	var pgid int
	spec := scripts.Spec{
		Script: filepath.Base(path), Path: path, Args: []string{d.mod.Name, p.Resource()},
		Env: scripts.Environ(d.mod, d.vars(), scripts.DaemonEnviron()), Dir: d.mod.UserBin(),
		Timeout: d.acfg.ForceStopTimeout, LogDir: d.mod.UserVar(), Discard: discard, LogCapKB: capKB, ShAsBash: d.shAsBash,
		Started: func(pg int, logFile string) {
			pgid = pg
			d.pg.add(pg, "errd handler "+p.Resource())
			if logFile != "" {
				d.Logf("userplug", "S", "Script %s > %s", filepath.Base(path), logFile)
			} else {
				d.Logf("userplug", "S", "Script %s", filepath.Base(path))
			}
		},
	}
	go func() {
		res := scripts.Run(context.Background(), spec)
		if pgid != 0 {
			d.pg.remove(pgid)
		}
		done := automaton.HandlerDone{Name: p.Name, ExitCode: res.ExitCode}
		switch {
		case res.Err != nil:
			done.Err = res.Err.Error()
		case res.TimedOut:
			done.Err = fmt.Sprintf("timed out after %s, killed", spec.Timeout)
		}
		d.events <- input{ev: done}
	}()
}

// ErrdClassRequest is POST /errd/class: safekit errd enable|disable.
type ErrdClassRequest struct {
	Class string `json:"class"`
	On    bool   `json:"on"`
	By    string `json:"by,omitempty"`
}

// ErrdProc is one <proc> as GET /errd (safekit errd list) shows it.
type ErrdProc struct {
	// Resource is proc.<name>; State its value (init, up, down).
	Resource string `json:"resource"`
	State    string `json:"state"`
	Class    string `json:"class"`
	Action   string `json:"action"`
	// What says what is watched ("processes named mysqld").
	What string `json:"what"`
	// Monitored: the window of its class is open and errd is on.
	Monitored bool `json:"monitored"`
	// Running is the number found by the last poll (a service: 1 when
	// active); -1 when not polled since its monitoring started.
	Running int `json:"running"`
	// AtLeast and AtMax are the limits (-1: none).
	AtLeast int `json:"atleast"`
	AtMax   int `json:"atmax"`
}

// ErrdList is GET /errd.
type ErrdList struct {
	// On is usersetting.errd (safekit errd on|off).
	On    bool       `json:"on"`
	Procs []ErrdProc `json:"procs"`
}

func (d *Driver) errdRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /errd/class", func(w http.ResponseWriter, r *http.Request) {
		var req ErrdClassRequest
		if !decode(w, r, &req) {
			return
		}
		if req.Class == "" {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("errd enable|disable needs a class"))
			return
		}
		err := d.Post(r.Context(), automaton.ErrdClass{Class: req.Class, On: req.On, By: req.By})
		answer(w, err, map[string]bool{"ok": true})
	})
	mux.HandleFunc("GET /errd", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, d.errdList()) })
}

func (d *Driver) errdList() ErrdList {
	s := d.Snapshot()
	out := ErrdList{On: s.Persisted.Errd, Procs: []ErrdProc{}}
	if d.cfg.Errd == nil {
		return out
	}
	values := map[string]string{}
	for _, r := range s.Resources {
		values[r[0]] = r[1]
	}
	for _, p := range d.cfg.Errd.Procs {
		ap := automaton.Proc{Name: p.Name}
		ep := ErrdProc{Resource: ap.Resource(), State: values[ap.Resource()], Class: p.Class, Action: p.Action,
			Running: -1, AtLeast: p.AtLeast, AtMax: p.AtMax}
		if w, err := errd.New(p); err == nil {
			ep.What = w.String()
		}
		on, n, polled := d.errd.get(p.Name)
		ep.Monitored = on
		if polled {
			ep.Running = n
		}
		out.Procs = append(out.Procs, ep)
	}
	return out
}

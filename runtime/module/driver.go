// Package module is the runtime of one module: the process (one per
// configured module, started and supervised by safekitd) that owns the
// module's automaton, runs its scripts and checkers, writes its log and
// answers the daemon's requests. A crash here leaves other modules alone.
package module

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/scripts"
	"github.com/safekit-oss/safekit/safe"
)

// input is an event for the loop, with where to send the command's answer.
type input struct {
	ev    automaton.Event
	reply chan error
	// from is the built-in checker run that sent it, if any.
	from *checkerRun
}

// Driver executes the automaton of one module.
type Driver struct {
	mod      layout.Module
	cfg      *safe.Config
	acfg     automaton.Config
	am       *automaton.Module
	store    *modlog.Store
	log      *logrus.Logger
	pg       *pgTracker
	shAsBash bool

	events chan input
	// Owned by the loop goroutine:
	timers   map[string]*time.Timer
	scripts  map[int]context.CancelFunc
	checkers map[string]*checkerRun
	// builtins are the built-in checkers, by resource.
	builtins map[string]builtin
	// vips runs the gratuitous ARPs of the VIPs (vip.go).
	vips vipRuntime
	// errd is what the polls of <errd> found (errd.go).
	errd errdStatus

	// snap is what readers see, updated after every step; status is what
	// the heartbeats send.
	mu     sync.Mutex
	snap   Snapshot
	subs   map[chan Snapshot]bool
	status automaton.PeerStatus

	peering     *peering
	farming     *farming
	replication *replication
	// reloadCluster restarts the heartbeats after a cluster change.
	reloadCluster func() error
}

// Snapshot is the state of a module as readers see it.
type Snapshot struct {
	Module    string              `json:"module"`
	Mode      string              `json:"mode"`
	State     automaton.State     `json:"state"`
	Ready     automaton.Readiness `json:"ready"`
	Busy      bool                `json:"busy"`
	Resources [][2]string         `json:"resources"`
	Persisted automaton.Persisted `json:"persisted"`
	// Node is this node's name; Remote the peer of a mirror module as its
	// heartbeats describe it (console and safekit state show both).
	Node   string  `json:"node,omitempty"`
	Remote *Remote `json:"remote,omitempty"`
	// Started is when the application last started in the role that
	// serves it (zero: not since the module process started); a <module>
	// checker that sees it change knows the module restarted.
	Started time.Time `json:"started,omitzero"`
	// Seq increases at every change.
	Seq uint64 `json:"seq"`
}

// Remote is the other node of a mirror module.
type Remote struct {
	Node  string `json:"node,omitempty"`
	State string `json:"state"` // UNKNOWN when no heartbeat is received
	Ready string `json:"ready"` // Unknown then
}

// checkerRun is a checker that runs: a custom checker's process and the
// channel closed to stop its supervisor, or a built-in checker's loop,
// which cancel ends and which closes done when it has.
type checkerRun struct {
	c    automaton.Checker
	proc *scripts.Proc
	stop chan struct{}

	origin string
	cancel context.CancelFunc
	done   chan struct{}
}

// NewDriver builds the driver of module m with its active configuration.
func NewDriver(m layout.Module, cfg *safe.Config, node, peer string, p automaton.Persisted, store *modlog.Store, log *logrus.Logger, shAsBash bool) *Driver {
	acfg := AutomatonConfig(m, cfg, node, peer)
	d := &Driver{
		mod: m, cfg: cfg, acfg: acfg, am: automaton.New(acfg, p), store: store, log: log,
		pg: newPGTracker(filepath.Join(m.UserVar(), "pgids")), shAsBash: shAsBash,
		events: make(chan input, 64), timers: map[string]*time.Timer{}, scripts: map[int]context.CancelFunc{},
		checkers: map[string]*checkerRun{}, builtins: map[string]builtin{}, subs: map[chan Snapshot]bool{},
	}
	for _, b := range builtinCheckers(m, cfg) {
		d.builtins[b.c.Resource()] = b
	}
	d.updateSnapshot()
	return d
}

// AutomatonConfig derives what the automaton needs from the module
// configuration and the scripts present in SAFEUSERBIN.
func AutomatonConfig(m layout.Module, cfg *safe.Config, node, peer string) automaton.Config {
	ac := automaton.Config{
		Node: node, PeerNode: peer, Failover: cfg.Service.Failover, DefaultPrim: cfg.Service.DefaultPrim,
		Witness: cfg.Check.Splitbrain != nil,
		Module:  m.Name, Mode: automaton.Mode(cfg.Service.Mode), HasRFS: cfg.RFS != nil, HasUser: cfg.User != nil,
		Scripts: map[string]bool{}, NiceStopTimeout: 300 * time.Second, ForceStopTimeout: 300 * time.Second,
		HeartbeatTimeout: 30 * time.Second, MaxLoop: cfg.Service.MaxLoop, LoopInterval: cfg.Service.LoopInterval.D(),
		Period: 5 * time.Second, HandleTime: 15 * time.Second,
	}
	if cfg.User != nil {
		ac.NiceStopTimeout, ac.ForceStopTimeout = cfg.User.NiceStopTimeout.D(), cfg.User.ForceStopTimeout.D()
	}
	if cfg.Heart != nil {
		ac.HeartbeatTimeout = 0
		for _, h := range cfg.Heart.Heartbeats {
			if h.Timeout.D() > ac.HeartbeatTimeout {
				ac.HeartbeatTimeout = h.Timeout.D()
			}
		}
		if ac.HeartbeatTimeout == 0 {
			ac.HeartbeatTimeout = cfg.Heart.Timeout.D()
		}
	}
	if cfg.Failover != nil {
		ac.Period, ac.HandleTime = cfg.Failover.Period.D(), cfg.Failover.HandleTime.D()
	}
	entries, _ := os.ReadDir(m.UserBin())
	for _, e := range entries {
		if st, err := e.Info(); err == nil && st.Mode().IsRegular() {
			ac.Scripts[e.Name()] = true
		}
	}
	for _, b := range builtinCheckers(m, cfg) {
		ac.Checkers = append(ac.Checkers, b.c)
	}
	for _, c := range cfg.Check.Custom {
		ac.Checkers = append(ac.Checkers, automaton.Checker{Class: "custom", Ident: c.Ident, When: c.When, Action: c.Action})
	}
	ac.Procs = errdProcs(cfg)
	ac.VIP = len(mirrorVIPs(cfg)) > 0
	return ac
}

// Snapshot returns the current state.
func (d *Driver) Snapshot() Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snap
}

// Subscribe returns a channel of snapshots at each change (the latest wins
// when the reader is slow) and a cancel function.
func (d *Driver) Subscribe() (<-chan Snapshot, func()) {
	c := make(chan Snapshot, 1)
	d.mu.Lock()
	d.subs[c] = true
	c <- d.snap
	d.mu.Unlock()
	return c, func() {
		d.mu.Lock()
		delete(d.subs, c)
		d.mu.Unlock()
	}
}

func (d *Driver) updateSnapshot() {
	s, r := d.am.State()
	st := d.am.Status()
	d.mu.Lock()
	if st != d.status {
		d.status = st
		// After the unlock: the farm membership reads the state back
		// through Snapshot at once.
		if d.peering != nil {
			defer d.peering.h.Kick()
		}
		if d.farming != nil {
			defer d.farming.m.Update()
		}
	}
	defer d.mu.Unlock()
	d.snap = Snapshot{Module: d.mod.Name, Mode: string(d.cfg.Service.Mode), State: s, Ready: r, Busy: d.am.Busy(),
		Resources: d.am.Resources(), Persisted: d.am.Persisted(), Node: d.acfg.Node, Started: d.am.AppStarted(), Seq: d.snap.Seq + 1}
	if d.cfg.Service.Mode == safe.ModeMirror {
		alive, ps, name := d.am.Remote()
		d.snap.Remote = &Remote{Node: name, State: "UNKNOWN", Ready: "Unknown"}
		if alive {
			d.snap.Remote.State, d.snap.Remote.Ready = string(ps.State), string(ps.Ready)
		}
	}
	for c := range d.subs {
		select {
		case <-c:
		default:
		}
		c <- d.snap
	}
}

// Post sends an event to the loop and waits for its answer.
func (d *Driver) Post(ctx context.Context, ev automaton.Event) error {
	in := input{ev: ev, reply: make(chan error, 1)}
	select {
	case d.events <- in:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-in.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// post sends an internal event without waiting; for events raised by the
// loop itself, which must not block on its own queue.
func (d *Driver) post(ev automaton.Event) {
	go func() { d.events <- input{ev: ev} }()
}

// send queues an event in order: the heartbeats and the farm membership
// call it from their own goroutine, so that the automaton sees their events
// in the order they happened.
func (d *Driver) send(ev automaton.Event) {
	d.events <- input{ev: ev}
}

// LoopReached answers `safekit checkloop`.
func (d *Driver) LoopReached() bool {
	p := d.Snapshot().Persisted
	return d.acfg.LoopInterval > 0 && p.LoopCount >= d.acfg.MaxLoop && p.LoopCount > 0 &&
		time.Since(p.LoopStart) <= d.acfg.LoopInterval
}

// Logf writes a module log line.
func (d *Driver) Logf(origin, level, format string, args ...any) {
	modlog.Log(d.log, origin, level, format, args...)
}

// Run is the loop: it owns the automaton until ctx ends.
func (d *Driver) Run(ctx context.Context) {
	period := d.acfg.Period
	if period <= 0 {
		period = 5 * time.Second
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case in := <-d.events:
			if d.stale(in) {
				continue
			}
			d.step(in.ev, in.reply)
		case <-tick.C:
			d.step(automaton.Tick{}, nil)
		case <-ctx.Done():
			d.shutdownChildren()
			return
		}
	}
}

func (d *Driver) step(ev automaton.Event, reply chan error) {
	acts, err := d.am.Step(time.Now(), ev)
	d.exec(acts)
	d.updateSnapshot()
	if reply != nil {
		reply <- err
	}
}

func (d *Driver) exec(acts []automaton.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case automaton.Log:
			d.Logf(a.Origin, a.Level, "%s", a.Msg)
		case automaton.SetState:
			d.Logf("heart", "E", "Local state %s %s", a.State, a.Ready)
			if a.State == automaton.Stop {
				d.pg.reset()
			}
		case automaton.Save:
			if err := saveRecord(filepath.Join(d.mod.UserVar(), "state.json"), a.Persisted); err != nil {
				d.Logf("heart", "C", "Cannot save the module state: %v", err)
			}
		case automaton.RunScript:
			d.runScript(a)
		case automaton.KillScript:
			if cancel := d.scripts[a.ID]; cancel != nil {
				cancel()
			}
		case automaton.StartChecker:
			d.startChecker(a.Checker)
		case automaton.StopChecker:
			d.stopChecker(a.Checker)
		case automaton.SetTimer:
			if t := d.timers[a.Name]; t != nil {
				t.Stop()
			}
			name := a.Name
			d.timers[name] = time.AfterFunc(a.After, func() { d.events <- input{ev: automaton.TimerExpired{Name: name}} })
		case automaton.CancelTimer:
			if t := d.timers[a.Name]; t != nil {
				t.Stop()
				delete(d.timers, a.Name)
			}
		case automaton.Resync:
			if d.replication != nil {
				d.replication.resync(a)
			} else {
				d.Logf("reintegre", "E", "File replication is not running on this node (see the errors above): the replicated directories are not resynchronised")
				d.post(automaton.ResyncDone{ID: a.ID, OK: false, Err: "file replication is not running"})
			}
		case automaton.CancelResync:
			if d.replication != nil {
				d.replication.cancelResync()
			}
		case automaton.CheckWitness:
			d.checkWitness()
		case automaton.MountReplicated, automaton.ReplicationRole, automaton.UnmountReplicated:
			if d.replication != nil {
				d.replication.exec(a)
			}
		case automaton.SetVIP:
			d.setVIP(a.Up)
		default:
			d.execErrd(a)
		}
	}
}

func (d *Driver) vars() []safe.Var {
	if d.cfg.User == nil {
		return nil
	}
	return d.cfg.User.Vars
}

func (d *Driver) userlog() (discard bool, capKB int) {
	if d.cfg.User == nil {
		return false, 2048
	}
	return d.cfg.User.Logging == "none", d.cfg.User.UserLogSize
}

func (d *Driver) runScript(a automaton.RunScript) {
	ctx, cancel := context.WithCancel(context.Background())
	d.scripts[a.ID] = cancel
	discard, capKB := d.userlog()
	force := len(a.Args) > 0 && a.Args[0] == "force"
	spec := scripts.Spec{
		Script: a.Script, Path: filepath.Join(d.mod.UserBin(), a.Script), Args: a.Args,
		Env: scripts.Environ(d.mod, d.vars(), scripts.DaemonEnviron()), Dir: d.mod.UserBin(),
		Timeout: a.Timeout, LogDir: d.mod.UserVar(), Discard: discard, LogCapKB: capKB, ShAsBash: d.shAsBash,
		Started: func(pgid int, logFile string) {
			d.pg.add(pgid, "script "+a.Script)
			name := a.Script
			if force {
				name += ` "force"`
			}
			if logFile != "" {
				d.Logf("userplug", "S", "Script %s > %s", name, logFile)
			} else {
				d.Logf("userplug", "S", "Script %s", name)
			}
		},
	}
	go func() {
		res := scripts.Run(ctx, spec)
		cancel()
		d.events <- input{ev: scriptDone(a.ID, res), reply: nil}
	}()
}

func scriptDone(id int, r scripts.Result) automaton.ScriptDone {
	sd := automaton.ScriptDone{ID: id, ExitCode: r.ExitCode, TimedOut: r.TimedOut}
	if r.Err != nil {
		sd.Err = r.Err.Error()
		sd.Killed = strings.HasPrefix(sd.Err, "cancelled")
	}
	return sd
}

// checkerRestartDelay is how long a custom checker that ended by itself
// waits before it is started again.
const checkerRestartDelay = 10 * time.Second

func (d *Driver) startChecker(c automaton.Checker) {
	if _, ok := d.checkers[c.Resource()]; ok {
		return
	}
	if b, ok := d.builtins[c.Resource()]; ok {
		d.startBuiltin(c, b)
		return
	}
	var cc *safe.CustomCheck
	for i := range d.cfg.Check.Custom {
		if d.cfg.Check.Custom[i].Ident == c.Ident {
			cc = &d.cfg.Check.Custom[i]
		}
	}
	if cc == nil {
		return
	}
	run := &checkerRun{c: c, stop: make(chan struct{})}
	d.checkers[c.Resource()] = run
	go d.superviseChecker(run, *cc)
}

// superviseChecker runs a custom checker and starts it again when it ends
// on its own, until it is stopped.
func (d *Driver) superviseChecker(run *checkerRun, cc safe.CustomCheck) {
	exec := cc.Exec
	if !filepath.IsAbs(exec) {
		exec = filepath.Join(d.mod.UserBin(), exec)
	}
	discard, capKB := d.userlog()
	for {
		spec := scripts.Spec{
			Script: filepath.Base(cc.Exec), Path: exec, Args: append([]string{d.mod.Name, cc.Resource()}, cc.Args...),
			Env: scripts.Environ(d.mod, d.vars(), scripts.DaemonEnviron()), Dir: d.mod.UserBin(),
			LogDir: d.mod.UserVar(), Discard: discard, LogCapKB: capKB, ShAsBash: d.shAsBash,
			Started: func(pgid int, logFile string) { d.pg.add(pgid, "checker "+cc.Resource()) },
		}
		proc, err := scripts.Start(spec)
		if err != nil {
			d.Logf("customscript", "E", "Checker %s cannot start: %v", cc.Resource(), err)
		} else {
			d.Logf("customscript", "I", "Checker %s started (%s %s)", cc.Resource(), exec, strings.Join(spec.Args, " "))
			d.mu.Lock()
			run.proc = proc
			d.mu.Unlock()
			select {
			case <-run.stop:
				proc.Stop()
				d.pg.remove(proc.Pgid)
				return
			case <-proc.Done():
				d.pg.remove(proc.Pgid)
				d.Logf("customscript", "E", "Checker %s ended by itself (%s): started again in %s", cc.Resource(), proc.Result().Describe(), checkerRestartDelay)
			}
		}
		select {
		case <-run.stop:
			return
		case <-time.After(checkerRestartDelay):
		}
	}
}

// stopChecker stops a checker and waits until its processes are gone, so
// that the stop script that follows runs without it.
func (d *Driver) stopChecker(c automaton.Checker) {
	run := d.checkers[c.Resource()]
	if run == nil {
		return
	}
	delete(d.checkers, c.Resource())
	if run.cancel != nil {
		run.cancel()
		<-run.done
		d.Logf(run.origin, "I", "Checker %s stopped", c.Resource())
		return
	}
	close(run.stop)
	d.mu.Lock()
	proc := run.proc
	d.mu.Unlock()
	if proc != nil {
		proc.Stop()
	}
	d.Logf("customscript", "I", "Checker %s stopped", c.Resource())
}

// shutdownChildren stops checkers and kills running scripts when the
// process ends.
func (d *Driver) shutdownChildren() {
	for _, run := range d.checkers {
		d.stopChecker(run.c)
	}
	for _, cancel := range d.scripts {
		cancel()
	}
	d.vips.stopReroute()
}

// Resources returns the resources sorted by name.
func (d *Driver) Resources() [][2]string {
	r := d.Snapshot().Resources
	sort.Slice(r, func(i, j int) bool { return r[i][0] < r[j][0] })
	return r
}

// Resource returns one resource.
func (d *Driver) Resource(name string) (string, error) {
	for _, r := range d.Snapshot().Resources {
		if r[0] == name {
			return r[1], nil
		}
	}
	return "", fmt.Errorf("unknown resource %s of module %s", name, d.mod.Name)
}

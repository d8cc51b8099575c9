package automaton

import (
	"cmp"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Timer names.
const (
	// TimerHeartbeat: a starting mirror has waited HeartbeatTimeout for its
	// peer.
	TimerHeartbeat = "heartbeat"
	// TimerSlowScript: a script without timeout has run long enough to be
	// reported.
	TimerSlowScript = "slow-script"
)

// ErrLoopLimit is returned by incloop when the maxloop limit is reached.
var ErrLoopLimit = errors.New("maxloop limit reached")

// Module is the automaton of one module. Create it with New; feed it with
// Step.
type Module struct {
	cfg   Config
	p     Persisted
	state State
	ready Readiness

	// plan is the rest of the transition in progress; running is the id of
	// the script it waits for (0: none).
	plan          []step
	running       int
	runningScript string
	nextID        int
	// pending is a command accepted while busy, run when the plan ends.
	pending *Command

	resources map[string]*resource
	// windows are the checker windows open (pre, prim, second, both).
	windows map[string]bool
	// checkersOn are the checkers whose process runs.
	checkersOn map[string]bool
	// vipSet: the virtual IPs are set, or may be (vip.go).
	vipSet bool
	// errd: the monitored <proc>s (errd.go).
	errd errdState

	// hbExpired: a starting mirror has waited long enough for its peer;
	// hbArmed: the heartbeat timer runs.
	hbExpired, hbArmed bool
	// forcePrim: the start was asked by `safekit prim`.
	forcePrim bool
	// waitRule names the rule that holds the module in WAIT NotReady.
	waitRule string

	// The peer of a mirror, as its heartbeats describe it.
	peer      PeerStatus
	peerAlive bool
	links     map[string]bool
	// forceSecond: the start was asked by `safekit second`.
	forceSecond bool
	// swapSeq numbers our swap requests; swapReq is the one pending (sent
	// in heartbeats, 0 when none); peerSwap is the last request of the
	// peer this node acted on.
	swapSeq, swapReq, peerSwap uint64
	// stopping: a stop transition is in progress (the peer must not take
	// over before the forced stop scripts ran).
	stopping bool
	// swapping: we left PRIM for a swap and wait for the peer to take over.
	swapping bool
	// failoverHold: failover="off" stopped the secondary; only prim (or a
	// primary peer) releases it.
	failoverHold bool
	// resyncing: the Resync resyncID is in progress.
	resyncing bool
	resyncID  int
	// witnessFor is the action waiting for a witness answer ("" none).
	witnessFor string
	// splitNoted: the split-brain decision to stay alone was logged.
	splitNoted bool
	// defaultPrimDone: the automatic swap of defaultprim ran for this join.
	defaultPrimDone bool
	// lastPrimJoin: defaultprim="lastprim" and this node was primary when
	// it last stopped; once it is a Ready SECOND after this start, it asks
	// the primary for a swap.
	lastPrimJoin bool
	// fullSyncPeer: `prim fullsync` asks the next secondary for a full
	// resynchronisation.
	fullSyncPeer bool
	// replLost: file replication dropped the secondary; the primary goes
	// ALONE as soon as it rests.
	replLost string
	// replBroken: the stream from the primary ended under this SECOND
	// (not by its own change of role). It resynchronises once the primary,
	// alive, goes on ALONE; until then its copy, which holds every write
	// the primary acknowledged, is the one to fail over to.
	replBroken bool
	// degraded: file replication broke on this primary.
	degraded bool
	// appStarted is when the application last started in the role that
	// serves it (PRIM or ALONE in a mirror, UP otherwise): see AppStarted.
	appStarted time.Time

	now time.Time
	out []Action
}

type resource struct {
	value string
	since time.Time
}

// step is one element of a transition: a script to run, or a change of the
// automaton's own state.
type step struct {
	script string
	args   []string
	// timeout of the script; 0 = none (reported when slow).
	timeout time.Duration
	do      func()
}

// New returns the automaton of a module in STOP, with the persisted record
// of its previous runs.
func New(cfg Config, p Persisted) *Module {
	p.State = Stop
	return &Module{cfg: cfg, p: p, state: Stop, ready: NotReady, links: map[string]bool{},
		resources: map[string]*resource{}, windows: map[string]bool{}, checkersOn: map[string]bool{}}
}

// State returns the current state and readiness.
func (m *Module) State() (State, Readiness) { return m.state, m.ready }

// Persisted returns the record to keep.
func (m *Module) Persisted() Persisted { return m.p }

// Busy tells whether a transition is in progress.
func (m *Module) Busy() bool { return m.running != 0 || len(m.plan) > 0 }

// Step feeds one event at time now and returns the actions to execute. A
// command that cannot run returns a *Refused error (and no action).
func (m *Module) Step(now time.Time, ev Event) ([]Action, error) {
	m.now = now
	m.out = nil
	var err error
	switch e := ev.(type) {
	case Command:
		err = m.command(e)
	case ScriptDone:
		m.scriptDone(e)
	case SetResource:
		m.setResource(e)
	case Setting:
		m.setting(e)
	case Loop:
		err = m.loop(e)
	case TimerExpired:
		m.timer(e.Name)
	case Tick:
		m.tick()
	case Recover:
		m.recover(e.From)
	case Peer:
		m.peerChanged(e)
	case HeartbeatLink:
		m.link(e)
	case ResyncDone:
		m.resyncDone(e)
	case WitnessResult:
		m.witness(e.Reachable)
	case ReplicationLost:
		m.replicationLost(e.Reason, e.Incomplete)
	case ReplicationDegraded:
		m.replicationDegraded(e.Reason)
	case ModuleRestarted:
		m.moduleRestarted(e.Resource)
	case ProcPolled, ErrdClass, HandlerDone:
		err = m.errdEvent(ev)
	}
	m.run()
	return m.out, err
}

func (m *Module) emit(a ...Action) { m.out = append(m.out, a...) }

func (m *Module) logf(origin, level, format string, args ...any) {
	m.emit(Log{Origin: origin, Level: level, Msg: fmt.Sprintf(format, args...)})
}

func (m *Module) setState(s State, r Readiness) {
	if s == m.state && r == m.ready {
		return
	}
	m.state, m.ready = s, r
	m.emit(SetState{State: s, Ready: r})
	if m.p.State != s {
		m.p.State = s
		m.save()
	}
}

func (m *Module) save() { m.emit(Save{Persisted: m.p}) }

// run executes plan steps until one waits for a script, then, when the plan
// is over, the pending command.
func (m *Module) run() {
	for m.running == 0 && len(m.plan) > 0 {
		s := m.plan[0]
		m.plan = m.plan[1:]
		if s.do != nil {
			s.do()
			continue
		}
		if !m.cfg.HasUser || !m.cfg.Scripts[s.script] {
			continue
		}
		m.nextID++
		m.running, m.runningScript = m.nextID, s.script
		m.emit(RunScript{ID: m.nextID, Script: s.script, Args: s.args, Timeout: s.timeout})
		if s.timeout == 0 && m.cfg.NiceStopTimeout > 0 {
			m.emit(SetTimer{Name: TimerSlowScript, After: m.cfg.NiceStopTimeout})
		}
		return
	}
	if m.running == 0 && len(m.plan) == 0 && m.pending != nil {
		c := *m.pending
		m.pending = nil
		if err := m.execute(c); err != nil {
			m.logf("heart", "E", "Action %s called by %s not applied: %v", c.Action, c.By, err)
		}
		m.run()
		return
	}
	if m.running == 0 && len(m.plan) == 0 && m.cfg.Mode == Mirror {
		if m.settle() {
			m.run()
		}
	}
}

func (m *Module) scriptDone(e ScriptDone) {
	if e.ID != m.running {
		return // a script killed by forcestop, already forgotten
	}
	name := m.runningScript
	m.running, m.runningScript = 0, ""
	m.emit(CancelTimer{Name: TimerSlowScript})
	switch {
	case e.Err != "":
		m.logf("userplug", "E", "Script %s could not run: %s", name, e.Err)
	case e.TimedOut:
		m.logf("userplug", "E", "Script %s timed out: its processes were killed", name)
	case e.ExitCode != 0:
		m.logf("userplug", "E", "Script %s ended with exit code %d", name, e.ExitCode)
	}
}

func (m *Module) timer(name string) {
	switch name {
	case TimerHeartbeat:
		if m.state == Wait && !m.Busy() && !m.hbExpired {
			m.hbExpired = true
			m.decide()
		}
	case TimerSlowScript:
		if m.running != 0 {
			m.logf("userplug", "E", "Script %s is still running after %s: safekit forcestop -m %s stops the module and kills it", m.runningScript, m.cfg.NiceStopTimeout, m.cfg.Module)
		}
	}
}

// stable tells whether the module rests in a state (no transition, no
// wait for a peer).
func (m *Module) stable() bool { return !m.Busy() && m.ready != Transient }

// scripts of each role, in the order of User's Guide §14.4.
func startScripts(s State) []string {
	switch s {
	case Alone:
		return []string{"start_both", "start_prim", "start_sec"}
	case Prim:
		return []string{"start_both", "start_prim"}
	case Second:
		return []string{"start_both", "start_second", "start_sec"}
	case Up:
		return []string{"start_both"}
	}
	return nil
}

func stopScripts(s State) []string {
	switch s {
	case Alone:
		return []string{"stop_sec", "stop_prim", "stop_both"}
	case Prim:
		return []string{"stop_prim", "stop_both"}
	case Second:
		return []string{"stop_sec", "stop_second", "stop_both"}
	case Up:
		return []string{"stop_both"}
	}
	return nil
}

// window is the checker window a start or stop script opens or closes.
func window(script string) string {
	switch script {
	case "start_prim", "stop_prim":
		return "prim"
	case "start_both", "stop_both":
		return "both"
	case "start_second", "stop_second":
		return "second"
	case "start_sec", "stop_sec":
		return "sec" // an errd class only
	}
	return ""
}

func (m *Module) script(name string, timeout time.Duration, args ...string) step {
	return step{script: name, args: args, timeout: timeout}
}

func do(f func()) step { return step{do: f} }

// startSteps runs the start scripts of role to, opening each checker
// window after its script.
func (m *Module) startSteps(from, to State, action string) []step {
	var steps []step
	for _, s := range startScripts(to) {
		if s == "start_prim" {
			steps = append(steps, m.vipUp())
		}
		steps = append(steps, m.script(s, 0, string(from), string(to), action))
		if w := window(s); w != "" {
			steps = append(steps, do(func() { m.openWindow(w) }))
		}
	}
	return steps
}

// leaveSteps runs the stop scripts of role from, closing each checker
// window first; twice adds the forced call right after each graceful one.
func (m *Module) leaveSteps(from, to State, action string, twice bool) []step {
	var steps []step
	for _, s := range stopScripts(from) {
		if w := window(s); w != "" {
			steps = append(steps, do(func() { m.closeWindow(w) }))
		}
		steps = append(steps, m.script(s, m.cfg.NiceStopTimeout, string(from), string(to), action))
		if twice {
			steps = append(steps, m.script(s, m.cfg.ForceStopTimeout, "force", string(from), string(to), action))
		}
		if s == "stop_prim" {
			steps = append(steps, m.vipDown())
		}
	}
	return steps
}

// forcedStopSteps take a module from WAIT to STOP: every stop script with
// force, poststop, transition.
func (m *Module) forcedStopSteps(action string) []step {
	steps := []step{do(func() { m.closeAllWindowsBut("pre") })}
	for _, s := range []string{"stop_sec", "stop_prim", "stop_second", "stop_both"} {
		steps = append(steps, m.script(s, m.cfg.ForceStopTimeout, "force", string(Wait), string(Stop), action))
		if s == "stop_prim" {
			steps = append(steps, m.vipDown())
		}
	}
	steps = append(steps,
		do(func() { m.closeWindow("pre") }),
		m.script("poststop", m.cfg.ForceStopTimeout, string(Wait), string(Stop), action),
		m.rfs(UnmountReplicated{}),
		m.script("transition", m.cfg.ForceStopTimeout, string(Wait), string(Stop), action),
		do(func() {
			m.emit(CancelTimer{Name: TimerHeartbeat})
			m.hbExpired, m.hbArmed, m.forcePrim, m.waitRule, m.stopping = false, false, false, "", false
			m.setState(Stop, NotReady)
		}))
	return steps
}

func (m *Module) openWindow(w string) {
	m.windows[w] = true
	if (m.cfg.Mode == Mirror && w == "prim") || (m.cfg.Mode != Mirror && w == "both") {
		m.appStarted = m.now
	}
	m.syncCheckers()
	m.syncErrd()
}

// AppStarted is when the application last started in the role that serves
// it: after start_prim in a mirror (a start, a restart, a failover, a
// swap), after start_both in a farm or light module; zero before. The
// <module> checkers of other modules see a new value as a restart of this
// module, which a poll of its state alone could miss.
func (m *Module) AppStarted() time.Time { return m.appStarted }

func (m *Module) closeWindow(w string) {
	delete(m.windows, w)
	m.syncCheckers()
	m.syncErrd()
}

func (m *Module) closeAllWindowsBut(keep string) {
	for w := range m.windows {
		if w != keep {
			delete(m.windows, w)
		}
	}
	m.syncCheckers()
	m.syncErrd()
}

// syncCheckers starts the checkers whose window is open and stops the
// others (all of them when the checker setting is off). A started checker's
// resource begins in init.
func (m *Module) syncCheckers() {
	for _, c := range m.cfg.Checkers {
		want := m.windows[c.When] && m.p.Checker
		has := m.checkersOn[c.Resource()]
		switch {
		case want && !has:
			m.checkersOn[c.Resource()] = true
			m.resources[c.Resource()] = &resource{value: "init", since: m.now}
			m.emit(StartChecker{Checker: c})
		case !want && has:
			delete(m.checkersOn, c.Resource())
			m.emit(StopChecker{Checker: c})
		}
	}
}

// Resources returns every resource with its value, sorted by name.
func (m *Module) Resources() [][2]string {
	all := map[string]string{
		"state.local":          string(m.state),
		"usersetting.checker":  onOff(m.p.Checker),
		"usersetting.errd":     onOff(m.p.Errd),
		"usersetting.failover": onOff(m.p.Failover),
		"usersetting.boot":     onOff(m.p.Boot),
		"heart.stopstartloop":  fmt.Sprint(m.loopValue()),
	}
	if m.cfg.HasRFS {
		all["rfs.uptodate"] = upDown(m.p.UpToDate)
		all["rfs.degraded"] = upDown(m.degraded)
	}
	if m.cfg.HasRFS && m.cfg.Mode == Mirror {
		p := m.syncPolicy()
		all["usersetting.rfssyncmode"] = p.ModeName()
		all["usersetting.rfssyncrole"] = cmp.Or(p.Role, SyncDefault)
		all["usersetting.rfssyncuid"] = cmp.Or(p.UID, SyncDefault)
		all["rfs.rfssync"] = upDown(m.syncApplicable())
	}
	if m.cfg.Mode == Mirror {
		all["state.remote"] = "UNKNOWN"
		if m.peerAlive {
			all["state.remote"] = string(m.peer.State)
		}
		for id, up := range m.links {
			all["heartbeat."+id] = upDown(up)
		}
	}
	for _, c := range m.cfg.Checkers {
		all[c.Resource()] = "init"
	}
	for _, p := range m.cfg.Procs {
		all[p.Resource()] = "init"
	}
	for n, r := range m.resources {
		all[n] = r.value
	}
	out := make([][2]string, 0, len(all))
	for n, v := range all {
		out = append(out, [2]string{n, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// Resource returns one resource value ("" when unknown).
func (m *Module) Resource(name string) string {
	for _, r := range m.Resources() {
		if r[0] == name {
			return r[1]
		}
	}
	return ""
}

func (m *Module) loopValue() int64 {
	if m.p.LoopCount == 0 {
		return 0
	}
	return m.p.LoopStart.Unix()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func upDown(b bool) string {
	if b {
		return "up"
	}
	return "down"
}

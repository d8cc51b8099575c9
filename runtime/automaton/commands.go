package automaton

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Messages of a mirror that may not have up-to-date data (User's Guide §5.3).
const (
	MsgNotUpToDate = "Data may be not uptodate for replicated directories (wait for the start of the remote server)"
	MsgRunPrim     = "If you are sure that this server has valid data, run safekit prim to force start as primary"
)

// stopLike commands end the module; they win over a queued restart.
func stopLike(action string) bool {
	return action == "stop" || action == "forcestop" || action == "shutdown"
}

// countedActions count toward maxloop when called with an identity.
var countedActions = map[string]bool{"restart": true, "stopstart": true, "stop": true, "swap": true, "wait": true}

// resetActions reset the maxloop count when an administrator calls them.
var resetActions = map[string]bool{"start": true, "stop": true, "restart": true, "stopstart": true, "swap": true, "prim": true, "second": true, "secondforce": true}

// starting commands start a stopped (or waiting) module.
func starting(action string) bool {
	return action == "start" || action == "prim" || action == "primforce" || action == "second" || action == "secondforce"
}

func (m *Module) command(c Command) error {
	if c.By == "" {
		c.By = "root"
	}
	if err := m.check(c); err != nil {
		return err
	}
	origin := "heartplug"
	if c.Identity == "" {
		origin = "heart"
	}
	by := "by " + c.By
	switch {
	case c.Identity != "":
		by = "by " + c.Identity
	case c.By == "boot":
		by = "at boot time"
	}
	m.logf(origin, "U", "Action %s called %s", c.Action, by)
	if c.Action == "rfssync" {
		// A policy, not a transition: it applies at the next
		// synchronisation, whatever the module does now.
		m.setSyncPolicy(c.Sync, c.By)
		return nil
	}
	if c.Identity == "" && resetActions[c.Action] && m.p.LoopCount != 0 {
		m.p.LoopCount = 0
		m.save()
	}
	if running := starting(c.Action); running || c.Action == "stop" || c.Action == "forcestop" {
		if m.p.Running != running {
			m.p.Running = running
			m.save()
		}
	}
	if c.Action == "forcestop" {
		return m.execute(c)
	}
	if m.Busy() {
		m.pending = &c
		return nil
	}
	return m.execute(c)
}

// check refuses a command that cannot apply in the current state, with the
// message the user sees.
func (m *Module) check(c Command) error {
	mod := m.cfg.Module
	if c.Action == "rfssync" || c.Action == "secondforce" {
		if m.cfg.Mode != Mirror || !m.cfg.HasRFS {
			return refusedf("%s applies to file replication: module %s has no replicated directories (<rfs>)", c.Action, mod)
		}
	}
	if c.Action == "rfssync" {
		return checkSyncPolicy(mod, c.Sync)
	}
	busy := m.Busy()
	if busy && m.pending != nil && stopLike(m.pending.Action) && !stopLike(c.Action) {
		// Refused before it is logged or counted: it would never run.
		return refusedf("a %s of module %s is already pending", m.pending.Action, mod)
	}
	if busy && m.stopping && starting(c.Action) {
		return refusedf("module %s is stopping (%s %s): wait for the end of the stop (safekit waitstop -m %s), then run safekit %s", mod, m.state, m.ready, mod, c.Action)
	}
	switch c.Action {
	case "start":
		if m.state != Stop || busy {
			return refusedf("module %s is already started (%s %s): stop it first", mod, m.state, m.ready)
		}
	case "stop", "shutdown", "forcestop":
		if m.state == Stop && !busy {
			return refusedf("module %s is already stopped", mod)
		}
	case "restart":
		if !busy && !(m.ready == Ready && m.state != Wait && m.state != Stop) {
			return refusedf("restart needs module %s running (ALONE, PRIM, SECOND or UP Ready); it is %s %s", mod, m.state, m.ready)
		}
	case "stopstart":
		if m.state == Stop && !busy {
			return refusedf("module %s is stopped: use safekit start", mod)
		}
	case "prim", "primforce":
		if m.cfg.Mode != Mirror {
			return refusedf("%s applies to mirror modules; %s is a %s module", c.Action, mod, m.cfg.Mode)
		}
		if m.state == Alone || m.state == Prim {
			return refusedf("module %s is already primary (%s %s)", mod, m.state, m.ready)
		}
		if busy || (m.state != Stop && m.state != Wait) {
			return refusedf("module %s is %s %s: stop it, then run safekit %s", mod, m.state, m.ready, c.Action)
		}
		if m.peerPrimary() {
			return refusedf("module %s cannot start as primary: %s is already primary (%s %s); use safekit second, or stop it there first", mod, m.peerName(), m.peer.State, m.peer.Ready)
		}
		if c.Action == "prim" && m.cfg.HasRFS && m.p.Reintegrating {
			m.logf("rfsplug", "E", "Data may be inconsistent for replicated directories (stopped during reintegration)")
			m.logf("rfsplug", "E", "If you are sure that this server has valid data, run safekit primforce to force start as primary")
			m.logf("heart", "E", "Requested prim start aborted")
			return refusedf("module %s: data may be inconsistent for replicated directories (stopped during reintegration); if you are sure that this server has valid data, run safekit primforce -m %s", mod, mod)
		}
	case "second", "secondforce":
		if m.cfg.Mode != Mirror {
			return refusedf("%s applies to mirror modules; %s is a %s module", c.Action, mod, m.cfg.Mode)
		}
		if c.Action == "secondforce" && c.Since.IsZero() {
			return refusedf("secondforce needs the date of the backup: safekit secondforce -d <date> -m %s", mod)
		}
		if busy || (m.state != Stop && m.state != Wait) {
			return refusedf("module %s is %s %s: stop it, then run safekit %s", mod, m.state, m.ready, c.Action)
		}
		if !m.peerPrimary() {
			return refusedf("cannot start module %s as secondary: the other node is not primary", mod)
		}
	case "swap":
		if m.cfg.Mode != Mirror {
			return refusedf("swap applies to mirror modules; %s is a %s module", mod, m.cfg.Mode)
		}
		pairOK := m.peerAlive && ((m.state == Prim && m.peer.State == Second) || (m.state == Second && m.peer.State == Prim)) && m.peer.Ready == Ready
		if busy || m.ready != Ready || !pairOK {
			what := fmt.Sprintf("it is %s %s", m.state, m.ready)
			if !busy && m.ready == Ready && (m.state == Prim || m.state == Second) {
				// This node is fine: say what is wrong with the other.
				what = "the other node is not known (no heartbeat)"
				if m.peerAlive {
					what = fmt.Sprintf("%s is %s %s", m.peerName(), m.peer.State, m.peer.Ready)
				}
			}
			return refusedf("swap needs module %s PRIM or SECOND with its peer SECOND or PRIM, both Ready; %s", mod, what)
		}
	default:
		return refusedf("unknown action %q", c.Action)
	}
	return nil
}

// execute starts the transition of command c (the module is not busy,
// except for forcestop).
func (m *Module) execute(c Command) error {
	if c.Identity != "" && countedActions[c.Action] && m.countLoop() && c.Action != "stop" {
		m.logf("heartplug", "U", "Action stop called by maxloop")
		c = Command{Action: "stop", By: "maxloop"}
		m.p.Running = false
	}
	if starting(c.Action) {
		m.startDate(c.Since)
	}
	switch c.Action {
	case "start":
		if m.state != Stop {
			return refusedf("module %s is already started (%s %s)", m.cfg.Module, m.state, m.ready)
		}
		m.start("start")
	case "prim", "primforce":
		if c.Arg == "fullsync" || c.Action == "primforce" {
			m.fullSyncPeer = true
		}
		m.failoverHold = false
		switch m.state {
		case Stop:
			m.forcePrim = true
			m.start("start")
		case Wait:
			m.forcePrim = true
			m.waitRule = ""
			m.decide()
		default:
			return refusedf("module %s is already %s", m.cfg.Module, m.state)
		}
	case "second", "secondforce":
		if c.Arg == "fullsync" {
			m.p.FullSync = true
			m.save()
		}
		m.failoverHold = false
		switch m.state {
		case Stop:
			m.forceSecond = true
			m.start("start")
		case Wait:
			m.forceSecond = true
			m.waitRule = ""
			m.decide()
		}
	case "swap":
		switch m.state {
		case Prim:
			m.swapOut()
		case Second:
			// The primary does the swap when it sees the request.
			m.swapSeq++
			m.swapReq = m.swapSeq
		}
	case "stop", "shutdown":
		if m.state == Stop {
			return nil
		}
		m.stop("stop")
	case "forcestop":
		m.forcestop()
	case "restart":
		if m.ready != Ready || m.state == Wait || m.state == Stop {
			return refusedf("module %s is %s %s: nothing to restart", m.cfg.Module, m.state, m.ready)
		}
		m.restart()
		if c.Services != "" {
			m.withServices(c.Services)
		}
	case "stopstart":
		if m.state == Stop {
			return refusedf("module %s is stopped", m.cfg.Module)
		}
		m.stop("stopstart")
		m.plan = append(m.plan, do(func() {
			m.logf("heart", "U", "Action start called automatically")
			m.start("stopstart")
		}))
	case "wait":
		m.wait(c.By)
	}
	return nil
}

// start: STOP -> WAIT, then decide.
func (m *Module) start(action string) {
	m.hbExpired, m.hbArmed = false, false
	m.lastPrimJoin = m.cfg.DefaultPrim == "lastprim" && m.p.LastPrim
	m.waitRule = ""
	m.setState(Wait, Transient)
	m.degraded = false
	m.plan = append(m.plan,
		m.rfs(MountReplicated{}),
		m.script("transition", m.cfg.ForceStopTimeout, string(Stop), string(Wait), action),
		m.script("prestart", m.cfg.ForceStopTimeout, string(Stop), string(Wait), action),
		do(func() { m.openWindow("pre") }),
		do(m.decide))
}

// decide chooses where a module in WAIT goes.
func (m *Module) decide() {
	if m.waitRule == "" {
		if r := m.pendingWaitRule(true); r != "" {
			// A pre checker has not answered yet: stay Transient.
			m.setState(Wait, Transient)
			return
		}
		if r := m.pendingWaitRule(false); r != "" {
			m.logf("heart", "E", "Action wait from failover rule %s", r)
			m.holdWait(r)
			return
		}
	}
	if m.waitRule != "" {
		return
	}
	if m.cfg.Mode != Mirror {
		m.enter(Up, "start")
		return
	}
	m.decideMirror()
}

// enter takes a module from WAIT to role s (ALONE, PRIM, SECOND, UP).
func (m *Module) enter(s State, action string) {
	if m.hbArmed {
		m.emit(CancelTimer{Name: TimerHeartbeat})
		m.hbArmed = false
	}
	m.setState(s, Transient)
	if s == Alone || s == Prim {
		m.lastPrimJoin = false
		m.plan = append(m.plan, m.rfs(ReplicationRole{Primary: true}))
	}
	m.plan = append(m.plan, m.script("transition", m.cfg.ForceStopTimeout, string(Wait), string(s), action))
	m.plan = append(m.plan, m.startSteps(Wait, s, action)...)
	m.plan = append(m.plan, do(func() {
		if s == Alone || s == Prim {
			if !m.p.LastPrim || !m.p.UpToDate {
				m.p.LastPrim, m.p.UpToDate = true, true
				m.save()
			}
		}
		m.setState(s, Ready)
	}))
}

// stop: role -> WAIT -> STOP.
func (m *Module) stop(action string) {
	from := m.state
	m.forcePrim, m.forceSecond, m.swapping, m.swapReq, m.stopping = false, false, false, 0, true
	if m.resyncing {
		m.resyncing = false
		m.emit(CancelResync{ID: m.resyncID})
	}
	if action != "stopstart" || m.failoverHold {
		// A stopstart of failover-off keeps the hold for the restart.
		m.failoverHold = m.failoverHold && action == "stopstart"
	}
	switch {
	case from == Second && m.peerAlive && (m.peer.State == Prim || m.peer.State == Alone):
		// The primary goes on writing without this node.
		m.p.UpToDate = false
		m.save()
	case from == Prim && m.peerAlive && m.peer.State == Second && m.peer.Ready == Ready:
		// The secondary takes over and writes without this node.
		m.p.UpToDate = false
		m.save()
	}
	m.emit(CancelTimer{Name: TimerHeartbeat})
	if from != Wait {
		m.setState(from, Transient)
		m.plan = append(m.plan, m.leaveSteps(from, Wait, action, false)...)
		m.plan = append(m.plan,
			m.script("transition", m.cfg.ForceStopTimeout, string(from), string(Wait), action),
			do(func() { m.setState(Wait, Transient) }))
	} else {
		m.setState(Wait, Transient)
	}
	m.plan = append(m.plan, m.forcedStopSteps(action)...)
}

// rfs is a step that emits a replication action when the module has
// replicated directories.
func (m *Module) rfs(a Action) step {
	return do(func() {
		if m.cfg.HasRFS {
			m.emit(a)
		}
	})
}

// replicationLost: on the primary, file replication dropped the
// secondary: it goes on ALONE. On the secondary, the stream from the
// primary ended.
func (m *Module) replicationLost(reason string, incomplete bool) {
	switch m.state {
	case Prim:
		m.logf("nfsadmin", "E", "Secondary dropped by file replication: %s", reason)
		m.replLost = reason
	case Second:
		// What was received is applied before the stream ends: this copy
		// holds every write the primary acknowledged, and stays the one to
		// fail over to. It resynchronises once the primary, alive, goes on
		// ALONE without it (settle).
		if m.resyncing || m.replBroken {
			return
		}
		m.replBroken = true
		if m.ready == Ready {
			m.logf("nfsadmin", "E", "Replication from the primary lost: %s", reason)
		}
		if incomplete && m.p.UpToDate {
			// With async="second" the primary may have acknowledged what
			// could not be applied here.
			m.logf("nfsadmin", "E", "The replicated data of this node misses operations of the primary: not up to date until its resynchronisation")
			m.p.UpToDate = false
			m.save()
		}
	}
}

// replicationDegraded: replication broke on this primary (SafeKit's
// degraded mode): it stays primary, ALONE; stop and start it to repair.
func (m *Module) replicationDegraded(reason string) {
	if m.degraded {
		return
	}
	m.degraded = true
	m.logf("nfsadmin", "C", "Resource rfs.degraded set to up by nfsadmin: %s", reason)
	if m.state == Prim {
		m.replLost = "degraded: " + reason
	}
}

// recover stops, with the forced calls of the stop scripts, an application
// that a dead module process may have left running.
func (m *Module) recover(from State) {
	if from == Stop || from == "" || m.state != Stop {
		return
	}
	m.logf("heart", "E", "Module was %s when its process ended abnormally: stopping the application with the stop scripts (force)", from)
	if from == Prim || from == Second {
		// The peer probably went on alone: this copy is no longer the
		// reference.
		m.p.UpToDate = false
	}
	m.stopping = true
	// The VIPs may have stayed on the node.
	m.vipSet = m.cfg.VIP
	m.setState(Wait, Transient)
	steps := m.forcedStopSteps("stop")
	for i := range steps {
		if steps[i].script != "" && steps[i].args[0] == "force" {
			steps[i].args = []string{"force", string(from), string(Stop), "stop"}
		}
	}
	m.plan = append(m.plan, steps...)
}

// forcestop kills the running script and stops with the forced calls only.
func (m *Module) forcestop() {
	if m.running != 0 {
		m.emit(KillScript{ID: m.running})
		m.emit(CancelTimer{Name: TimerSlowScript})
		m.running, m.runningScript = 0, ""
	}
	m.plan, m.pending = nil, nil
	m.swapping, m.swapReq, m.stopping = false, 0, true
	if m.resyncing {
		m.resyncing = false
		m.emit(CancelResync{ID: m.resyncID})
	}
	m.emit(CancelTimer{Name: TimerHeartbeat})
	m.setState(Wait, Transient)
	m.plan = append(m.plan, m.forcedStopSteps("stop")...)
}

// restart runs the stop scripts (graceful then forced) then the start
// scripts of the current role, without a change of state.
func (m *Module) restart() {
	s := m.state
	m.setState(s, Transient)
	m.plan = append(m.plan, m.leaveSteps(s, s, "stop", true)...)
	m.plan = append(m.plan, m.startSteps(s, s, "start")...)
	m.plan = append(m.plan, do(func() { m.setState(s, Ready) }))
}

// wait stops the application and holds the module in WAIT NotReady until
// the rule no longer applies (Implicit_wakeup).
func (m *Module) wait(rule string) {
	from := m.state
	if from == Stop || from == Wait {
		return
	}
	m.logf("heart", "E", "Transition WAIT_TR from failover rule %s", rule)
	m.setState(from, Transient)
	m.plan = append(m.plan, m.leaveSteps(from, Wait, "stopwait", true)...)
	m.plan = append(m.plan,
		m.script("transition", m.cfg.ForceStopTimeout, string(from), string(Wait), "stopwait"),
		do(func() { m.holdWait(rule) }))
}

func (m *Module) holdWait(rule string) {
	m.waitRule = rule
	m.setState(Wait, NotReady)
}

// countLoop counts an action called with an identity; it reports whether
// maxloop is exceeded.
func (m *Module) countLoop() bool {
	if m.cfg.LoopInterval <= 0 {
		return false
	}
	if m.p.LoopCount == 0 || m.now.Sub(m.p.LoopStart) > m.cfg.LoopInterval {
		m.p.LoopCount, m.p.LoopStart = 0, m.now
	}
	m.p.LoopCount++
	m.save()
	return m.p.LoopCount > m.cfg.MaxLoop
}

// LoopReached is `safekit checkloop`: the limit is reached within the
// interval.
func (m *Module) LoopReached(now time.Time) bool {
	return m.cfg.LoopInterval > 0 && m.p.LoopCount >= m.cfg.MaxLoop && m.p.LoopCount > 0 &&
		now.Sub(m.p.LoopStart) <= m.cfg.LoopInterval
}

func (m *Module) loop(l Loop) error {
	switch l.Op {
	case "incloop":
		m.logf("heartplug", "I", "Loop counter incremented by %s", l.Identity)
		if m.countLoop() || m.LoopReached(m.now) {
			return ErrLoopLimit
		}
	case "resetloop":
		m.p.LoopCount = 0
		m.save()
		m.logf("heartplug", "I", "Loop counter reset by %s", l.Identity)
	}
	return nil
}

// checkSyncPolicy refuses a policy safekit rfssync cannot set.
func checkSyncPolicy(mod string, p SyncPolicy) error {
	switch {
	case p.Mode == SyncFull:
	case p.Mode != SyncExternal:
		return refusedf("unknown synchronization policy %q for module %s (full, or external prim|second <uid>)", p.Mode, mod)
	case p.Role != SyncRolePrim && p.Role != SyncRoleSecond:
		return refusedf("external synchronization of module %s: role %q is neither prim nor second", mod, p.Role)
	case p.UID == "" || utf8.RuneCountInString(p.UID) > MaxSyncUID:
		return refusedf("external synchronization of module %s: the uid must have 1 to %d characters", mod, MaxSyncUID)
	}
	return nil
}

// setSyncPolicy is safekit rfssync.
func (m *Module) setSyncPolicy(p SyncPolicy, by string) {
	if p.Mode == SyncFull {
		p = SyncPolicy{Mode: SyncFull}
	}
	m.p.Sync = p
	m.save()
	m.logf("rfsplug", "I", "Synchronization policy set to %s by %s: applied at the next synchronization", p, by)
}

// startDate records the date of secondforce, or forgets an earlier one:
// a date applies to the start it came with (and to the retries of its
// resynchronisation), not to later ones.
func (m *Module) startDate(since time.Time) {
	if m.p.SyncSince.Equal(since) {
		return
	}
	m.p.SyncSince = since
	m.save()
	if !since.IsZero() {
		m.logf("rfsplug", "I", "Synchronization by date: only the files modified since %s are copied", since.Format(time.RFC3339))
	}
}

func (m *Module) setting(s Setting) {
	switch s.Name {
	case "checker":
		m.p.Checker = s.On
		m.syncCheckers()
	case "errd":
		m.p.Errd = s.On
		m.syncErrd()
	case "failover":
		m.p.Failover = s.On
	case "boot":
		m.p.Boot = s.On
	}
	m.save()
	m.logf("heart", "I", "Resource usersetting.%s set to %s by %s", s.Name, onOff(s.On), s.By)
}

func (m *Module) setResource(e SetResource) {
	r := m.resources[e.Name]
	if r == nil {
		r = &resource{value: "init", since: m.now}
		m.resources[e.Name] = r
	}
	changed := r.value != e.Value
	if changed {
		r.value, r.since = e.Value, m.now
	}
	if (changed || e.Force) && !e.Quiet {
		level := "I"
		if e.Value == "down" {
			level = "C"
		}
		m.logf(e.By, level, "Resource %s set to %s by %s", e.Name, e.Value, e.By)
	}
	if changed {
		m.reconsider()
	}
}

// reconsider re-runs the start decision of a module that waits on a
// resource.
func (m *Module) reconsider() {
	if m.Busy() || m.state != Wait {
		return
	}
	if m.ready == Transient || m.waitRule != "" {
		m.tick()
	}
}

// tick evaluates the failover rules: the generated rule of each checker
// whose resource is down, once the resource has been down for HandleTime,
// and the implicit wakeup of a module held in WAIT.
func (m *Module) tick() {
	if m.Busy() || m.pending != nil {
		return
	}
	if m.state == Wait && m.waitRule == "splitbrain_failure" && !m.peerAlive {
		m.emit(CheckWitness{})
		return
	}
	if m.state == Wait {
		switch {
		case m.waitRule != "":
			if m.pendingWaitRule(false) == "" {
				m.logf("heart", "E", "Action wakeup from failover rule Implicit_wakeup")
				m.waitRule = ""
				m.decide()
			}
		case m.ready == Transient:
			m.decide()
		}
		return
	}
	if !m.stable() || !m.p.Checker {
		return
	}
	for _, c := range m.cfg.Checkers {
		r := m.resources[c.Resource()]
		if c.Action == "noaction" || c.Action == "" || !m.checkersOn[c.Resource()] || r == nil || r.value != "down" {
			continue
		}
		if m.now.Sub(r.since) < m.cfg.HandleTime {
			continue
		}
		m.logf("heart", "E", "Action %s from failover rule %s", c.Action, c.Rule())
		if c.Action == "wait" {
			if m.countLoop() {
				m.logf("heartplug", "U", "Action stop called by maxloop")
				m.stop("stop")
				return
			}
			m.wait(c.Rule())
			return
		}
		if err := m.execute(Command{Action: c.Action, Identity: c.Rule(), By: c.Rule()}); err != nil {
			m.logf("heart", "E", "Action %s from failover rule %s not applied: %v", c.Action, c.Rule(), err)
		}
		return
	}
}

// moduleRestarted: the module that a <module> checker watches started
// again. This module, if it runs, stops and starts again; one that waits
// (for that module, say) or stops has no application to restart.
func (m *Module) moduleRestarted(resource string) {
	if !m.p.Checker || !m.checkersOn[resource] || m.state == Stop || m.state == Wait || m.stopping {
		return
	}
	if err := m.command(Command{Action: "stopstart", Identity: "modulecheck", By: "modulecheck"}); err != nil {
		m.logf("heart", "E", "Action stopstart called by modulecheck not applied: %v", err)
	}
}

// pendingWaitRule returns the rule of a checker with action wait whose
// window is open and whose resource is init (init=true) or down.
func (m *Module) pendingWaitRule(init bool) string {
	if !m.p.Checker {
		return ""
	}
	for _, c := range m.cfg.Checkers {
		if c.Action != "wait" || !m.checkersOn[c.Resource()] {
			continue
		}
		r := m.resources[c.Resource()]
		if r == nil {
			continue
		}
		if (init && r.value == "init") || (!init && r.value == "down") {
			return c.Rule()
		}
	}
	return ""
}

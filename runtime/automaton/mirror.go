package automaton

import "time"

// The two-node part of the mirror automaton (User's Guide §5, §14.4): what a
// node does when its peer's state changes, as its heartbeats tell it.
//
//   - A starting node (WAIT) becomes SECOND when the peer is primary, goes
//     ALONE when the peer is absent or stopped and its own data is up to
//     date, and waits (NotReady) otherwise. When both start together, the
//     node with up-to-date data is elected (then defaultprim, then the one
//     that was primary last, then the lower node name) and goes ALONE; the
//     other then joins it as SECOND.
//   - ALONE becomes PRIM when the peer becomes its SECOND.
//   - PRIM goes ALONE when the peer stops ("remote stop") or is lost ("no
//     heartbeat").
//   - SECOND fails over to ALONE in the same cases, if its data is in sync
//     and failover is on; with failover="off" it stops and waits.
//   - swap: the primary leaves PRIM (stop_prim) with Swapping set; the
//     secondary, seeing it, becomes PRIM; then the former primary starts as
//     SECOND.
//   - defaultprim: a node name swaps, once the pair is PRIM/SECOND Ready,
//     so that the named node is primary; "lastprim" makes a restarted node
//     that was primary before its stop ask for that swap.
//   - Split brain: two ALONE nodes that see each other again; the one that
//     was secondary before gives way (stopstart, then rejoins as SECOND).

// Status is what the heartbeats tell the peer about this module.
func (m *Module) Status() PeerStatus {
	return PeerStatus{State: m.state, Ready: m.ready, UpToDate: m.p.UpToDate, LastPrim: m.p.LastPrim, Degraded: m.degraded,
		AloneCause: m.p.AloneCause, Swap: m.swapReq, Swapping: m.swapping, Stopping: m.stopping, Reintegrating: m.p.Reintegrating,
		FullSync: m.fullSyncPeer, Sync: m.p.Sync}
}

// Remote is the peer as this node knows it: alive, its state, its name.
func (m *Module) Remote() (alive bool, st PeerStatus, name string) {
	return m.peerAlive, m.peer, m.cfg.PeerNode
}

func (m *Module) peerPrimary() bool {
	return m.peerAlive && (m.peer.State == Prim || m.peer.State == Alone) && !m.peer.Swapping
}

func (m *Module) failoverOn() bool { return m.cfg.Failover && m.p.Failover }

func (m *Module) peerChanged(e Peer) {
	if e.Name != "" && m.cfg.PeerNode == "" {
		m.cfg.PeerNode = e.Name
	}
	old, wasAlive := m.peer, m.peerAlive
	m.peerAlive = e.Alive
	if e.Alive {
		m.peer = e.Status
	}
	switch {
	case !e.Alive && wasAlive:
		m.logf("heart", "E", "Remote state UNKNOWN Unknown")
	case e.Alive && (!wasAlive || old.State != e.Status.State || old.Ready != e.Status.Ready):
		m.logf("heart", "E", "Remote state %s %s", e.Status.State, e.Status.Ready)
	}
	if e.Alive && e.Status.State == Alone && m.state != Second {
		// The peer writes without us: our copy is no longer the reference.
		if m.p.UpToDate && m.state != Alone && m.state != Prim {
			m.p.UpToDate = false
			m.save()
		}
	}
	if !e.Alive || (e.Status.State != Second && e.Status.State != Prim) {
		m.defaultPrimDone = false
	}
	if e.Alive && old.Reintegrating && !e.Status.Reintegrating && e.Status.State == Second && e.Status.Ready == Ready &&
		(m.state == Prim || m.state == Alone) {
		// The secondary's synchronisation applied this node's policy:
		// not before, so that a policy set on a PRIM whose SECOND is
		// already Ready waits for the next one.
		m.syncPolicyDone(m.peerName())
	}
}

func (m *Module) link(e HeartbeatLink) {
	old, known := m.links[e.Ident]
	m.links[e.Ident] = e.Up
	if known && old == e.Up {
		return
	}
	if e.Up {
		m.logf("heart", "I", "Resource heartbeat.%s set to up by heart", e.Ident)
	} else if known {
		m.logf("heart", "C", "Resource heartbeat.%s set to down by heart", e.Ident)
	}
}

// settle starts what the peer's state asks for, when the module rests. It
// reports whether it started something.
func (m *Module) settle() bool {
	if m.pending != nil || m.witnessFor != "" {
		return false
	}
	p := m.peer
	switch m.state {
	case Wait:
		release := false
		switch m.waitRule {
		case "notuptodate_server", "failover-off":
			release = m.peerPrimary()
		case "degraded_server":
			release = !m.peerAlive || !m.peer.Degraded
		case "splitbrain_failure":
			release = m.peerAlive
		case "":
			release = m.ready == Transient
		}
		if release {
			m.waitRule = ""
			m.decide()
			return m.Busy()
		}
	case Alone:
		if m.ready != Ready {
			return false
		}
		switch {
		case m.peerAlive && p.State == Second && !p.Swapping && !m.degraded && (!m.cfg.HasRFS || p.Reintegrating || p.Ready != Ready):
			// With replicated data, only a secondary that (re)synchronises
			// from this node is its secondary: after file replication
			// dropped it, this node stays ALONE until it resynchronises.
			m.toPrim()
			return true
		case m.peerAlive && p.State == Alone:
			// Ready, or already leaving ALONE because it saw this node
			// first: the node that stays says so either way.
			return m.splitBrain()
		case m.peerAlive && p.State == Prim && p.Ready == Ready:
			// The peer took this node for its secondary (it saw it SECOND
			// on its way to ALONE) and stays primary: a split brain too,
			// which only this node can see.
			return m.splitBrain()
		default:
			m.splitNoted = false
		}
	case Prim:
		if m.ready != Ready {
			return false
		}
		switch {
		case m.replLost != "":
			why := m.replLost
			m.replLost = ""
			m.loseBy("nfsadmin", why)
			return true
		case !m.peerAlive:
			m.lose("no heartbeat")
			return true
		case p.State == Stop || p.State == Wait:
			m.lose("remote stop")
			return true
		case p.State == Alone:
			// The peer went ALONE while this node was PRIM (a one-way cut):
			// the same as a split brain.
			return m.splitBrain()
		case p.Swap != 0 && p.Swap != m.peerSwap:
			m.peerSwap = p.Swap
			m.logf("heart", "U", "Action swap called by %s", m.peerName())
			m.swapOut()
			return true
		case m.cfg.DefaultPrim == m.cfg.PeerNode && m.cfg.PeerNode != "" && p.State == Second && p.Ready == Ready && !m.defaultPrimDone:
			m.defaultPrimDone = true
			m.logf("heart", "E", "Transition SWAP from defaultprim")
			m.swapOut()
			return true
		}
	case Second:
		switch {
		case m.swapping:
			if m.peerAlive && p.State == Prim {
				m.swapping = false
				m.finishSwapOut()
				return true
			}
			if !m.peerAlive || p.State == Stop || p.State == Wait {
				// The peer did not take over: this node still has the data.
				m.swapping = false
				m.failover("remote stop during swap")
				return true
			}
		case m.replBroken && m.peerAlive && p.State == Alone && p.Ready == Ready && m.ready == Ready && !m.resyncing:
			// The primary dropped this node and writes without it.
			m.logf("nfsadmin", "E", "The primary goes on ALONE without this node: resynchronising")
			m.p.UpToDate = false
			m.save()
			m.setState(Second, Transient)
			m.startResync()
			return true
		case !m.peerAlive:
			m.failover("no heartbeat")
			return true
		case p.State == Stop || (p.State == Wait && !p.Stopping):
			// Not while the peer still runs its forced stop scripts.
			m.failover("remote stop")
			return true
		case p.Swapping && p.State == Second:
			if m.cfg.DefaultPrim == m.cfg.Node && m.cfg.Node != "" && m.swapReq == 0 && !m.defaultPrimDone {
				// The primary gives way to this node, which defaultprim
				// names: the User's Guide (§5.8) shows the line in the log
				// of the node that becomes primary.
				m.defaultPrimDone = true
				m.logf("heart", "E", "Transition SWAP from defaultprim")
			}
			m.swapIn()
			return true
		case m.lastPrimJoin && m.ready == Ready && m.peerAlive && p.State == Prim && p.Ready == Ready && m.swapReq == 0:
			// defaultprim="lastprim" (User's Guide §13.3.3): a node that
			// was primary when it was stopped takes that role back. It
			// joined as SECOND (the other node was primary), so it asks
			// for the swap, as `safekit swap` on a secondary does.
			m.lastPrimJoin = false
			m.logf("heart", "E", "Transition SWAP from defaultprim")
			m.swapSeq++
			m.swapReq = m.swapSeq
		}
	}
	return false
}

func (m *Module) peerName() string {
	if m.cfg.PeerNode != "" {
		return m.cfg.PeerNode
	}
	return "the other node"
}

// decideMirror chooses where a starting mirror goes.
func (m *Module) decideMirror() {
	p := m.peer
	switch {
	case m.forcePrim:
		if m.peerPrimary() {
			m.forcePrim = false
			m.logf("heart", "E", "Requested prim start aborted: %s is already primary (%s %s)", m.peerName(), p.State, p.Ready)
			m.stop("stop")
			return
		}
		m.forcePrim = false
		m.p.UpToDate, m.p.Reintegrating, m.p.AloneCause = true, false, "start"
		m.enter(Alone, "start")
	case m.peerPrimary() && m.peer.Degraded && m.cfg.HasRFS:
		if m.waitRule != "degraded_server" {
			m.logf("heart", "E", "Action wait from failover rule degraded_server")
			m.holdWait("degraded_server")
		}
	case m.peerPrimary() && m.cfg.HasRFS && !m.syncMatches():
		// Before the start scripts: the application does not start here
		// and the primary does not take this node for its secondary.
		m.externalMismatch()
	case m.peerPrimary():
		m.failoverHold = false
		m.enterSecond()
	case m.forceSecond:
		// Waits for the peer to be primary (checked by the command).
		m.setState(Wait, Transient)
	case m.failoverHold:
		m.holdWait("failover-off")
	case m.peerAlive && p.State == Wait:
		m.elect()
	case !m.peerAlive && !m.hbExpired:
		// Wait for the peer's heartbeats; without any within the timeout,
		// the peer is considered down.
		m.setState(Wait, Transient)
		if !m.hbArmed {
			m.hbArmed = true
			m.emit(SetTimer{Name: TimerHeartbeat, After: m.cfg.HeartbeatTimeout})
		}
	case m.upToDate():
		if m.peerAlive {
			m.logf("heart", "E", "Action alone called by heart: remote stop")
		} else {
			m.logf("heart", "E", "Action alone called by heart: no heartbeat")
		}
		m.p.AloneCause = "start"
		m.enter(Alone, "start")
	default:
		m.notUpToDate()
	}
}

func (m *Module) upToDate() bool { return !m.cfg.HasRFS || (m.p.UpToDate && !m.p.Reintegrating) }

func (m *Module) notUpToDate() {
	if m.waitRule == "notuptodate_server" {
		return
	}
	m.logf("rfsplug", "E", MsgNotUpToDate)
	m.logf("rfsplug", "E", MsgRunPrim)
	m.logf("heart", "E", "Action wait from failover rule notuptodate_server")
	m.holdWait("notuptodate_server")
}

// elect chooses the primary when both nodes start together. Both nodes run
// the same rule on the same facts, so they agree.
func (m *Module) elect() {
	p := m.peer
	mine, theirs := m.upToDate(), !m.cfg.HasRFS || (p.UpToDate && !p.Reintegrating)
	win := false
	switch {
	case mine && !theirs:
		win = true
	case !mine && !theirs && p.Reintegrating && !m.p.Reintegrating && m.p.LastPrim:
		// The peer was stopped in the middle of its reintegration from
		// this node, the last primary (which, recovering from a crash, no
		// longer calls itself up to date): this node's copy is the newer.
		win = true
	case !mine && !theirs:
		m.notUpToDate()
		return
	case mine && theirs:
		switch {
		case m.cfg.DefaultPrim == m.cfg.Node && m.cfg.Node != "":
			win = true
		case m.cfg.DefaultPrim == m.cfg.PeerNode && m.cfg.PeerNode != "":
			win = false
		case m.p.LastPrim != p.LastPrim:
			win = m.p.LastPrim
		default:
			win = m.cfg.Node < m.cfg.PeerNode
		}
	}
	if !win {
		// The peer goes ALONE; this node then joins it as SECOND.
		m.setState(Wait, Transient)
		return
	}
	m.p.AloneCause = "start"
	m.enter(Alone, "start")
}

// enterSecond takes a starting node to SECOND: scripts, then the
// resynchronisation of its replicated data.
func (m *Module) enterSecond() {
	m.forceSecond = false
	if m.hbArmed {
		m.emit(CancelTimer{Name: TimerHeartbeat})
		m.hbArmed = false
	}
	m.setState(Second, Transient)
	m.plan = append(m.plan, m.script("transition", m.cfg.ForceStopTimeout, string(Wait), string(Second), "start"))
	m.plan = append(m.plan, m.startSteps(Wait, Second, "start")...)
	m.plan = append(m.plan, do(m.startResync))
}

func (m *Module) startResync() {
	if !m.cfg.HasRFS {
		m.secondReady()
		return
	}
	if !m.syncMatches() {
		// The policies changed since this node started as secondary.
		m.externalMismatch()
		return
	}
	r := m.syncRequest()
	switch {
	case r.Full && !m.p.SyncSince.IsZero():
		m.logf("rfsplug", "I", "Full synchronization asked: the synchronization by date is not applied")
	case r.Full && m.syncExternal():
		m.logf("rfsplug", "I", "Full synchronization asked: the external synchronization is not applied")
	}
	m.resyncing, m.replBroken = true, false
	m.resyncID++
	r.ID = m.resyncID
	m.p.Reintegrating, m.p.UpToDate = true, false
	m.save()
	m.emit(r)
}

// syncRequest is the resynchronisation this node asks for as secondary,
// from both nodes' policies. A full copy, then a date, win over an
// external policy: they are the guide's ways out of an external
// synchronisation that cannot apply.
func (m *Module) syncRequest() Resync {
	mine, theirs := m.p.Sync, m.peer.Sync
	r := Resync{Full: m.p.FullSync || m.peer.FullSync || mine.Mode == SyncFull || theirs.Mode == SyncFull}
	switch {
	case r.Full:
	case !m.p.SyncSince.IsZero():
		r.Since = m.p.SyncSince
	case m.syncExternal():
		r.External = mine.UID
	}
	return r
}

// syncExternal: either node's policy is external.
func (m *Module) syncExternal() bool {
	return m.p.Sync.Mode == SyncExternal || m.peer.Sync.Mode == SyncExternal
}

// syncMatches tells whether the resynchronisation of this node as
// secondary can apply the policies: an external one needs external second
// here and external prim, with the same uid, on the primary.
func (m *Module) syncMatches() bool {
	r := m.syncRequest()
	return r.Full || !r.Since.IsZero() || !m.syncExternal() || m.p.Sync.Complements(m.peer.Sync)
}

// externalMismatch stops a secondary whose external synchronisation has
// no counterpart on the primary (User's Guide §13.7.4.9).
func (m *Module) externalMismatch() {
	mod := m.cfg.Module
	m.logf("rfsplug", "E", "External synchronization cannot be applied: the synchronization policy is %s on this node and %s on %s; it needs external second <uid> on the secondary and external prim <uid> on the primary, with the same uid",
		m.p.Sync, m.peer.Sync, m.peerName())
	m.logf("rfsplug", "E", "Complete the external synchronization procedure on both nodes (safekit rfssync external prim|second <uid> -m %s), or run safekit rfssync full -m %s, or safekit secondforce -d <date of the backup> -m %s",
		mod, mod, mod)
	m.logf("heart", "U", "Action stop called by rfsplug")
	m.p.Running = false
	m.save()
	m.stop("stop")
}

// syncPolicy is this node's policy as usersetting.rfssync* show it: that
// of rfssync, full after second|prim fullsync or primforce.
func (m *Module) syncPolicy() SyncPolicy {
	if m.p.FullSync || m.fullSyncPeer {
		return SyncPolicy{Mode: SyncFull}
	}
	return m.p.Sync
}

// syncApplicable is rfs.rfssync: an external policy applies only with
// its counterpart on the peer.
func (m *Module) syncApplicable() bool {
	p, q := m.p.Sync, m.peer.Sync
	if p.Mode != SyncExternal {
		return true
	}
	return m.peerAlive && q.Mode == SyncExternal && q.UID == p.UID && q.Role != p.Role &&
		(q.Role == SyncRolePrim || q.Role == SyncRoleSecond)
}

// syncPolicyDone returns the policy to the default after a successful
// synchronisation of the pair (User's Guide §13.7.4.9).
func (m *Module) syncPolicyDone(with string) {
	was := m.syncPolicy()
	m.fullSyncPeer, m.p.FullSync = false, false
	m.p.Sync, m.p.SyncSince = SyncPolicy{}, time.Time{}
	m.save()
	if was.Mode != "" {
		m.logf("rfsplug", "I", "Synchronization policy %s returned to default after the synchronization with %s", was, with)
	}
}

func (m *Module) resyncDone(e ResyncDone) {
	if !m.resyncing || e.ID != m.resyncID {
		return // the answer of a cancelled resynchronisation
	}
	m.resyncing = false
	if !e.OK {
		// The next attempt waits for a period of the failover rules: a
		// primary that cannot be reached (its process just died, its
		// heartbeats not yet timed out) must not make this node spin.
		m.logf("reintegre", "E", "Reintegration failed: %s", e.Err)
		m.logf("heart", "E", "Action wait from failover rule reintegration_failure")
		m.leaveToWait(Second, "stopwait")
		m.plan = append(m.plan, do(func() { m.holdWait("reintegration_failure") }))
		return
	}
	m.logf("reintegre", "E", "Reintegration ended (synchronize)")
	m.p.Reintegrating = false
	m.syncPolicyDone(m.peerName())
	m.secondReady()
}

func (m *Module) secondReady() {
	m.p.UpToDate, m.p.LastPrim, m.p.AloneCause = true, false, ""
	m.save()
	m.setState(Second, Ready)
}

// toPrim: ALONE -> PRIM when the peer became SECOND.
func (m *Module) toPrim() {
	m.setState(Alone, Transient)
	m.plan = append(m.plan, do(func() { m.closeWindow("sec") }),
		m.script("stop_sec", m.cfg.NiceStopTimeout, string(Alone), string(Prim), "start"),
		m.script("transition", m.cfg.ForceStopTimeout, string(Alone), string(Prim), "start"),
		do(func() {
			m.p.AloneCause = ""
			m.save()
			m.setState(Prim, Ready)
		}))
}

// lose: PRIM -> ALONE when the secondary stopped or was lost.
func (m *Module) lose(why string) { m.loseBy("heart", why) }

// loseBy: PRIM -> ALONE, called by heart or nfsadmin (file replication).
func (m *Module) loseBy(by, why string) {
	if why == "no heartbeat" && m.cfg.Witness {
		m.askWitness("lose")
		return
	}
	m.logf("heart", "E", "Action alone called by %s: %s", by, why)
	m.setState(Prim, Transient)
	m.plan = append(m.plan,
		m.script("transition", m.cfg.ForceStopTimeout, string(Prim), string(Alone), "start"),
		m.script("start_sec", 0, string(Prim), string(Alone), "start"),
		do(func() { m.openWindow("sec") }),
		do(func() {
			m.p.AloneCause, m.p.UpToDate = "prim", true
			m.save()
			m.setState(Alone, Ready)
		}))
}

// failover: SECOND -> ALONE when the primary stopped or was lost.
func (m *Module) failover(why string) {
	switch {
	case !m.failoverOn():
		m.logf("heart", "E", "Failover-off configured")
		m.logf("heart", "U", "Action stopstart called by failover-off")
		m.logf("heart", "E", "Transition STOPSTART from failover-off")
		m.failoverHold = true
		m.stop("stopstart")
		m.plan = append(m.plan, do(func() { m.start("start") }))
		return
	case !m.upToDate():
		m.logf("heart", "E", "The primary is gone but the replicated data of this node is not up to date (reintegration not finished): no failover")
		m.leaveToWait(Second, "stopwait")
		m.plan = append(m.plan, do(m.notUpToDate))
		return
	case why == "no heartbeat" && m.cfg.Witness:
		m.askWitness("failover")
		return
	}
	m.logf("heart", "E", "Action alone called by heart: %s", why)
	m.lastPrimJoin = false
	m.setState(Second, Transient)
	m.plan = append(m.plan, do(func() { m.closeWindow("second") }),
		m.script("stop_second", m.cfg.NiceStopTimeout, string(Second), string(Alone), "start"),
		m.rfs(ReplicationRole{Primary: true}),
		m.script("transition", m.cfg.ForceStopTimeout, string(Second), string(Alone), "start"),
		m.vipUp(),
		m.script("start_prim", 0, string(Second), string(Alone), "start"),
		do(func() { m.openWindow("prim") }),
		do(func() {
			m.p.AloneCause, m.p.UpToDate, m.p.LastPrim = "failover", true, true
			m.save()
			m.setState(Alone, Ready)
		}))
}

// leaveToWait stops the application of role from and waits in WAIT.
func (m *Module) leaveToWait(from State, action string) {
	m.setState(from, Transient)
	m.plan = append(m.plan, m.leaveSteps(from, Wait, action, true)...)
	m.plan = append(m.plan, m.rfs(ReplicationRole{Primary: false}),
		m.script("transition", m.cfg.ForceStopTimeout, string(from), string(Wait), action))
}

// swapOut: the primary gives up PRIM; the peer takes over, then this node
// starts as SECOND.
func (m *Module) swapOut() {
	// Only the primary's part stops (User's Guide §14.4): start_both and
	// what it started go on, the node stays in the pair.
	m.logf("heart", "E", "Begin of Swap")
	m.setState(Prim, Transient)
	m.plan = append(m.plan, do(func() { m.closeWindow("prim") }),
		m.script("stop_prim", m.cfg.NiceStopTimeout, string(Prim), string(Second), "swap"),
		m.script("stop_prim", m.cfg.ForceStopTimeout, "force", string(Prim), string(Second), "swap"),
		m.vipDown(),
		m.rfs(ReplicationRole{Primary: false}),
		m.script("transition", m.cfg.ForceStopTimeout, string(Prim), string(Second), "swap"),
		do(func() {
			m.swapping = true
			m.setState(Second, Transient)
		}))
}

func (m *Module) finishSwapOut() {
	m.plan = append(m.plan, m.script("start_second", 0, string(Prim), string(Second), "swap"),
		do(func() { m.openWindow("second") }),
		m.script("start_sec", 0, string(Prim), string(Second), "swap"),
		do(func() { m.openWindow("sec") }),
		do(m.startResync))
}

// swapIn: the secondary takes over from a primary that left for a swap.
func (m *Module) swapIn() {
	m.swapReq, m.lastPrimJoin = 0, false
	m.setState(Second, Transient)
	m.plan = append(m.plan, do(func() { m.closeWindow("sec") }),
		m.script("stop_sec", m.cfg.NiceStopTimeout, string(Second), string(Prim), "swap"),
		do(func() { m.closeWindow("second") }),
		m.script("stop_second", m.cfg.NiceStopTimeout, string(Second), string(Prim), "swap"),
		m.rfs(ReplicationRole{Primary: true}),
		m.script("transition", m.cfg.ForceStopTimeout, string(Second), string(Prim), "swap"),
		m.vipUp(),
		m.script("start_prim", 0, string(Second), string(Prim), "swap"),
		do(func() { m.openWindow("prim") }),
		do(func() {
			m.p.UpToDate, m.p.LastPrim, m.p.AloneCause = true, true, ""
			m.save()
			m.setState(Prim, Ready)
		}))
}

// splitBrain decides, when two ALONE nodes see each other again, which one
// gives way: the former secondary; between equals, the higher node name.
// Both nodes decide on the same facts: the one that gives way keeps its
// AloneCause until it is SECOND, so that the other, seeing it leave ALONE
// before it saw it Ready, still decides to stay.
func (m *Module) splitBrain() bool {
	mine, theirs := m.p.AloneCause, m.peer.AloneCause
	exit := false
	switch {
	case mine == "failover" && theirs != "failover":
		exit = true
	case theirs == "failover" && mine != "failover":
		exit = false
	default:
		exit = m.cfg.Node > m.cfg.PeerNode
	}
	if !exit {
		if !m.splitNoted {
			m.splitNoted = true
			m.logf("heart", "E", "Split brain recovery: staying alone")
		}
		return false
	}
	if m.peer.Ready != Ready {
		return false // the peer is between states: decide once it rests
	}
	m.logf("heart", "E", "Split brain recovery: exiting alone")
	// What this node wrote alone is lost: the peer's copy is the reference.
	m.p.UpToDate, m.p.FullSync = false, true
	m.save()
	m.stop("stopstart")
	m.plan = append(m.plan, do(func() {
		m.logf("heart", "U", "Action start called automatically")
		m.start("start")
	}))
	return true
}

// askWitness pings the split-brain witnesses before acting on a lost peer.
func (m *Module) askWitness(what string) {
	m.witnessFor = what
	m.emit(CheckWitness{})
}

func (m *Module) witness(reachable bool) {
	what := m.witnessFor
	m.witnessFor = ""
	if what == "" {
		// A periodic check while held by splitbrain_failure.
		if m.state == Wait && m.waitRule == "splitbrain_failure" && reachable && !m.peerAlive {
			m.logf("splitbraincheck", "I", "Resource splitbrain.uptodate set to up by splitbraincheck")
			m.waitRule = ""
			m.hbExpired = true
			m.decide()
		}
		return
	}
	if m.peerAlive {
		return // the peer came back meanwhile: settle decides again
	}
	if reachable {
		m.logf("splitbraincheck", "I", "Resource splitbrain.uptodate set to up by splitbraincheck")
		witnessOK := m.cfg.Witness
		m.cfg.Witness = false
		if what == "lose" {
			m.lose("no heartbeat")
		} else {
			m.failover("no heartbeat")
		}
		m.cfg.Witness = witnessOK
		return
	}
	m.logf("splitbraincheck", "C", "Resource splitbrain.uptodate set to down by splitbraincheck")
	m.logf("heart", "E", "Action wait from failover rule splitbrain_failure")
	from := m.state
	m.leaveToWait(from, "stopwait")
	m.plan = append(m.plan, do(func() { m.holdWait("splitbrain_failure") }))
}

// Package automaton is the state machine of one module, as a pure function
// of events: the driver feeds it commands, script results, resource changes,
// timer expiries and ticks, each with the current time, and executes the
// actions it returns (run a script, set the state, log a line, start a
// checker...). It does no I/O, reads no clock and starts no goroutine, so
// that its behaviour is tested by scenario files (testdata/*.txt).
//
// States and names follow SafeKit (User's Guide §5, §6, §14.4): STOP, WAIT,
// ALONE, PRIM, SECOND, UP with NotReady / Transient / Ready, and the script
// execution automaton of §14.4.
package automaton

import (
	"fmt"
	"time"
)

// State of a module.
type State string

// Module states.
const (
	Stop   State = "STOP"
	Wait   State = "WAIT"
	Alone  State = "ALONE"
	Prim   State = "PRIM"
	Second State = "SECOND"
	Up     State = "UP"
)

// Readiness qualifies a state.
type Readiness string

// Readiness values.
const (
	NotReady  Readiness = "NotReady"
	Transient Readiness = "Transient"
	Ready     Readiness = "Ready"
)

// Mode of a module.
type Mode string

// Modes.
const (
	Mirror Mode = "mirror"
	Farm   Mode = "farm"
	Light  Mode = "light"
)

// Config is what the automaton needs of a module's configuration.
type Config struct {
	Module string
	Mode   Mode
	// HasRFS: the module replicates directories, so a node must not become
	// primary with data that may be stale.
	HasRFS bool
	// HasUser: <user> is present; without it no script runs.
	HasUser bool
	// Scripts are the names of the scripts present in SAFEUSERBIN; only
	// these run.
	Scripts map[string]bool
	// NiceStopTimeout and ForceStopTimeout bound the graceful and forced
	// calls of stop scripts.
	NiceStopTimeout, ForceStopTimeout time.Duration
	// HeartbeatTimeout is how long a starting mirror waits for its peer
	// before deciding alone.
	HeartbeatTimeout time.Duration
	Checkers         []Checker
	// Procs are the <proc>s of <errd> (errd.go).
	Procs []Proc
	// MaxLoop counted actions are allowed within LoopInterval (0 disables).
	MaxLoop      int
	LoopInterval time.Duration
	// Period of the failover rules and HandleTime an action must hold.
	Period, HandleTime time.Duration

	// Node and PeerNode name this node and the other node of a mirror.
	Node, PeerNode string
	// Failover: <service failover>; off keeps the secondary in WAIT when
	// the primary fails.
	Failover bool
	// DefaultPrim: alone, lastprim or a node name (<service defaultprim>).
	DefaultPrim string
	// Witness: a <splitbrain> checker decides whether a node that lost its
	// peer may go ALONE.
	Witness bool
	// VIP: the mirror has virtual IPs, which follow start_prim and
	// stop_prim (vip.go).
	VIP bool
}

// Checker is a checker the automaton starts and stops with the module and
// whose resource drives a failover rule.
type Checker struct {
	// Class and Ident name the resource <Class>.<Ident> (custom.vm1_check):
	// Class is tcp, ping, intf, ip, custom or module.
	Class, Ident string
	// When: pre, prim, second or both: the window it runs in.
	When string
	// Action when the resource is down: restart, stopstart, stop, wait or
	// noaction. The classes intf, ip and module have a fixed one (wait,
	// stopstart, wait).
	Action string
}

// Resource is the name of the checker's resource.
func (c Checker) Resource() string { return c.Class + "." + c.Ident }

// Rule is the name of the checker's failover rule (User's Guide
// §13.11.3.2): the predefined interface_failure, ip_failure and
// module_failure shared by every checker of those classes, or the rule
// generated for one tcp, ping or custom checker: t_, p_ or c_ and its ident.
func (c Checker) Rule() string {
	switch c.Class {
	case "intf":
		return "interface_failure"
	case "ip":
		return "ip_failure"
	case "module":
		return "module_failure"
	}
	return c.Class[:1] + "_" + c.Ident
}

// Persisted is what the automaton keeps across restarts of the module
// process and of the node.
type Persisted struct {
	// State is the last state entered (STOP after a clean stop).
	State State `json:"state"`
	// Running: an administrator started the module and did not stop it
	// (a shutdown keeps it): what <service boot="auto"> looks at.
	Running bool `json:"running"`
	// LastPrim: the module was primary (PRIM or ALONE) when it last left
	// that role.
	LastPrim bool `json:"lastprim"`
	// UpToDate: the local replicated data is the reference copy.
	UpToDate bool `json:"uptodate"`
	// Boot is `safekit boot on|off` (used when <service boot="ignore">).
	Boot bool `json:"boot"`
	// Checker, Errd, Failover are the usersettings toggles.
	Checker  bool `json:"checker"`
	Errd     bool `json:"errd"`
	Failover bool `json:"failover"`
	// AloneCause records how the module became ALONE: "failover" (it was
	// secondary), "prim" (it was primary and lost its secondary), "start".
	// Split-brain recovery sacrifices the former secondary.
	AloneCause string `json:"alone_cause,omitempty"`
	// Reintegrating: a resynchronisation as secondary was started and not
	// finished; such data may be inconsistent.
	Reintegrating bool `json:"reintegrating,omitempty"`
	// FullSync: the next resynchronisation copies everything.
	FullSync bool `json:"fullsync,omitempty"`
	// Sync is the synchronisation policy of `safekit rfssync` (User's
	// Guide §13.7.4.9); it returns to the default after the next
	// successful synchronisation of the pair.
	Sync SyncPolicy `json:"rfssync,omitzero"`
	// SyncSince is the date of `safekit secondforce -d`: the next
	// resynchronisation of this node as secondary copies only the files
	// modified since (§13.7.4.8). Cleared when it succeeds, and by the
	// next start command that does not give a date.
	SyncSince time.Time `json:"sync_since,omitzero"`
	// LoopCount actions counted since LoopStart (maxloop).
	LoopCount int       `json:"loop_count"`
	LoopStart time.Time `json:"loop_start"`
}

// Synchronisation policies (usersetting.rfssyncmode).
const (
	SyncDefault  = "default"  // copy what changed (bitmaps or checksums), everything the first time
	SyncFull     = "full"     // copy everything
	SyncExternal = "external" // the secondary holds a restored backup: compare every file
)

// Roles of the external synchronisation (usersetting.rfssyncrole).
const (
	SyncRolePrim   = "prim"   // the source: the node that was backed up
	SyncRoleSecond = "second" // the destination: the node the backup was restored on
)

// MaxSyncUID is the longest uid of an external synchronisation.
const MaxSyncUID = 24

// SyncPolicy is how the next resynchronisation of the pair copies the
// replicated data. The zero value is the default policy.
type SyncPolicy struct {
	// Mode is SyncFull or SyncExternal; "" is SyncDefault.
	Mode string `json:"mode,omitempty"`
	// Role (external): SyncRolePrim or SyncRoleSecond.
	Role string `json:"role,omitempty"`
	// UID (external) names the backup both nodes were given (at most
	// MaxSyncUID characters).
	UID string `json:"uid,omitempty"`
	// NoDetect (rfssync -d): no change detection between the backup or
	// restore and the start. Recorded and shown only: the external
	// resynchronisation compares every file by zone checksums, which
	// finds every change anyway.
	NoDetect bool `json:"nodetect,omitempty"`
}

// ModeName is the mode as usersetting.rfssyncmode shows it.
func (p SyncPolicy) ModeName() string {
	if p.Mode == "" {
		return SyncDefault
	}
	return p.Mode
}

// String is the policy as the module log and safekit rfssync say it.
func (p SyncPolicy) String() string {
	if p.Mode != SyncExternal {
		return p.ModeName()
	}
	s := fmt.Sprintf("external %s %s", p.Role, p.UID)
	if p.NoDetect {
		s += " (-d)"
	}
	return s
}

// Complements tells whether p, on the node that will be secondary, and
// peer, on the primary, make one external synchronisation.
func (p SyncPolicy) Complements(peer SyncPolicy) bool {
	return p.Mode == SyncExternal && peer.Mode == SyncExternal && p.UID == peer.UID && p.UID != "" &&
		p.Role == SyncRoleSecond && peer.Role == SyncRolePrim
}

// DefaultPersisted is the record of a module never started.
func DefaultPersisted() Persisted {
	return Persisted{State: Stop, Checker: true, Errd: true, Failover: true}
}

// Event is an input of the automaton.
type Event interface{ event() }

// Command is an administrator or detector command (safekit start, stop...).
type Command struct {
	Action string // start, stop, restart, stopstart, forcestop, prim, primforce, second, secondforce, swap, shutdown, rfssync
	// Arg is fullsync (prim, second) or nosync (swap).
	Arg string
	// Sync is the policy of rfssync.
	Sync SyncPolicy
	// Since is the date of secondforce.
	Since time.Time
	// Services (restart by errd, restart_services) are given to the
	// scripts of the restart as -Services "<Services>".
	Services string
	// Identity is the -i value: set by scripts, checkers and failover rules;
	// such commands count toward maxloop. Empty for administrators.
	Identity string
	// By names who called it in the log ("root", "admin@10.0.0.1").
	By string
}

// ScriptDone reports the end of a RunScript.
type ScriptDone struct {
	ID       int
	ExitCode int
	TimedOut bool
	Killed   bool
	// Err is set when the script could not run at all.
	Err string
}

// SetResource is `safekit set -r name -v value`.
type SetResource struct {
	Name, Value string
	// By is shown in the log: the -i identity, or the program that set it.
	By string
	// Identity is the -i value (counted when it triggers an action).
	Identity string
	// Quiet (-n) does not log; Force (-l) logs even an unchanged value.
	Quiet, Force bool
}

// Setting is `safekit checker|errd|failover|boot on|off`.
type Setting struct {
	Name string // checker, errd, failover, boot
	On   bool
	By   string
}

// Loop is `safekit incloop|resetloop -i id`.
type Loop struct {
	Op       string // incloop or resetloop
	Identity string
}

// Recover is the first event after the module process or the node died
// while the module was not stopped: the application may still run without
// protection, so the stop scripts run with force and the module ends in
// STOP.
type Recover struct {
	// From is the state recorded before the crash.
	From State
}

// PeerStatus is the peer's module as its heartbeats describe it.
type PeerStatus struct {
	State         State
	Ready         Readiness
	UpToDate      bool
	LastPrim      bool
	AloneCause    string
	Swap          uint64 // a new value asks this node (primary) to swap
	Swapping      bool   // the peer leaves PRIM for a swap: take over
	Stopping      bool   // the peer is in a stop transition
	Reintegrating bool
	// FullSync: the peer (primary) asks for a full resynchronisation
	// (safekit prim fullsync).
	FullSync bool
	// Degraded: file replication broke on the peer (primary): it cannot
	// take a secondary until it is stopped and started again.
	Degraded bool
	// Sync is the peer's synchronisation policy (rfssync).
	Sync SyncPolicy
}

// Peer reports a change seen through the heartbeats: the peer's status, or
// its loss (Alive false: every heartbeat is down).
type Peer struct {
	Alive  bool
	Status PeerStatus
	// Name of the peer node, when the heartbeats tell it.
	Name string
}

// HeartbeatLink reports one heartbeat up or down (resource
// heartbeat.<ident>). Losing some heartbeats is logged; losing all is a
// Peer{Alive: false}.
type HeartbeatLink struct {
	Ident string
	Up    bool
}

// ResyncDone reports the end of the resynchronisation of a secondary.
type ResyncDone struct {
	ID  int
	OK  bool
	Err string
}

// WitnessResult answers CheckWitness: whether a split-brain witness
// answered.
type WitnessResult struct{ Reachable bool }

// ReplicationLost reports, on the primary, that the secondary was dropped
// by file replication (no acknowledgement within locktimeout, a broken
// connection...): the module goes on ALONE, and the secondary resynchronises
// from the writes it missed. On the secondary, that the stream from the
// primary ended; Incomplete: this node's copy misses operations (one could
// not be applied here), so it is no longer up to date.
type ReplicationLost struct {
	Reason     string
	Incomplete bool
}

// ReplicationDegraded reports, on the primary, that replication broke on
// this node (SafeKit's "degraded"): the module stays primary, ALONE.
type ReplicationDegraded struct{ Reason string }

// ModuleRestarted reports that the module a <module> checker watches
// (resource Resource) started again since the checker last saw it Ready: a
// restart, a stopstart or a failover. A module that runs stops and starts
// again, on top of the new instance ("Action stopstart called by
// modulecheck", User's Guide §13.17).
type ModuleRestarted struct{ Resource string }

// TimerExpired reports the end of a SetTimer.
type TimerExpired struct{ Name string }

// Tick is sent every Period: it evaluates the failover rules.
type Tick struct{}

func (Command) event()             {}
func (ScriptDone) event()          {}
func (SetResource) event()         {}
func (Setting) event()             {}
func (Loop) event()                {}
func (TimerExpired) event()        {}
func (Recover) event()             {}
func (Peer) event()                {}
func (HeartbeatLink) event()       {}
func (ResyncDone) event()          {}
func (WitnessResult) event()       {}
func (ReplicationLost) event()     {}
func (ReplicationDegraded) event() {}
func (ModuleRestarted) event()     {}
func (Tick) event()                {}

// Action is an output of the automaton, executed by the driver.
type Action interface{ action() }

// RunScript runs SAFEUSERBIN/<Script> with Args; the driver answers with
// ScriptDone{ID}.
type RunScript struct {
	ID      int
	Script  string
	Args    []string
	Timeout time.Duration
}

// KillScript kills the process group of a running script (forcestop).
type KillScript struct{ ID int }

// StartChecker starts a checker process.
type StartChecker struct{ Checker Checker }

// StopChecker stops a checker process.
type StopChecker struct{ Checker Checker }

// SetState records a new state: the driver logs "Local state X Y",
// publishes it and persists it.
type SetState struct {
	State State
	Ready Readiness
}

// Log is a module log line.
type Log struct {
	Origin string // heart, userplug, customscript...
	Level  string // U, E, C, S, I, W, D
	Msg    string
}

// SetTimer asks for TimerExpired{Name} after After (replacing a timer of the
// same name).
type SetTimer struct {
	Name  string
	After time.Duration
}

// CancelTimer cancels a timer.
type CancelTimer struct{ Name string }

// Resync starts the resynchronisation of this node as secondary; the
// driver answers with ResyncDone. At most one of Full, Since and External
// is set; none lets the primary choose (bitmaps or checksums, everything
// the first time).
type Resync struct {
	ID int
	// Full copies everything.
	Full bool
	// Since (secondforce -d) copies whole the files modified since, and
	// leaves the others as they are.
	Since time.Time
	// External is the uid of an external synchronisation: every file is
	// compared zone by zone, only differing zones are copied.
	External string
}

// CancelResync stops the resynchronisation in progress (the module stops).
type CancelResync struct{ ID int }

// CheckWitness asks whether a split-brain witness answers; the driver
// answers with WitnessResult.
type CheckWitness struct{}

// MountReplicated mounts the replicated directories (read-only: the
// secondary role) when a module with <rfs> starts.
type MountReplicated struct{}

// ReplicationRole makes the replicated directories writable (Primary) or
// read-only again.
type ReplicationRole struct{ Primary bool }

// UnmountReplicated stops the processes still using the replicated
// directories and unmounts them when the module stops.
type UnmountReplicated struct{}

// Save asks the driver to persist the record.
type Save struct{ Persisted Persisted }

// SetVIP sets (Up) or removes the virtual IPs of a mirror on this node,
// before the next action runs.
type SetVIP struct{ Up bool }

func (RunScript) action()         {}
func (KillScript) action()        {}
func (StartChecker) action()      {}
func (StopChecker) action()       {}
func (SetState) action()          {}
func (Log) action()               {}
func (SetTimer) action()          {}
func (CancelTimer) action()       {}
func (Save) action()              {}
func (Resync) action()            {}
func (CancelResync) action()      {}
func (CheckWitness) action()      {}
func (MountReplicated) action()   {}
func (ReplicationRole) action()   {}
func (UnmountReplicated) action() {}
func (SetVIP) action()            {}

// Refused is the error of a command that cannot run in the current state.
type Refused struct{ Msg string }

func (r *Refused) Error() string { return r.Msg }

func refusedf(format string, args ...any) error {
	return &Refused{Msg: fmt.Sprintf(format, args...)}
}

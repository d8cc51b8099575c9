package automaton

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// The scenarios in testdata/ drive one module automaton. Directives:
//
//	new mode=mirror|farm|light [rfs] [nouser] [uptodate] [lastprim] [scripts=a,b] [checker=class.ident/when/action]
//	    [maxloop=n] [loop=24h] [hb=30s] [handle=15s] [period=5s] [node=node1] [peernode=node2]
//	    [defaultprim=X] [nofailover] [witness] [vip] [proc=name/class/action[/services]]
//	cmd <action> [id=identity] [by=who]   a safekit command
//	cmd rfssync full | cmd rfssync external role=prim|second uid=U [nodetect]
//	cmd secondforce since=<RFC 3339 date>
//	done [exit=n] [timeout] [err=msg]     the running script ends
//	finish                                 every script ends with 0 until none runs
//	set <resource> <value> [by=who] [id=identity] [quiet] [force]
//	advance <duration>                     time passes; expired timers fire
//	tick                                   one period passes, rules are evaluated
//	setting <name> on|off
//	loop incloop|resetloop id=identity
//	recover <state>                        first event after a crash in <state>
//	peer lost | peer <STATE> [ready=R] [uptodate] [lastprim] [cause=C] [swap=N] [swapping] [stopping] [reintegrating] [fullsync]
//	     [sync=full|external/<role>/<uid>]    the peer's rfssync policy
//	link <ident> up|down                   one heartbeat
//	resync ok|fail [err=msg]               end of a resynchronisation
//	witness reachable|unreachable          answer of the split-brain witness
//	replication lost|degraded <reason> [incomplete]  file replication dropped the secondary / broke here
//	restarted <resource>                   a module checker saw the module it watches start again
//	poll <name> ok|fail                    one poll of a <proc> of <errd>
//	errd enable|disable <class>            safekit errd enable|disable
//	handler <name> [exit=n] [err=msg]      the handler of a <proc> ends
//	started                                when the application last started (AppStarted), from the first event
//	status                                 what the heartbeats send
//	state | resources | persisted
//
// Each prints the actions of the automaton, one per line; a refused command
// prints "refused: <message the user sees>".

func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := &harness{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return h.directive(t, d)
		})
	})
}

type harness struct {
	m       *Module
	cfg     Config
	now     time.Time
	running *RunScript
	timers  map[string]time.Time
	resync  int
}

var allScripts = "prestart,poststop,transition,start_prim,stop_prim,start_both,stop_both,start_second,stop_second,start_sec,stop_sec"

func (h *harness) directive(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "new":
		h.newModule(t, d)
		return "ok"
	case "cmd":
		c := Command{Action: d.CmdArgs[0].Key}
		if len(d.CmdArgs) > 1 && d.CmdArgs[1].Vals == nil {
			c.Arg = d.CmdArgs[1].Key
		}
		d.MaybeScanArgs(t, "id", &c.Identity)
		d.MaybeScanArgs(t, "by", &c.By)
		if c.Action == "rfssync" {
			c.Sync, c.Arg = SyncPolicy{Mode: c.Arg, NoDetect: d.HasArg("nodetect")}, ""
			d.MaybeScanArgs(t, "role", &c.Sync.Role)
			d.MaybeScanArgs(t, "uid", &c.Sync.UID)
		}
		var since string
		if d.MaybeScanArgs(t, "since", &since) {
			var err error
			if c.Since, err = time.Parse(time.RFC3339, since); err != nil {
				t.Fatalf("%s: %v", d.Pos, err)
			}
		}
		return h.step(Command(c))
	case "done":
		if h.running == nil {
			t.Fatalf("%s: no script is running", d.Pos)
		}
		e := ScriptDone{ID: h.running.ID, TimedOut: d.HasArg("timeout")}
		d.MaybeScanArgs(t, "exit", &e.ExitCode)
		d.MaybeScanArgs(t, "err", &e.Err)
		return h.step(e)
	case "finish":
		var b strings.Builder
		for i := 0; h.running != nil; i++ {
			if i > 100 {
				t.Fatalf("%s: scripts never end", d.Pos)
			}
			b.WriteString(h.step(ScriptDone{ID: h.running.ID}))
		}
		return b.String()
	case "set":
		e := SetResource{Name: d.CmdArgs[0].Key, Value: d.CmdArgs[1].Key, By: "customscript",
			Quiet: d.HasArg("quiet"), Force: d.HasArg("force")}
		d.MaybeScanArgs(t, "by", &e.By)
		d.MaybeScanArgs(t, "id", &e.Identity)
		return h.step(e)
	case "advance":
		dur, err := time.ParseDuration(d.CmdArgs[0].Key)
		if err != nil {
			t.Fatal(err)
		}
		return h.advance(dur)
	case "tick":
		out := h.advance(h.cfg.Period)
		return out + h.step(Tick{})
	case "peer":
		// peer lost | peer <STATE> [ready=..] [uptodate] [lastprim] [cause=..] [swap=n] [swapping] [stopping] [reintegrating] [fullsync]
		if d.CmdArgs[0].Key == "lost" {
			return h.step(Peer{Alive: false})
		}
		ps := PeerStatus{State: State(d.CmdArgs[0].Key), Ready: Ready, UpToDate: d.HasArg("uptodate"), LastPrim: d.HasArg("lastprim"),
			Swapping: d.HasArg("swapping"), Stopping: d.HasArg("stopping"), Degraded: d.HasArg("degraded"), Reintegrating: d.HasArg("reintegrating"), FullSync: d.HasArg("fullsync")}
		var ready string
		if d.MaybeScanArgs(t, "ready", &ready) {
			ps.Ready = Readiness(ready)
		}
		d.MaybeScanArgs(t, "cause", &ps.AloneCause)
		d.MaybeScanArgs(t, "swap", &ps.Swap)
		var sync string
		if d.MaybeScanArgs(t, "sync", &sync) {
			parts := append(strings.Split(sync, "/"), "", "")
			ps.Sync = SyncPolicy{Mode: parts[0], Role: parts[1], UID: parts[2]}
		}
		return h.step(Peer{Alive: true, Status: ps})
	case "link":
		return h.step(HeartbeatLink{Ident: d.CmdArgs[0].Key, Up: d.CmdArgs[1].Key == "up"})
	case "resync":
		e := ResyncDone{ID: h.resync, OK: d.CmdArgs[0].Key == "ok"}
		d.MaybeScanArgs(t, "err", &e.Err)
		return h.step(e)
	case "replication":
		// replication lost <reason> | replication degraded <reason>
		reason := ""
		if len(d.CmdArgs) > 1 {
			reason = d.CmdArgs[1].Key
		}
		if d.CmdArgs[0].Key == "degraded" {
			return h.step(ReplicationDegraded{Reason: reason})
		}
		return h.step(ReplicationLost{Reason: reason, Incomplete: d.HasArg("incomplete")})
	case "witness":
		return h.step(WitnessResult{Reachable: d.CmdArgs[0].Key == "reachable"})
	case "restarted":
		return h.step(ModuleRestarted{Resource: d.CmdArgs[0].Key})
	case "started":
		if at := h.m.AppStarted(); !at.IsZero() {
			return fmt.Sprintf("at +%s\n", at.Sub(harnessEpoch))
		}
		return "never\n"
	case "status":
		st := h.m.Status()
		sync := ""
		if st.Sync != (SyncPolicy{}) {
			sync = fmt.Sprintf(" rfssync=%q", st.Sync)
		}
		return fmt.Sprintf("%s %s uptodate=%v lastprim=%v cause=%q swap=%d swapping=%v reintegrating=%v fullsync=%v%s\n",
			st.State, st.Ready, st.UpToDate, st.LastPrim, st.AloneCause, st.Swap, st.Swapping, st.Reintegrating, st.FullSync, sync)
	case "recover":
		return h.step(Recover{From: State(d.CmdArgs[0].Key)})
	case "setting":
		return h.step(Setting{Name: d.CmdArgs[0].Key, On: d.CmdArgs[1].Key == "on", By: "root"})
	case "loop":
		l := Loop{Op: d.CmdArgs[0].Key}
		d.MaybeScanArgs(t, "id", &l.Identity)
		return h.step(l)
	case "state":
		s, r := h.m.State()
		return fmt.Sprintf("%s %s\n", s, r)
	case "resources":
		var b strings.Builder
		for _, r := range h.m.Resources() {
			fmt.Fprintf(&b, "%s %s\n", r[0], r[1])
		}
		return b.String()
	case "persisted":
		p := h.m.Persisted()
		sync := ""
		if p.Sync != (SyncPolicy{}) || !p.SyncSince.IsZero() || p.FullSync {
			sync = fmt.Sprintf(" fullsync=%v rfssync=%q since=%q", p.FullSync, p.Sync, formatSince(p.SyncSince))
		}
		return fmt.Sprintf("state=%s lastprim=%v uptodate=%v boot=%v checker=%v loop=%d%s\n",
			p.State, p.LastPrim, p.UpToDate, p.Boot, p.Checker, p.LoopCount, sync)
	}
	if out, ok := h.errdDirective(t, d); ok {
		return out
	}
	t.Fatalf("%s: unknown directive %s", d.Pos, d.Cmd)
	return ""
}

// harnessEpoch is the time of the first event of every scenario.
var harnessEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (h *harness) newModule(t *testing.T, d *datadriven.TestData) {
	h.now = harnessEpoch
	h.timers = map[string]time.Time{}
	h.running = nil
	cfg := Config{Module: "AM", Mode: Mirror, HasUser: true, Scripts: map[string]bool{},
		NiceStopTimeout: 300 * time.Second, ForceStopTimeout: 300 * time.Second,
		HeartbeatTimeout: 30 * time.Second, MaxLoop: 3, LoopInterval: 24 * time.Hour,
		Period: 5 * time.Second, HandleTime: 15 * time.Second}
	var mode, scripts string
	scripts = allScripts
	d.MaybeScanArgs(t, "mode", &mode)
	if mode != "" {
		cfg.Mode = Mode(mode)
	}
	d.MaybeScanArgs(t, "scripts", &scripts)
	for _, s := range strings.Split(scripts, ",") {
		cfg.Scripts[s] = true
	}
	cfg.HasRFS = d.HasArg("rfs")
	cfg.Node, cfg.PeerNode, cfg.Failover = "node1", "node2", true
	d.MaybeScanArgs(t, "node", &cfg.Node)
	d.MaybeScanArgs(t, "peernode", &cfg.PeerNode)
	d.MaybeScanArgs(t, "defaultprim", &cfg.DefaultPrim)
	cfg.Failover = !d.HasArg("nofailover")
	cfg.Witness = d.HasArg("witness")
	cfg.VIP = d.HasArg("vip")
	cfg.HasUser = !d.HasArg("nouser")
	d.MaybeScanArgs(t, "maxloop", &cfg.MaxLoop)
	for key, dst := range map[string]*time.Duration{"loop": &cfg.LoopInterval, "hb": &cfg.HeartbeatTimeout, "handle": &cfg.HandleTime, "period": &cfg.Period} {
		var v string
		if d.MaybeScanArgs(t, key, &v) {
			dur, err := time.ParseDuration(v)
			if err != nil {
				t.Fatal(err)
			}
			*dst = dur
		}
	}
	if arg, ok := d.Arg("checker"); ok {
		for _, v := range arg.Vals {
			parts := strings.Split(v, "/")
			class, ident, _ := strings.Cut(parts[0], ".")
			cfg.Checkers = append(cfg.Checkers, Checker{Class: class, Ident: ident, When: parts[1], Action: parts[2]})
		}
	}
	h.errdConfig(d, &cfg)
	p := DefaultPersisted()
	p.UpToDate = d.HasArg("uptodate")
	p.LastPrim = d.HasArg("lastprim")
	h.cfg = cfg
	h.m = New(cfg, p)
}

// advance moves the clock, firing the timers that expire on the way.
func (h *harness) advance(d time.Duration) string {
	end := h.now.Add(d)
	var b strings.Builder
	for {
		name, at := "", end
		names := make([]string, 0, len(h.timers))
		for n := range h.timers {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if !h.timers[n].After(at) {
				name, at = n, h.timers[n]
			}
		}
		if name == "" {
			break
		}
		delete(h.timers, name)
		h.now = at
		if name != TimerSlowScript {
			fmt.Fprintf(&b, "(timer %s expires)\n", name)
		}
		b.WriteString(h.step(TimerExpired{Name: name}))
	}
	h.now = end
	return b.String()
}

func (h *harness) step(ev Event) string {
	acts, err := h.m.Step(h.now, ev)
	var b strings.Builder
	for _, a := range acts {
		switch a := a.(type) {
		case RunScript:
			r := a
			h.running = &r
			fmt.Fprintf(&b, "run %s %s", a.Script, strings.Join(a.Args, " "))
			if a.Timeout > 0 {
				fmt.Fprintf(&b, " (timeout %s)", a.Timeout)
			}
			b.WriteString("\n")
		case KillScript:
			fmt.Fprintf(&b, "kill %s\n", h.running.Script)
			h.running = nil
		case SetState:
			fmt.Fprintf(&b, "state %s %s\n", a.State, a.Ready)
		case Log:
			fmt.Fprintf(&b, "log %s %s: %s\n", a.Origin, a.Level, a.Msg)
		case StartChecker:
			fmt.Fprintf(&b, "checker start %s\n", a.Checker.Resource())
		case StopChecker:
			fmt.Fprintf(&b, "checker stop %s\n", a.Checker.Resource())
		case SetTimer:
			h.timers[a.Name] = h.now.Add(a.After)
			if a.Name != TimerSlowScript {
				fmt.Fprintf(&b, "timer %s %s\n", a.Name, a.After)
			}
		case CancelTimer:
			if _, ok := h.timers[a.Name]; ok && a.Name != TimerSlowScript {
				fmt.Fprintf(&b, "timer %s cancelled\n", a.Name)
			}
			delete(h.timers, a.Name)
		case Save:
		case Resync:
			h.resync = a.ID
			fmt.Fprintf(&b, "resync full=%v", a.Full)
			if !a.Since.IsZero() {
				fmt.Fprintf(&b, " since=%s", formatSince(a.Since))
			}
			if a.External != "" {
				fmt.Fprintf(&b, " external=%s", a.External)
			}
			b.WriteString("\n")
		case CancelResync:
			b.WriteString("resync cancelled\n")
		case CheckWitness:
			b.WriteString("check witness\n")
		case SetVIP:
			if a.Up {
				b.WriteString("vip set\n")
			} else {
				b.WriteString("vip unset\n")
			}
		case MountReplicated:
			b.WriteString("rfs mount\n")
		case UnmountReplicated:
			b.WriteString("rfs unmount\n")
		case ReplicationRole:
			if a.Primary {
				b.WriteString("rfs role primary\n")
			} else {
				b.WriteString("rfs role secondary\n")
			}
		default:
			if s, ok := errdAction(a); ok {
				b.WriteString(s)
				break
			}
			fmt.Fprintf(&b, "%T %+v\n", a, a)
		}
	}
	if sd, ok := ev.(ScriptDone); ok && h.running != nil && h.running.ID == sd.ID {
		h.running = nil
	}
	if err != nil {
		fmt.Fprintf(&b, "refused: %v\n", err)
	}
	if b.Len() == 0 {
		return "(nothing)\n"
	}
	return b.String()
}

func formatSince(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

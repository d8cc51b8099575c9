package automaton

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Process monitoring, <errd> (User's Guide §13.10, §4.4.1). The driver
// polls each monitored <proc> every polltimer and reports whether its test
// holds (ProcPolled); the automaton decides when a <proc> is monitored and
// what its failure does.
//
// A <proc> is monitored while the window of its class is open and errd is
// on (`safekit errd on|off`, usersetting.errd). The classes pre, prim,
// both, second and sec are the windows of the checkers (pre after
// prestart, the others after start_<class>, each closed before the stop
// script that matches); any other class is opened and closed by the
// module's scripts with `safekit errd enable|disable <class>`, and closed
// at the latest when the module stops.
//
// Its resource proc.<name> is init when its monitoring starts, then up or
// down after each poll; a change is logged as the resources of the
// checkers are. A failure is acted on at once (errd has no handle_time):
// restart, stopstart and stop are commands "called by errd" that count
// toward maxloop, noaction only logs, and any other action is a handler,
// a program run with the scripts' environment that does not count toward
// maxloop; one that fails (exit code other than 0) calls a stopstart.

// Proc is a <proc> of <errd>.
type Proc struct {
	// Name names the resource proc.<Name>.
	Name string
	// Class is the window it is monitored in: pre, prim, both, second,
	// sec, or a class of the module's own (safekit errd enable|disable).
	Class string
	// Action when its test fails: restart, stopstart, stop, noaction or
	// the path of a handler (relative to SAFEUSERBIN, or absolute).
	Action string
	// Services (restart_services) are given to the scripts of its restart
	// as the arguments -Services "<Services>", so that they restart only
	// these services.
	Services string
}

// Resource is the name of the <proc>'s resource.
func (p Proc) Resource() string { return "proc." + p.Name }

// Handler tells whether the action is a handler.
func (p Proc) Handler() bool {
	switch p.Action {
	case "restart", "stopstart", "stop", "noaction":
		return false
	}
	return true
}

// errdWindows are the classes that the start and stop scripts switch, by
// the script that opens them.
var errdWindows = map[string]string{"pre": "prestart", "prim": "start_prim", "both": "start_both", "second": "start_second", "sec": "start_sec"}

// ProcPolled is one poll of a monitored <proc>: its test holds (OK), or
// Msg says how it fails ("Process appli not running").
type ProcPolled struct {
	Name string
	OK   bool
	Msg  string
}

// ErrdClass is `safekit errd enable|disable <class>`: it opens or closes
// the window of a class of the module's own.
type ErrdClass struct {
	Class string
	On    bool
	By    string
}

// HandlerDone reports the end of a RunHandler.
type HandlerDone struct {
	Name     string
	ExitCode int
	// Err is set when the handler could not run, or timed out.
	Err string
}

func (ProcPolled) event()  {}
func (ErrdClass) event()   {}
func (HandlerDone) event() {}

// StartErrd starts the polling of a <proc>; the driver answers each poll
// with ProcPolled.
type StartErrd struct{ Proc Proc }

// StopErrd stops the polling of a <proc>.
type StopErrd struct{ Proc Proc }

// RunHandler runs the handler of a <proc> (its Action); the driver
// answers with HandlerDone.
type RunHandler struct{ Proc Proc }

func (StartErrd) action()  {}
func (StopErrd) action()   {}
func (RunHandler) action() {}

// errdState is what the automaton knows of the monitored <proc>s.
type errdState struct {
	// on: the <proc>s monitored, by name.
	on map[string]bool
	// handling: the <proc>s whose handler runs.
	handling map[string]bool
}

// init makes the maps: New does not know errd.
func (s *errdState) init() {
	if s.on == nil {
		s.on, s.handling = map[string]bool{}, map[string]bool{}
	}
}

func (m *Module) errdEvent(ev Event) error {
	m.errd.init()
	switch e := ev.(type) {
	case ProcPolled:
		m.procPolled(e)
	case ErrdClass:
		return m.errdClass(e)
	case HandlerDone:
		m.handlerDone(e)
	}
	return nil
}

func (m *Module) proc(name string) (Proc, bool) {
	for _, p := range m.cfg.Procs {
		if p.Name == name {
			return p, true
		}
	}
	return Proc{}, false
}

// syncErrd starts the monitoring of the <proc>s whose window is open and
// stops the others (all of them when errd is off). A <proc> whose
// monitoring starts has its resource in init.
func (m *Module) syncErrd() {
	m.errd.init()
	for _, p := range m.cfg.Procs {
		want := m.windows[p.Class] && m.p.Errd
		switch has := m.errd.on[p.Name]; {
		case want && !has:
			m.errd.on[p.Name] = true
			m.resources[p.Resource()] = &resource{value: "init", since: m.now}
			m.emit(StartErrd{Proc: p})
		case !want && has:
			delete(m.errd.on, p.Name)
			m.emit(StopErrd{Proc: p})
		}
	}
}

// procPolled sets the resource of a monitored <proc> and acts on its
// failure: once when it fails, and for a handler again at each poll that
// finds it failed while no handler of it runs.
func (m *Module) procPolled(e ProcPolled) {
	p, ok := m.proc(e.Name)
	if !ok || !m.errd.on[p.Name] {
		return
	}
	if e.OK {
		m.setResource(SetResource{Name: p.Resource(), Value: "up", By: "errd"})
		return
	}
	r := m.resources[p.Resource()]
	again := r != nil && r.value == "down"
	if again && (!p.Handler() || m.errd.handling[p.Name]) {
		return
	}
	m.logf("errd", "E", "%s", e.Msg)
	m.setResource(SetResource{Name: p.Resource(), Value: "down", By: "errd"})
	switch {
	case p.Action == "noaction":
	case p.Handler():
		m.errd.handling[p.Name] = true
		m.logf("errd", "U", "Handler %s called by errd", p.Action)
		m.emit(RunHandler{Proc: p})
	default:
		m.errdCommand(Command{Action: p.Action, Services: p.Services})
	}
}

// errdCommand calls an action for errd, counted toward maxloop, unless
// the module stops anyway.
func (m *Module) errdCommand(c Command) {
	if m.state == Stop || m.stopping {
		return
	}
	c.Identity, c.By = "errd", "errd"
	if err := m.command(c); err != nil {
		m.logf("errd", "E", "Action %s called by errd not applied: %v", c.Action, err)
	}
}

func (m *Module) handlerDone(e HandlerDone) {
	p, ok := m.proc(e.Name)
	if !ok {
		return
	}
	delete(m.errd.handling, p.Name)
	why := fmt.Sprintf("ended with exit code %d", e.ExitCode)
	switch {
	case e.Err != "":
		why = e.Err
	case e.ExitCode == 0:
		return
	}
	m.logf("errd", "E", "Handler %s of %s %s: stopstart", p.Action, p.Resource(), why)
	m.errdCommand(Command{Action: "stopstart"})
}

// errdClass is safekit errd enable|disable: the scripts switch the classes
// of the module's own, the module's state those of its windows.
func (m *Module) errdClass(e ErrdClass) error {
	mod := m.cfg.Module
	if script, ok := errdWindows[e.Class]; ok {
		return refusedf("class %s is switched on after %s and off before the matching stop script: errd enable|disable is for the classes of the module's own; safekit errd off|on -m %s suspends all monitoring", e.Class, script, mod)
	}
	if !slices.ContainsFunc(m.cfg.Procs, func(p Proc) bool { return p.Class == e.Class }) {
		var classes []string
		for _, p := range m.cfg.Procs {
			if _, std := errdWindows[p.Class]; !std && !slices.Contains(classes, p.Class) {
				classes = append(classes, p.Class)
			}
		}
		if len(classes) == 0 {
			return refusedf("no <proc> of module %s has class %s: its <errd> has no class of its own", mod, e.Class)
		}
		return refusedf("no <proc> of module %s has class %s (its classes: %s)", mod, e.Class, strings.Join(classes, ", "))
	}
	if e.On && (m.state == Stop || m.stopping) {
		return refusedf("module %s is %s: a class is enabled in a running module, by its start scripts", mod, describeStop(m))
	}
	if m.windows[e.Class] == e.On {
		return nil
	}
	if e.On {
		m.windows[e.Class] = true
	} else {
		delete(m.windows, e.Class)
	}
	what := "disabled"
	if e.On {
		what = "enabled"
	}
	m.logf("errd", "I", "Process monitoring of class %s %s by %s", e.Class, what, cmp.Or(e.By, "root"))
	m.syncErrd()
	return nil
}

func describeStop(m *Module) string {
	if m.state == Stop {
		return "stopped"
	}
	return "stopping"
}

// withServices gives the scripts of the restart just planned the
// arguments -Services "<services>" (restart_services).
func (m *Module) withServices(services string) {
	for i := range m.plan {
		if m.plan[i].script != "" {
			m.plan[i].args = append(slices.Clone(m.plan[i].args), "-Services", services)
		}
	}
}

package module

import (
	"context"
	"fmt"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/checkers"
	"github.com/safekit-oss/safekit/runtime/webauth"
	"github.com/safekit-oss/safekit/safe"
)

// builtin is a built-in checker of the module (<tcp>, <ping>, <intf>,
// <ip>, <module>): its place in the automaton and what runs it.
type builtin struct {
	c automaton.Checker
	// origin names the checker in the module log, as SafeKit's processes:
	// tcpcheck, pingcheck, intfcheck, ipcheck, modulecheck.
	origin string
	// what describes the test for the log.
	what     string
	interval time.Duration
	// probe makes the probe of one run of the checker.
	probe func() checkers.Probe
}

// builtinCheckers lists the built-in checkers of cfg with their resource,
// window and action (User's Guide §13.11-§13.17):
//
//   - tcp and ping: the action of the file (safe applies the defaults:
//     restart for tcp, wait for ping and for tcp when="pre"); rules t_<ident>
//     and p_<ident>;
//   - intf: wait (rule interface_failure); ip: stopstart (ip_failure);
//     module: wait (module_failure), always in the pre window, as the
//     module it depends on must be there before this one starts.
//
// A <module> without ident names its resource module.<name>_<addr>; without
// <to> it polls this node (127.0.0.1 on the port of its web service).
func builtinCheckers(m layout.Module, cfg *safe.Config) []builtin {
	var out []builtin
	every := func(t safe.Target) string {
		return fmt.Sprintf("every %s, timeout %s", t.Interval.D(), t.Timeout.D())
	}
	for _, c := range cfg.Check.TCP {
		t := c.To
		target := checkers.HostPort(t.Addr, t.Port)
		out = append(out, builtin{c: automaton.Checker{Class: "tcp", Ident: c.Ident, When: c.When, Action: c.Action},
			origin: "tcpcheck", what: "connection to " + target + " " + every(t), interval: t.Interval.D(),
			probe: func() checkers.Probe { return checkers.TCP(t.Addr, t.Port, t.Timeout.D()) }})
	}
	for _, c := range cfg.Check.Ping {
		t := c.To
		out = append(out, builtin{c: automaton.Checker{Class: "ping", Ident: c.Ident, When: c.When, Action: c.Action},
			origin: "pingcheck", what: "ping " + t.Addr + " " + every(t), interval: t.Interval.D(),
			probe: func() checkers.Probe { return checkers.Ping(t.Addr, t.Timeout.D()) }})
	}
	for _, c := range cfg.Check.Intf {
		addr := c.LocalAddr
		out = append(out, builtin{c: automaton.Checker{Class: "intf", Ident: c.Ident, When: c.When, Action: "wait"},
			origin: "intfcheck", what: "link of the interface of " + addr + " every " + checkers.DefaultInterval.String(),
			interval: checkers.DefaultInterval,
			probe:    func() checkers.Probe { return checkers.Interface(addr) }})
	}
	for _, c := range cfg.Check.IP {
		t := c.To
		out = append(out, builtin{c: automaton.Checker{Class: "ip", Ident: c.Ident, When: c.When, Action: "stopstart"},
			origin: "ipcheck", what: t.Addr + " configured on this node, every " + t.Interval.D().String(), interval: t.Interval.D(),
			probe: func() checkers.Probe { return checkers.Address(t.Addr) }})
	}
	out = append(out, vipCheckers(cfg)...)
	for _, c := range cfg.Check.Module {
		t := safe.Target{Addr: safe.LocalModuleAddr, Port: webauth.HTTPPort(m.Roots), Interval: safe.Duration(checkers.DefaultInterval), Timeout: safe.Duration(5 * time.Second)}
		if c.To != nil {
			t = *c.To
		}
		scheme := "http"
		if t.Secure {
			scheme = "https"
		}
		base := scheme + "://" + checkers.HostPort(t.Addr, t.Port)
		name := c.Name
		out = append(out, builtin{c: automaton.Checker{Class: "module", Ident: c.ResourceIdent(), When: "pre", Action: "wait"},
			origin: "modulecheck", what: "module " + name + " at " + base + " " + every(t), interval: t.Interval.D(),
			probe: func() checkers.Probe { return checkers.Module(base, name, t.Timeout.D()) }})
	}
	return out
}

// startBuiltin runs a built-in checker until stopChecker: its results reach
// the automaton as `safekit set -r` does, by the checker's name.
func (d *Driver) startBuiltin(c automaton.Checker, b builtin) {
	ctx, cancel := context.WithCancel(context.Background())
	run := &checkerRun{c: c, cancel: cancel, done: make(chan struct{}), origin: b.origin}
	d.checkers[c.Resource()] = run
	d.Logf(b.origin, "I", "Checker %s started (%s)", c.Resource(), b.what)
	go func() {
		defer close(run.done)
		checkers.Run(ctx, b.interval, b.probe(), func(r checkers.Result) {
			if r.Restarted && !d.sendFrom(ctx, run, automaton.ModuleRestarted{Resource: c.Resource()}) {
				return
			}
			value := "up"
			if !r.Up {
				value = "down"
				d.Logf(b.origin, "I", "Checker %s: %v", c.Resource(), r.Err)
			}
			d.sendFrom(ctx, run, automaton.SetResource{Name: c.Resource(), Value: value, By: b.origin})
		})
	}()
}

// sendFrom queues an event of checker run, unless the run is stopped
// first; the loop drops the events of a run stopped after they were
// queued. It reports whether the event was queued.
func (d *Driver) sendFrom(ctx context.Context, run *checkerRun, ev automaton.Event) bool {
	select {
	case d.events <- input{ev: ev, from: run}:
		return true
	case <-ctx.Done():
		return false
	}
}

// stale tells whether in comes from a checker run that has been stopped
// since: a result of the previous window must not set the resource of the
// next one.
func (d *Driver) stale(in input) bool {
	return in.from != nil && d.checkers[in.from.c.Resource()] != in.from
}

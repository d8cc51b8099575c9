package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/safe"
)

func init() {
	register(&command{
		name:  "config",
		usage: "config -m AM",
		help:  "apply the configuration of SAFE/modules/AM (check it, copy it to SAFE/private/modules/AM, run config and postconfig)",
		flags: map[string]bool{"-m": true},
		run:   runConfig,
	})
	register(&command{
		name:  "confcheck",
		usage: "confcheck -m AM",
		help:  "check the configuration of SAFE/modules/AM without applying it",
		flags: map[string]bool{"-m": true},
		run:   runConfcheck,
	})
	register(&command{
		name:  "deconfig",
		usage: "deconfig -m AM",
		help:  "remove the active configuration of AM (runs its deconfig script)",
		flags: map[string]bool{"-m": true},
		run:   runDeconfig,
	})
	register(&command{
		name:  "confinfo",
		usage: "confinfo -m AM",
		help:  "signature and date of the active and of the installed configuration of AM",
		flags: map[string]bool{"-m": true},
		run:   runConfinfo,
	})
}

// printDiags prints warnings (and errors) the way compilers do, one per line.
func (e *Env) printDiags(ds safe.Diagnostics) {
	for _, d := range ds {
		fmt.Fprintln(e.Stderr, d.String())
	}
}

// guardedManager refuses operations that need the module stopped while
// the daemon says it runs.
func (e *Env) guardedManager() *modules.Manager {
	m := e.manager()
	m.Guard = func(name, op string) error {
		var s module.Snapshot
		err := e.daemon().do(context.Background(), http.MethodGet, "/v1/modules/"+name+"/state", nil, &s)
		if err == nil && (s.State != "STOP" || s.Busy) {
			return fmt.Errorf("module %s is %s %s: stop it before %s (safekit stop -m %s)", name, s.State, s.Ready, op, name)
		}
		return nil
	}
	return m
}

// reload tells the daemon that the active configuration of name changed.
func (e *Env) reload(name string) {
	err := e.daemon().do(context.Background(), http.MethodPost, "/v1/modules/"+name+"/reload", nil, nil)
	if err != nil && !errors.Is(err, errDaemonDown) {
		fmt.Fprintf(e.Stderr, "warning: safekitd did not take the new configuration: %v\n", err)
	}
}

func runConfig(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["config"], "%v", err)
	}
	done := e.logCommand(name, a.raw)
	code := configure(e, name)
	done(code)
	return code
}

func configure(e *Env, name string) int {
	diags, err := e.guardedManager().Configure(context.Background(), name)
	var de *safe.DiagnosticsError
	if errors.As(err, &de) {
		e.printDiags(diags)
		fmt.Fprintf(e.Stderr, "Error: module %s not configured: %d error(s); the previous configuration is unchanged\n", name, len(diags.Errors()))
		return ExitFailure
	}
	e.printDiags(diags)
	if err != nil {
		return e.fail(err)
	}
	e.reload(name)
	e.printf("Module %s configured\n", name)
	return ExitOK
}

func runConfcheck(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["confcheck"], "%v", err)
	}
	u, err := e.manager().Check(name)
	if u != nil {
		e.printDiags(u.Diags)
	}
	var de *safe.DiagnosticsError
	if errors.As(err, &de) {
		fmt.Fprintf(e.Stderr, "Error: configuration of module %s: %d error(s)\n", name, len(u.Diags.Errors()))
		return ExitFailure
	}
	if err != nil {
		return e.fail(err)
	}
	e.printf("Configuration of module %s is valid\n", name)
	return ExitOK
}

func runDeconfig(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["deconfig"], "%v", err)
	}
	done := e.logCommand(name, a.raw)
	if err := e.guardedManager().Deconfigure(name); err != nil {
		done(ExitFailure)
		return e.fail(err)
	}
	done(ExitOK)
	e.reload(name)
	e.printf("Module %s deconfigured\n", name)
	return ExitOK
}

func runConfinfo(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["confinfo"], "%v", err)
	}
	active, current, err := e.manager().ConfInfo(name)
	if err != nil {
		return e.fail(err)
	}
	e.printf("%-8s %-64s %s\n", "Config", "Signature", "Date")
	for _, row := range []struct {
		what string
		sig  string
		date time.Time
	}{{"active", active.Hash, active.Date}, {"current", current.Hash, current.Date}} {
		sig, date := row.sig, "-"
		if sig == "" {
			sig = "-"
		} else {
			date = row.date.Format("2006-01-02T15:04:05")
		}
		e.printf("%-8s %-64s %s\n", row.what, sig, date)
	}
	if active.Hash != current.Hash {
		e.printf("The installed configuration differs from the active one: apply it with safekit config -m %s\n", name)
	}
	return ExitOK
}

package cli

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/safekit-oss/safekit/runtime/module"
)

func init() {
	register(&command{
		name:  "errd",
		usage: "errd on|off|enable <class>|disable <class>|list -m AM",
		help:  "process monitoring of AM: turn it off or on (suspend|resume before 8.2), switch a class of the module's own, list the monitored processes",
		flags: map[string]bool{"-m": true},
		run:   runErrd,
	})
}

func runErrd(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["errd"], "%v", err)
	}
	if len(a.pos) == 0 {
		return e.usage(commands["errd"], "errd needs on, off, enable <class>, disable <class> or list")
	}
	switch verb := a.pos[0]; verb {
	case "on", "off", "suspend", "resume":
		if len(a.pos) != 1 {
			return e.usage(commands["errd"], "unexpected argument %q", a.pos[1])
		}
		// suspend and resume: the spellings of SafeKit before 8.2.
		switch verb {
		case "suspend":
			a.pos[0] = "off"
		case "resume":
			a.pos[0] = "on"
		}
		return runSetting(e, a)
	case "enable", "disable":
		if len(a.pos) != 2 {
			return e.usage(commands["errd"], "errd %s needs one class (the class=\"...\" of a <proc>)", verb)
		}
		done := e.logCommand(name, a.raw)
		err := e.daemon().do(context.Background(), http.MethodPost, "/v1/modules/"+name+"/errd/class",
			module.ErrdClassRequest{Class: a.pos[1], On: verb == "enable", By: e.caller()}, nil)
		if err != nil {
			done(ExitFailure)
			return e.fail(err)
		}
		done(ExitOK)
		return ExitOK
	case "list":
		if len(a.pos) != 1 {
			return e.usage(commands["errd"], "unexpected argument %q", a.pos[1])
		}
		var l module.ErrdList
		if err := e.daemon().do(context.Background(), http.MethodGet, "/v1/modules/"+name+"/errd", nil, &l); err != nil {
			return e.fail(err)
		}
		printErrdList(e, name, l)
		return ExitOK
	default:
		return e.usage(commands["errd"], "unknown errd command %q", verb)
	}
}

// printErrdList prints one line per <proc>: its resource and state, its
// class, whether it is monitored now, the number found by the last poll,
// its limits, its action and what it watches.
func printErrdList(e *Env, name string, l module.ErrdList) {
	setting := "on"
	if !l.On {
		setting = "off: nothing is monitored (safekit errd on -m " + name + ")"
	}
	e.printf("Process monitoring of %s: %s\n", name, setting)
	if len(l.Procs) == 0 {
		e.printf("No <errd> in the configuration of %s\n", name)
		return
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tSTATE\tCLASS\tMONITORED\tRUNNING\tATLEAST\tATMAX\tACTION\tWHAT")
	for _, p := range l.Procs {
		running := "-"
		if p.Running >= 0 {
			running = fmt.Sprint(p.Running)
		}
		monitored := "no"
		if p.Monitored {
			monitored = "yes"
		}
		fmt.Fprintln(tw, strings.Join([]string{p.Resource, p.State, p.Class, monitored, running,
			fmt.Sprint(p.AtLeast), fmt.Sprint(p.AtMax), p.Action, p.What}, "\t"))
	}
	tw.Flush()
}

package automaton

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// errdConfig reads the <proc>s of `new ... proc=name/class/action[/services]`,
// the services separated by + (a+b is restart_services="a, b").
func (h *harness) errdConfig(d *datadriven.TestData, cfg *Config) {
	arg, ok := d.Arg("proc")
	if !ok {
		return
	}
	for _, v := range arg.Vals {
		parts := append(strings.Split(v, "/"), "")
		cfg.Procs = append(cfg.Procs, Proc{Name: parts[0], Class: parts[1], Action: parts[2], Services: strings.ReplaceAll(parts[3], "+", ", ")})
	}
}

// errdDirective runs the errd directives: poll, errd, handler.
func (h *harness) errdDirective(t *testing.T, d *datadriven.TestData) (string, bool) {
	switch d.Cmd {
	case "poll":
		e := ProcPolled{Name: d.CmdArgs[0].Key, OK: d.CmdArgs[1].Key == "ok"}
		if !e.OK {
			e.Msg = "Process " + e.Name + " not running"
		}
		return h.step(e), true
	case "errd":
		return h.step(ErrdClass{Class: d.CmdArgs[1].Key, On: d.CmdArgs[0].Key == "enable", By: "root"}), true
	case "handler":
		e := HandlerDone{Name: d.CmdArgs[0].Key}
		d.MaybeScanArgs(t, "exit", &e.ExitCode)
		d.MaybeScanArgs(t, "err", &e.Err)
		return h.step(e), true
	}
	return "", false
}

// errdAction prints the errd actions.
func errdAction(a Action) (string, bool) {
	switch a := a.(type) {
	case StartErrd:
		return fmt.Sprintf("errd start %s\n", a.Proc.Resource()), true
	case StopErrd:
		return fmt.Sprintf("errd stop %s\n", a.Proc.Resource()), true
	case RunHandler:
		return fmt.Sprintf("run handler %s for %s\n", a.Proc.Action, a.Proc.Resource()), true
	}
	return "", false
}

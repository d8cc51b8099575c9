package cli

import (
	"context"
	"net/http"
	"strings"

	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/module"
)

func init() {
	register(&command{
		name:  "get",
		usage: "get -m AM -r resource",
		help:  "print the state of a resource (state.local, custom.x, usersetting.checker...)",
		flags: map[string]bool{"-m": true, "-r": true},
		run:   runGet,
	})
	register(&command{
		name:  "set",
		usage: "set -m AM -r resource -v up|down [-i identity] [-n] [-l]",
		help:  "set a resource (custom checkers do); -n: do not log, -l: log even when unchanged",
		flags: map[string]bool{"-m": true, "-r": true, "-v": true, "-i": true, "-n": false, "-l": false},
		run:   runSet,
	})
	for _, s := range []struct{ name, help string }{
		{"checker", "turn every checker of AM off or on"},
		{"failover", "turn the automatic failover of AM off or on"},
	} {
		register(&command{name: s.name, usage: s.name + " on|off -m AM", help: s.help, flags: map[string]bool{"-m": true}, run: runSetting})
	}
	register(&command{
		name:  "boot",
		usage: "boot on|off|status [-m AM]",
		help:  "start AM at boot or not (used when <service boot=\"ignore\">); status lists every module",
		flags: map[string]bool{"-m": true},
		run:   runBoot,
	})
	for _, l := range []struct{ name, usage, help string }{
		{"incloop", "incloop -m AM -i identity", "count one action toward maxloop (exit 1 when the limit is reached)"},
		{"resetloop", "resetloop -m AM [-i identity]", "reset the maxloop counter"},
		{"checkloop", "checkloop -m AM", "exit 1 if the maxloop limit is reached within loop_interval, else 0"},
	} {
		register(&command{name: l.name, usage: l.usage, help: l.help, flags: map[string]bool{"-m": true, "-i": true}, run: runLoop})
	}
}

func runGet(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil || a.get("-r") == "" {
		return e.usage(commands["get"], "get needs -m AM and -r resource")
	}
	var s module.Snapshot
	if err := e.daemon().do(context.Background(), http.MethodGet, "/v1/modules/"+name+"/state", nil, &s); err != nil {
		return e.fail(err)
	}
	for _, r := range s.Resources {
		if r[0] == a.get("-r") {
			e.printf("%s\n", r[1])
			return ExitOK
		}
	}
	return e.fail(&apiError{Msg: "unknown resource " + a.get("-r") + " of module " + name + " (see safekit state -v -m " + name + ")"})
}

func runSet(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil || a.get("-r") == "" || a.get("-v") == "" {
		return e.usage(commands["set"], "set needs -m AM, -r resource and -v up|down")
	}
	res := a.get("-r")
	by := a.get("-i")
	if by == "" {
		by = e.caller()
		if strings.HasPrefix(res, "custom.") {
			by = "customscript"
		}
	}
	err = e.daemon().do(context.Background(), http.MethodPost, "/v1/modules/"+name+"/resource",
		module.ResourceRequest{Name: res, Value: a.get("-v"), By: by, Identity: a.get("-i"), Quiet: a.has("-n"), Force: a.has("-l")}, nil)
	if err != nil {
		return e.fail(err)
	}
	return ExitOK
}

func onOffArg(e *Env, a *args) (bool, bool) {
	if len(a.pos) != 1 || (a.pos[0] != "on" && a.pos[0] != "off") {
		e.usage(commands[a.cmd], "%s needs on or off", a.cmd)
		return false, false
	}
	return a.pos[0] == "on", true
}

func runSetting(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands[a.cmd], "%v", err)
	}
	on, ok := onOffArg(e, a)
	if !ok {
		return ExitUsage
	}
	done := e.logCommand(name, a.raw)
	if err := e.daemon().do(context.Background(), http.MethodPost, "/v1/modules/"+name+"/setting", module.SettingRequest{Name: a.cmd, On: on, By: e.caller()}, nil); err != nil {
		done(ExitFailure)
		return e.fail(err)
	}
	done(ExitOK)
	return ExitOK
}

func runBoot(e *Env, a *args) int {
	if len(a.pos) == 1 && a.pos[0] == "status" {
		var infos []daemon.ModuleInfo
		if err := e.daemon().do(context.Background(), http.MethodGet, "/v1/modules", nil, &infos); err != nil {
			return e.fail(err)
		}
		only := a.get("-m")
		for _, i := range infos {
			if only != "" && i.Name != only {
				continue
			}
			var s module.Snapshot
			status := "off"
			if i.Running && e.daemon().do(context.Background(), http.MethodGet, "/v1/modules/"+i.Name+"/state", nil, &s) == nil {
				status = bootStatus(e, i.Name, s)
			}
			e.printf("%-24s %s\n", i.Name, status)
		}
		return ExitOK
	}
	a.cmd = "boot"
	return runSetting(e, a)
}

// bootStatus is the effective boot setting: the <service boot> attribute,
// or `safekit boot on|off` when it says ignore.
func bootStatus(e *Env, name string, s module.Snapshot) string {
	cfg := readConfig(e.Roots.Module(name).UserConf() + "/userconfig.xml")
	if cfg != nil && cfg.Service.Boot != "ignore" && cfg.Service.Boot != "" {
		return cfg.Service.Boot + " (userconfig.xml)"
	}
	if s.Persisted.Boot {
		return "on"
	}
	return "off"
}

func runLoop(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands[a.cmd], "%v", err)
	}
	var resp struct {
		Reached bool `json:"reached"`
	}
	c := e.daemon()
	if a.cmd == "checkloop" {
		err = c.do(context.Background(), http.MethodGet, "/v1/modules/"+name+"/checkloop", nil, &resp)
	} else {
		if a.cmd == "incloop" && a.get("-i") == "" {
			return e.usage(commands[a.cmd], "incloop needs -i identity")
		}
		err = c.do(context.Background(), http.MethodPost, "/v1/modules/"+name+"/loop", module.LoopRequest{Op: a.cmd, Identity: a.get("-i")}, &resp)
	}
	if err != nil {
		return e.fail(err)
	}
	if resp.Reached {
		return ExitFailure
	}
	return ExitOK
}

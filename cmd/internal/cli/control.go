package cli

import (
	"context"
	"net/http"
	"net/url"
	"os/user"
	"strings"

	"github.com/safekit-oss/safekit/runtime/module"
)

func init() {
	for _, c := range []struct{ name, help string }{
		{"start", "start the module (a mirror goes ALONE, PRIM or SECOND; a farm UP)"},
		{"stop", "stop the module"},
		{"restart", "stop then start the application scripts of the module, without a failover"},
		{"stopstart", "stop the module completely, then start it again"},
		{"forcestop", "stop the module when stop has no effect: kills the running script"},
		{"prim", "start a mirror module as primary, even without its peer; fullsync: its next secondary copies everything"},
		{"primforce", "prim for a node stopped during its reintegration (its replicated data may be inconsistent)"},
		{"second", "start a mirror module as secondary of the primary peer; fullsync: copy everything from it"},
		{"swap", "swap the primary and secondary roles of a mirror module"},
	} {
		usage := c.name + " -m AM [-i identity]"
		if w := controlArgs[c.name]; w != "" {
			usage = c.name + " [" + w + "] -m AM [-i identity]"
		}
		register(&command{
			name:  c.name,
			usage: usage,
			help:  c.help,
			flags: map[string]bool{"-m": true, "-i": true, "-u": true},
			run:   runControl,
		})
	}
	register(&command{
		name:  "shutdown",
		usage: "shutdown",
		help:  "stop every running module of this node",
		flags: map[string]bool{},
		run: func(e *Env, a *args) int {
			done := e.logCommand("", []string{"shutdown"})
			if err := e.daemon().do(context.Background(), http.MethodPost, "/v1/shutdown?by="+url.QueryEscape(e.caller()), nil, nil); err != nil {
				done(ExitFailure)
				return e.fail(err)
			}
			done(ExitOK)
			return ExitOK
		},
	})
}

// caller names who runs the command in the module log: the remote caller
// ("rcmdadmin@10.0.0.1"), else the local user ("root").
func (e *Env) caller() string {
	if e.By != "" {
		return e.By
	}
	return whoami()
}

// whoami is the local user ("root").
func whoami() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}

// controlArgs is the word a control command accepts after its name
// (safekit second fullsync -m AM).
var controlArgs = map[string]string{"prim": "fullsync", "primforce": "fullsync", "second": "fullsync", "swap": "nosync"}

// runControl sends a control command to a module.
func runControl(e *Env, a *args) int {
	action := a.cmd
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands[action], "%v", err)
	}
	arg := strings.Join(a.pos, " ")
	if arg != "" && arg != controlArgs[action] {
		return e.usage(commands[action], "unexpected argument %q", arg)
	}
	// -u names the caller for a local user (the console passes it); a
	// remote caller is named as it authenticated.
	by := a.get("-u")
	if by == "" || e.By != "" {
		by = e.caller()
	}
	return e.sendCommand(name, a.raw, module.CommandRequest{Action: action, Arg: arg, Identity: a.get("-i"), By: by})
}

// sendCommand sends a command to module name, recording the command line
// raw in the command log.
func (e *Env) sendCommand(name string, raw []string, req module.CommandRequest) int {
	done := e.logCommand(name, raw)
	var snap module.Snapshot
	if err := e.daemon().do(context.Background(), http.MethodPost, "/v1/modules/"+name+"/command", req, &snap); err != nil {
		done(ExitFailure)
		return e.fail(err)
	}
	done(ExitOK)
	return ExitOK
}

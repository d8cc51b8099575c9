package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/runtime/scripts"
)

func init() {
	register(&command{
		name:  "state",
		usage: "state [-m AM [-v | -lq]]",
		help:  "state of every module, or of AM (-v: with its resources; -lq: exit code STOP 0, WAIT 1, ALONE/UP 2, PRIM 3, SECOND 4)",
		flags: map[string]bool{"-m": true, "-v": false, "-lq": false},
		run:   runState,
	})
	for _, w := range []struct{ name, usage, help string }{
		{"waitstart", "waitstart -m AM", "wait until the start of AM ends (exit 1 if it ends in STOP)"},
		{"waitstop", "waitstop -m AM", "wait until AM is stopped"},
		{"waitstate", "waitstate -m AM STOP|WAIT|ALONE|PRIM|SECOND|UP", "wait until AM rests in that state"},
	} {
		register(&command{name: w.name, usage: w.usage, help: w.help, flags: map[string]bool{"-m": true}, run: runWait})
	}
}

// stateCode is the exit code of state -lq.
func stateCode(s string) int {
	switch s {
	case "STOP":
		return 0
	case "WAIT":
		return 1
	case "ALONE", "UP":
		return 2
	case "PRIM":
		return 3
	case "SECOND":
		return 4
	}
	return ExitFailure
}

func service(s module.Snapshot) string {
	if s.Ready == "Ready" && (s.State == "ALONE" || s.State == "PRIM" || s.State == "UP") {
		return "Available"
	}
	return "Unavailable"
}

// stateBlock renders the state of one module as safekit state prints it:
// a title, the local state and, for a mirror, the remote one.
func stateBlock(name string, local, remote stateLine) string {
	title := fmt.Sprintf(" %s State ", name)
	pad := (53 - len(title)) / 2
	if pad < 3 {
		pad = 3
	}
	b := fmt.Sprintf("%s%s%s\n\n", strings.Repeat("-", pad), title, strings.Repeat("-", pad))
	b += local.render("Local ")
	if remote.state != "" {
		b += remote.render("Remote")
	}
	return b
}

// stateLine is one line of a state block.
type stateLine struct{ node, state, service, ready string }

func (l stateLine) render(side string) string {
	who := l.node
	if who == "" {
		who = "this node"
	}
	if l.service == "" {
		return fmt.Sprintf("  %s (%s)%s: %s (%s)\n", side, who, pad(who), l.state, l.ready)
	}
	return fmt.Sprintf("  %s (%s)%s: %s (Service : %s)(%s)\n", side, who, pad(who), l.state, l.service, l.ready)
}

func pad(s string) string {
	if n := 16 - len(s); n > 0 {
		return strings.Repeat(" ", n)
	}
	return " "
}

// lines of a module snapshot.
func snapshotLines(s module.Snapshot) (stateLine, stateLine) {
	local := stateLine{node: s.Node, state: string(s.State), service: service(s), ready: string(s.Ready)}
	var remote stateLine
	if s.Remote != nil {
		remote = stateLine{node: s.Remote.Node, state: s.Remote.State, ready: s.Remote.Ready}
	}
	return local, remote
}

func runState(e *Env, a *args) int {
	c := e.daemon()
	ctx := context.Background()
	name, _ := e.module(a)
	if a.get("-m") == "" && !a.has("-v") && !a.has("-lq") {
		name = ""
	}
	if name == "" {
		var infos []daemon.ModuleInfo
		if err := c.do(ctx, http.MethodGet, "/v1/modules", nil, &infos); err != nil {
			return e.fail(err)
		}
		for _, i := range infos {
			var s module.Snapshot
			if !i.Configured || c.do(ctx, http.MethodGet, "/v1/modules/"+i.Name+"/state", nil, &s) != nil {
				state := "NOT CONFIGURED"
				if i.Configured {
					state = "STOP"
				}
				e.printf("%s", stateBlock(i.Name, stateLine{state: state, ready: "NotReady"}, stateLine{}))
				continue
			}
			local, remote := snapshotLines(s)
			e.printf("%s", stateBlock(i.Name, local, remote))
		}
		return ExitOK
	}
	var s module.Snapshot
	if err := c.do(ctx, http.MethodGet, "/v1/modules/"+name+"/state", nil, &s); err != nil {
		return e.fail(err)
	}
	if a.has("-lq") {
		e.printf("%s %s\n", s.State, s.Ready)
		return stateCode(string(s.State))
	}
	local, remote := snapshotLines(s)
	e.printf("%s", stateBlock(name, local, remote))
	if a.has("-v") {
		e.printf("\nResources:\n")
		for _, r := range s.Resources {
			e.printf("  %-36s %s\n", r[0], r[1])
		}
		e.runInfoScript(name, "state")
	}
	return ExitOK
}

// runInfoScript runs the module's state or level script, when it has one,
// and prints its output.
func (e *Env) runInfoScript(name, script string) {
	mod := e.Roots.Module(name)
	path := filepath.Join(mod.UserBin(), script)
	if _, err := os.Stat(path); err != nil {
		return
	}
	cfg := readConfig(filepath.Join(mod.UserConf(), "userconfig.xml"))
	if cfg == nil || cfg.User == nil {
		return
	}
	res := scripts.Run(context.Background(), scripts.Spec{Script: script, Path: path,
		Env: scripts.Environ(mod, cfg.User.Vars, scripts.DaemonEnviron()), Dir: mod.UserBin(), ShAsBash: true,
		Timeout: cfg.User.ForceStopTimeout.D()})
	e.printf("\n%s", res.Tail)
	if !res.OK() {
		fmt.Fprintf(e.Stderr, "Error: script %s of module %s: %s\n", script, name, res.Describe())
	}
}

// waitRetry is how often a wait command asks again for a module whose
// process does not answer (safekitd is starting it again).
const waitRetry = 200 * time.Millisecond

// runWait follows the module's state until the awaited one, through a
// restart of the module's process.
func runWait(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands[a.cmd], "%v", err)
	}
	want := ""
	if a.cmd == "waitstate" {
		if len(a.pos) != 1 {
			return e.usage(commands[a.cmd], "waitstate needs the state to wait for")
		}
		want = strings.ToUpper(a.pos[0])
		switch want {
		case "STOP", "WAIT", "ALONE", "PRIM", "SECOND", "UP":
		default:
			return e.usage(commands[a.cmd], "unknown state %q", a.pos[0])
		}
	}
	code, over := ExitFailure, false
	for !over {
		err = e.daemon().stream(context.Background(), "/v1/modules/"+name+"/events", func(raw json.RawMessage) bool {
			var s module.Snapshot
			if json.Unmarshal(raw, &s) != nil || s.Busy || s.Ready == "Transient" {
				return true
			}
			switch {
			case a.cmd == "waitstop" && s.State == "STOP",
				a.cmd == "waitstart" && s.State != "STOP" && s.Ready == "Ready",
				a.cmd == "waitstate" && string(s.State) == want:
				code, over = ExitOK, true
			case a.cmd == "waitstart" && s.State == "STOP":
				fmt.Fprintf(e.Stderr, "Error: module %s is stopped\n", name)
				over = true
			}
			return !over
		})
		var ae *apiError
		if err != nil && !(errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable) {
			return e.fail(err)
		}
		if !over {
			// The process of the module ended, or does not answer yet.
			time.Sleep(waitRetry)
		}
	}
	return code
}

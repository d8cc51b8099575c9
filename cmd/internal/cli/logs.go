package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/module"
)

func init() {
	register(&command{
		name:  "log",
		usage: "log -m AM [-s nb] [-A]",
		help:  "print the last nb messages of the module log (default 300; -A: verbose log)",
		flags: map[string]bool{"-m": true, "-s": true, "-A": false, "-l": true},
		run:   runLog,
	})
	register(&command{
		name:  "logview",
		usage: "logview -m AM [-s nb] [-A]",
		help:  "follow the module log (local only)",
		flags: map[string]bool{"-m": true, "-s": true, "-A": false, "-l": true},
		run:   runLogview,
	})
	register(&command{
		name:  "logsave",
		usage: "logsave -m AM [-A] /absolute/file.txt",
		help:  "save the module log in a file",
		flags: map[string]bool{"-m": true, "-A": false, "-l": true},
		run:   runLogsave,
	})
	register(&command{
		name:  "cmdlog",
		usage: "cmdlog",
		help:  "print the command log of this node",
		flags: map[string]bool{"-s": true},
		run: func(e *Env, a *args) int {
			var lines []string
			if err := e.daemon().do(context.Background(), http.MethodGet, "/v1/cmdlog?n="+a.get("-s"), nil, &lines); err != nil {
				return e.fail(err)
			}
			for _, l := range lines {
				e.printf("%s\n", l)
			}
			return ExitOK
		},
	})
	for _, p := range []struct{ name, level string }{{"printi", "I"}, {"printe", "E"}, {"printw", "W"}} {
		level := p.level
		register(&command{
			name:  p.name,
			usage: p.name + " [-m AM] \"message\"",
			help:  "write a message at level " + level + " in the module log (-m may be omitted in module scripts)",
			flags: map[string]bool{"-m": true},
			run: func(e *Env, a *args) int {
				name, err := e.module(a)
				if err != nil {
					return e.usage(commands[a.cmd], "%v", err)
				}
				msg := strings.Join(a.pos, " ")
				if err := e.daemon().do(context.Background(), http.MethodPost, "/v1/modules/"+name+"/print", module.PrintRequest{Level: level, Msg: msg}, nil); err != nil {
					return e.fail(err)
				}
				return ExitOK
			},
		})
	}
}

func logCount(e *Env, a *args, def int) (int, bool) {
	if !a.has("-s") {
		return def, true
	}
	n, err := strconv.Atoi(a.get("-s"))
	if err != nil || n < 0 {
		e.usage(commands[a.cmd], "-s needs a number of messages, not %q", a.get("-s"))
		return 0, false
	}
	return n, true
}

func verboseQuery(a *args) string {
	if a.has("-A") {
		return "1"
	}
	return "0"
}

func (e *Env) fetchLog(name string, n int, verbose string) ([]modlog.Entry, error) {
	var entries []modlog.Entry
	err := e.daemon().do(context.Background(), http.MethodGet, fmt.Sprintf("/v1/modules/%s/log?n=%d&verbose=%s", name, n, verbose), nil, &entries)
	return entries, err
}

func runLog(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["log"], "%v", err)
	}
	n, ok := logCount(e, a, 300)
	if !ok {
		return ExitUsage
	}
	entries, err := e.fetchLog(name, n, verboseQuery(a))
	if err != nil {
		return e.fail(err)
	}
	for _, en := range entries {
		e.printf("%s\n", en.String())
	}
	return ExitOK
}

func runLogview(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["logview"], "%v", err)
	}
	n, ok := logCount(e, a, 10)
	if !ok {
		return ExitUsage
	}
	err = e.daemon().stream(context.Background(), fmt.Sprintf("/v1/modules/%s/log/stream?n=%d&verbose=%s", name, n, verboseQuery(a)), func(raw json.RawMessage) bool {
		var se module.StreamEntry
		if json.Unmarshal(raw, &se) != nil {
			return true
		}
		switch {
		case se.Missed > 0:
			e.printf("%s\n", modlog.Entry{Time: time.Now(), Origin: "log", Level: "W", Msg: fmt.Sprintf("%d messages missed (reader too slow)", se.Missed)}.String())
		case se.Entry != nil:
			e.printf("%s\n", se.Entry.String())
		}
		return true
	})
	if err != nil {
		return e.fail(err)
	}
	return ExitOK
}

func runLogsave(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["logsave"], "%v", err)
	}
	if len(a.pos) != 1 || !filepath.IsAbs(a.pos[0]) {
		return e.usage(commands["logsave"], "logsave needs an absolute file path")
	}
	entries, err := e.fetchLog(name, 1000000, verboseQuery(a))
	if err != nil {
		return e.fail(err)
	}
	var b strings.Builder
	for _, en := range entries {
		b.WriteString(en.String() + "\n")
	}
	if err := os.WriteFile(a.pos[0], []byte(b.String()), 0o644); err != nil {
		return e.fail(err)
	}
	e.printf("%d messages saved in %s\n", len(entries), a.pos[0])
	return ExitOK
}

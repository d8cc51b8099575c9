// Package cli implements the safekit command line: one file per command,
// each a Run function over its arguments that returns the exit code, so that
// tests call commands as users do.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/safekit-oss/safekit/modules/layout"
)

// Exit codes of safekit (see `safekit help`).
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // the command failed; the message says why
	ExitUsage   = 2 // wrong arguments
)

// Env is what a command runs with.
type Env struct {
	Stdout, Stderr io.Writer
	Roots          layout.Roots
	// Getenv reads the environment (SAFEMODULE...).
	Getenv func(string) string
	// By is the remote caller a command runs for ("rcmdadmin@10.0.0.1"),
	// empty for a local user. The daemon records remote commands in the
	// command log itself, and control commands name By as their caller in
	// the module log.
	By string
}

// NewEnv returns the environment of the running process.
func NewEnv(stdout, stderr io.Writer) *Env {
	return &Env{Stdout: stdout, Stderr: stderr, Roots: layout.FromEnv(), Getenv: os.Getenv}
}

func (e *Env) printf(format string, args ...any) { fmt.Fprintf(e.Stdout, format, args...) }

// fail prints err on stderr and returns ExitFailure.
func (e *Env) fail(err error) int {
	fmt.Fprintf(e.Stderr, "Error: %v\n", err)
	return ExitFailure
}

// usage prints a usage error and returns ExitUsage.
func (e *Env) usage(cmd *command, format string, args ...any) int {
	fmt.Fprintf(e.Stderr, "Error: "+format+"\n", args...)
	fmt.Fprintf(e.Stderr, "usage: safekit %s\n", cmd.usage)
	return ExitUsage
}

// command is one safekit command.
type command struct {
	name  string
	usage string // after "safekit "
	help  string // one line
	// flags maps each option to whether it takes a value.
	flags map[string]bool
	run   func(e *Env, a *args) int
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// Main runs safekit with args (without the program name) and returns the exit
// code.
func Main(args []string, stdout, stderr io.Writer) int {
	return NewEnv(stdout, stderr).Run(args)
}

// Run dispatches args to their command.
func (e *Env) Run(args []string) int {
	if len(args) == 0 {
		printHelp(e.Stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		printHelp(e.Stdout)
		return ExitOK
	}
	if hosts, rest, ok := distributed(args); ok {
		return e.runDistributed(hosts, rest)
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(e.Stderr, "Error: unknown command %q; see safekit help\n", name)
		return ExitUsage
	}
	a, err := parseArgs(args[1:], c.flags)
	if err != nil {
		return e.usage(c, "%v", err)
	}
	a.cmd, a.raw = name, args
	return c.run(e, a)
}

// args are parsed arguments: options anywhere, in SafeKit's single-dash
// style (-m AM, -lq), and positional words.
type args struct {
	cmd  string   // the command name
	raw  []string // the whole command line, for the command log
	opts map[string]string
	pos  []string
}

func (a *args) has(flag string) bool   { _, ok := a.opts[flag]; return ok }
func (a *args) get(flag string) string { return a.opts[flag] }

func parseArgs(in []string, flags map[string]bool) (*args, error) {
	a := &args{opts: map[string]string{}}
	for i := 0; i < len(in); i++ {
		w := in[i]
		takesValue, isFlag := flags[w]
		if !isFlag || w == "-" {
			if strings.HasPrefix(w, "-") && len(w) > 1 && !isNumber(w) {
				return nil, fmt.Errorf("unknown option %s", w)
			}
			a.pos = append(a.pos, w)
			continue
		}
		if !takesValue {
			a.opts[w] = ""
			continue
		}
		if i+1 >= len(in) {
			return nil, fmt.Errorf("option %s needs a value", w)
		}
		a.opts[w] = in[i+1]
		i++
	}
	return a, nil
}

func isNumber(s string) bool {
	for i, c := range s {
		if !(c >= '0' && c <= '9') && !(i == 0 && c == '-') {
			return false
		}
	}
	return len(s) > 1
}

// module returns the -m value, or SAFEMODULE when it is set (scripts omit
// -m).
func (e *Env) module(a *args) (string, error) {
	if m := a.get("-m"); m != "" {
		return m, nil
	}
	if m := e.Getenv("SAFEMODULE"); m != "" {
		return m, nil
	}
	return "", errors.New("no module given: use -m AM")
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "safekit: control a SafeKit-compatible high-availability node\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  safekit %s\n      %s\n", c.usage, c.help)
	}
	fmt.Fprintf(w, `
Environment:
  SAFE      installation directory (default %s)
  SAFEVAR   working directory (default %s)
  SAFEMODULE  module used when -m is omitted (set for module scripts)

Distributed commands (on the web service of each node, as the private user
of distributed commands: safekit webservercfg -rcmdpasswd, the same on every node):
  safekit -H "<hosts>" <command>   run a command on each host (not logview, -p, -r)
  safekit -H "<hosts>" -G          copy SAFEVAR/cluster (cluster.xml, key) to each host
  safekit -H "<hosts>" -E AM       install module AM with its id here, configured if it is here
  <hosts>: "*" (every node of cluster.xml), "node1,node2", "[http:9010],addr1,addr2",
           or "http://10.0.0.1:9010,http://10.0.0.2:9010"

Exit codes:
  0  success
  1  the command failed (the message on stderr says why and how to fix it)
  2  wrong usage (unknown command or option, missing argument)
  state -m AM -lq exits with the state: STOP 0, WAIT 1, ALONE or UP 2, PRIM 3, SECOND 4
`, layout.DefaultSAFE, layout.DefaultSAFEVAR)
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/beevik/etree"

	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/runtime/scripts"
)

// The special commands of SAFEBIN (User's Guide §14.5) are links to the
// safekit binary, which dispatches on the name it is called by.

// MainAs runs the program called as argv0 (safekit, or a special command).
func MainAs(argv0 string, args []string, stdout, stderr io.Writer) int {
	e := NewEnv(stdout, stderr)
	switch filepath.Base(argv0) {
	case "xpathGet":
		return xpathGet(e, args)
	case "boundcmd":
		return boundcmd(e, args)
	case "logI18nMSG":
		return logI18nMSG(e, args)
	case "webservercfg":
		return e.Run(append([]string{"webservercfg"}, args...))
	}
	return e.Run(args)
}

func init() {
	register(&command{
		name:  "-r",
		usage: "-r specialcommand [args]",
		help:  "run a command of SAFEBIN (xpathGet, boundcmd...) with the SafeKit environment (local only)",
		flags: map[string]bool{},
		run: func(e *Env, a *args) int {
			if len(a.raw) < 2 {
				return e.usage(commands["-r"], "missing command")
			}
			name, rest := a.raw[1], a.raw[2:]
			switch name {
			case "xpathGet":
				return xpathGet(e, rest)
			case "boundcmd":
				return boundcmd(e, rest)
			case "logI18nMSG":
				return logI18nMSG(e, rest)
			}
			path := name
			if !filepath.IsAbs(path) {
				path = filepath.Join(e.Roots.SAFEBIN(), name)
			}
			cmd := exec.Command(path, rest...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, e.Stdout, e.Stderr
			cmd.Env = append(os.Environ(), "SAFE="+e.Roots.SAFE, "SAFEVAR="+e.Roots.SAFEVAR, "SAFEBIN="+e.Roots.SAFEBIN())
			if err := cmd.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return ee.ExitCode()
				}
				return e.fail(err)
			}
			return ExitOK
		},
	})
}

// xpathGet "<xpath>" file.xml prints the value selected by a simple XPath
// (etree's subset: //user/var[@name='SERVICES']), with a final /@attr
// selecting an attribute. Exit 1 when nothing matches.
func xpathGet(e *Env, args []string) int {
	if len(args) != 2 {
		fmt.Fprintln(e.Stderr, `usage: xpathGet "<xpath>" file.xml`)
		return ExitUsage
	}
	expr, attr := args[0], ""
	if i := strings.LastIndex(expr, "/@"); i >= 0 {
		expr, attr = expr[:i], expr[i+2:]
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromFile(args[1]); err != nil {
		return e.fail(err)
	}
	path, err := etree.CompilePath(expr)
	if err != nil {
		return e.fail(fmt.Errorf("xpath %q: %w", args[0], err))
	}
	found := false
	for _, el := range doc.FindElementsPath(path) {
		if attr != "" {
			if a := el.SelectAttr(attr); a != nil {
				e.printf("%s\n", a.Value)
				found = true
			}
			continue
		}
		e.printf("%s\n", el.Text())
		found = true
	}
	if !found {
		return ExitFailure
	}
	return ExitOK
}

// boundcmd <timeout> <command> [args] runs the command, killing it (and its
// process group) after timeout seconds: exit code 2 then, else the
// command's own.
func boundcmd(e *Env, args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(e.Stderr, "usage: boundcmd <timeout in seconds> <command> [args]")
		return ExitUsage
	}
	secs, err := strconv.Atoi(args[0])
	if err != nil || secs < 0 {
		fmt.Fprintf(e.Stderr, "boundcmd: invalid timeout %q (seconds)\n", args[0])
		return ExitUsage
	}
	cmd := exec.Command(args[1], args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, e.Stdout, e.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(e.Stderr, "boundcmd: %v\n", err)
		return 127
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			return ExitFailure
		}
		return ExitOK
	case <-time.After(time.Duration(secs) * time.Second):
		_ = scripts.KillGroup(cmd.Process.Pid, done)
		return 2
	}
}

// logI18nMSG <script> <LEVEL> <MSGID> [args] writes a message of a
// published module's catalogue into the module log. There is no catalogue
// here: the message id and its arguments are written as they are.
func logI18nMSG(e *Env, args []string) int {
	if len(args) < 3 {
		fmt.Fprintln(e.Stderr, "usage: logI18nMSG <script> <ERROR|WARNING|INFO> <MSGID> [args]")
		return ExitUsage
	}
	level := "I"
	switch strings.ToUpper(args[1]) {
	case "ERROR", "E":
		level = "E"
	case "WARNING", "W":
		level = "W"
	}
	name := e.Getenv("SAFEMODULE")
	if name == "" {
		fmt.Fprintln(e.Stderr, "logI18nMSG: SAFEMODULE is not set (run it from a module script)")
		return ExitFailure
	}
	msg := args[0] + ": " + strings.Join(args[2:], " ")
	if err := e.daemon().do(context.Background(), "POST", "/v1/modules/"+name+"/print", module.PrintRequest{Level: level, Msg: msg}, nil); err != nil {
		return e.fail(err)
	}
	return ExitOK
}

package cli

import (
	"fmt"

	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

func init() {
	register(&command{
		name:  "webservercfg",
		usage: "webservercfg [-rcmdpasswd pwd [-rcmduser name]] [-passwd pwd [-user name]] [-unsecure | -secure]",
		help:  "web service of this node: password of distributed commands (the same on every node; user rcmdadmin), of a console user (admin, role Admin), or no authentication (-unsecure: a lab cluster only)",
		flags: map[string]bool{"-rcmdpasswd": true, "-rcmduser": true, "-passwd": true, "-user": true, "-unsecure": false, "-secure": false},
		run:   runWebservercfg,
	})
}

func runWebservercfg(e *Env, a *args) int {
	c := commands["webservercfg"]
	switch {
	case len(a.pos) > 0:
		return e.usage(c, "unexpected %q", a.pos[0])
	case len(a.opts) == 0:
		return e.usage(c, "nothing to do: give -rcmdpasswd, -passwd, -unsecure or -secure")
	case a.has("-unsecure") && a.has("-secure"):
		return e.usage(c, "-unsecure or -secure, not both")
	case a.has("-rcmduser") && !a.has("-rcmdpasswd"):
		return e.usage(c, "-rcmduser goes with -rcmdpasswd pwd")
	case a.has("-user") && !a.has("-passwd"):
		return e.usage(c, "-user goes with -passwd pwd")
	}
	done := e.logCommand("", daemon.Redact(a.raw))
	code := webservercfg(e, a)
	done(code)
	return code
}

func webservercfg(e *Env, a *args) int {
	if a.has("-rcmdpasswd") {
		user := a.get("-rcmduser")
		if user == "" {
			user = webauth.DefaultRcmdUser
		}
		if err := webauth.SetRcmdPassword(e.Roots, user, a.get("-rcmdpasswd")); err != nil {
			return e.fail(err)
		}
		e.printf("Password of %s, the user of distributed commands, set on this node: set the same on every node (safekit webservercfg -rcmdpasswd pwd)\n", user)
	}
	if a.has("-passwd") {
		user := a.get("-user")
		if user == "" {
			user = webauth.DefaultConsoleUser
		}
		if err := webauth.SetConsolePassword(e.Roots, user, a.get("-passwd")); err != nil {
			return e.fail(err)
		}
		e.printf("Password of console user %s (role %s) set in %s\n", user, webauth.RoleAdmin, webauth.UserFile(e.Roots))
	}
	switch {
	case a.has("-unsecure"):
		if err := webauth.SetUnsecure(e.Roots, true); err != nil {
			return e.fail(err)
		}
		fmt.Fprintf(e.Stderr, "WARNING: the web service of this node no longer authenticates: anyone who reaches its port runs any safekit command as Admin; keep this for a lab cluster and go back with safekit webservercfg -secure\n")
		e.printf("Web service of this node unsecure (no authentication)\n")
	case a.has("-secure"):
		if err := webauth.SetUnsecure(e.Roots, false); err != nil {
			return e.fail(err)
		}
		e.printf("Web service of this node authenticates its callers again (%s)\n", webauth.UserFile(e.Roots))
	}
	return ExitOK
}

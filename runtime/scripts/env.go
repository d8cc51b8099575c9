// Package scripts runs module scripts and checkers the way SafeKit does
// (User's Guide ch. 14): the environment, the arguments, the shebang rule,
// the output captured to userlog files, timeouts that kill the whole process
// group.
package scripts

import (
	"os"
	"sort"
	"strings"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/safe"
)

// Environ returns the environment of every script and checker of module m:
//
//	SAFE          the installation directory (/opt/safekit)
//	SAFEBIN       SAFE/private/bin: special commands (xpathGet, boundcmd...)
//	SAFEVAR       the working directory (/var/safekit)
//	SAFEMODULE    the module name, so that `safekit printe "msg"` needs no -m
//	SAFEUSERBIN   SAFE/private/modules/AM/bin: the active scripts
//	SAFEUSERCONF  SAFE/private/modules/AM/conf: holds safeconf.xml
//	SAFEUSERVAR   SAFEVAR/modules/AM: the module's working directory
//	<var>         every <user><var name value> of the module
//	PATH          the daemon's PATH with SAFE and SAFEBIN added, so that
//	              scripts find `safekit` and the special commands
//
// base is the rest of the environment (normally the daemon's own); the
// variables above replace any of the same name in it.
func Environ(m layout.Module, vars []safe.Var, base []string) []string {
	set := map[string]string{}
	for _, v := range vars {
		set[v.Name] = v.Value
	}
	// SafeKit's own variables win over a <var> of the same name (the
	// configuration check refuses such vars anyway).
	for k, v := range map[string]string{
		"SAFE":         m.SAFE,
		"SAFEBIN":      m.SAFEBIN(),
		"SAFEVAR":      m.SAFEVAR,
		"SAFEMODULE":   m.Name,
		"SAFEUSERBIN":  m.UserBin(),
		"SAFEUSERCONF": m.UserConf(),
		"SAFEUSERVAR":  m.UserVar(),
	} {
		set[k] = v
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	out := make([]string, 0, len(base)+len(set)+1)
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		if k == "PATH" {
			path = v
			continue
		}
		if _, replaced := set[k]; !replaced {
			out = append(out, kv)
		}
	}
	set["PATH"] = joinPath(path, m.SAFE, m.SAFEBIN())
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, k+"="+set[k])
	}
	return out
}

// joinPath appends dirs to a PATH value unless already there. They go last so
// that an administrator's own commands (and test stand-ins) win.
func joinPath(path string, dirs ...string) string {
	parts := strings.Split(path, ":")
	for _, d := range dirs {
		found := false
		for _, p := range parts {
			if p == d {
				found = true
			}
		}
		if !found {
			parts = append(parts, d)
		}
	}
	return strings.Join(parts, ":")
}

// DaemonEnviron is the base environment given to scripts: the daemon's own.
func DaemonEnviron() []string { return os.Environ() }

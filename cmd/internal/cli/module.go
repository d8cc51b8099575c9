package cli

import (
	"fmt"
	"os"
	"strconv"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/runtime/webauth"
	"github.com/safekit-oss/safekit/safe"
)

func init() {
	register(&command{
		name:  "module",
		usage: "module install -m AM [-M id] [-r] [AM.safe] | uninstall -m AM | list | listid | getports -m AM|-i id | package -m AM /path/AM.safe",
		help:  "install, remove, list and package application modules",
		flags: map[string]bool{"-m": true, "-M": true, "-r": false, "-i": true},
		run:   runModule,
	})
}

func (e *Env) manager() *modules.Manager { return modules.NewManager(e.Roots, e.Stdout) }

func runModule(e *Env, a *args) int {
	c := commands["module"]
	if len(a.pos) == 0 {
		return e.usage(c, "missing subcommand")
	}
	sub, rest := a.pos[0], a.pos[1:]
	mgr := e.manager()
	switch sub {
	case "install":
		name := a.get("-m")
		if name == "" {
			return e.usage(c, "module install needs -m AM")
		}
		if len(rest) > 1 {
			return e.usage(c, "module install takes one archive, not %d", len(rest))
		}
		id := 0
		if a.has("-M") {
			n, err := strconv.Atoi(a.get("-M"))
			if err != nil {
				return e.usage(c, "-M needs a module id, not %q", a.get("-M"))
			}
			id = n
		}
		file := ""
		if len(rest) == 1 {
			file = rest[0]
		}
		if _, err := mgr.Install(name, file, id, a.has("-r")); err != nil {
			return e.fail(err)
		}
	case "uninstall":
		name, err := e.module(a)
		if err != nil {
			return e.usage(c, "%v", err)
		}
		if err := e.guardedManager().Uninstall(name); err != nil {
			return e.fail(err)
		}
		e.reload(name)
	case "list", "listid":
		infos, err := mgr.List()
		if err != nil {
			return e.fail(err)
		}
		for _, i := range infos {
			if sub == "list" {
				e.printf("%s\n", i.Name)
			} else {
				e.printf("%-24s %d\n", i.Name, i.ID)
			}
		}
	case "getports":
		return getPorts(e, a, mgr)
	case "package":
		name, err := e.module(a)
		if err != nil {
			return e.usage(c, "%v", err)
		}
		if len(rest) != 1 {
			return e.usage(c, "module package needs the absolute path of the .safe to write")
		}
		if err := mgr.Package(name, rest[0]); err != nil {
			return e.fail(err)
		}
	default:
		return e.usage(c, "unknown subcommand %q", sub)
	}
	return ExitOK
}

func getPorts(e *Env, a *args, mgr *modules.Manager) int {
	var id int
	var cfg *safe.Config
	switch {
	case a.has("-i"):
		n, err := strconv.Atoi(a.get("-i"))
		if err != nil || n < 1 {
			return e.usage(commands["module"], "-i needs a module id, not %q", a.get("-i"))
		}
		id = n
	default:
		name, err := e.module(a)
		if err != nil {
			return e.usage(commands["module"], "%v", err)
		}
		mod := e.Roots.Module(name)
		if !mod.Installed() {
			return e.fail(fmt.Errorf("%w: %s", modules.ErrNotInstalled, name))
		}
		if id, err = mgr.ID(name); err != nil {
			return e.fail(err)
		}
		if id == 0 {
			return e.fail(fmt.Errorf("module %s has no id: reinstall it with safekit module install -r -m %s", name, name))
		}
		cfg = readConfig(mod.Userconfig())
	}
	modules.PortsOf(id, cfg, webauth.HTTPPort(e.Roots)).Print(e.Stdout)
	return ExitOK
}

// readConfig reads a userconfig.xml for display; nil if unreadable.
func readConfig(path string) *safe.Config {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return safe.ParseUserconfig(data, safe.Options{Env: os.LookupEnv}).Config
}

// Command safekitd is the node daemon of a SafeKit-compatible cluster: it
// owns the configured modules, runs each in its own supervised process, and
// serves the safekit CLI (unix socket under SAFEVAR) and the web service
// (TCP 9010). It runs in the foreground; see deploy/safekit.service.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	safekit "github.com/safekit-oss/safekit/cmd/internal/cli"
	"github.com/safekit-oss/safekit/console/ui"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/module"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "module" {
		os.Exit(moduleMain(os.Args[2:]))
	}
	fs := flag.NewFlagSet("safekitd", flag.ExitOnError)
	listen := fs.String("listen", "", `TCP address of the web service (console, API, peers, distributed commands, health probe) (default ":" and the httpport of SAFE/web/conf/httpd.conf, 9010)`)
	node := fs.String("node", "", "name of this node in cluster.xml (default: the node whose address is one of this machine's)")
	cli := fs.String("cli", "", "safekit binary to install as $SAFE/safekit (default: safekit next to safekitd)")
	shAsBash := fs.Bool("sh-as-bash", true, `run "#!/bin/sh" module scripts with bash (published modules use bash-isms)`)
	syslog := fs.Bool("syslog", true, "also send the main module messages to syslog/journald (tag safekit)")
	debug := fs.Bool("debug", false, "verbose daemon log")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: safekitd [flags]\n\nRuns the node daemon in the foreground. SAFE (default %s) and SAFEVAR (default %s) come from the environment.\n\nFlags:\n", layout.DefaultSAFE, layout.DefaultSAFEVAR)
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])

	log := logrus.New()
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339})
	if *debug {
		log.SetLevel(logrus.DebugLevel)
	}
	if *cli == "" {
		if exe, err := os.Executable(); err == nil {
			cand := filepath.Join(filepath.Dir(exe), "safekit")
			if _, err := os.Stat(cand); err == nil {
				*cli = cand
			}
		}
	}
	roots := layout.FromEnv()
	d, err := daemon.New(daemon.Options{Roots: roots, Listen: *listen, Node: *node, Runner: safekit.RemoteRunner(roots),
		CLI: *cli, ShAsBash: *shAsBash, Syslog: *syslog, Log: log, UI: ui.Handler()})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := d.Run(ctx); err != nil {
		log.Errorf("safekitd: %v", err)
		os.Exit(1)
	}
}

// moduleMain is the process of one module, started by the daemon.
func moduleMain(args []string) int {
	fs := flag.NewFlagSet("safekitd module", flag.ExitOnError)
	name := fs.String("name", "", "module name")
	boot := fs.Bool("boot", false, "apply the boot setting after recovery")
	shAsBash := fs.Bool("sh-as-bash", true, "run #!/bin/sh scripts with bash")
	syslog := fs.Bool("syslog", false, "send main messages to syslog")
	node := fs.String("node", "", "this node's name in cluster.xml (default: found from its addresses)")
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Belt and braces with the parent-death signal: end if the daemon is
	// gone, so that the next daemon recovers the module.
	ppid := os.Getppid()
	go func() {
		for range time.Tick(time.Second) {
			if os.Getppid() != ppid {
				stop()
				return
			}
		}
	}()
	if err := module.Main(ctx, module.Options{Roots: layout.FromEnv(), Name: *name, Boot: *boot, ShAsBash: *shAsBash, Syslog: *syslog, Node: *node}); err != nil {
		fmt.Fprintf(os.Stderr, "module %s: %v\n", *name, err)
		return 1
	}
	return 0
}

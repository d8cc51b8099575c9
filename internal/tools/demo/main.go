// Command demo is the repository's main job (make demo, scripts/demo.sh):
// a two-node cluster on this machine that protects a real KVM virtual
// machine with the project's own kvm module, and the web console to watch
// and drive it.
//
// It brings up two nodes of the test harness (internal/testcluster), a
// libvirtd in each, the counter guest of internal/kvmtest defined on both
// as domain vm1 with its disk in /var/lib/libvirt/images/vm1, the cluster
// configured from node1 as an operator does it, the kvm template installed
// as module vm1 and started (primary on node1, secondary on node2), and a
// console password. Then it prints the console URLs, the credentials and
// commands to try, and waits; SIGINT or SIGTERM removes everything.
//
// With -check it does not wait: it checks the console login, makes the
// primary fail over to node2, checks that the VM runs there with every
// value the guest synced on node1, removes everything and exits non-zero
// on any failure. The tests run it that way (demo_test.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/safekit-oss/safekit/internal/testenv"
)

func main() { os.Exit(run(os.Args[1:])) }

// Exit codes: 0 when the demo ran (or the check passed) and everything
// was removed, 1 on a failure, 2 on wrong usage, 130 when interrupted
// before the demo was up.
const (
	exitFailure     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func run(args []string) int {
	root := testenv.RepoRoot()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	check := fs.Bool("check", false, "bring the demo up, check it and one failover, tear it down, exit non-zero on a failure")
	bin := fs.String("bin", filepath.Join(root, "bin"), "directory of safekit and safekitd")
	templates := fs.String("templates", filepath.Join(root, "build", "Application_Modules", "generic"), "directory of the packed templates (kvm.safe)")
	harness := fs.String("testcluster", "scripts/testcluster", "how the printed commands call the harness's command")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: demo [-check] [-bin DIR] [-templates DIR]\n\nRun it through scripts/demo.sh (make demo), which installs what it needs first.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	o := newOut(os.Stdout)
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: run it as root: it creates network namespaces, bridges and mounts")
		return exitFailure
	}

	// The first signal cancels what runs and starts the teardown; later
	// ones only say that it is under way, so that a second Ctrl-C cannot
	// leave half a cluster behind.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		o.Printf("\n%s: stopping the demo and removing everything it made...\n", s)
		cancel()
		for s := range sigs {
			o.Printf("%s: still removing the demo, it takes a few seconds\n", s)
		}
	}()

	d := &demo{o: o, bin: *bin, templates: *templates, harness: *harness, checking: *check}
	err := d.up(ctx)
	if err == nil {
		d.show()
	}
	if err == nil && *check {
		err = d.check(ctx)
	}
	if err == nil && !*check {
		d.watch(ctx)
	}
	terr := d.teardown()
	switch {
	case err != nil && ctx.Err() != nil:
		o.Printf("\nInterrupted.\n")
		return exitInterrupted
	case err != nil:
		o.Printf("\n%s %v\n", o.style(bold, "The demo failed:"), err)
		return exitFailure
	case terr != nil:
		return exitFailure
	case *check:
		o.Printf("\n%s\n", o.style(bold, "Demo check passed."))
	}
	return 0
}

// errInterrupted is returned by the steps that a signal cut short.
var errInterrupted = errors.New("interrupted")

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// consolePath is the console's first page.
const consolePath = "/console/en/monitoring"

// watchEvery is how often the interactive demo reads the states to print
// their changes.
const watchEvery = time.Second

// show prints what to open and what to try.
func (d *demo) show() {
	o := d.o
	h := d.harness + " -c " + strconv.Itoa(d.c.ID)
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n\n", o.style(bold, "The demo is up: "+vmName+" runs on node1 (PRIM), replicated to node2 (SECOND)."))
	fmt.Fprintf(&b, "%s\n", o.style(bold, "Web console"))
	for _, n := range d.c.Nodes {
		fmt.Fprintf(&b, "  http://%s:9010%s   (%s)\n", n.Addr("default"), consolePath, n.Name)
	}
	fmt.Fprintf(&b, "  user %s, password %s\n", o.style(bold, consoleUser), o.style(bold, d.pwd))
	fmt.Fprintf(&b, "  From another machine: ssh -L 9010:%s:9010 root@<this machine>, then http://localhost:9010%s\n\n", d.n1.Addr("default"), consolePath)

	fmt.Fprintf(&b, "%s\n", o.style(bold, "Try, from another terminal in "+rootDir()+" (as root)"))
	fmt.Fprintf(&b, "  Commands run inside a node as if you were logged in there: `%s exec NODE CMD...`.\n\n", h)
	w := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	for _, l := range [][2]string{
		{h + ` exec node1 safekit -H "*" state -m ` + vmName, "the module on both nodes"},
		{h + " exec node1 safekit stop -m " + vmName, "stop the primary: " + vmName + " fails over to node2 (ALONE)"},
		{h + " exec node1 safekit start -m " + vmName, "node1 comes back as secondary, resynchronised"},
		{h + " exec node1 safekit swap -m " + vmName, "swap the roles: " + vmName + " moves back to node1"},
		{h + " exec node1 safekit log -m " + vmName, "the module log (-A: verbose)"},
		{h + " exec node1 safekit logview -m " + vmName, "follow it (Ctrl-C ends it)"},
		{h + " exec node1 virsh list --all", "the VM as node1's libvirt sees it"},
		{h + " exec node1 tail -f " + d.vm.Serial, "the guest's console: the counter it syncs to its disk"},
		{h + " exec node1 bash", "a shell in node1 (SAFE=/opt/safekit, safekit on PATH)"},
	} {
		fmt.Fprintf(w, "  %s\t# %s\n", l[0], l[1])
	}
	_ = w.Flush()
	fmt.Fprintf(&b, "\n  After a failover the guest on the other node goes on from the last value it synced:\n")
	fmt.Fprintf(&b, "  its disk is replicated synchronously. docs/kvm.md does the same on two real servers.\n\n")
	if !d.checking {
		fmt.Fprintf(&b, "%s\n\n", o.style(bold, "Ctrl-C stops the demo and removes everything. State changes are printed below."))
	}
	o.Printf("%s", b.String())
}

// rootDir is the repository, where the printed commands run.
func rootDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return "the repository"
	}
	return wd
}

// watch prints each change of the module's states and of where the VM
// runs, until ctx ends.
func (d *demo) watch(ctx context.Context) {
	last := ""
	for {
		var parts []string
		var on []string
		for _, n := range d.c.Nodes {
			parts = append(parts, fmt.Sprintf("%s %-14s", n.Name, d.state(n)))
			if d.domstate(n) == "running" {
				on = append(on, n.Name)
			}
		}
		vm := vmName + " runs nowhere"
		if len(on) > 0 {
			vm = vmName + " runs on " + strings.Join(on, " and ")
		}
		line := strings.Join(parts, "  ") + "  " + vm
		if ctx.Err() != nil {
			return
		}
		if line != last {
			d.o.Printf("  %s  %s\n", time.Now().Format("15:04:05"), line)
			last = line
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchEvery):
		}
	}
}

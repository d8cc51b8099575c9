// Command testcluster runs clusters of nodes on this machine, each node in
// its own network, PID and mount namespaces with its own safekitd (see
// package internal/testcluster). It is the same harness the multi-node
// tests use, for people: `testcluster up` makes a cluster that outlives the
// command, the other subcommands act on it, `testcluster down` removes it.
//
// It is also the init of every node (`testcluster init`, started by the
// package, not by hand).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
)

// prog is how the user calls us, for the hints we print (the wrapper
// scripts/testcluster sets it).
func prog() string {
	if p := os.Getenv("TESTCLUSTER_PROG"); p != "" {
		return p
	}
	return "testcluster"
}

func usage() {
	fmt.Fprintf(os.Stderr, `usage: %[1]s [-c ID] COMMAND [ARGS]

  up [-n 2] [-lans default,repli] [-bin ./bin] [-private DIR,...] [-no-daemon] [-node-flag] [-- DAEMON ARGS]
                            create a cluster that outlives the command
  status                    clusters, nodes, addresses, processes
  exec NODE CMD [ARGS]      run a command inside a node (SAFE, SAFEVAR, PATH set)
  kill NODE                 SIGKILL every process of the node (as a crash)
  start NODE                boot a killed node again (and its daemon)
  stop-daemon NODE | start-daemon NODE | kill-daemon NODE
  cut NODE [LAN]            take the node's link(s) down
  restore NODE [LAN]        bring them up again
  xml                       print a cluster.xml for the nodes
  down                      remove the cluster(s) made by up, then sweep
  sweep                     remove what killed test runs left behind

-c ID selects a cluster when several are up. Run as root.
`, prog())
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	id := 0
	if len(args) >= 2 && args[0] == "-c" {
		n, err := strconv.Atoi(args[1])
		if err != nil {
			fmt.Fprintf(os.Stderr, "-c %s: want a cluster id (see %s status)\n", args[1], prog())
			return 2
		}
		id, args = n, args[2:]
	}
	if len(args) == 0 {
		usage()
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "init":
		return initMain(args)
	case "protocol":
		fmt.Println(testcluster.Protocol)
		return 0
	case "help", "-h", "-help", "--help":
		usage()
		return 0
	}
	if os.Geteuid() != 0 {
		fmt.Fprintf(os.Stderr, "%s %s: needs root (namespaces, links, mounts): run it with sudo\n", prog(), cmd)
		return 1
	}
	var err error
	switch cmd {
	case "up":
		err = up(args)
	case "down":
		err = down(id)
	case "sweep":
		err = testcluster.Sweep()
	case "status":
		err = status()
	case "exec":
		return execIn(id, args)
	case "xml":
		err = withCluster(id, func(c *testcluster.Cluster) error {
			fmt.Print(c.ClusterXML())
			return nil
		})
	case "kill", "start", "stop-daemon", "start-daemon", "kill-daemon", "cut", "restore":
		err = nodeCmd(id, cmd, args)
	default:
		fmt.Fprintf(os.Stderr, "%s: unknown command %q\n", prog(), cmd)
		usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %s: %v\n", prog(), cmd, err)
		return 1
	}
	return 0
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

func withCluster(id int, f func(*testcluster.Cluster) error) error {
	c, err := testcluster.Open(id, logf)
	if err != nil {
		return err
	}
	return f(c)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	n := fs.Int("n", 2, "number of nodes")
	lans := fs.String("lans", "default", "comma-separated lan names (lan i is eth<i> in the nodes)")
	bin := fs.String("bin", "", "directory of safekit and safekitd (default: the repository's bin/)")
	private := fs.String("private", "", "comma-separated directories each node gets a private copy of (e.g. /var/lib/libvirt)")
	noDaemon := fs.Bool("no-daemon", false, "do not start safekitd")
	nodeFlag := fs.Bool("node-flag", false, "pass --node node<i> to safekitd even if its usage does not list it")
	dir := fs.String("dir", "", "cluster directory (default /tmp/sktc-<id>)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o := testcluster.Options{
		Nodes: *n, Lans: splitList(*lans), PrivateDirs: splitList(*private), Bin: *bin,
		NoDaemon: *noDaemon, NodeFlag: *nodeFlag, DaemonArgs: fs.Args(), Dir: *dir, InitBin: self,
	}
	c, err := testcluster.Up(o, logf)
	if err != nil {
		return err
	}
	p := prog()
	if len(testcluster.Clusters()) > 1 {
		p += " -c " + strconv.Itoa(c.ID)
	}
	fmt.Printf("Cluster %d is up in %s (the host is .1 on every lan).\n\n", c.ID, c.Dir)
	printNodes(c)
	fmt.Println("\nUse it (as root):")
	w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	for _, l := range [][2]string{
		{p + " exec node1 safekit level", "a command inside node1"},
		{p + " exec node1 bash", "a shell inside node1"},
		{"curl http://" + c.Nodes[0].Addr(c.Lans[0]) + ":9010/", "node1's web service, from the host"},
		{p + " xml > cluster.xml", "a cluster.xml naming the nodes"},
		{p + " kill node1; " + p + " start node1", "crash node1, boot it again"},
		{p + " cut node1 " + c.Lans[len(c.Lans)-1] + "; " + p + " restore node1", "pull a cable, plug it back"},
		{p + " down", "remove everything"},
	} {
		fmt.Fprintf(w, "  %s\t# %s\n", l[0], l[1])
	}
	_ = w.Flush()
	fmt.Printf("Node files on the host: %s/node<i>/safe and safevar are the nodes' %s and %s; safekitd.log is next to them.\n", c.Dir, testcluster.NodeSAFE, testcluster.NodeSAFEVAR)
	return nil
}

func printNodes(c *testcluster.Cluster) {
	for _, n := range c.Nodes {
		var addrs []string
		for _, l := range c.Lans {
			addrs = append(addrs, l+" "+n.Addr(l))
		}
		state := "down"
		if pid := n.InitPID(); pid != 0 {
			state = fmt.Sprintf("up (init %d", pid)
			if d := n.DaemonPID(); d != 0 {
				state += fmt.Sprintf(", safekitd %d)", d)
			} else {
				state += ", no safekitd)"
			}
		}
		fmt.Printf("  %-7s %s  netns %s  %s\n", n.Name, strings.Join(addrs, "  "), n.Netns(), state)
	}
}

func status() error {
	ids := testcluster.Clusters()
	if len(ids) == 0 {
		fmt.Printf("No cluster is up (%s up creates one).\n", prog())
		return nil
	}
	for _, id := range ids {
		c, err := testcluster.Open(id, logf)
		if err != nil {
			return err
		}
		fmt.Printf("Cluster %d in %s, lans %s:\n", c.ID, c.Dir, strings.Join(c.Lans, ", "))
		printNodes(c)
	}
	return nil
}

// down removes the chosen cluster, or every cluster made by up, then what
// dead test runs left.
func down(id int) error {
	ids := []int{id}
	if id == 0 {
		ids = testcluster.Clusters()
	}
	var errs []error
	for _, id := range ids {
		c, err := testcluster.Open(id, logf)
		if err == nil {
			err = c.Close()
		}
		if err == nil {
			fmt.Printf("Cluster %d removed.\n", id)
		}
		errs = append(errs, err)
	}
	return errors.Join(append(errs, testcluster.Sweep())...)
}

// execIn runs a command in a node with our stdin, stdout and stderr, and
// exits with its status.
func execIn(id int, args []string) int {
	if len(args) < 2 {
		fmt.Fprintf(os.Stderr, "usage: %s exec NODE CMD [ARGS]\n", prog())
		return 2
	}
	c, err := testcluster.Open(id, logf)
	var n *testcluster.Node
	if err == nil {
		n, err = lookup(c, args[0])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s exec: %v\n", prog(), err)
		return 1
	}
	cmd := n.Command(args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s exec: %v\n", prog(), err)
		return 1
	}
	return 0
}

func lookup(c *testcluster.Cluster, name string) (*testcluster.Node, error) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("cluster %d has no node %q (node1 to node%d)", c.ID, name, len(c.Nodes))
}

func nodeCmd(id int, cmd string, args []string) error {
	if len(args) < 1 || len(args) > 2 || (len(args) == 2 && cmd != "cut" && cmd != "restore") {
		return fmt.Errorf("usage: %s %s NODE%s", prog(), cmd, map[bool]string{true: " [LAN]", false: ""}[cmd == "cut" || cmd == "restore"])
	}
	return withCluster(id, func(c *testcluster.Cluster) error {
		n, err := lookup(c, args[0])
		if err != nil {
			return err
		}
		switch cmd {
		case "kill":
			return n.Kill()
		case "start":
			return n.Start()
		case "stop-daemon":
			return n.StopDaemon()
		case "start-daemon":
			if err := n.StartDaemon(); err != nil {
				return err
			}
			return n.WaitDaemon(30 * time.Second)
		case "kill-daemon":
			return n.KillDaemon()
		case "cut", "restore":
			lan := ""
			if len(args) == 2 {
				lan = args[1]
			}
			switch {
			case cmd == "cut" && lan == "":
				return n.CutAll()
			case cmd == "cut":
				return n.CutLan(lan)
			case lan == "":
				return n.RestoreAll()
			default:
				return n.RestoreLan(lan)
			}
		}
		return nil
	})
}

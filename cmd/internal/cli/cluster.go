package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/safe"
)

func init() {
	register(&command{
		name:  "cluster",
		usage: "cluster create IP1 IP2 [...] | config [file.xml|file.zip] [lock|unlock] | confcheck file.xml | confinfo | state | genkey | delkey | deconfig",
		help:  "create, check, apply and inspect the cluster configuration SAFEVAR/cluster (cluster.xml and key); copy it to every node with safekit -H \"*\" -G",
		flags: map[string]bool{},
		run:   runCluster,
	})
}

// dateLayout is how cluster commands print dates.
const dateLayout = "2006-01-02T15:04:05"

func runCluster(e *Env, a *args) int {
	c := commands["cluster"]
	if len(a.pos) == 0 {
		return e.usage(c, "missing subcommand")
	}
	sub, rest := a.pos[0], a.pos[1:]
	switch sub {
	case "create":
		if len(rest) < 2 {
			return e.usage(c, "cluster create needs the addresses of at least 2 nodes")
		}
		return clusterCreate(e, rest)
	case "config":
		file, lock := "", ""
		for _, w := range rest {
			switch {
			case (w == "lock" || w == "unlock") && lock == "":
				lock = w
			case w != "lock" && w != "unlock" && file == "":
				file = w
			default:
				return e.usage(c, "cluster config takes at most one file and one of lock, unlock")
			}
		}
		done := e.logCommand("", a.raw)
		code := clusterConfig(e, file, lock)
		done(code)
		return code
	case "confcheck":
		if len(rest) != 1 {
			return e.usage(c, "cluster confcheck needs the file to check")
		}
		data, err := os.ReadFile(rest[0])
		if err != nil {
			return e.fail(err)
		}
		_, diags := safe.ParseCluster(data, rest[0])
		e.printDiags(diags)
		if diags.HasErrors() {
			fmt.Fprintf(e.Stderr, "Error: %s: %d error(s)\n", rest[0], len(diags.Errors()))
			return ExitFailure
		}
		e.printf("%s is valid\n", rest[0])
	case "confinfo":
		if len(rest) != 0 {
			return e.usage(c, "cluster confinfo takes no argument (safekit -H \"*\" cluster confinfo for every node)")
		}
		return clusterConfinfo(e)
	case "state":
		if len(rest) != 0 {
			return e.usage(c, "cluster state takes no argument")
		}
		return clusterState(e)
	case "genkey", "delkey", "deconfig":
		if len(rest) != 0 {
			return e.usage(c, "cluster %s takes no argument", sub)
		}
		done := e.logCommand("", a.raw)
		code := clusterKeyOrDeconfig(e, sub)
		done(code)
		return code
	default:
		return e.usage(c, "unknown subcommand %q", sub)
	}
	return ExitOK
}

// clusterCreate writes a cluster.xml with one lan "default" and nodes node1,
// node2... at the given addresses, as Evidian's setup scripts expect.
func clusterCreate(e *Env, addrs []string) int {
	cl := &safe.Cluster{Lans: []safe.Lan{{Name: "default"}}}
	for i, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && ip.To4() == nil {
			a = "[" + a + "]"
		}
		cl.Lans[0].Nodes = append(cl.Lans[0].Nodes, safe.Node{Name: fmt.Sprintf("node%d", i+1), Addr: a})
	}
	text := cl.String()
	if _, diags := safe.ParseCluster([]byte(text), "cluster.xml"); diags.HasErrors() {
		e.printDiags(diags)
		return ExitFailure
	}
	if err := writeFile(e.Roots.ClusterXML(), []byte(text)); err != nil {
		return e.fail(err)
	}
	e.printf("%s", text)
	e.printf("Cluster configuration written to %s; apply it with safekit cluster config\n", e.Roots.ClusterXML())
	return ExitOK
}

// clusterConfig applies a cluster configuration on this node (User's Guide
// §9.2): file.xml (or, without file, SAFEVAR/cluster/cluster.xml) with a
// new key, or file.zip with the key it holds. lock refuses later
// configurations until one says unlock.
func clusterConfig(e *Env, file, lock string) int {
	if clusterconf.Locked(e.Roots) && lock != "unlock" {
		return e.fail(errors.New("the cluster configuration of this node is locked: apply it with safekit cluster config [file] unlock"))
	}
	src := e.Roots.ClusterXML()
	var b *clusterconf.Bundle
	if strings.HasSuffix(strings.ToLower(file), ".zip") {
		data, err := os.ReadFile(file)
		if err != nil {
			return e.fail(err)
		}
		if b, err = clusterconf.ReadZip(data); err != nil {
			return e.fail(fmt.Errorf("%s: %w", file, err))
		}
		src = file + ":" + clusterconf.XMLName
	} else {
		if file != "" {
			src = file
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return e.fail(fmt.Errorf("%w (write one with safekit cluster create IP1 IP2)", err))
		}
		key, err := clusterconf.NewKey()
		if err != nil {
			return e.fail(err)
		}
		b = &clusterconf.Bundle{XML: data, Key: key}
	}
	b.Locked = lock == "lock"
	b.Date = time.Now()
	_, diags, err := b.Check(src)
	e.printDiags(diags)
	if err != nil {
		fmt.Fprintf(e.Stderr, "Error: %v; the cluster configuration is unchanged\n", err)
		return ExitFailure
	}
	if err := clusterconf.Apply(e.Roots, b); err != nil {
		return e.fail(err)
	}
	e.clusterReload()
	info, err := clusterconf.ReadInfo(e.Roots)
	if err != nil {
		return e.fail(err)
	}
	e.printf("Cluster configuration applied on this node (signature %s); copy it to every node with safekit -H \"*\" -G\n", info.Signature)
	return ExitOK
}

// clusterReload tells the daemon that SAFEVAR/cluster changed, for it to
// find its node again and update the running modules.
func (e *Env) clusterReload() {
	err := e.daemon().do(context.Background(), http.MethodPost, "/v1/cluster/reload?by="+url.QueryEscape(e.caller()), nil, nil)
	if err != nil && !errors.Is(err, errDaemonDown) {
		fmt.Fprintf(e.Stderr, "warning: safekitd did not take the new cluster configuration: %v\n", err)
	}
}

func clusterKeyOrDeconfig(e *Env, sub string) int {
	var err error
	switch sub {
	case "genkey":
		if _, serr := os.Stat(e.Roots.ClusterXML()); serr != nil {
			return e.fail(fmt.Errorf("no cluster configuration on this node (%s): a key goes with one; write it with safekit cluster create IP1 IP2", e.Roots.ClusterXML()))
		}
		if err = clusterconf.GenKey(e.Roots); err == nil {
			e.printf("New cluster key in %s; copy it to every node with safekit -H \"*\" -G\n", clusterconf.KeyPath(e.Roots))
		}
	case "delkey":
		if err = clusterconf.DelKey(e.Roots); err == nil {
			e.printf("Cluster key removed: cluster traffic is not encrypted once every node has the configuration (safekit -H \"*\" -G)\n")
		}
	case "deconfig":
		if err = clusterconf.Remove(e.Roots); err == nil {
			e.clusterReload()
			e.printf("Cluster configuration and key removed from this node\n")
		}
	}
	if err != nil {
		return e.fail(err)
	}
	return ExitOK
}

// thisNode names this node: the daemon's answer, else found here from the
// addresses of this machine.
func (e *Env) thisNode() string {
	var n daemon.Node
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.daemon().do(ctx, http.MethodGet, "/v1/node", nil, &n); err == nil && n.Name != "" {
		return n.Name
	}
	data, err := os.ReadFile(e.Roots.ClusterXML())
	if err != nil {
		return "-"
	}
	cl, diags := safe.ParseCluster(data, e.Roots.ClusterXML())
	if cl == nil || diags.HasErrors() {
		return "-"
	}
	name, err := clusterconf.FindNode(cl, clusterconf.LocalIPs())
	if err != nil {
		return "-"
	}
	return name
}

// clusterConfinfo prints the signature, date and lock of this node's
// cluster configuration; equal signatures on every node mean the same
// configuration (safekit -H "*" cluster confinfo).
func clusterConfinfo(e *Env) int {
	info, err := clusterconf.ReadInfo(e.Roots)
	if err != nil {
		return e.fail(err)
	}
	sig, date, lock := "-", "-", "0"
	if info.Configured {
		sig, date = info.Signature, info.Date.Format(dateLayout)
	}
	if info.Locked {
		lock = "1"
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Node\tSignature\tDate\tLock\n")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.thisNode(), sig, date, lock)
	tw.Flush()
	return ExitOK
}

// clusterState lists the modules of every node of the cluster, over their
// web services: which module is installed where, with which id, and whether
// its configuration (signature, date) is the same everywhere.
func clusterState(e *Env) int {
	if _, err := os.Stat(e.Roots.ClusterXML()); err != nil {
		return e.fail(fmt.Errorf("no cluster configuration on this node (%s): write it with safekit cluster create IP1 IP2 and apply it with safekit cluster config", e.Roots.ClusterXML()))
	}
	conf := e.webConf()
	targets, err := e.targets("*", conf)
	if err != nil {
		return e.fail(err)
	}
	c, err := e.remoteClient(conf)
	if err != nil {
		return e.fail(err)
	}
	type answer struct {
		mods daemon.NodeModules
		err  error
	}
	answers := make([]answer, len(targets))
	done := make(chan struct{})
	for i, t := range targets {
		go func() {
			defer func() { done <- struct{}{} }()
			answers[i].err = c.call(context.Background(), http.MethodGet, t.URL+"/api/v1.0/modules", "",
				func() (io.Reader, error) { return http.NoBody, nil }, &answers[i].mods)
		}()
	}
	for range targets {
		<-done
	}
	code := ExitOK
	tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Node\tModule\tMode\tId\tDate\tSignature\n")
	for i, t := range targets {
		a := answers[i]
		if a.err != nil {
			tw.Flush()
			fmt.Fprintf(e.Stderr, "Error: node %s: %v\n", t.Node, a.err)
			code = ExitFailure
			continue
		}
		for _, m := range a.mods.Modules {
			date, sig := "-", "-"
			if m.Signature != "" {
				date, sig = m.Date.Format(dateLayout), m.Signature
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", t.Node, m.Name, orDash(m.Mode), m.ID, date, sig)
		}
	}
	tw.Flush()
	return code
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeFile replaces path atomically.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

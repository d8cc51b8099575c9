package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/safekit-oss/safekit/safe"
)

func init() {
	register(&command{
		name:  "cluster",
		usage: "cluster create IP1 IP2 [...] | config [file.xml] | confcheck file.xml | deconfig",
		help:  "create, check and apply the cluster configuration SAFEVAR/cluster/cluster.xml",
		flags: map[string]bool{},
		run:   runCluster,
	})
}

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
		src := e.Roots.ClusterXML()
		if len(rest) == 1 {
			src = rest[0]
		} else if len(rest) > 1 {
			return e.usage(c, "cluster config takes at most one file")
		}
		return clusterConfig(e, src)
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
	case "deconfig":
		if err := os.Remove(e.Roots.ClusterXML()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return e.fail(err)
		}
		e.printf("Cluster configuration removed\n")
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

// clusterConfig checks src and makes it the cluster configuration of this
// node.
func clusterConfig(e *Env, src string) int {
	data, err := os.ReadFile(src)
	if err != nil {
		return e.fail(fmt.Errorf("%w (create one with safekit cluster create IP1 IP2)", err))
	}
	_, diags := safe.ParseCluster(data, src)
	e.printDiags(diags)
	if diags.HasErrors() {
		fmt.Fprintf(e.Stderr, "Error: %s: %d error(s); the cluster configuration is unchanged\n", src, len(diags.Errors()))
		return ExitFailure
	}
	if abs, _ := filepath.Abs(src); abs != e.Roots.ClusterXML() {
		if err := writeFile(e.Roots.ClusterXML(), data); err != nil {
			return e.fail(err)
		}
	}
	e.printf("Cluster configuration applied\n")
	return ExitOK
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

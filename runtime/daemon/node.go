package daemon

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/clusterconf"
)

// Node is GET /v1/node: who this daemon is in cluster.xml.
type Node struct {
	// Name of this node in cluster.xml; "" when it is not known (Problem
	// says why).
	Name string `json:"name"`
	// Addresses of this node in cluster.xml, by lan name.
	Addresses map[string]string `json:"addresses"`
	// ClusterSignature is the signature of the cluster configuration
	// (cluster.xml and key) as `safekit cluster confinfo` shows it; "" when
	// there is no cluster.xml.
	ClusterSignature string `json:"cluster_signature"`
	// Problem says why Name is unknown or doubtful.
	Problem string `json:"problem,omitempty"`
}

const (
	// clusterPollInterval is how often the daemon looks whether
	// cluster.xml changed, to find its node again.
	clusterPollInterval = 5 * time.Second
	// notifyTimeout bounds the call that tells a module process of a new
	// cluster configuration.
	notifyTimeout = 10 * time.Second
)

// identity is the node of this daemon, found again when SAFEVAR/cluster
// changes.
type identity struct {
	mu       sync.Mutex
	stamp    string // of cluster.xml and the key when node was found
	node     Node
	notified string // the cluster signature the module processes were given
}

// fileStamp identifies a version of a file without reading it.
func fileStamp(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "-"
	}
	return fmt.Sprintf("%d.%d", st.ModTime().UnixNano(), st.Size())
}

// node returns this daemon's node, found again (and logged) when cluster.xml
// or the key changed since last time.
func (d *Daemon) node() Node {
	r := d.o.Roots
	stamp := fileStamp(r.ClusterXML()) + "/" + fileStamp(clusterconf.KeyPath(r))
	d.id.mu.Lock()
	defer d.id.mu.Unlock()
	if stamp == d.id.stamp {
		return d.id.node
	}
	n := d.findNode()
	if n.Name != d.id.node.Name || n.Problem != d.id.node.Problem || d.id.stamp == "" {
		if n.Problem != "" {
			d.log.Warnf("%s", n.Problem)
		} else {
			d.log.Infof("this node is %s in cluster.xml", n.Name)
		}
	}
	d.id.stamp, d.id.node = stamp, n
	return n
}

// findNode reads SAFEVAR/cluster and finds this node in it: the --node name,
// or the node whose address is one of this machine's.
func (d *Daemon) findNode() Node {
	r := d.o.Roots
	n := Node{Name: d.o.Node, Addresses: map[string]string{}}
	if info, err := clusterconf.ReadInfo(r); err == nil {
		n.ClusterSignature = info.Signature
	}
	cl, _, err := modules.LoadCluster(r)
	switch {
	case err != nil:
		n.Problem = err.Error()
		return n
	case cl == nil:
		n.Problem = fmt.Sprintf("no cluster configuration yet (%s): write it (safekit cluster create IP1 IP2), apply it (safekit cluster config) and copy it to every node (safekit -H \"*\" -G)", r.ClusterXML())
		return n
	case d.o.Node != "":
		if !cl.HasNode(d.o.Node) {
			n.Problem = fmt.Sprintf("--node %s is not a node of cluster.xml (nodes: %s): fix --node or cluster.xml", d.o.Node, strings.Join(cl.NodeNames(), ", "))
		}
	default:
		name, err := clusterconf.FindNode(cl, clusterconf.LocalIPs())
		if err != nil {
			n.Problem = err.Error()
		}
		n.Name = name
	}
	if n.Name != "" {
		for _, lan := range cl.Lans {
			if a := cl.Addr(lan.Name, n.Name); a != "" {
				n.Addresses[lan.Name] = a
			}
		}
	}
	return n
}

// watchCluster finds the node again when cluster.xml changes, until ctx
// ends.
func (d *Daemon) watchCluster(ctx context.Context) {
	t := time.NewTicker(clusterPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.node()
		}
	}
}

// clusterApplied follows a new cluster configuration of this node (safekit
// cluster config, or -G from a node): find the node again, and tell the
// running modules when the configuration changed, each of which adapts
// (User's Guide §12.2.3).
func (d *Daemon) clusterApplied(by string) Node {
	n := d.node()
	d.id.mu.Lock()
	changed := n.ClusterSignature != d.id.notified
	d.id.notified = n.ClusterSignature
	d.id.mu.Unlock()
	if !changed {
		d.log.Infof("cluster configuration applied by %s: unchanged (signature %s)", by, short(n.ClusterSignature))
		return n
	}
	d.log.Infof("cluster configuration applied by %s (signature %s): the running modules take it", by, short(n.ClusterSignature))
	d.notifyModules()
	return n
}

func short(sig string) string {
	if len(sig) > 12 {
		return sig[:12]
	}
	if sig == "" {
		return "none"
	}
	return sig
}

// notifyModules posts /cluster to every running module process; a process
// that does not know the call (404) is left alone.
func (d *Daemon) notifyModules() {
	d.eachModule(func(name string, c *http.Client) {
		ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://local/cluster", nil)
		resp, err := c.Do(req)
		if err != nil {
			d.log.Warnf("module %s did not take the new cluster configuration: %v", name, err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
			d.log.Warnf("module %s did not take the new cluster configuration: %s", name, resp.Status)
		}
	})
}

func (d *Daemon) handleNode(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.node())
}

// handleClusterReload is called by `safekit cluster config` and `cluster
// deconfig` once they changed SAFEVAR/cluster.
func (d *Daemon) handleClusterReload(w http.ResponseWriter, r *http.Request) {
	by := r.URL.Query().Get("by")
	if by == "" {
		by = "root"
	}
	writeJSON(w, http.StatusOK, d.clusterApplied(by))
}

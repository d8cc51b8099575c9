package testcluster

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// Protocol is the version of the contract between this package and the init
// binary (NodeSpec and the readiness line). It changes with either side, so
// that a stale testcluster binary found next to Options.Bin is refused
// instead of building half a node.
const Protocol = 1

// Paths every node sees, identical on all nodes: only addresses differ.
const (
	NodeSAFE    = "/opt/safekit"
	NodeSAFEVAR = "/var/safekit"
	// DaemonListen is the daemon's web service address in every node.
	DaemonListen = ":9010"
)

// NodeSpec is what the init of a node reads (node.json in the node's
// directory) to build the node's mount namespace before anything else runs
// in it.
type NodeSpec struct {
	// Protocol must equal the init binary's Protocol.
	Protocol int `json:"protocol"`
	// Cluster is the cluster id; Hostname the node's name, set in its UTS
	// namespace so that scripts calling hostname see the node.
	Cluster  int    `json:"cluster"`
	Hostname string `json:"hostname"`
	// SAFE and SAFEVAR are host directories bound on NodeSAFE and
	// NodeSAFEVAR.
	SAFE    string `json:"safe"`
	SAFEVAR string `json:"safevar"`
	// OverlayDir holds the upper and work directories of the node's
	// overlays, one pair per overlaid directory, kept across boots.
	OverlayDir string `json:"overlay_dir"`
	// HarnessDir is the cluster directory: no overlay may cover it, since
	// the bind mounts above come from it and must stay the host's files.
	HarnessDir string `json:"harness_dir"`
	// PrivateDirs get a private copy-on-write copy in the node.
	PrivateDirs []string `json:"private_dirs"`
}

// NodeSpecFile is the name of the spec in a node's directory.
const NodeSpecFile = "node.json"

// Names on the host. Interface names must fit in 15 bytes: with id <= 254,
// node <= 200 and lan < 56 the longest is "sktc254n200l55" (14).
func netnsName(id, node int) string     { return fmt.Sprintf("sktc%d-node%d", id, node) }
func bridgeName(id, lan int) string     { return fmt.Sprintf("sktc%db%d", id, lan) }
func vethName(id, node, lan int) string { return fmt.Sprintf("sktc%dn%dl%d", id, node, lan) }
func nodeIfName(lan int) string         { return fmt.Sprintf("eth%d", lan) }

// subnetPrefix is the first three bytes of a lan's /24.
func subnetPrefix(id, lan int) string { return fmt.Sprintf("10.%d.%d", 200+lan, id) }

// stateDir is where a cluster's state file lives, whatever Options.Dir says.
func stateDir(id int) string { return fmt.Sprintf("/tmp/sktc-%d", id) }

// Limits that keep names and addresses valid.
const (
	maxID    = 254
	maxNodes = 200 // addresses .11 to .210
	maxLans  = 56  // 10.200 to 10.255
)

// under tells whether p is dir or inside it (both clean and absolute).
func under(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// OverlayName is the directory, under NodeSpec.OverlayDir, of the upper and
// work directories of the overlay on target: a stable, collision-free name
// so that a node booted again finds its files.
func OverlayName(target string) string {
	return url.PathEscape(filepath.Clean(target))
}

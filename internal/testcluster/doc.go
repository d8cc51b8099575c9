// Package testcluster builds clusters of nodes on one machine for multi-node
// tests and the demo. Each node behaves like a separate server: its own
// network namespace (one veth per lan, bridged on the host so that the CLI,
// curl or a browser on the host reach every node), its own PID namespace
// whose init is ours (so that killing the node kills every process of it, as
// a crash would), its own mount namespace (private /opt/safekit,
// /var/safekit, /run and copy-on-write copies of chosen directories) and its
// own safekitd.
//
// The package owns the node lifecycle (create, kill, boot again, cut links,
// tear down) and the cleanup of what a dead test left behind (Sweep). The
// init process itself and the `testcluster` command for people are in
// internal/tools/testcluster.
//
// Names that the harness puts on the machine all start with "sktc<id>"
// (network namespaces sktc<id>-node<i>, bridges sktc<id>b<lan>, host ends of
// the veths sktc<id>n<node>l<lan>) and its files live under /tmp/sktc-<id>,
// where <id> is also the third byte of every address of the cluster
// (10.<200+lan>.<id>.0/24), so two clusters never share a name or a subnet.
package testcluster

package module

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/rfs"
	"github.com/safekit-oss/safekit/safe"
)

// replication connects a mirror module with <rfs> to its file replication:
// the mounts follow the automaton's role actions, a Resync becomes
// rfs.Resync towards the primary, and rfs's events become automaton events,
// module log lines and resources.
type replication struct {
	d    *Driver
	r    *rfs.Replica
	cl   *safe.Cluster
	lan  string // the flow lan
	port int

	mu     sync.Mutex
	cancel context.CancelFunc // of the resynchronisation in progress
	lastMB int64              // progress already logged, in MiB
}

// openReplication opens the replica of a module and listens on this node's
// address on the flow lan (the lan of the heartbeat with ident "flow", else
// of the first heartbeat, or <flow name>).
func (d *Driver) openReplication(o Options, cfg *safe.Config, node string) error {
	cl, _, err := modules.LoadCluster(o.Roots)
	if err != nil || cl == nil {
		return fmt.Errorf("no usable cluster.xml: %v", err)
	}
	id, err := modules.NewManager(o.Roots, nil).ID(o.Name)
	if err != nil || id == 0 {
		return fmt.Errorf("module %s has no id: reinstall it", o.Name)
	}
	key, err := clusterconf.Key(o.Roots)
	if err != nil {
		return err
	}
	rc := rfs.FromSafe(o.Name, id, cfg.RFS)
	rc.StateDir = filepath.Join(d.mod.UserVar(), "rfs")
	rc.Key = key
	rc.Log = func(origin, level, msg string) { d.Logf(origin, level, "%s", msg) }
	r, err := rfs.Open(rc)
	if err != nil {
		return err
	}
	rep := &replication{d: d, r: r, cl: cl, lan: cfg.FlowLan(), port: rfs.Port(id)}
	addr := cl.Addr(rep.lan, node)
	if addr == "" {
		r.Close()
		return fmt.Errorf("node %s has no address on the flow lan %q", node, rep.lan)
	}
	if err := r.Listen(net.JoinHostPort(trimBrackets(addr), strconv.Itoa(rep.port))); err != nil {
		r.Close()
		return err
	}
	d.replication = rep
	go rep.run()
	return nil
}

func trimBrackets(s string) string {
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		return s[1 : len(s)-1]
	}
	return s
}

// exec carries out a replication action of the automaton.
func (rep *replication) exec(a automaton.Action) {
	var err error
	switch a := a.(type) {
	case automaton.MountReplicated:
		err = rep.r.Mount(rfs.Secondary)
	case automaton.ReplicationRole:
		role := rfs.Secondary
		if a.Primary {
			role = rfs.Primary
		}
		err = rep.r.SetRole(role)
	case automaton.UnmountReplicated:
		rep.cancelResync()
		err = rep.r.Unmount()
	}
	if err != nil {
		rep.d.Logf("rfsplug", "E", "%v", err)
	}
}

// resync resynchronises this node (secondary) from the primary; the
// automaton learns the end with ResyncDone.
func (rep *replication) resync(a automaton.Resync) {
	_, _, peer := rep.d.am.Remote()
	addr := rep.cl.Addr(rep.lan, peer)
	if addr == "" {
		rep.d.post(automaton.ResyncDone{ID: a.ID, OK: false, Err: fmt.Sprintf("no address of the peer %q on the flow lan %q", peer, rep.lan)})
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	rep.mu.Lock()
	rep.cancel = cancel
	rep.lastMB = 0
	rep.mu.Unlock()
	target := net.JoinHostPort(trimBrackets(addr), strconv.Itoa(rep.port))
	go func() {
		defer cancel()
		err := rep.r.Resync(ctx, target, rfs.ResyncOptions{Full: a.Full, Since: a.Since, External: a.External})
		done := automaton.ResyncDone{ID: a.ID, OK: err == nil}
		if err != nil {
			done.Err = err.Error()
		}
		rep.d.send(done)
	}()
}

func (rep *replication) cancelResync() {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	if rep.cancel != nil {
		rep.cancel()
		rep.cancel = nil
	}
}

// run turns replication events into automaton events and log lines, and
// publishes the replication figures as resources every 2 s.
func (rep *replication) run() {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	events := rep.r.Events()
	for {
		select {
		case e, ok := <-events:
			if !ok {
				return
			}
			rep.event(e)
		case <-tick.C:
			rep.publish()
		}
	}
}

func (rep *replication) event(e rfs.Event) {
	d := rep.d
	switch e := e.(type) {
	case rfs.SecondaryLost:
		d.send(automaton.ReplicationLost{Reason: e.Reason})
	case rfs.PrimaryLost:
		d.send(automaton.ReplicationLost{Reason: e.Reason, Incomplete: e.Incomplete})
	case rfs.Degraded:
		d.send(automaton.ReplicationDegraded{Reason: e.Err.Error()})
	case rfs.Progress:
		mb := e.Copied >> 20
		rep.mu.Lock()
		logIt := mb >= rep.lastMB+100 || (e.Total > 0 && e.Copied == e.Total && mb > rep.lastMB)
		if logIt {
			rep.lastMB = mb
		}
		rep.mu.Unlock()
		if logIt {
			d.Logf("reintegre", "I", "%dMB copied", mb)
		}
	}
}

// publish sets the rfs.* figures as resources (quietly: they change all
// the time).
func (rep *replication) publish() {
	st := rep.r.Stats()
	for name, v := range map[string]string{
		"rfs.rep_bandwidth":        fmt.Sprintf("%d KB/s", st.RepBW),
		"rfs.rei_bandwidth":        fmt.Sprintf("%d KB/s", st.ReiBW),
		"rfs.netout_bandwidth":     fmt.Sprintf("%d KB/s", st.RepBW+st.ReiBW),
		"rfs.rei_copy_size_metric": fmt.Sprintf("%d", st.Copied),
		"rfs.rei_copy_size_total":  fmt.Sprintf("%d", st.Total),
		"rfs.replicated_writes":    fmt.Sprintf("%d", st.Writes),
	} {
		rep.d.send(automaton.SetResource{Name: name, Value: v, By: "nfsadmin", Quiet: true})
	}
}

// close unmounts (when still mounted) and ends the replica.
func (rep *replication) close() {
	rep.cancelResync()
	_ = rep.r.Close()
}

// verify compares this secondary's replicated files with the primary's
// (safekit rfsverify).
func (rep *replication) verify(ctx context.Context) ([]string, error) {
	_, _, peer := rep.d.am.Remote()
	addr := rep.cl.Addr(rep.lan, peer)
	if addr == "" {
		return nil, fmt.Errorf("no address of the peer %q on the flow lan %q", peer, rep.lan)
	}
	return rep.r.Verify(ctx, net.JoinHostPort(trimBrackets(addr), strconv.Itoa(rep.port)))
}

package module

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/checkers"
	"github.com/safekit-oss/safekit/runtime/heart"
	"github.com/safekit-oss/safekit/safe"
)

// peering connects the automaton of a mirror module to its heartbeats.
type peering struct {
	d     *Driver
	h     *heart.Heart
	links map[string]bool
	alive bool
	// dropped counts refused packets per reason, to log the first and then
	// every hundredth.
	mu      sync.Mutex
	dropped map[string]uint64
}

// heartConfig builds the heartbeat configuration of a mirror module: one
// link per <heartbeat>, from this node's address on that lan to the other
// nodes' addresses on it.
func heartConfig(cfg *safe.Config, cl *safe.Cluster, node string, id int, key []byte) (heart.Config, error) {
	hc := heart.Config{Module: id, Port: modules.HeartPort(id), Node: node, Key: key}
	if cfg.Heart.Port != 0 {
		hc.Port = cfg.Heart.Port
	}
	for _, hb := range cfg.Heart.Heartbeats {
		l := heart.Link{Ident: hb.Ident, Pulse: hb.Pulse.D(), Timeout: hb.Timeout.D()}
		if len(hb.Servers) > 0 {
			return hc, fmt.Errorf("heartbeat %s uses the pre-7.2 <server addr> syntax, which this version does not run: refer to a lan of cluster.xml with name=", hb.Ident)
		}
		lan := cl.Lan(hb.Lan)
		if lan == nil {
			return hc, fmt.Errorf("heartbeat %s: lan %q is not in cluster.xml", hb.Ident, hb.Lan)
		}
		for _, n := range lan.Nodes {
			switch {
			case n.Name == node && n.LAddr != "":
				l.LocalAddr = n.LAddr
			case n.Name == node:
				l.LocalAddr = n.Addr
			default:
				l.PeerAddrs = append(l.PeerAddrs, n.Addr)
			}
		}
		if l.LocalAddr == "" {
			return hc, fmt.Errorf("heartbeat %s: node %s has no address on lan %s in cluster.xml", hb.Ident, node, hb.Lan)
		}
		hc.Links = append(hc.Links, l)
	}
	return hc, nil
}

// peerNode is the other node of a two-node cluster ("" when there are more:
// the heartbeats then tell who answers).
func peerNode(cl *safe.Cluster, node string) string {
	names := cl.NodeNames()
	if len(names) != 2 {
		return ""
	}
	if names[0] == node {
		return names[1]
	}
	return names[0]
}

// startPeering starts the heartbeats and feeds their events to the loop,
// replacing the heartbeats already running.
func (d *Driver) startPeering(hc heart.Config) error {
	d.mu.Lock()
	old := d.peering
	d.mu.Unlock()
	if old != nil {
		old.h.Stop()
	}
	events := make(chan heart.Event, 64)
	h, err := heart.Start(hc, d.heartStatus, events)
	if err != nil {
		return err
	}
	p := &peering{d: d, h: h, links: map[string]bool{}, dropped: map[string]uint64{}}
	if old != nil {
		p.links, p.alive = old.links, old.alive
	}
	d.mu.Lock()
	d.peering = p
	d.mu.Unlock()
	go p.run(events)
	return nil
}

// stopPeering ends the heartbeats.
func (d *Driver) stopPeering() {
	d.mu.Lock()
	p := d.peering
	d.peering = nil
	d.mu.Unlock()
	if p != nil {
		p.h.Stop()
	}
}

// heartStatus is what the heartbeats send: the automaton's status as of
// the last step.
func (d *Driver) heartStatus() heart.Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.status
	return heart.Status{State: string(s.State), Ready: string(s.Ready), UpToDate: s.UpToDate, LastPrim: s.LastPrim,
		AloneCause: s.AloneCause, Swap: s.Swap, Swapping: s.Swapping, Stopping: s.Stopping,
		Reintegrating: s.Reintegrating, FullSync: s.FullSync, Degraded: s.Degraded,
		SyncMode: s.Sync.Mode, SyncRole: s.Sync.Role, SyncUID: s.Sync.UID}
}

func (p *peering) run(events <-chan heart.Event) {
	for e := range events {
		switch e.Kind {
		case "up", "down":
			up := e.Kind == "up"
			if p.links[e.Ident] == up && p.alive == up {
				continue
			}
			p.links[e.Ident] = up
			p.d.send(automaton.HeartbeatLink{Ident: e.Ident, Up: up})
			alive := false
			for _, u := range p.links {
				alive = alive || u
			}
			if !alive && p.alive {
				p.alive = false
				p.d.send(automaton.Peer{Alive: false})
			}
		case "status":
			p.alive = true
			st := e.Status
			p.d.send(automaton.Peer{Alive: true, Name: e.Node, Status: automaton.PeerStatus{
				State: automaton.State(st.State), Ready: automaton.Readiness(st.Ready), UpToDate: st.UpToDate,
				LastPrim: st.LastPrim, AloneCause: st.AloneCause, Swap: st.Swap, Swapping: st.Swapping,
				Stopping: st.Stopping, Reintegrating: st.Reintegrating, FullSync: st.FullSync, Degraded: st.Degraded,
				Sync: automaton.SyncPolicy{Mode: st.SyncMode, Role: st.SyncRole, UID: st.SyncUID}}})
		case "drop":
			p.mu.Lock()
			p.dropped[e.Reason]++
			n := p.dropped[e.Reason]
			p.mu.Unlock()
			if n == 1 || n%100 == 0 {
				p.d.Logf("heart", "W", "Heartbeat packet from %s on %s dropped: %s (%d so far)", e.From, e.Ident, e.Reason, n)
			}
		}
	}
}

// checkWitness pings the split-brain witnesses; one answer is enough.
func (d *Driver) checkWitness() {
	sb := d.cfg.Check.Splitbrain
	go func() {
		ok := false
		for _, w := range sb.Witnesses {
			if checkers.Reach(context.Background(), w, time.Second) == nil {
				ok = true
				break
			}
		}
		d.events <- input{ev: automaton.WitnessResult{Reachable: ok}}
	}()
}

// Package heart exchanges the heartbeats of a mirror module with its peer
// (User's Guide §13.4): one UDP flow per <heartbeat> (one per lan), every
// pulse, carrying the module's state. A heartbeat is lost when nothing valid
// arrived for its timeout; the peer is lost when every heartbeat is.
//
// Packets are authenticated with the cluster key (HMAC-SHA256) when the
// cluster has one, and carry a sequence number that only grows on each lan:
// packets that fail authentication, come from another address than the
// peer's on that lan, or replay an old sequence are dropped and counted.
package heart

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Status is what a node tells its peer about its module.
type Status struct {
	State string `json:"state"`
	Ready string `json:"ready"`
	// UpToDate: the sender's replicated data is the reference copy.
	UpToDate bool `json:"uptodate"`
	LastPrim bool `json:"lastprim,omitempty"`
	// AloneCause says how the sender became ALONE (split-brain recovery).
	AloneCause string `json:"alone_cause,omitempty"`
	// Swap counts the swaps the sender asked for; a new value is a request.
	Swap uint64 `json:"swap,omitempty"`
	// Reintegrating: the sender resynchronises as secondary.
	Reintegrating bool `json:"reintegrating,omitempty"`
	// Swapping: the sender left PRIM for a swap; Stopping: it is in a stop
	// transition; FullSync: it asks its secondary for a full copy.
	Swapping bool `json:"swapping,omitempty"`
	Stopping bool `json:"stopping,omitempty"`
	FullSync bool `json:"fullsync,omitempty"`
	Degraded bool `json:"degraded,omitempty"`
	// SyncMode, SyncRole, SyncUID are the sender's synchronisation policy
	// (safekit rfssync: full, or external with its role and uid; empty
	// for the default), so that a secondary knows whether an external
	// synchronisation has its counterpart on the primary.
	SyncMode string `json:"syncmode,omitempty"`
	SyncRole string `json:"syncrole,omitempty"`
	SyncUID  string `json:"syncuid,omitempty"`
}

// packet is the wire form (JSON, then the HMAC when keyed).
type packet struct {
	Magic  string `json:"m"`
	Module int    `json:"id"`
	Node   string `json:"node"`
	Seq    uint64 `json:"seq"`
	// Time of sending (unix ns): a replay far older than the timeout is
	// refused even by a receiver that restarted and forgot the sequence.
	Time   int64  `json:"t"`
	Status Status `json:"s"`
}

const magic = "SKHB1"

// MaxSkew is how far a packet's time may be from the receiver's clock
// (nodes of a cluster are expected to use NTP).
const MaxSkew = 2 * time.Minute

// Link is one <heartbeat>: the lan, this node's address on it and the
// addresses of the nodes that may be the peer. A mirror module runs on two
// nodes; when the cluster has more, its peer is the node that answers for
// this module, and the link then keeps to it.
type Link struct {
	Ident     string
	LocalAddr string
	PeerAddrs []string
	Pulse     time.Duration
	Timeout   time.Duration
}

// Config of the heartbeats of a module.
type Config struct {
	Module int    // module id: packets of other modules are dropped
	Port   int    // UDP port, 8888+(id-1) by default
	Node   string // this node's name
	Links  []Link
	// Key authenticates packets; nil means the cluster has no key.
	Key []byte
}

// Event reports what the heartbeats saw.
type Event struct {
	// Kind: "up", "down" (one heartbeat), "status" (a new peer status),
	// "drop" (a packet refused; Reason says why).
	Kind   string
	Ident  string
	Status Status
	Reason string
	From   string
	// Node is the peer's node name (status events).
	Node string
}

// Heart runs the heartbeats of one module.
type Heart struct {
	cfg    Config
	local  func() Status
	events chan<- Event

	mu  sync.Mutex
	seq uint64
	// lastSeq is, per ident, the sequence of the last valid packet: the
	// lans' packets, numbered from one counter, may arrive in any order
	// between lans but not on one.
	lastSeq map[string]uint64
	// peer is the node answering for this module, once known; peerIP its
	// address on each lan.
	peerNode string
	peerIP   map[string]net.IP
	last     map[string]time.Time // per ident: last valid packet
	up       map[string]bool
	peer     Status
	dropped  map[string]uint64

	conns []*net.UDPConn
	kicks []chan struct{} // one per link
	done  chan struct{}
	wg    sync.WaitGroup
}

// Start opens one UDP socket per link and starts sending every pulse.
// local is called for the status to send; events receives what happens
// (the caller must read it).
func Start(cfg Config, local func() Status, events chan<- Event) (*Heart, error) {
	h := &Heart{cfg: cfg, local: local, events: events, seq: uint64(time.Now().UnixNano()), peerIP: map[string]net.IP{},
		last: map[string]time.Time{}, up: map[string]bool{}, dropped: map[string]uint64{}, lastSeq: map[string]uint64{},
		done: make(chan struct{})}
	for _, l := range cfg.Links {
		addr := &net.UDPAddr{IP: net.ParseIP(l.LocalAddr), Port: cfg.Port}
		if addr.IP == nil {
			ips, err := net.LookupIP(l.LocalAddr)
			if err != nil || len(ips) == 0 {
				h.Stop()
				return nil, fmt.Errorf("heartbeat %s: cannot resolve this node's address %q", l.Ident, l.LocalAddr)
			}
			addr.IP = ips[0]
		}
		c, err := net.ListenUDP("udp", addr)
		if err != nil {
			h.Stop()
			return nil, fmt.Errorf("heartbeat %s: cannot listen on %s (is another module using UDP port %d?): %w", l.Ident, addr, cfg.Port, err)
		}
		h.conns = append(h.conns, c)
	}
	for i, l := range cfg.Links {
		h.kicks = append(h.kicks, make(chan struct{}, 1))
		h.wg.Add(2)
		go h.receive(h.conns[i], l)
		go h.send(h.conns[i], l, h.kicks[i])
	}
	h.wg.Add(1)
	go h.watch()
	return h, nil
}

// Stop ends the heartbeats.
func (h *Heart) Stop() {
	select {
	case <-h.done:
		return
	default:
	}
	close(h.done)
	for _, c := range h.conns {
		c.Close()
	}
	h.wg.Wait()
}

// Kick sends the current status now (after a state change) rather than at
// the next pulse, on every lan.
func (h *Heart) Kick() {
	for _, k := range h.kicks {
		select {
		case k <- struct{}{}:
		default:
		}
	}
}

// Dropped returns the packets refused so far, by reason.
func (h *Heart) Dropped() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]uint64, len(h.dropped))
	for k, v := range h.dropped {
		out[k] = v
	}
	return out
}

func (h *Heart) emit(e Event) {
	select {
	case h.events <- e:
	case <-h.done:
	}
}

// Encode builds a packet (exported for tests that forge packets).
func Encode(module int, node string, seq uint64, t time.Time, s Status, key []byte) []byte {
	body, _ := json.Marshal(packet{Magic: magic, Module: module, Node: node, Seq: seq, Time: t.UnixNano(), Status: s})
	if key != nil {
		mac := hmac.New(sha256.New, key)
		mac.Write(body)
		body = append(body, mac.Sum(nil)...)
	}
	return body
}

var errAuth = errors.New("authentication failed")

// decode checks and reads a packet.
func decode(b []byte, key []byte) (*packet, error) {
	if key != nil {
		if len(b) < sha256.Size {
			return nil, errAuth
		}
		body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
		mac := hmac.New(sha256.New, key)
		mac.Write(body)
		if !hmac.Equal(sum, mac.Sum(nil)) {
			return nil, errAuth
		}
		b = body
	}
	var p packet
	if err := json.Unmarshal(b, &p); err != nil || p.Magic != magic {
		if key == nil && len(b) > sha256.Size && json.Unmarshal(b[:len(b)-sha256.Size], &p) == nil && p.Magic == magic {
			return nil, errors.New("signed packet but this node has no cluster key (run safekit -H \"*\" -G)")
		}
		return nil, errors.New("not a heartbeat packet")
	}
	return &p, nil
}

func (h *Heart) send(c *net.UDPConn, l Link, kick <-chan struct{}) {
	defer h.wg.Done()
	var peers []*net.UDPAddr
	for _, a := range l.PeerAddrs {
		addr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(a, fmt.Sprint(h.cfg.Port)))
		if err != nil {
			h.emit(Event{Kind: "drop", Ident: l.Ident, Reason: fmt.Sprintf("cannot resolve the peer address %q: %v", a, err)})
			continue
		}
		peers = append(peers, addr)
	}
	t := time.NewTicker(l.Pulse)
	defer t.Stop()
	for {
		h.mu.Lock()
		h.seq++
		seq := h.seq
		locked := h.peerIP[l.Ident]
		h.mu.Unlock()
		pkt := Encode(h.cfg.Module, h.cfg.Node, seq, time.Now(), h.local(), h.cfg.Key)
		for _, p := range peers {
			if locked == nil || locked.Equal(p.IP) {
				_, _ = c.WriteToUDP(pkt, p)
			}
		}
		select {
		case <-t.C:
		case <-kick:
		case <-h.done:
			return
		}
	}
}

func (h *Heart) receive(c *net.UDPConn, l Link) {
	defer h.wg.Done()
	buf := make([]byte, 64<<10)
	var peerIPs []net.IP
	for _, a := range l.PeerAddrs {
		peerIPs = append(peerIPs, resolveAll(a)...)
	}
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			select {
			case <-h.done:
				return
			default:
				continue
			}
		}
		reason := ""
		p, err := decode(buf[:n], h.cfg.Key)
		switch {
		case err != nil:
			reason = err.Error()
		case !containsIP(peerIPs, from.IP):
			reason = fmt.Sprintf("not from a node of the cluster on this lan (%s)", strings.Join(l.PeerAddrs, ", "))
		case p.Module != h.cfg.Module:
			reason = fmt.Sprintf("module id %d, not %d (same port used by two modules?)", p.Module, h.cfg.Module)
		case p.Node == h.cfg.Node:
			reason = "sent with this node's own name"
		case time.Since(time.Unix(0, p.Time)).Abs() > MaxSkew:
			reason = "too old or from a clock too far off (replay?)"
		}
		if reason == "" {
			h.mu.Lock()
			switch {
			case h.peerNode != "" && p.Node != h.peerNode:
				reason = fmt.Sprintf("from node %s, but the peer of this module is %s", p.Node, h.peerNode)
			case p.Seq <= h.lastSeq[l.Ident]:
				reason = "replayed or out-of-date sequence number"
			default:
				h.lastSeq[l.Ident] = p.Seq
				h.peerNode = p.Node
				h.peerIP[l.Ident] = from.IP
			}
			h.mu.Unlock()
		}
		if reason != "" {
			h.mu.Lock()
			h.dropped[reason]++
			h.mu.Unlock()
			h.emit(Event{Kind: "drop", Ident: l.Ident, Reason: reason, From: from.IP.String()})
			continue
		}
		h.mu.Lock()
		h.last[l.Ident] = time.Now()
		wasUp := h.up[l.Ident]
		h.up[l.Ident] = true
		changed := p.Status != h.peer
		h.peer = p.Status
		h.mu.Unlock()
		if !wasUp {
			h.emit(Event{Kind: "up", Ident: l.Ident, From: from.IP.String()})
		}
		if changed || !wasUp {
			h.emit(Event{Kind: "status", Ident: l.Ident, Status: p.Status, Node: p.Node})
		}
	}
}

// watch declares a heartbeat lost when nothing valid arrived for its
// timeout.
func (h *Heart) watch() {
	defer h.wg.Done()
	start := time.Now()
	step := time.Hour
	for _, l := range h.cfg.Links {
		step = min(step, l.Pulse/2)
	}
	t := time.NewTicker(max(step, 10*time.Millisecond))
	defer t.Stop()
	down := map[string]bool{}
	for {
		select {
		case <-t.C:
		case <-h.done:
			return
		}
		for _, l := range h.cfg.Links {
			h.mu.Lock()
			last, seen := h.last[l.Ident]
			if !seen {
				last = start
			}
			lost := time.Since(last) > l.Timeout
			if lost && h.up[l.Ident] {
				h.up[l.Ident] = false
			}
			h.mu.Unlock()
			if lost && !down[l.Ident] {
				down[l.Ident] = true
				h.emit(Event{Kind: "down", Ident: l.Ident})
			}
			if !lost {
				delete(down, l.Ident)
			}
		}
	}
}

func resolveAll(host string) []net.IP {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}
	}
	ips, _ := net.LookupIP(host)
	return ips
}

func containsIP(ips []net.IP, ip net.IP) bool {
	for _, x := range ips {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

package farm

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config of the membership of one farm module on this node.
type Config struct {
	// Module is the module name. It travels in the metadata so that a node
	// refusing a member of another module can say which one it is.
	Module string
	// ID is the module id. Only nodes advertising the same id are members:
	// two farm modules meet on one port only when <farm port> is forced.
	ID int
	// Port is the UDP and TCP port of the membership on every node,
	// 4803+(ID-1)*3 unless <farm port> says otherwise. Required.
	Port int
	// Node is this node's name in cluster.xml: the member's name, unique in
	// the farm. Required.
	Node string
	// BindAddr is this node's address (IP or name) on the first
	// <farm><lan>. memberlist speaks over a single address, so the
	// membership runs over that lan only. Required.
	BindAddr string
	// Peers are the other nodes' addresses on the farm lans, "host" or
	// "host:port" (the port defaults to Port). This node's own address may
	// be listed; it is skipped. Only the address a peer binds (its first
	// farm lan) answers.
	Peers []string
	// Key is the cluster key, any length; memberlist's AES-256 key is its
	// SHA-256. nil: packets are neither encrypted nor authenticated, and
	// encrypted packets are refused.
	Key []byte
	// Pulse is <farm pulse>: the probe and gossip period. Default 100ms.
	Pulse time.Duration
	// MlostCount is <farm mlost_count>: the longer patience, in pulses.
	// Default 20.
	MlostCount int
	// SlostCount is <farm slost_count>: pulses of silence before a member
	// is declared dead. Default 10.
	SlostCount int
	// Logf receives memberlist's own log: level "W" for its warnings and
	// errors, "D" for the rest. nil: discarded.
	Logf func(level, format string, args ...any)
}

// Product defaults of <farm> (User's Guide §13.5).
const (
	DefaultPulse      = 100 * time.Millisecond
	DefaultMlostCount = 20
	DefaultSlostCount = 10
)

// Member is a live node of the farm module.
type Member struct {
	Name string // node name in cluster.xml
	Addr string // IP the node speaks from (its first farm lan)
	// State is the module state the node advertises: "UP", "WAIT", "STOP"...
	State string
}

// entry is a live member and the address its membership listens on.
type entry struct {
	Member
	hostPort string
}

// meta is what a node advertises in its memberlist metadata (at most
// memberlist.MetaMaxSize bytes).
type meta struct {
	Module string `json:"module,omitempty"`
	ID     int    `json:"id"`
	State  string `json:"state"`
}

// Membership of this node in its farm.
type Membership struct {
	cfg     Config
	state   func() string
	changes chan<- []Member
	peers   []string // normalised "ip:port" or "host:port", self excluded
	rejoin  time.Duration
	update  time.Duration // how long UpdateNode may wait for its broadcast
	list    *memberlist.Memberlist

	// members mirrors memberlist's live nodes, copied in its event
	// callbacks: the *Node values its Members returns are written by its
	// goroutines after it unlocks them.
	mu      sync.Mutex
	members map[string]entry
	meta    []byte   // the metadata NodeMeta hands to memberlist
	last    []Member // the list last sent on changes

	// opMu serialises what memberlist forbids to mix: an UpdateNode after
	// Leave would bring the node back, a Leave after Shutdown panics.
	opMu    sync.Mutex
	left    bool
	stopped bool

	changed  chan struct{} // cap 1: memberlist reported an event
	updated  chan struct{} // cap 1: the local state changed
	stopJoin chan struct{} // closed when joining must end (Leave, Stop)
	done     chan struct{} // closed by Stop
	joinOnce sync.Once
	stopOnce sync.Once
	joinWG   sync.WaitGroup
	wg       sync.WaitGroup
}

// Start joins the farm. state is called now and on every Update for the
// module state to advertise; it must not block. changes, if not nil,
// receives the sorted list of live members after every change (join, leave,
// death, new state of a member), starting with the list Start ends with;
// when the reader is slow, intermediate lists are skipped but the latest is
// always delivered. Start does not close changes.
//
// Start makes one attempt to join every peer before it returns, so that a
// node entering a running farm starts with its members rather than alone
// (alone, it would claim the whole load-balancing table for a moment).
// Peers that do not answer (a node that starts first is alone) are retried
// in the background every MlostCount pulses, for as long as they are not
// members; this also heals a partition that outlasted memberlist's own
// gossip to dead nodes.
func Start(cfg Config, state func() string, changes chan<- []Member) (*Membership, error) {
	cfg, err := normalise(cfg)
	if err != nil {
		return nil, err
	}
	m := &Membership{
		cfg:      cfg,
		state:    state,
		changes:  changes,
		peers:    peerAddrs(cfg),
		members:  map[string]entry{},
		changed:  make(chan struct{}, 1),
		updated:  make(chan struct{}, 1),
		stopJoin: make(chan struct{}),
		done:     make(chan struct{}),
	}
	m.setMeta(state())

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Node
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.Port
	mc.AdvertisePort = cfg.Port
	m.rejoin, m.update = applyTimings(mc, cfg.Pulse, cfg.MlostCount, cfg.SlostCount)
	if cfg.Key != nil {
		sum := sha256.Sum256(cfg.Key)
		mc.SecretKey = sum[:]
	}
	d := &delegate{m: m}
	mc.Delegate = d
	mc.Events = d
	mc.Alive = d
	mc.Merge = d
	mc.Logger = newLogger(cfg.Logf)

	m.list, err = memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("farm membership of module %s on %s:%d (is another module using port %d?): %w",
			cfg.Module, cfg.BindAddr, cfg.Port, cfg.Port, err)
	}

	m.joinRound(m.missingPeers())
	if len(m.peers) > 0 {
		m.joinWG.Go(m.rejoinLoop)
	}
	m.wg.Go(m.updater)
	if changes != nil {
		m.wg.Go(m.notifier)
	}
	return m, nil
}

func normalise(cfg Config) (Config, error) {
	var errs []error
	if cfg.ID <= 0 {
		errs = append(errs, fmt.Errorf("module id %d: must be positive", cfg.ID))
	}
	if cfg.Port <= 0 || cfg.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: must be in 1..65535", cfg.Port))
	}
	if cfg.Node == "" {
		errs = append(errs, errors.New("no node name: give this node's name in cluster.xml"))
	}
	if cfg.Pulse < 0 || cfg.MlostCount < 0 || cfg.SlostCount < 0 {
		errs = append(errs, fmt.Errorf("pulse %s, mlost_count %d, slost_count %d: must not be negative",
			cfg.Pulse, cfg.MlostCount, cfg.SlostCount))
	}
	if cfg.BindAddr == "" {
		errs = append(errs, errors.New("no address: give this node's address on the first <farm><lan>"))
	} else if ip := net.ParseIP(cfg.BindAddr); ip == nil {
		// memberlist binds IPs only.
		ips, err := net.LookupIP(cfg.BindAddr)
		if err != nil || len(ips) == 0 {
			errs = append(errs, fmt.Errorf("cannot resolve this node's address %q", cfg.BindAddr))
		} else {
			cfg.BindAddr = ips[0].String()
		}
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("farm membership of module %s: %w", cfg.Module, errors.Join(errs...))
	}
	if cfg.Pulse == 0 {
		cfg.Pulse = DefaultPulse
	}
	if cfg.MlostCount == 0 {
		cfg.MlostCount = DefaultMlostCount
	}
	if cfg.SlostCount == 0 {
		cfg.SlostCount = DefaultSlostCount
	}
	return cfg, nil
}

// peerAddrs returns the peers as ip:port (host:port for a name that does
// not resolve yet), without this node and without duplicates.
func peerAddrs(cfg Config) []string {
	self := net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.Port))
	var out []string
	for _, p := range cfg.Peers {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		host, port, err := net.SplitHostPort(p)
		if err != nil {
			host, port = strings.Trim(p, "[]"), strconv.Itoa(cfg.Port)
		}
		// As IPs, peers compare with the members' addresses: a peer
		// left as a name would be joined again at every retry.
		if ip := net.ParseIP(host); ip != nil {
			host = ip.String()
		} else if ips, err := net.LookupIP(host); err == nil && len(ips) > 0 {
			host = ips[0].String()
		}
		a := net.JoinHostPort(host, port)
		if a != self && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// applyTimings maps <farm pulse mlost_count slost_count> onto memberlist.
// vipd sends a heartbeat every pulse, declares a follower offline after
// slost_count missed ones and elects a new leader after mlost_count.
// memberlist has no leader; it probes one member per ProbeInterval and,
// when neither the member nor other members on its behalf answer, suspects
// it for SuspicionMult*ProbeInterval (times log10(members) above ten
// members) before declaring it dead. Hence:
//
//	ProbeInterval    pulse         one probe per pulse, as vipd sends
//	ProbeTimeout     pulse/2       the other half is for indirect probes
//	GossipInterval   pulse         a new state spreads within a pulse or two
//	SuspicionMult    slost_count   a silent member dies after slost_count pulses
//	SuspicionMaxTimeoutMult        ceil(mlost_count/slost_count): from ten
//	                               members on, memberlist starts a suspicion
//	                               at this multiple and shortens it as other
//	                               members confirm; mlost_count pulses bound it
//	TCPTimeout       mlost_count pulses, at least 1s: join and push/pull streams
//	PushPullInterval 100 pulses    full state exchange, repairs a lost update
//
// With the defaults (100ms, 20, 10) a killed member disappears about 1s
// after the first probe it does not answer. The returned rejoin period
// (mlost_count pulses) paces the retries of peers that are not members.
// The returned update period (slost_count pulses) bounds the wait of
// UpdateNode for its broadcast, which a Leave or a Stop may have to sit
// through.
func applyTimings(c *memberlist.Config, pulse time.Duration, mlost, slost int) (rejoin, update time.Duration) {
	c.ProbeInterval = pulse
	c.ProbeTimeout = pulse / 2
	c.GossipInterval = pulse
	c.SuspicionMult = slost
	c.SuspicionMaxTimeoutMult = max(1, (mlost+slost-1)/slost)
	long := time.Duration(mlost) * pulse
	c.TCPTimeout = max(long, time.Second)
	c.PushPullInterval = 100 * pulse
	return long, time.Duration(slost) * pulse
}

// Members returns the live members (alive or suspect), this node
// included, sorted by name.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sorted()
}

func (m *Membership) sorted() []Member {
	out := make([]Member, 0, len(m.members))
	for _, e := range m.members {
		out = append(out, e.Member)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Update advertises the local state now: it reads state and hands the new
// metadata to memberlist, which gossips it. It does not wait for the
// gossip, so the automaton may call it from its loop.
func (m *Membership) Update() {
	m.setMeta(m.state())
	select {
	case m.updated <- struct{}{}:
	default:
	}
}

// Leave tells the other members that this node leaves, so that they drop
// it at once rather than after the suspicion timeout, and waits at most
// timeout for the message to go out. Stop must still be called.
func (m *Membership) Leave(timeout time.Duration) error {
	m.stopJoining()
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.stopped {
		return errors.New("farm membership: leave after stop")
	}
	m.left = true
	if err := m.list.Leave(timeout); err != nil {
		return fmt.Errorf("farm membership: leave: %w", err)
	}
	return nil
}

// Stop closes the membership without a word to the others: without a
// Leave, they see this node die after the suspicion timeout, as for a
// crash. No list is sent on changes after Stop returns.
func (m *Membership) Stop() error {
	var err error
	m.stopOnce.Do(func() {
		m.stopJoining()
		close(m.done)
		m.opMu.Lock()
		m.stopped = true
		err = m.list.Shutdown()
		m.opMu.Unlock()
		m.wg.Wait()
	})
	if err != nil {
		return fmt.Errorf("farm membership: stop: %w", err)
	}
	return nil
}

func (m *Membership) setMeta(state string) {
	b, _ := json.Marshal(meta{Module: m.cfg.Module, ID: m.cfg.ID, State: state})
	if len(b) > memberlist.MetaMaxSize {
		// memberlist panics beyond its limit; the module name is only
		// there for the logs of a refusing node.
		b, _ = json.Marshal(meta{ID: m.cfg.ID, State: state})
	}
	m.mu.Lock()
	m.meta = b
	m.mu.Unlock()
}

func decodeMeta(b []byte) (meta, error) {
	var md meta
	err := json.Unmarshal(b, &md)
	return md, err
}

// stopJoining ends the rejoin loop and waits for a join in progress, which
// would otherwise race with Leave (a join undoes nothing, but its merge
// after Shutdown is pointless) or with Shutdown.
func (m *Membership) stopJoining() {
	m.joinOnce.Do(func() { close(m.stopJoin) })
	m.joinWG.Wait()
}

// missingPeers returns the peers whose address is not a member's.
func (m *Membership) missingPeers() []string {
	m.mu.Lock()
	live := map[string]bool{}
	for _, e := range m.members {
		live[e.hostPort] = true
	}
	m.mu.Unlock()
	var out []string
	for _, p := range m.peers {
		if !live[p] {
			out = append(out, p)
		}
	}
	return out
}

// joinRound tries every peer at once: a peer whose host is down costs a
// stream timeout, which must not delay the others.
func (m *Membership) joinRound(peers []string) {
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Go(func() {
			// memberlist logs the failure (D) on this side and a
			// refusal (W) on the other.
			m.list.Join([]string{p})
		})
	}
	wg.Wait()
}

func (m *Membership) rejoinLoop() {
	t := time.NewTicker(m.rejoin)
	defer t.Stop()
	for {
		select {
		case <-m.stopJoin:
			return
		case <-t.C:
		}
		if missing := m.missingPeers(); len(missing) > 0 {
			m.joinRound(missing)
		}
	}
}

// updater hands the metadata to memberlist outside the caller's goroutine,
// because UpdateNode waits for its broadcast to go out.
func (m *Membership) updater() {
	for {
		select {
		case <-m.done:
			return
		case <-m.updated:
		}
		m.opMu.Lock()
		if !m.left && !m.stopped {
			if err := m.list.UpdateNode(m.update); err != nil {
				m.logf("D", "farm membership: state update: %v", err)
			}
		}
		m.opMu.Unlock()
	}
}

// notifier sends the member list on changes, outside memberlist's
// callbacks: they run with its node lock held and must not wait for the
// reader of changes.
func (m *Membership) notifier() {
	for {
		select {
		case <-m.done:
			return
		case <-m.changed:
		}
		m.mu.Lock()
		cur := m.sorted()
		same := slices.Equal(cur, m.last)
		m.last = cur
		m.mu.Unlock()
		if same {
			continue
		}
		select {
		case m.changes <- slices.Clone(cur):
		case <-m.done:
			return
		}
	}
}

func (m *Membership) logf(level, format string, args ...any) {
	if m.cfg.Logf != nil {
		m.cfg.Logf(level, format, args...)
	}
}

// delegate implements memberlist's delegate interfaces, kept off the
// Membership's API.
type delegate struct{ m *Membership }

func (d *delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	return d.m.meta
}

// The membership carries no messages and no user state of its own.
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// NotifyJoin, NotifyUpdate and NotifyLeave run with memberlist's node
// lock held: n is safe to read here, and only here.
func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.set(n) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.set(n) }

func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.m.mu.Lock()
	delete(d.m.members, n.Name)
	d.m.mu.Unlock()
	d.signal()
}

func (d *delegate) set(n *memberlist.Node) {
	md, err := decodeMeta(n.Meta)
	if err != nil || md.ID != d.m.cfg.ID {
		// NotifyAlive let no such node in; a stray one is not a member.
		return
	}
	d.m.mu.Lock()
	d.m.members[n.Name] = entry{Member{Name: n.Name, Addr: n.Addr.String(), State: md.State}, n.Address()}
	d.m.mu.Unlock()
	d.signal()
}

func (d *delegate) signal() {
	select {
	case d.m.changed <- struct{}{}:
	default:
	}
}

// NotifyAlive refuses nodes of another module, whatever way they come in
// (a direct message or gossip relayed by a member).
func (d *delegate) NotifyAlive(n *memberlist.Node) error { return d.check(n) }

// NotifyMerge refuses a join with a cluster holding a node of another
// module, so that both sides' Join fails and says why.
func (d *delegate) NotifyMerge(nodes []*memberlist.Node) error {
	for _, n := range nodes {
		if err := d.check(n); err != nil {
			return err
		}
	}
	return nil
}

func (d *delegate) check(n *memberlist.Node) error {
	md, err := decodeMeta(n.Meta)
	if err != nil {
		return fmt.Errorf("node %s (%s) does not advertise a farm module: %v", n.Name, n.Addr, err)
	}
	if md.ID != d.m.cfg.ID {
		return fmt.Errorf("node %s (%s) runs module %s id %d, not module %s id %d",
			n.Name, n.Addr, md.Module, md.ID, d.m.cfg.Module, d.m.cfg.ID)
	}
	return nil
}

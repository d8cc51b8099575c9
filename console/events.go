package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/runtime/module"
)

// Event is a message of the event streams: the state of a module of a
// node, or whether a node answers.
type Event struct {
	Node string `json:"node"`
	// Module is empty in the events of a node.
	Module string `json:"module,omitempty"`
	// Configured, and Snapshot, the state of the module; nil when it has no
	// process (not configured, or its process is starting again).
	Configured bool             `json:"configured,omitempty"`
	Snapshot   *module.Snapshot `json:"snapshot,omitempty"`
	// Removed: the module was uninstalled, or the node left cluster.xml.
	Removed bool `json:"removed,omitempty"`
	// Reachable tells, in the events of a node, whether it answers; Error
	// says why not.
	Reachable *bool  `json:"reachable,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (e Event) key() string { return e.Node + "\x00" + e.Module }

// How often the watchers look for changes that have no stream of their
// own: modules installed or removed, nodes of cluster.xml.
const (
	modulesPoll = 2 * time.Second
	// nodeRetryMax bounds the wait before connecting again to a node that
	// does not answer.
	nodeRetryMax = 10 * time.Second
)

// hub keeps the last event of each module and node, and hands the changes
// to its subscribers. Its watcher runs while it has subscribers.
type hub struct {
	watch func(ctx context.Context, publish func(Event))

	mu     sync.Mutex
	cache  map[string]Event
	subs   map[*eventSub]struct{}
	gen    int // of the running watcher; a stopped one publishes nothing
	cancel context.CancelFunc
}

func newHub(watch func(ctx context.Context, publish func(Event))) *hub {
	return &hub{watch: watch, cache: map[string]Event{}, subs: map[*eventSub]struct{}{}}
}

// eventSub is a subscriber: the events it has not taken yet, the latest of
// each module only, so that a slow subscriber costs one event per module
// at most and never slows the hub.
type eventSub struct {
	mu      sync.Mutex
	pending map[string]Event
	order   []string
	wake    chan struct{}
}

func (sub *eventSub) put(e Event) {
	sub.mu.Lock()
	k := e.key()
	if _, queued := sub.pending[k]; !queued {
		sub.order = append(sub.order, k)
	}
	sub.pending[k] = e
	sub.mu.Unlock()
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// take returns the pending events, oldest change first.
func (sub *eventSub) take() []Event {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	out := make([]Event, 0, len(sub.order))
	for _, k := range sub.order {
		out = append(out, sub.pending[k])
	}
	clear(sub.pending)
	sub.order = sub.order[:0]
	return out
}

// subscribe starts following the hub: the current state of everything
// comes first.
func (h *hub) subscribe() *eventSub {
	sub := &eventSub{pending: map[string]Event{}, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.cache {
		sub.put(e)
	}
	h.subs[sub] = struct{}{}
	if len(h.subs) == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		h.gen++
		gen := h.gen
		h.cancel = cancel
		go h.watch(ctx, func(e Event) { h.publish(gen, e) })
	}
	return sub
}

func (h *hub) unsubscribe(sub *eventSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
	if len(h.subs) == 0 && h.cancel != nil {
		h.cancel()
		h.cancel = nil
		h.gen++
		clear(h.cache)
	}
}

func (h *hub) publish(gen int, e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gen != h.gen {
		return
	}
	switch {
	case e.Removed && e.Module == "":
		for k, old := range h.cache {
			if old.Node == e.Node {
				delete(h.cache, k)
			}
		}
	case e.Removed:
		delete(h.cache, e.key())
	default:
		h.cache[e.key()] = e
	}
	for sub := range h.subs {
		sub.put(e)
	}
}

// stream sends the events of a hub to a websocket until it closes.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, h *hub) {
	c, ok := s.upgrade(w, r)
	if !ok {
		return
	}
	defer c.finish()
	sub := h.subscribe()
	defer h.unsubscribe(sub)
	for {
		select {
		case <-c.done:
			return
		case <-sub.wake:
			for _, e := range sub.take() {
				if !c.sendWait(e) {
					return
				}
			}
		}
	}
}

func (s *Server) handleWSEvents(w http.ResponseWriter, r *http.Request) {
	s.stream(w, r, s.clusterHub)
}

func (s *Server) handleWSEventsLocal(w http.ResponseWriter, r *http.Request) {
	s.stream(w, r, s.localHub)
}

// sleep waits d, false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// watchLocal follows the modules of this node: the events of each module
// process, and the modules installed and removed.
func (s *Server) watchLocal(ctx context.Context, publish func(Event)) {
	following := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range following {
			cancel()
		}
	}()
	for {
		node := s.selfLabel(ctx)
		infos, err := modules.NewManager(s.roots(), nil).List()
		if err == nil {
			present := map[string]bool{}
			for _, i := range infos {
				present[i.Name] = true
				if following[i.Name] == nil {
					mctx, cancel := context.WithCancel(ctx)
					following[i.Name] = cancel
					go s.followModule(mctx, node, i.Name, publish)
				}
			}
			for name, cancel := range following {
				if !present[name] {
					cancel()
					delete(following, name)
					publish(Event{Node: node, Module: name, Removed: true})
				}
			}
		}
		if !sleep(ctx, modulesPoll) {
			return
		}
	}
}

// followModule publishes the state of a module at each change: the events
// of its process, or, while it has none, whether it is configured.
func (s *Server) followModule(ctx context.Context, node, name string, publish func(Event)) {
	mod := s.roots().Module(name)
	var last *Event
	for {
		resp, err := s.local(ctx, http.MethodGet, "/v1/modules/"+name+"/events")
		if err == nil {
			dec := json.NewDecoder(resp.Body)
			for {
				var snap module.Snapshot
				if dec.Decode(&snap) != nil {
					break
				}
				e := Event{Node: node, Module: name, Configured: true, Snapshot: &snap}
				last = &e
				publish(e)
			}
			resp.Body.Close()
		}
		if ctx.Err() != nil {
			return
		}
		// No process: say so when it changes.
		e := Event{Node: node, Module: name, Configured: mod.Configured()}
		if last == nil || last.Snapshot != nil || last.Configured != e.Configured {
			last = &e
			publish(e)
		}
		if !sleep(ctx, modulesPoll) {
			return
		}
	}
}

// watchCluster follows every node: this one through the local hub, the
// others through their /api/v1.0/ws/events-local.
func (s *Server) watchCluster(ctx context.Context, publish func(Event)) {
	sub := s.localHub.subscribe()
	defer s.localHub.unsubscribe(sub)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.wake:
				for _, e := range sub.take() {
					publish(e)
				}
			}
		}
	}()
	following := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range following {
			cancel()
		}
	}()
	for {
		self := s.selfName(ctx)
		nodes, _ := s.clusterNodes()
		present := map[string]bool{}
		for _, n := range nodes {
			if n.Name == self {
				continue
			}
			present[n.Name] = true
			if following[n.Name] == nil {
				nctx, cancel := context.WithCancel(ctx)
				following[n.Name] = cancel
				go s.followNode(nctx, n, publish)
			}
		}
		for name, cancel := range following {
			if !present[name] {
				cancel()
				delete(following, name)
				publish(Event{Node: name, Removed: true})
			}
		}
		if !sleep(ctx, modulesPoll) {
			return
		}
	}
}

// followNode relays the events of another node, connecting again when it
// stops answering.
func (s *Server) followNode(ctx context.Context, n nodeRef, publish func(Event)) {
	yes, no := true, false
	wait := time.Second
	for {
		err := s.readNodeEvents(ctx, n, func(e Event) {
			e.Node = n.Name
			publish(e)
		}, func() {
			wait = time.Second
			publish(Event{Node: n.Name, Reachable: &yes})
		})
		if ctx.Err() != nil {
			return
		}
		publish(Event{Node: n.Name, Reachable: &no, Error: err.Error()})
		if !sleep(ctx, wait) {
			return
		}
		wait = min(2*wait, nodeRetryMax)
	}
}

// readNodeEvents reads the events of another node until the connection
// ends; connected is called once it is open.
func (s *Server) readNodeEvents(ctx context.Context, n nodeRef, each func(Event), connected func()) error {
	u, err := url.Parse(n.URL)
	if err != nil {
		return err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.Path = "/api/v1.0/ws/events-local"
	h := http.Header{}
	if err := s.nodes.authorize(h); err != nil {
		return err
	}
	d := websocket.Dialer{HandshakeTimeout: nodeDialTimeout, NetDialContext: s.nodes.dial}
	conn, resp, err := d.DialContext(ctx, u.String(), h)
	if err != nil {
		if resp != nil {
			return &statusError{code: resp.StatusCode, msg: "no reply of " + n.Name + ": " + resp.Status}
		}
		return &statusError{code: http.StatusBadGateway, msg: "no reply of " + n.Name + ": " + err.Error()}
	}
	defer conn.Close()
	connected()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// The other node pings every pingPeriod; silence for longer is a dead
	// link.
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(time.Now().Add(pongWait))
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeWait))
	})
	for {
		_ = conn.SetReadDeadline(time.Now().Add(pongWait))
		var e Event
		if err := conn.ReadJSON(&e); err != nil {
			return &statusError{code: http.StatusBadGateway, msg: n.Name + ": " + err.Error()}
		}
		each(e)
	}
}

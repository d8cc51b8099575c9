package heart

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestTwoLans runs two hearts over two lans (a dedicated replication lan
// beside the default one, as the User's Guide advises): every packet is
// accepted, whichever lan delivers first, and a kick sends one packet per
// lan instead of starting a storm of them.
func TestTwoLans(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	port := freeUDPPort(t)
	const pulse = 20 * time.Millisecond
	links := func(a, b, c, d string) []Link {
		return []Link{
			{Ident: "default", LocalAddr: a, PeerAddrs: []string{b}, Pulse: pulse, Timeout: time.Second},
			{Ident: "flow", LocalAddr: c, PeerAddrs: []string{d}, Pulse: pulse, Timeout: time.Second},
		}
	}
	var sent atomic.Int64 // packets h1 built: one per lan per pulse or kick
	st1 := &status{s: Status{State: "PRIM", Ready: "Ready", UpToDate: true}}
	ev1, ev2 := make(chan Event, 1000), make(chan Event, 1000)
	h1, err := Start(Config{Module: 1, Port: port, Node: "node1", Links: links("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"), Key: key},
		func() Status { sent.Add(1); return st1.get() }, ev1)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Stop()
	st2 := &status{s: Status{State: "SECOND", Ready: "Ready"}}
	h2, err := Start(Config{Module: 1, Port: port, Node: "node2", Links: links("127.0.0.2", "127.0.0.1", "127.0.0.4", "127.0.0.3"), Key: key}, st2.get, ev2)
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Stop()

	up := map[string]bool{}
	for len(up) < 2 {
		e := waitEvent(t, ev2, 2*time.Second, func(e Event) bool { return e.Kind == "up" })
		up[e.Ident] = true
	}
	const kicks = 10
	start, before := time.Now(), sent.Load()
	for range kicks {
		h1.Kick()
		time.Sleep(pulse / 4)
	}
	time.Sleep(20 * pulse)
	elapsed, n := time.Since(start), sent.Load()-before
	// Two lans: two packets a pulse, two a kick.
	if most := 2*int64(elapsed/pulse+1) + 2*kicks; n > most {
		t.Errorf("%d packets sent in %v over 2 lans with %d kicks: more than %d", n, elapsed, kicks, most)
	}
	for _, h := range []*Heart{h1, h2} {
		if d := h.Dropped(); len(d) > 0 {
			t.Errorf("%s dropped genuine packets: %v", h.cfg.Node, d)
		}
	}
	for len(ev2) > 0 {
		if e := <-ev2; e.Kind == "down" {
			t.Errorf("heartbeat %s lost", e.Ident)
		}
	}
}

package heart

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// pair starts two hearts on 127.0.0.1 and 127.0.0.2 (both on lo) with the
// same port, as two nodes would.
func pair(t *testing.T, key1, key2 []byte, timeout time.Duration) (h1, h2 *Heart, ev1, ev2 chan Event, st1 *status) {
	t.Helper()
	port := freeUDPPort(t)
	ev1, ev2 = make(chan Event, 100), make(chan Event, 100)
	st1 = &status{s: Status{State: "ALONE", Ready: "Ready", UpToDate: true}}
	st2 := &status{s: Status{State: "WAIT", Ready: "Transient"}}
	link := func(local, peer string) []Link {
		return []Link{{Ident: "default", LocalAddr: local, PeerAddrs: []string{peer}, Pulse: 20 * time.Millisecond, Timeout: timeout}}
	}
	var err error
	h1, err = Start(Config{Module: 1, Port: port, Node: "node1", Links: link("127.0.0.1", "127.0.0.2"), Key: key1}, st1.get, ev1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h1.Stop)
	h2, err = Start(Config{Module: 1, Port: port, Node: "node2", Links: link("127.0.0.2", "127.0.0.1"), Key: key2}, st2.get, ev2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h2.Stop)
	return
}

type status struct {
	mu sync.Mutex
	s  Status
}

func (s *status) get() Status  { s.mu.Lock(); defer s.mu.Unlock(); return s.s }
func (s *status) set(x Status) { s.mu.Lock(); s.s = x; s.mu.Unlock() }

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// waitEvent reads events until one matches, or fails after d.
func waitEvent(t *testing.T, ev chan Event, d time.Duration, match func(Event) bool) Event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e := <-ev:
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("no matching event within %s", d)
		}
	}
}

func TestExchangeAndLoss(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	h1, _, _, ev2, st1 := pair(t, key, key, 300*time.Millisecond)
	waitEvent(t, ev2, 2*time.Second, func(e Event) bool { return e.Kind == "up" })
	e := waitEvent(t, ev2, 2*time.Second, func(e Event) bool { return e.Kind == "status" })
	if e.Status.State != "ALONE" || !e.Status.UpToDate {
		t.Fatalf("peer status = %+v", e.Status)
	}
	st1.set(Status{State: "PRIM", Ready: "Ready", UpToDate: true})
	h1.Kick()
	waitEvent(t, ev2, 2*time.Second, func(e Event) bool { return e.Kind == "status" && e.Status.State == "PRIM" })
	start := time.Now()
	h1.Stop()
	waitEvent(t, ev2, 2*time.Second, func(e Event) bool { return e.Kind == "down" })
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Fatalf("heartbeat declared lost after %s, before its 300ms timeout", el)
	}
}

func TestWrongKeyDropped(t *testing.T) {
	_, h2, _, ev2, _ := pair(t, []byte("key-one-key-one-key-one-key-one!"), []byte("key-two-key-two-key-two-key-two!"), time.Second)
	e := waitEvent(t, ev2, 2*time.Second, func(e Event) bool { return e.Kind == "drop" })
	if e.Reason != "authentication failed" || e.From != "127.0.0.1" {
		t.Fatalf("drop = %+v", e)
	}
	if h2.Dropped()["authentication failed"] == 0 {
		t.Fatal("drop not counted")
	}
}

func TestForgedAndReplayedDropped(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	_, h2, _, ev2, _ := pair(t, key, key, time.Second)
	waitEvent(t, ev2, 2*time.Second, func(e Event) bool { return e.Kind == "status" })
	port := h2.cfg.Port
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port}

	// Forged from the peer's own address, without the key.
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.WriteToUDP(Encode(1, "node1", 1<<62, time.Now(), Status{State: "STOP"}, nil), to); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ev2, 2*time.Second, func(e Event) bool { return e.Kind == "drop" && e.Reason == "authentication failed" })

	// A genuine packet sent twice: the second is a replay.
	pkt := Encode(1, "node1", uint64(time.Now().UnixNano())+1<<40, time.Now(), Status{State: "PRIM"}, key)
	for i := 0; i < 2; i++ {
		if _, err := c.WriteToUDP(pkt, to); err != nil {
			t.Fatal(err)
		}
	}
	waitEvent(t, ev2, 2*time.Second, func(e Event) bool {
		return e.Kind == "drop" && strings.Contains(e.Reason, "replayed")
	})

	// From another address than the peer's.
	c3, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if _, err := c3.WriteToUDP(Encode(1, "node1", 1<<63, time.Now(), Status{}, key), to); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, ev2, 2*time.Second, func(e Event) bool {
		return e.Kind == "drop" && strings.Contains(e.Reason, "not from a node of the cluster")
	})
}

package vip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safekit-oss/safekit/internal/testenv"
)

// The tests below work in network namespaces of their own (root), on veth
// pairs: skA and skB hold the node's addresses, skA2 and skB2 are their
// peers, where the tests listen to what the node sends.

// newNetns creates a network namespace for the test (testenv.NewNetns);
// the tests also need ss(8).
func newNetns(t *testing.T, cmds ...string) string {
	t.Helper()
	if _, err := exec.LookPath("ss"); err != nil {
		testenv.Need(t, "ss (iproute2)")
	}
	return testenv.NewNetns(t, "skvip", cmds...)
}

func ipT(t *testing.T, args ...string) string {
	t.Helper()
	return testenv.IP(t, args...)
}

// twoLinks is a namespace with lo up, skA (192.0.2.1/24, 2001:db8:1::1/64) and
// skB (198.51.100.1/24), both up with their peers, and a default route
// through 192.0.2.254.
func twoLinks(t *testing.T) string {
	return newNetns(t, "link set lo up",
		"link add skA type veth peer name skA2", "link add skB type veth peer name skB2",
		"addr add 192.0.2.1/24 dev skA", "addr add 2001:db8:1::1/64 dev skA nodad", "addr add 198.51.100.1/24 dev skB",
		"link set skA up", "link set skA2 up", "link set skB up", "link set skB2 up",
		"route add default via 192.0.2.254 dev skA")
}

// in runs f on a thread that has entered network namespace ns; the
// commands it starts are in it too.
func in[T any](t *testing.T, ns string, f func() (T, error)) T {
	t.Helper()
	v, err := testenv.InNetns(ns, f)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// addrsOf is `ip -o addr show dev` in ns: "address/len" each, followed by
// "(tentative)" while duplicate address detection runs.
func addrsOf(t *testing.T, ns, dev string) string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(ipT(t, "-n", ns, "-o", "addr", "show", "dev", dev)), "\n") {
		f := strings.Fields(l)
		for i := range f {
			if (f[i] == "inet" || f[i] == "inet6") && i+1 < len(f) {
				a := f[i+1]
				if strings.Contains(l, "tentative") {
					a += "(tentative)"
				}
				out = append(out, a)
			}
		}
	}
	return strings.Join(out, " ")
}

// TestPlace: which interface, which prefix length, which own address, for
// a VIP found by its network or on a named interface.
func TestPlace(t *testing.T) {
	ns := twoLinks(t)
	for _, c := range []struct {
		a    Addr
		dev  string
		want string
	}{
		{Addr{IP: netip.MustParseAddr("192.0.2.99")}, "", "skA 192.0.2.99/24 local 192.0.2.1/24 network 192.0.2.0/24"},
		{Addr{IP: netip.MustParseAddr("198.51.100.99")}, "", "skB 198.51.100.99/24 local 198.51.100.1/24 network 198.51.100.0/24"},
		{Addr{IP: netip.MustParseAddr("2001:db8:1::99")}, "", "skA 2001:db8:1::99/64 local 2001:db8:1::1/64 network 2001:db8:1::/64"},
		// The netmask wins over the interface's prefix length.
		{Addr{IP: netip.MustParseAddr("192.0.2.99"), Bits: 28}, "", "skA 192.0.2.99/28 local 192.0.2.1/24 network 192.0.2.96/28"},
		// A netmask wider than the interface's network still finds it.
		{Addr{IP: netip.MustParseAddr("192.0.3.99"), Bits: 23}, "", "skA 192.0.3.99/23 local 192.0.2.1/24 network 192.0.2.0/23"},
		// By name: the interface given, even when another holds the network.
		{Addr{IP: netip.MustParseAddr("198.51.100.99")}, "skA", "skA 198.51.100.99/24 local invalid Prefix network 198.51.100.0/24"},
		{Addr{IP: netip.MustParseAddr("198.51.100.99"), Bits: 25}, "skA", "skA 198.51.100.99/25 local invalid Prefix network 198.51.100.0/25"},
		{Addr{IP: netip.MustParseAddr("192.0.2.99")}, "skA", "skA 192.0.2.99/24 local 192.0.2.1/24 network 192.0.2.0/24"},
		// Errors name the fix.
		{Addr{IP: netip.MustParseAddr("203.0.113.5")}, "", `no interface of this node has an address in the network of 203.0.113.5: configure one, or name the interface with <interface name="..."> (and give <virtual_addr netmask>)`},
		{Addr{IP: netip.MustParseAddr("192.0.2.99")}, "bond0", "interface bond0 (<interface name>) does not exist on this node (interfaces: skB2, skB, skA2, skA): name an existing one, the same on both nodes"},
		{Addr{IP: netip.MustParseAddr("2001:db8:2::99")}, "skB", "interface skB has no IPv6 address to take the netmask of 2001:db8:2::99 from: give <virtual_addr netmask>"},
	} {
		got := in(t, ns, func() (string, error) {
			p, err := Place(c.a, c.dev)
			if err != nil {
				return err.Error(), nil
			}
			return fmt.Sprintf("%s %s local %s network %s", p.Dev, p.Prefix, p.Local, p.Network()), nil
		})
		if c.dev == "bond0" {
			// The order of the interfaces is the kernel's.
			got = strings.Join(strings.Fields(sortList(got)), " ")
			c.want = strings.Join(strings.Fields(sortList(c.want)), " ")
		}
		if got != c.want {
			t.Errorf("Place(%v, %q):\n got %s\nwant %s", c.a, c.dev, got, c.want)
		}
	}
}

// sortList sorts the list in parentheses of an error message.
func sortList(s string) string {
	i, j := strings.Index(s, "(interfaces: "), strings.Index(s, "):")
	if i < 0 || j < i {
		return s
	}
	names := strings.Split(s[i+len("(interfaces: "):j], ", ")
	for a := range names {
		for b := a + 1; b < len(names); b++ {
			if names[b] < names[a] {
				names[a], names[b] = names[b], names[a]
			}
		}
	}
	return s[:i] + "(interfaces: " + strings.Join(names, ", ") + s[j:]
}

// TestSetUnset adds and removes an IPv4 and an IPv6 VIP, each twice: the
// second set and the second unset change nothing and say so.
func TestSetUnset(t *testing.T) {
	ns := twoLinks(t)
	ctx := t.Context()
	for _, c := range []struct {
		vip, dev string
		bits     int
		want     string
	}{
		{"192.0.2.99", "", 0, "192.0.2.1/24 192.0.2.99/24"},
		{"198.51.100.99", "", 28, "198.51.100.1/24 198.51.100.99/28"},
		{"198.51.100.98", "skA", 0, "192.0.2.1/24 198.51.100.98/24"},
		// nodad: usable at once, never tentative.
		{"2001:db8:1::99", "", 0, "2001:db8:1::99/64"},
	} {
		a := Addr{IP: netip.MustParseAddr(c.vip), Bits: c.bits}
		p := in(t, ns, func() (Placement, error) { return Place(a, c.dev) })
		before := addrsOf(t, ns, p.Dev)
		for i, wantAdded := range []bool{true, false} {
			added := in(t, ns, func() (bool, error) { return Set(ctx, p) })
			if added != wantAdded {
				t.Errorf("set %s, call %d: added %v, want %v", c.vip, i+1, added, wantAdded)
			}
			got := addrsOf(t, ns, p.Dev)
			for _, w := range strings.Fields(c.want) {
				if !strings.Contains(" "+got+" ", " "+w+" ") {
					t.Errorf("after set %s, call %d: %s holds %q, want %s on it (not tentative)", c.vip, i+1, p.Dev, got, w)
				}
			}
		}
		for _, other := range []string{"skA", "skB"} {
			if other != p.Dev && strings.Contains(addrsOf(t, ns, other), c.vip+"/") {
				t.Errorf("%s is on %s too", c.vip, other)
			}
		}
		for i, wantRemoved := range []bool{true, false} {
			removed := in(t, ns, func() (bool, error) { return Unset(ctx, a.IP, false) })
			if removed != wantRemoved {
				t.Errorf("unset %s, call %d: removed %v, want %v", c.vip, i+1, removed, wantRemoved)
			}
		}
		if got := addrsOf(t, ns, p.Dev); got != before {
			t.Errorf("after unset %s: %s holds %q, want %q as before", c.vip, p.Dev, got, before)
		}
	}
}

// routeSrc is the source address the node in ns uses to reach dst.
func routeSrc(t *testing.T, ns, dst string) string {
	t.Helper()
	f := strings.Fields(ipT(t, "-n", ns, "route", "get", dst))
	for i := range f {
		if f[i] == "src" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return "none"
}

// TestOneSide: with where="one_side" the node's connections, to its
// network and through its gateway, leave from the VIP; once it is unset
// they leave from the node's address again, and the routes are all there.
func TestOneSide(t *testing.T) {
	ns := twoLinks(t)
	ctx := t.Context()
	routesBefore := ipT(t, "-n", ns, "route", "show")
	a := Addr{IP: netip.MustParseAddr("192.0.2.99"), OneSide: true}
	p := in(t, ns, func() (Placement, error) { return Place(a, "") })
	for range 2 {
		in(t, ns, func() (bool, error) { return Set(ctx, p) })
		for _, dst := range []string{"192.0.2.50", "203.0.113.1"} {
			if src := routeSrc(t, ns, dst); src != "192.0.2.99" {
				t.Errorf("one_side VIP set: the source to %s is %s, want the VIP", dst, src)
			}
		}
		if src := routeSrc(t, ns, "198.51.100.50"); src != "198.51.100.1" {
			t.Errorf("one_side VIP set: the source to the network of skB is %s, want skB's own address", src)
		}
	}
	in(t, ns, func() (bool, error) { return Unset(ctx, a.IP, true) })
	for _, dst := range []string{"192.0.2.50", "203.0.113.1"} {
		if src := routeSrc(t, ns, dst); src != "192.0.2.1" {
			t.Errorf("one_side VIP unset: the source to %s is %s, want the node's address", dst, src)
		}
	}
	if got := ipT(t, "-n", ns, "route", "show"); got != routesBefore {
		t.Errorf("routes after unset:\n%s\nwant as before:\n%s", got, routesBefore)
	}
	// An IPv6 VIP: the route to its network takes it as source.
	routes6 := ipT(t, "-n", ns, "-6", "route", "show")
	a6 := Addr{IP: netip.MustParseAddr("2001:db8:1::99"), OneSide: true}
	p6 := in(t, ns, func() (Placement, error) { return Place(a6, "") })
	in(t, ns, func() (bool, error) { return Set(ctx, p6) })
	if src := routeSrc(t, ns, "2001:db8:1::50"); src != "2001:db8:1::99" {
		t.Errorf("one_side IPv6 VIP set: the source to its network is %s, want the VIP", src)
	}
	in(t, ns, func() (bool, error) { return Unset(ctx, a6.IP, true) })
	if src := routeSrc(t, ns, "2001:db8:1::50"); src != "2001:db8:1::1" {
		t.Errorf("one_side IPv6 VIP unset: the source to its network is %s, want the node's address", src)
	}
	if got := ipT(t, "-n", ns, "-6", "route", "show"); got != routes6 {
		t.Errorf("IPv6 routes after unset:\n%s\nwant as before:\n%s", got, routes6)
	}
}

// TestResetTCP: a connection to the VIP is reset before the VIP goes; the
// listening socket stays.
func TestResetTCP(t *testing.T) {
	ns := twoLinks(t)
	ctx := t.Context()
	vip := netip.MustParseAddr("192.0.2.99")
	p := in(t, ns, func() (Placement, error) { return Place(Addr{IP: vip}, "") })
	in(t, ns, func() (bool, error) { return Set(ctx, p) })
	type conn struct {
		l      net.Listener
		client net.Conn
	}
	c := in(t, ns, func() (conn, error) {
		l, err := net.Listen("tcp", "192.0.2.99:0")
		if err != nil {
			return conn{}, err
		}
		go func() {
			s, err := l.Accept()
			if err == nil {
				defer s.Close()
				_, _ = s.Read(make([]byte, 1))
			}
		}()
		client, err := net.Dial("tcp", l.Addr().String())
		return conn{l, client}, err
	})
	defer c.l.Close()
	defer c.client.Close()
	type counts struct{ reset, left int }
	got := in(t, ns, func() (counts, error) {
		r, l, err := ResetTCP(ctx, vip)
		return counts{r, l}, err
	})
	if got.reset == 0 || got.left != 0 {
		t.Errorf("ResetTCP: %d reset, %d left; want the connection reset, none left", got.reset, got.left)
	}
	_ = c.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.client.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("the client of the VIP reads %v, want its connection reset", err)
	}
	if out := in(t, ns, func() (string, error) {
		b, err := exec.Command("ss", "-t", "-l", "-n", "-H", "src", "192.0.2.99/32").Output()
		return string(b), err
	}); !strings.Contains(out, "LISTEN") {
		t.Errorf("the listening socket on the VIP is gone: ss says %q", out)
	}
}

// TestAnnounce captures, on the peer of the interface, the gratuitous ARPs
// of one burst: a request and a reply, broadcast, that give the VIP with
// the interface's MAC address.
func TestAnnounce(t *testing.T) {
	ns := twoLinks(t)
	vip := netip.MustParseAddr("192.0.2.99")
	type capture struct {
		mac    net.HardwareAddr
		frames [][]byte
	}
	got := in(t, ns, func() (capture, error) {
		skA, err := net.InterfaceByName("skA")
		if err != nil {
			return capture{}, err
		}
		peer, err := net.InterfaceByName("skA2")
		if err != nil {
			return capture{}, err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return capture{}, err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: peer.Index}); err != nil {
			return capture{}, err
		}
		tv := unix.NsecToTimeval((3 * time.Second).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return capture{}, err
		}
		if err := Announce("skA", vip); err != nil {
			return capture{}, err
		}
		c := capture{mac: skA.HardwareAddr}
		for len(c.frames) < 2 {
			buf := make([]byte, 1500)
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return c, fmt.Errorf("after %d frames: %w", len(c.frames), err)
			}
			c.frames = append(c.frames, buf[:n])
		}
		return c, nil
	})
	ops := map[uint16]bool{}
	for _, f := range got.frames {
		if len(f) < 42 {
			t.Fatalf("short frame % x", f)
		}
		a := f[14:]
		op := binary.BigEndian.Uint16(a[6:8])
		ops[op] = true
		sha, spa, tha, tpa := net.HardwareAddr(a[8:14]), netip.AddrFrom4([4]byte(a[14:18])), net.HardwareAddr(a[18:24]), netip.AddrFrom4([4]byte(a[24:28]))
		switch {
		case net.HardwareAddr(f[0:6]).String() != "ff:ff:ff:ff:ff:ff":
			t.Errorf("op %d: sent to %s, want the broadcast address", op, net.HardwareAddr(f[0:6]))
		case net.HardwareAddr(f[6:12]).String() != got.mac.String() || sha.String() != got.mac.String():
			t.Errorf("op %d: from %s (sender %s), want skA's %s", op, net.HardwareAddr(f[6:12]), sha, got.mac)
		case binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_ARP:
			t.Errorf("op %d: ethertype %#x", op, binary.BigEndian.Uint16(f[12:14]))
		case spa != vip || tpa != vip:
			t.Errorf("op %d: sender %s target %s, want the VIP for both (gratuitous)", op, spa, tpa)
		case op == arpReply && tha.String() != got.mac.String():
			t.Errorf("reply: target MAC %s, want the sender's (what Linux takes as gratuitous)", tha)
		}
	}
	if !ops[arpRequest] || !ops[arpReply] {
		t.Errorf("ARP operations %v, want a request (1) and a reply (2)", ops)
	}
	if err := in(t, ns, func() (error, error) { return Announce("skA", netip.MustParseAddr("2001:db8:1::99")), nil }); err == nil {
		t.Error("gratuitous ARP for an IPv6 address: no error")
	}
}

// TestReroute: arpreroute announces every arpinterval during arpelapse,
// and no more once the VIP is unset.
func TestReroute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		Reroute(t.Context(), 60*time.Second, 1200*time.Second, func() { n++ })
		if n != 20 {
			t.Errorf("arpinterval 60s, arpelapse 1200s: %d bursts, want 20", n)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		n := 0
		start := time.Now()
		go func() {
			time.Sleep(150 * time.Second)
			cancel()
		}()
		Reroute(ctx, 60*time.Second, 1200*time.Second, func() { n++ })
		if n != 2 || time.Since(start) != 150*time.Second {
			t.Errorf("cancelled after 150s: %d bursts, returned after %v; want 2, at once", n, time.Since(start))
		}
	})
}

package module

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/checkers"
	"github.com/safekit-oss/safekit/runtime/vip"
	"github.com/safekit-oss/safekit/safe"
)

// The virtual IPs of a mirror (<vip><real_interface>, User's Guide §13.6):
// the automaton says when (SetVIP, before start_prim and after stop_prim);
// here they are set and removed on this node with runtime/vip, in the
// loop, so that the script that follows runs with them in place, and the
// module log says it as SafeKit does: "Virtual IP <192.168.1.99 of
// mirror> set" (vipplug, verbose). Errors are critical lines that say what
// to fix; the module goes on, and the IP checker (check="on") stops and
// starts it while the VIP is missing.

// vipResolveTimeout bounds the resolution of a VIP given by name.
const vipResolveTimeout = 5 * time.Second

// mirrorVIPs are the <interface>s of a mirror that hold <real_interface>
// VIPs: the ones this version sets.
func mirrorVIPs(cfg *safe.Config) []safe.VIPInterface {
	if cfg.Service.Mode != safe.ModeMirror || cfg.VIP == nil {
		return nil
	}
	var out []safe.VIPInterface
	for _, vi := range cfg.VIP.Interfaces {
		if vi.VirtualType == "" && len(vi.Addrs) > 0 {
			out = append(out, vi)
		}
	}
	return out
}

// resolveVIP is the address of a <virtual_addr addr>: an IP address
// (IPv6 with or without brackets), or the first address of a name.
func resolveVIP(ctx context.Context, addr string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(strings.Trim(addr, "[]")); err == nil {
		return ip.Unmap(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, vipResolveTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", addr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("cannot resolve %s: %w (an IP address in <virtual_addr addr> does not depend on the name service)", addr, err)
	}
	return ips[0].Unmap(), nil
}

// vipAddr is the runtime/vip form of a <virtual_addr>.
func vipAddr(ctx context.Context, va safe.VirtualAddr) (vip.Addr, error) {
	ip, err := resolveVIP(ctx, va.Addr)
	if err != nil {
		return vip.Addr{}, err
	}
	return vip.Addr{IP: ip, Bits: va.PrefixLen, OneSide: va.Where == "one_side"}, nil
}

// vipCheckers are the checkers that the <vip> of a mirror generates (User's
// Guide §15.10, §15.11), after those of <check>, which win when they set
// the same resource:
//
//   - ip.<addr> for each <virtual_addr check="on">: addr configured on this
//     node, from after start_prim (when="prim"), rule ip_failure
//     (stopstart);
//   - intf.<network> for each network of the VIPs of an <interface
//     check="on">: the link of the interface that holds this node's
//     address in that network (local_addr), from the start (when="pre"),
//     rule interface_failure (wait). The network is found in this node's
//     addresses when the module process starts; without an interface for
//     the VIP then, the checker is named after the VIP's address (its
//     network with a netmask), and is down, saying why.
func vipCheckers(cfg *safe.Config) []builtin {
	taken := map[string]bool{}
	for _, c := range cfg.Check.IP {
		taken["ip."+c.Ident] = true
	}
	for _, c := range cfg.Check.Intf {
		taken["intf."+c.Ident] = true
	}
	var out []builtin
	add := func(b builtin) {
		if !taken[b.c.Resource()] {
			taken[b.c.Resource()] = true
			out = append(out, b)
		}
	}
	interval := checkers.DefaultInterval
	for _, vi := range mirrorVIPs(cfg) {
		for _, va := range vi.Addrs {
			if va.Check {
				addr := va.Addr
				add(builtin{c: automaton.Checker{Class: "ip", Ident: addr, When: "prim", Action: "stopstart"},
					origin: "ipcheck", what: addr + " configured on this node, every " + interval.String(), interval: interval,
					probe: func() checkers.Probe { return checkers.Address(addr) }})
			}
			if vi.Check {
				va, dev := va, vi.Name
				add(builtin{c: automaton.Checker{Class: "intf", Ident: vipNetwork(va, dev), When: "pre", Action: "wait"},
					origin: "intfcheck", what: "link of the interface of " + va.Addr + " every " + interval.String(), interval: interval,
					probe: func() checkers.Probe { return vipLink(va, dev) }})
			}
		}
	}
	return out
}

// vipNetwork is the address of the network of va on this node (10.0.0.0),
// what names its interface checker.
func vipNetwork(va safe.VirtualAddr, dev string) string {
	a, err := vipAddr(context.Background(), va)
	if err != nil {
		return va.Addr
	}
	if p, err := vip.Place(a, dev); err == nil {
		return p.Network().Addr().String()
	}
	if a.Bits > 0 {
		return netip.PrefixFrom(a.IP, a.Bits).Masked().Addr().String()
	}
	return a.IP.String()
}

// vipLink tests the link of the interface of va, found again at each run:
// through this node's address in the VIP's network (as <intf local_addr>
// does), else, on a named interface without one, the interface itself.
func vipLink(va safe.VirtualAddr, dev string) checkers.Probe {
	return func(ctx context.Context) checkers.Result {
		a, err := vipAddr(ctx, va)
		if err != nil {
			return checkers.Result{Err: err}
		}
		p, err := vip.Place(a, dev)
		if err != nil {
			return checkers.Result{Err: err}
		}
		if p.Local.IsValid() {
			return checkers.Interface(p.Local.Addr().String())(ctx)
		}
		ifi, err := net.InterfaceByName(p.Dev)
		switch {
		case err != nil:
			return checkers.Result{Err: err}
		case ifi.Flags&net.FlagUp == 0:
			return checkers.Result{Err: fmt.Errorf("interface %s is down", p.Dev)}
		case ifi.Flags&net.FlagRunning == 0:
			return checkers.Result{Err: fmt.Errorf("interface %s has no link (no carrier)", p.Dev)}
		}
		return checkers.Result{Up: true}
	}
}

// vipRuntime is what the module process runs for its VIPs: the gratuitous
// ARPs of arpreroute.
type vipRuntime struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// stopReroute ends the gratuitous ARPs of arpreroute and waits for them.
func (r *vipRuntime) stopReroute() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel, r.done = nil, nil
	}
}

// reannounce is one <interface arpreroute="on">: its IPv4 VIPs set, where.
type reannounce struct {
	vi    safe.VIPInterface
	where []vip.Placement
}

// setVIP executes SetVIP: sets or removes every VIP of the mirror.
func (d *Driver) setVIP(up bool) {
	d.vips.stopReroute()
	ctx := context.Background()
	var reroute []reannounce
	for _, vi := range mirrorVIPs(d.cfg) {
		r := reannounce{vi: vi}
		for _, va := range vi.Addrs {
			if up {
				if p, ok := d.vipUp(ctx, vi, va); ok && vi.ARPReroute && p.IP.Is4() {
					r.where = append(r.where, p)
				}
			} else {
				d.vipDown(ctx, va)
			}
		}
		if len(r.where) > 0 {
			reroute = append(reroute, r)
		}
	}
	if len(reroute) > 0 {
		d.startReroute(reroute)
	}
}

// vipName is how the module log names a VIP: <192.168.1.99 of mirror>.
func (d *Driver) vipName(va safe.VirtualAddr) string {
	return fmt.Sprintf("<%s of %s>", va.Addr, d.mod.Name)
}

// vipUp sets one VIP and announces it; it returns where it is.
func (d *Driver) vipUp(ctx context.Context, vi safe.VIPInterface, va safe.VirtualAddr) (vip.Placement, bool) {
	name := d.vipName(va)
	a, err := vipAddr(ctx, va)
	if err != nil {
		d.Logf("vipplug", "C", "Virtual IP %s not set: %v", name, err)
		return vip.Placement{}, false
	}
	p, err := vip.Place(a, vi.Name)
	if err != nil {
		d.Logf("vipplug", "C", "Virtual IP %s not set: %v", name, err)
		return vip.Placement{}, false
	}
	added, err := vip.Set(ctx, p)
	if err != nil {
		d.Logf("vipplug", "C", "Virtual IP %s not set on %s: %v", name, p.Dev, err)
		return vip.Placement{}, false
	}
	if added {
		d.Logf("vipplug", "I", "Virtual IP %s set", name)
	} else {
		d.Logf("vipplug", "I", "Virtual IP %s set (it was already configured on this node)", name)
	}
	d.Logf("vipplug", "D", "Virtual IP %s is %s on %s", name, p.Prefix, p.Dev)
	if p.IP.Is4() {
		if err := vip.Announce(p.Dev, p.IP); err != nil {
			d.Logf("arpreroute", "E", "Gratuitous ARP for %s not sent: %v", name, err)
		}
	}
	return p, true
}

// vipDown resets the TCP connections of one VIP (tcpreset) and removes it.
func (d *Driver) vipDown(ctx context.Context, va safe.VirtualAddr) {
	name := d.vipName(va)
	a, err := vipAddr(ctx, va)
	if err != nil {
		d.Logf("vipplug", "C", "Virtual IP %s not unset: %v", name, err)
		return
	}
	if _, _, held, err := vip.Held(a.IP); err != nil || !held {
		return
	}
	if d.cfg.VIP.TCPReset {
		reset, left, err := vip.ResetTCP(ctx, a.IP)
		switch {
		case err != nil:
			d.Logf("vipplug", "E", "TCP connections of virtual IP %s not reset (tcpreset): %v", name, err)
		case left > 0:
			d.Logf("vipplug", "E", "TCP connections of virtual IP %s not reset: %d (tcpreset needs a kernel built with CONFIG_INET_DIAG_DESTROY); their clients see them end at their timeout", name, left)
		case reset > 0:
			d.Logf("vipplug", "I", "TCP connections of virtual IP %s reset: %d", name, reset)
		}
	}
	removed, err := vip.Unset(ctx, a.IP, a.OneSide)
	switch {
	case err != nil:
		d.Logf("vipplug", "C", "Virtual IP %s not unset: %v: remove it by hand (ip addr del) before it is set on the other node", name, err)
	case removed:
		d.Logf("vipplug", "I", "Virtual IP %s unset", name)
	}
}

// startReroute sends the gratuitous ARPs of arpreroute until they are
// done or the VIPs go.
func (d *Driver) startReroute(rs []reannounce) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.vips.cancel, d.vips.done = cancel, done
	var wg sync.WaitGroup
	for _, r := range rs {
		interval, elapse := r.vi.ARPInterval.D(), r.vi.ARPElapse.D()
		var names []string
		for _, p := range r.where {
			names = append(names, p.IP.String()+" on "+p.Dev)
		}
		d.Logf("arpreroute", "I", "Gratuitous ARPs for %s every %s during %s", strings.Join(names, ", "), interval, elapse)
		wg.Go(func() {
			vip.Reroute(ctx, interval, elapse, func() {
				for _, p := range r.where {
					if err := vip.Announce(p.Dev, p.IP); err != nil {
						d.Logf("arpreroute", "E", "Gratuitous ARP for %s not sent: %v", p.IP, err)
					}
				}
			})
		})
	}
	go func() {
		wg.Wait()
		close(done)
	}()
}

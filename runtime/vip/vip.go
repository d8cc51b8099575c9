package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// commandTimeout bounds one ip or ss command: they answer in milliseconds,
// and the module process waits for them before start_prim.
const commandTimeout = 10 * time.Second

// Addr is one <virtual_addr> of a <real_interface>, its address resolved.
type Addr struct {
	IP netip.Addr
	// Bits is the prefix length of <virtual_addr netmask>; 0 takes that of
	// the interface's address in the VIP's network.
	Bits int
	// OneSide: where="one_side": the VIP becomes the preferred source
	// address of the interface's routes.
	OneSide bool
}

// Placement is where a VIP goes on this node.
type Placement struct {
	Addr
	// Dev is the interface.
	Dev string
	// Prefix is the VIP with its prefix length, as `ip addr add` gets it.
	Prefix netip.Prefix
	// Local is this node's own address on Dev in the VIP's network (the
	// local_addr of the generated interface checker); invalid when Dev
	// holds none.
	Local netip.Prefix
}

// Network is the VIP's network (10.0.0.0/24): intf.<its address> names the
// generated interface checker.
func (p Placement) Network() netip.Prefix { return p.Prefix.Masked() }

// ifAddrs is an interface and its addresses.
type ifAddrs struct {
	ifi   net.Interface
	addrs []netip.Prefix
}

// interfaces lists this node's interfaces with their addresses, loopback
// left out (a VIP is for the clients of the network).
func interfaces() ([]ifAddrs, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []ifAddrs
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		ia := ifAddrs{ifi: ifi}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ip, _ := netip.AddrFromSlice(n.IP)
				bits, _ := n.Mask.Size()
				ia.addrs = append(ia.addrs, netip.PrefixFrom(ip.Unmap(), bits))
			}
		}
		out = append(out, ia)
	}
	return out, nil
}

// usable tells whether a, an address of an interface, may name the VIP's
// network: same family, not a link-local IPv6 address, not the VIP itself.
func usable(a netip.Prefix, vip netip.Addr) bool {
	return a.Addr().Is4() == vip.Is4() && !a.Addr().IsLinkLocalUnicast() && a.Addr() != vip
}

// inNetwork tells whether a, an address of an interface, is in the network
// of vip: a's own network holds vip, or, with a netmask, vip's network
// holds a.
func inNetwork(a netip.Prefix, vip netip.Addr, bits int) bool {
	if a.Masked().Contains(vip) {
		return true
	}
	return bits > 0 && netip.PrefixFrom(vip, bits).Masked().Contains(a.Addr())
}

// Place finds where a goes on this node: on interface dev when it is given
// (<interface name>), else on the first interface that holds an address of
// a's network. The prefix length is a.Bits, else that of the interface's
// address in the network; on a named interface without one, that of its
// first address of the family.
func Place(a Addr, dev string) (Placement, error) {
	ifs, err := interfaces()
	if err != nil {
		return Placement{}, err
	}
	if dev != "" {
		i := slices.IndexFunc(ifs, func(ia ifAddrs) bool { return ia.ifi.Name == dev })
		if i < 0 {
			return Placement{}, fmt.Errorf("interface %s (<interface name>) does not exist on this node (interfaces: %s): name an existing one, the same on both nodes", dev, ifNames(ifs))
		}
		ifs = ifs[i : i+1]
	}
	for _, ia := range ifs {
		for _, local := range ia.addrs {
			if usable(local, a.IP) && inNetwork(local, a.IP, a.Bits) {
				return placement(a, ia.ifi.Name, cmpOr(a.Bits, local.Bits()), local), nil
			}
		}
	}
	if dev == "" {
		return Placement{}, fmt.Errorf("no interface of this node has an address in the network of %s: configure one, or name the interface with <interface name=\"...\"> (and give <virtual_addr netmask>)", a.IP)
	}
	if a.Bits > 0 {
		return placement(a, dev, a.Bits, netip.Prefix{}), nil
	}
	for _, local := range ifs[0].addrs {
		if usable(local, a.IP) {
			return placement(a, dev, local.Bits(), netip.Prefix{}), nil
		}
	}
	return Placement{}, fmt.Errorf("interface %s has no %s address to take the netmask of %s from: give <virtual_addr netmask>", dev, family(a.IP), a.IP)
}

func placement(a Addr, dev string, bits int, local netip.Prefix) Placement {
	return Placement{Addr: a, Dev: dev, Prefix: netip.PrefixFrom(a.IP, bits), Local: local}
}

func cmpOr(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

func family(ip netip.Addr) string {
	if ip.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func ifNames(ifs []ifAddrs) string {
	names := make([]string, len(ifs))
	for i, ia := range ifs {
		names[i] = ia.ifi.Name
	}
	return strings.Join(names, ", ")
}

// Held returns the interface that holds ip and the address with its prefix
// length; ok is false when no interface does.
func Held(ip netip.Addr) (dev string, prefix netip.Prefix, ok bool, err error) {
	ifs, err := interfaces()
	if err != nil {
		return "", netip.Prefix{}, false, err
	}
	for _, ia := range ifs {
		for _, a := range ia.addrs {
			if a.Addr() == ip {
				return ia.ifi.Name, a, true, nil
			}
		}
	}
	return "", netip.Prefix{}, false, nil
}

// Set adds the VIP of p to its interface, unless an interface of the node
// holds it already; added tells which. An IPv6 VIP is added without
// duplicate address detection (nodad), so that it is usable at once by
// start_prim: the peer that held it has removed it, or is dead. With
// OneSide, the VIP is then made the preferred source of the interface's
// routes.
func Set(ctx context.Context, p Placement) (added bool, err error) {
	_, _, held, err := Held(p.IP)
	if err != nil {
		return false, err
	}
	if !held {
		args := []string{"addr", "add", p.Prefix.String(), "dev", p.Dev}
		if p.IP.Is6() {
			args = append(args, "nodad")
		}
		if _, err := ipCmd(ctx, args...); err != nil {
			return false, err
		}
	}
	if p.OneSide {
		if err := preferSource(ctx, p.Dev, p.IP); err != nil {
			return !held, err
		}
	}
	return !held, nil
}

// Unset removes ip from the interface that holds it; removed is false when
// none does. With oneSide, the routes that prefer ip as their source get
// back this node's own address first: the kernel would delete them with
// the address.
func Unset(ctx context.Context, ip netip.Addr, oneSide bool) (removed bool, err error) {
	dev, prefix, held, err := Held(ip)
	if err != nil || !held {
		return false, err
	}
	if oneSide {
		if err := restoreSource(ctx, dev, ip); err != nil {
			return false, err
		}
	}
	if _, err := ipCmd(ctx, "addr", "del", prefix.String(), "dev", dev); err != nil {
		return false, err
	}
	return true, nil
}

// ipCmd runs ip(8) and returns its output; the error carries its message.
func ipCmd(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, "ip", args...)
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(err, exec.ErrNotFound) {
			msg = "install iproute2"
		}
		if msg == "" {
			return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		}
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

package vip

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// where="one_side" (User's Guide §7.16): the connections that the primary
// opens must leave from the VIP, so that the devices it talks to know one
// address. Linux chooses the source address of a connection from the
// preferred source (src) of the route it takes, else from the primary
// address of the interface, which the VIP, added after the node's own
// address, is not. So the VIP becomes the src of every route of its family
// through its interface (the network's and the gateways'), the way the
// IPsrcaddr agent of Pacemaker does it. Before the VIP goes, the routes get
// their source back (restoreSource), because the kernel deletes the routes
// whose source is an address it removes. Nothing is remembered in between,
// so that the recovery after a crash of the module process restores them
// too.

// route is a route of the main table as `ip -j route show dev X` gives it.
type route struct {
	Type     string   `json:"type"`
	Dst      string   `json:"dst"`
	Gateway  string   `json:"gateway"`
	Protocol string   `json:"protocol"`
	Scope    string   `json:"scope"`
	Prefsrc  string   `json:"prefsrc"`
	Metric   *int     `json:"metric"`
	Pref     string   `json:"pref"`
	Flags    []string `json:"flags"`
}

// routes lists the unicast routes of the main table through dev in the
// family of ip, the IPv6 link-local ones left out: their source stays the
// link-local address.
func routes(ctx context.Context, dev string, ip netip.Addr) ([]route, error) {
	fam := "-4"
	if ip.Is6() {
		fam = "-6"
	}
	out, err := ipCmd(ctx, "-j", fam, "route", "show", "table", "main", "dev", dev)
	if err != nil {
		return nil, err
	}
	var all []route
	if err := json.Unmarshal(out, &all); err != nil {
		return nil, fmt.Errorf("ip -j route show dev %s: %w", dev, err)
	}
	return slices.DeleteFunc(all, func(r route) bool {
		if r.Type != "" && r.Type != "unicast" {
			return true
		}
		p, err := netip.ParsePrefix(r.Dst)
		return err == nil && p.Addr().IsLinkLocalUnicast()
	}), nil
}

// replaceArgs is the `ip route replace` of r through dev with source src
// ("" for none).
func (r route) replaceArgs(dev string, ip netip.Addr, src string) []string {
	fam := "-4"
	if ip.Is6() {
		fam = "-6"
	}
	args := []string{fam, "route", "replace", r.Dst}
	if r.Gateway != "" {
		args = append(args, "via", r.Gateway)
	}
	args = append(args, "dev", dev, "table", "main")
	if r.Protocol != "" {
		args = append(args, "proto", r.Protocol)
	}
	if r.Scope != "" {
		args = append(args, "scope", r.Scope)
	}
	if r.Metric != nil {
		args = append(args, "metric", strconv.Itoa(*r.Metric))
	}
	if r.Pref != "" {
		args = append(args, "pref", r.Pref)
	}
	if slices.Contains(r.Flags, "onlink") {
		args = append(args, "onlink")
	}
	if src != "" {
		args = append(args, "src", src)
	}
	return args
}

// preferSource makes ip the source of the routes through dev.
func preferSource(ctx context.Context, dev string, ip netip.Addr) error {
	rs, err := routes(ctx, dev, ip)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.Prefsrc == ip.String() {
			continue
		}
		if _, err := ipCmd(ctx, r.replaceArgs(dev, ip, ip.String())...); err != nil {
			return fmt.Errorf("make %s the source address of the route to %s: %w", ip, r.Dst, err)
		}
	}
	return nil
}

// restoreSource gives back the routes through dev whose source is ip: the
// IPv4 routes of the kernel (the network's) get this node's own address on
// dev in ip's network, else its first address of the family, as the kernel
// made them; the others (IPv6 ones have none) get no preferred source, so
// that the kernel chooses as it did before the VIP. Without an own address in ip's
// network, the route to that network is the VIP's own, which the kernel
// deletes with it.
func restoreSource(ctx context.Context, dev string, ip netip.Addr) error {
	rs, err := routes(ctx, dev, ip)
	if err != nil {
		return err
	}
	inNet, first := ownAddrs(dev, ip)
	for _, r := range rs {
		if r.Prefsrc != ip.String() {
			continue
		}
		src := ""
		if r.Protocol == "kernel" && ip.Is4() {
			src = inNet
			if src == "" {
				if p, err := netip.ParsePrefix(r.Dst); err == nil && p.Contains(ip) {
					continue
				}
				src = first
			}
		}
		if _, err := ipCmd(ctx, r.replaceArgs(dev, ip, src)...); err != nil {
			return fmt.Errorf("give the route to %s its source address back: %w", r.Dst, err)
		}
	}
	return nil
}

// ownAddrs returns the addresses of this node on dev that may replace ip
// as a source: one in ip's network, and the first of the family ("" when
// there is none).
func ownAddrs(dev string, ip netip.Addr) (inNet, first string) {
	ifs, err := interfaces()
	if err != nil {
		return "", ""
	}
	for _, ia := range ifs {
		if ia.ifi.Name != dev {
			continue
		}
		for _, a := range ia.addrs {
			if !usable(a, ip) {
				continue
			}
			if a.Masked().Contains(ip) && inNet == "" {
				inNet = a.Addr().String()
			}
			if first == "" {
				first = a.Addr().String()
			}
		}
	}
	return inNet, first
}

package vip

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Gratuitous ARP (RFC 5227 §2.4, RFC 826): the node that takes an IPv4 VIP
// broadcasts it with its own MAC address, so that the switches learn the
// port and the neighbours that cached the VIP with the MAC address of the
// former primary update it at once, instead of after their cache expires.
// Linux updates a cached entry on a request whose sender and target are the
// same address, or on a reply whose target hardware address is the
// sender's; some devices listen to one form only, so each burst sends both.
// IPv6 needs nothing: Neighbor Discovery finds the new owner by itself
// (User's Guide §13.6.7.3).

const (
	arpRequest = 1
	arpReply   = 2
	// frameLen is the minimum Ethernet frame without its checksum: the ARP
	// packet (42 bytes with its header) is padded to it.
	frameLen = 60
)

// garp builds the gratuitous ARP of ip from mac, a request or a reply.
func garp(op uint16, mac net.HardwareAddr, ip netip.Addr) []byte {
	f := make([]byte, frameLen)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(a[2:4], unix.ETH_P_IP)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	ip4 := ip.As4()
	copy(a[8:14], mac)
	copy(a[14:18], ip4[:])
	if op == arpReply {
		copy(a[18:24], mac)
	}
	copy(a[24:28], ip4[:])
	return f
}

// Announce broadcasts one gratuitous ARP request and one reply for ip, an
// IPv4 address, on dev.
func Announce(dev string, ip netip.Addr) error {
	if !ip.Is4() {
		return fmt.Errorf("gratuitous ARP is for IPv4 addresses, not %s", ip)
	}
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return err
	}
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("interface %s has no Ethernet address: no gratuitous ARP for %s", dev, ip)
	}
	// Protocol 0: the socket sends and receives nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("gratuitous ARP for %s on %s: packet socket: %w", ip, dev, err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	for _, op := range []uint16{arpRequest, arpReply} {
		if err := unix.Sendto(fd, garp(op, ifi.HardwareAddr, ip), 0, to); err != nil {
			return fmt.Errorf("gratuitous ARP for %s on %s: %w", ip, dev, err)
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Reroute calls announce every interval, for as long as elapse after it was
// called (the last call at elapse itself when it is a multiple of
// interval), or until ctx ends (<interface arpreroute="on" arpinterval
// arpelapse>). The burst at the time the VIPs are set is not its business.
func Reroute(ctx context.Context, interval, elapse time.Duration, announce func()) {
	if interval <= 0 {
		return
	}
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(start) > elapse {
			return
		}
		announce()
	}
}

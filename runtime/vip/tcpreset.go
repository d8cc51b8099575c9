package vip

import (
	"context"
	"net/netip"
	"strings"
)

// ResetTCP closes the TCP connections whose local address is ip, before
// the VIP goes (<vip tcpreset="on">): the kernel sends each peer a reset,
// so that the clients reconnect at once, to the new primary, instead of
// waiting for their timeouts. It uses `ss -K` (sock_diag), which needs a
// kernel built with CONFIG_INET_DIAG_DESTROY; without it nothing is closed,
// and left counts the connections that stay. Listening sockets and
// connections in TIME-WAIT are not connections to reset.
func ResetTCP(ctx context.Context, ip netip.Addr) (reset, left int, err error) {
	filter := []string{"-t", "-n", "-H", "state", "connected", "exclude", "time-wait", "src", netip.PrefixFrom(ip, ip.BitLen()).String()}
	out, err := run(ctx, "ss", append([]string{"-K"}, filter...)...)
	if err != nil {
		return 0, 0, err
	}
	reset = lines(out)
	out, err = run(ctx, "ss", filter...)
	if err != nil {
		return reset, 0, err
	}
	return reset, lines(out), nil
}

func lines(out []byte) int {
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}

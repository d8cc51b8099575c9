package clusterconf

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/safe"
)

// resolveTimeout bounds the name resolution of a node's address.
const resolveTimeout = 2 * time.Second

// FindNode returns the node of cl that has one of addrs on a lan (its addr,
// resolved when it is a name, or its laddr behind NAT). It fails when no
// node, or more than one, has them.
func FindNode(cl *safe.Cluster, addrs []net.IP) (string, error) {
	mine := map[string]bool{}
	for _, ip := range addrs {
		mine[ip.String()] = true
	}
	var found, listing []string
	for _, name := range cl.NodeNames() {
		var addrsOf []string
		match := false
		for _, lan := range cl.Lans {
			for _, n := range lan.Nodes {
				if n.Name != name {
					continue
				}
				addrsOf = append(addrsOf, n.Addr)
				for _, a := range []string{n.Addr, n.LAddr} {
					for _, ip := range resolve(a) {
						if mine[ip.String()] {
							match = true
						}
					}
				}
			}
		}
		listing = append(listing, name+"="+strings.Join(addrsOf, "/"))
		if match {
			found = append(found, name)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		ips := make([]string, len(addrs))
		for i, ip := range addrs {
			ips[i] = ip.String()
		}
		return "", fmt.Errorf("none of this node's addresses (%s) is a node of cluster.xml (%s): use --node NAME or fix cluster.xml",
			strings.Join(ips, ", "), strings.Join(listing, ", "))
	}
	return "", fmt.Errorf("several nodes of cluster.xml have this node's addresses (%s): use --node NAME or fix cluster.xml", strings.Join(found, ", "))
}

// resolve returns the addresses of a cluster.xml address: an IP ("[...]"
// for IPv6) or a name.
func resolve(addr string) []net.IP {
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if addr == "" {
		return nil
	}
	if ip := net.ParseIP(addr); ip != nil {
		return []net.IP{ip}
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	ips, _ := net.DefaultResolver.LookupIP(ctx, "ip", addr)
	return ips
}

// LocalIPs returns the addresses of this machine's interfaces.
func LocalIPs() []net.IP {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var ips []net.IP
	for _, a := range as {
		switch v := a.(type) {
		case *net.IPNet:
			ips = append(ips, v.IP)
		case *net.IPAddr:
			ips = append(ips, v.IP)
		}
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].String() < ips[j].String() })
	return ips
}

// CommandAddr is the address by which the other nodes reach node, as
// `safekit -H` and the console's relay do: its address on the lan of
// distributed commands (command="on"), else on the first lan that lists
// it, else its name.
func CommandAddr(cl *safe.Cluster, node string) string {
	if l := cl.CommandLan(); l != nil {
		if a := cl.Addr(l.Name, node); a != "" {
			return a
		}
	}
	for _, l := range cl.Lans {
		if a := cl.Addr(l.Name, node); a != "" {
			return a
		}
	}
	return node
}

// BaseURL is the base URL of a web service: scheme://addr:port, where addr
// is an address as cluster.xml writes it (an IPv6 one with or without
// brackets) or a host name.
func BaseURL(scheme, addr string, port int) string {
	return scheme + "://" + net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(port))
}

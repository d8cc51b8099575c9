package cli

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/safe"
)

// DefaultHTTPSPort is the port of a web service in HTTPS
// (-H "[https],S1,S2").
const DefaultHTTPSPort = 9453

// target is a node a distributed command goes to.
type target struct {
	// Node is its name in cluster.xml, "" for a server given by address.
	Node string
	// URL is the base URL of its web service: http://10.0.0.1:9010.
	URL string
}

// protoRE is the optional first item of a servers list: [http],
// [https:9453].
var protoRE = regexp.MustCompile(`^\[(https?)(?::(\d{1,5}))?\]$`)

// parseHosts reads the argument of -H (User's Guide §9.8):
//
//	"*"                                every node of cluster.xml
//	"node1,node2"                      nodes of cluster.xml
//	"[http:9500],10.0.0.1,server2"     servers, with a protocol and port
//	"http://10.0.0.1:9010,http://..."  URLs
//
// Nodes are reached at their address on the lan of distributed commands
// (command="on", else the first lan). scheme and port are those of this
// node's web service, used unless the argument says otherwise; cl is nil
// when this node has no cluster.xml.
func parseHosts(spec string, cl *safe.Cluster, scheme string, port int) ([]target, error) {
	var items []string
	for _, it := range strings.Split(spec, ",") {
		if it = strings.TrimSpace(it); it != "" {
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf(`-H needs hosts: "*", node names of cluster.xml, "[http:9010],addr1,addr2" or URLs`)
	}
	explicit := false
	if m := protoRE.FindStringSubmatch(items[0]); m != nil {
		explicit = true
		scheme, port = m[1], defaultPort(m[1], port)
		if m[2] != "" {
			p, _ := strconv.Atoi(m[2])
			if p < 1 || p > 65535 {
				return nil, fmt.Errorf("-H %q: port %s is not a TCP port (1-65535)", spec, m[2])
			}
			port = p
		}
		items = items[1:]
		if len(items) == 0 {
			return nil, fmt.Errorf("-H %q: no server after %s", spec, m[0])
		}
	}
	var out []target
	seen := map[string]bool{}
	add := func(t target) {
		if !seen[t.URL] {
			seen[t.URL] = true
			out = append(out, t)
		}
	}
	if len(items) == 1 && items[0] == "*" {
		if cl == nil {
			return nil, fmt.Errorf(`-H "*" means every node of cluster.xml, and this node has none: configure the cluster (safekit cluster config), or name the servers: -H "[http:9010],addr1,addr2"`)
		}
		for _, n := range cl.NodeNames() {
			add(target{Node: n, URL: clusterconf.BaseURL(scheme, clusterconf.CommandAddr(cl, n), port)})
		}
		return out, nil
	}
	for _, it := range items {
		switch {
		case it == "*":
			return nil, fmt.Errorf(`-H %q: "*" stands alone (every node of cluster.xml)`, spec)
		case strings.Contains(it, "://"):
			if explicit {
				return nil, fmt.Errorf("-H %q: give URLs, or a [protocol:port] and addresses, not both", spec)
			}
			t, err := parseURL(it, port)
			if err != nil {
				return nil, fmt.Errorf("-H %q: %w", spec, err)
			}
			add(t)
		case !explicit && cl != nil && cl.HasNode(it):
			add(target{Node: it, URL: clusterconf.BaseURL(scheme, clusterconf.CommandAddr(cl, it), port)})
		case !explicit && net.ParseIP(strings.Trim(it, "[]")) == nil && !strings.Contains(it, "."):
			nodes := "none: this node has no cluster.xml"
			if cl != nil {
				nodes = strings.Join(cl.NodeNames(), ", ")
			}
			return nil, fmt.Errorf("-H %q: %s is not a node of cluster.xml (nodes: %s); for a server that is not, give its address or write -H \"[http],%s\"", spec, it, nodes, it)
		default:
			if strings.ContainsAny(it, "/ ") {
				return nil, fmt.Errorf("-H %q: %q is not an address", spec, it)
			}
			add(target{URL: clusterconf.BaseURL(scheme, it, port)})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-H %q: no host", spec)
	}
	return out, nil
}

// parseURL reads http://host[:port]; without a port, the port of this
// node's web service (or 9453 for https).
func parseURL(s string, port int) (target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return target{}, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return target{}, fmt.Errorf("%s: the protocol is http or https", s)
	}
	if u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return target{}, fmt.Errorf("%s: expected %s://host:port", s, u.Scheme)
	}
	p := defaultPort(u.Scheme, port)
	if u.Port() != "" {
		p, err = strconv.Atoi(u.Port())
		if err != nil || p < 1 || p > 65535 {
			return target{}, fmt.Errorf("%s: %s is not a TCP port", s, u.Port())
		}
	}
	return target{URL: clusterconf.BaseURL(u.Scheme, u.Hostname(), p)}, nil
}

func defaultPort(scheme string, httpPort int) int {
	if scheme == "https" {
		return DefaultHTTPSPort
	}
	return httpPort
}

package clusterconf

import (
	"net"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/safe"
)

func parseCluster(t *testing.T, xml string) *safe.Cluster {
	t.Helper()
	cl, diags := safe.ParseCluster([]byte(xml), "cluster.xml")
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	return cl
}

func ips(ss ...string) []net.IP {
	var out []net.IP
	for _, s := range ss {
		out = append(out, net.ParseIP(s))
	}
	return out
}

func TestFindNode(t *testing.T) {
	cl := parseCluster(t, `<cluster><lans>
  <lan name="default">
    <node name="node1" addr="192.168.1.67"/>
    <node name="node2" addr="192.168.1.68"/>
    <node name="node3" addr="server3.example.com" laddr="10.1.0.3"/>
  </lan>
  <lan name="repli">
    <node name="node1" addr="10.0.0.1"/>
    <node name="node2" addr="[fd00::2]"/>
    <node name="node3" addr="10.0.0.3"/>
  </lan>
</lans></cluster>`)
	for _, tc := range []struct {
		name  string
		addrs []net.IP
		want  string
		err   string
	}{
		{"first lan", ips("127.0.0.1", "192.168.1.67"), "node1", ""},
		{"second lan, IPv6", ips("127.0.0.1", "fd00::2"), "node2", ""},
		{"NAT: the local address", ips("10.1.0.3"), "node3", ""},
		{"none", ips("127.0.0.1", "172.16.0.1"), "",
			"none of this node's addresses (127.0.0.1, 172.16.0.1) is a node of cluster.xml (node1=192.168.1.67/10.0.0.1, node2=192.168.1.68/[fd00::2], node3=server3.example.com/10.0.0.3): use --node NAME or fix cluster.xml"},
		{"several", ips("192.168.1.67", "10.0.0.3"), "",
			"several nodes of cluster.xml have this node's addresses (node1, node3): use --node NAME or fix cluster.xml"},
	} {
		got, err := FindNode(cl, tc.addrs)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && err.Error() != tc.err {
			t.Errorf("%s: FindNode = %q, %v; want %q, %q", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestFindNodeResolvesNames(t *testing.T) {
	cl := parseCluster(t, `<cluster><lans><lan name="default">
    <node name="node1" addr="localhost"/>
    <node name="node2" addr="192.0.2.2"/>
</lan></lans></cluster>`)
	addrs, err := net.LookupIP("localhost")
	if err != nil || len(addrs) == 0 {
		t.Fatalf("localhost does not resolve: %v", err)
	}
	if got, err := FindNode(cl, addrs[:1]); got != "node1" || err != nil {
		t.Errorf("FindNode by name: %q %v", got, err)
	}
	if _, err := FindNode(cl, ips("192.0.2.9")); err == nil || !strings.Contains(err.Error(), "node1=localhost") {
		t.Errorf("names are shown as written: %v", err)
	}
}

func TestNodeURL(t *testing.T) {
	withCommandLan := parseCluster(t, `<cluster><lans>
  <lan name="default">
    <node name="node1" addr="192.168.1.67"/>
    <node name="node2" addr="192.168.1.68"/>
  </lan>
  <lan name="admin" command="on">
    <node name="node1" addr="10.0.0.1"/>
    <node name="node2" addr="[2001:db8::2]"/>
  </lan>
</lans></cluster>`)
	firstLan := parseCluster(t, `<cluster><lans>
  <lan name="default">
    <node name="node1" addr="192.168.1.67"/>
    <node name="node2" addr="server2.example.com"/>
  </lan>
  <lan name="repli">
    <node name="node1" addr="10.1.0.1"/>
    <node name="node2" addr="10.1.0.2"/>
  </lan>
</lans></cluster>`)
	for _, tc := range []struct {
		name   string
		cl     *safe.Cluster
		node   string
		scheme string
		port   int
		want   string
	}{
		{"the lan of distributed commands", withCommandLan, "node1", "http", 9010, "http://10.0.0.1:9010"},
		{"IPv6 in brackets", withCommandLan, "node2", "http", 9010, "http://[2001:db8::2]:9010"},
		{"the first lan without command lan", firstLan, "node1", "http", 9010, "http://192.168.1.67:9010"},
		{"a host name", firstLan, "node2", "https", 9453, "https://server2.example.com:9453"},
		{"a name that is not a node stays a name", firstLan, "node9", "http", 9500, "http://node9:9500"},
	} {
		if got := BaseURL(tc.scheme, CommandAddr(tc.cl, tc.node), tc.port); got != tc.want {
			t.Errorf("%s: %s", tc.name, got)
		}
	}
	for addr, want := range map[string]string{"::1": "http://[::1]:9010", "[::1]": "http://[::1]:9010", "10.0.0.1": "http://10.0.0.1:9010"} {
		if got := BaseURL("http", addr, 9010); got != want {
			t.Errorf("BaseURL(%q) = %s, want %s", addr, got, want)
		}
	}
}

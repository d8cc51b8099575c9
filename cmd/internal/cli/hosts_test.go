package cli

import (
	"reflect"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/safe"
)

const twoLans = `<cluster>
  <lans>
    <lan name="default">
      <node name="node1" addr="192.168.1.67"/>
      <node name="node2" addr="192.168.1.68"/>
    </lan>
    <lan name="admin" command="on">
      <node name="node1" addr="10.0.0.1"/>
      <node name="node2" addr="[2001:db8::2]"/>
    </lan>
  </lans>
</cluster>`

const oneLan = `<cluster>
  <lans>
    <lan name="default">
      <node name="node1" addr="192.168.1.67"/>
      <node name="node2" addr="server2.example.com"/>
    </lan>
  </lans>
</cluster>`

func cluster(t *testing.T, xml string) *safe.Cluster {
	t.Helper()
	cl, diags := safe.ParseCluster([]byte(xml), "cluster.xml")
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	return cl
}

func TestParseHosts(t *testing.T) {
	withCommandLan, firstLan := cluster(t, twoLans), cluster(t, oneLan)
	for _, tc := range []struct {
		name, spec string
		cl         *safe.Cluster
		want       []target
	}{
		{"every node, on the command lan", "*", withCommandLan, []target{
			{"node1", "http://10.0.0.1:9010"}, {"node2", "http://[2001:db8::2]:9010"}}},
		{"every node, on the first lan", "*", firstLan, []target{
			{"node1", "http://192.168.1.67:9010"}, {"node2", "http://server2.example.com:9010"}}},
		{"node names, in the given order", "node2, node1", firstLan, []target{
			{"node2", "http://server2.example.com:9010"}, {"node1", "http://192.168.1.67:9010"}}},
		{"a node twice", "node1,node1", firstLan, []target{{"node1", "http://192.168.1.67:9010"}}},
		{"servers with protocol and port", "[http:9500],10.0.0.107,10.0.0.108", nil, []target{
			{"", "http://10.0.0.107:9500"}, {"", "http://10.0.0.108:9500"}}},
		{"https servers", "[https],S1.company.com,S2.company.com", nil, []target{
			{"", "https://S1.company.com:9453"}, {"", "https://S2.company.com:9453"}}},
		{"a protocol and every node", "[http:9500],*", firstLan, []target{
			{"node1", "http://192.168.1.67:9500"}, {"node2", "http://server2.example.com:9500"}}},
		{"names after a protocol are servers", "[http],node1", firstLan, []target{{"", "http://node1:9010"}}},
		{"addresses without protocol", "10.0.0.1,[::1]", nil, []target{
			{"", "http://10.0.0.1:9010"}, {"", "http://[::1]:9010"}}},
		{"urls", "http://192.16.0.2:9010,http://192.16.0.3:9011", nil, []target{
			{"", "http://192.16.0.2:9010"}, {"", "http://192.16.0.3:9011"}}},
		{"url without port", "https://a.example.com/", nil, []target{{"", "https://a.example.com:9453"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHosts(tc.spec, tc.cl, "http", 9010)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseHosts(%q)\n got %v\nwant %v", tc.spec, got, tc.want)
			}
		})
	}
}

func TestParseHostsErrors(t *testing.T) {
	cl := cluster(t, oneLan)
	for _, tc := range []struct {
		spec string
		cl   *safe.Cluster
		want string
	}{
		{"", cl, `-H needs hosts`},
		{" , ", cl, `-H needs hosts`},
		{"*", nil, `this node has none: configure the cluster`},
		{"node1,*", cl, `"*" stands alone`},
		{"node3", cl, `node3 is not a node of cluster.xml (nodes: node1, node2)`},
		{"node3", nil, `(nodes: none: this node has no cluster.xml)`},
		{"[http:99999],10.0.0.1", nil, `port 99999 is not a TCP port`},
		{"[http]", nil, `no server after [http]`},
		{"[http],http://10.0.0.1:9010", nil, `not both`},
		{"ftp://10.0.0.1", nil, `the protocol is http or https`},
		{"http://10.0.0.1:9010/api", nil, `expected http://host:port`},
		{"http://10.0.0.1:0", nil, `is not a TCP port`},
		{"10.0.0.1/24", nil, `is not an address`},
	} {
		_, err := parseHosts(tc.spec, tc.cl, "http", 9010)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseHosts(%q): error %v, want it to contain %q", tc.spec, err, tc.want)
		}
	}
}

func TestDistributedForms(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		hosts string
		rest  []string
		ok    bool
	}{
		{[]string{"-H", "*", "level"}, "*", []string{"level"}, true},
		{[]string{"-H", "*", "-G"}, "*", []string{"-G"}, true},
		{[]string{"config", "-H", "node1,node2", "-E", "AM"}, "node1,node2", []string{"-E", "AM"}, true},
		{[]string{"config", "-m", "AM"}, "", nil, false},
		{[]string{"level"}, "", nil, false},
	} {
		hosts, rest, ok := distributed(tc.args)
		if hosts != tc.hosts || !reflect.DeepEqual(rest, tc.rest) || ok != tc.ok {
			t.Errorf("distributed(%q) = %q %q %v, want %q %q %v", tc.args, hosts, rest, ok, tc.hosts, tc.rest, tc.ok)
		}
	}
}

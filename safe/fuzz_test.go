package safe

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// The fuzz targets run their seeds with every go test; to search further:
//
//	go test -run=XXX -fuzz=FuzzParseUserconfig -fuzztime=60s ./safe/
//
// New failing inputs land in testdata/fuzz/<target>/ and then run as seeds.

var userconfigSeeds = []string{
	`<safe><service mode="light"/></safe>`,
	`<!DOCTYPE safe>
<safe>
 <macro name="SERVICES" value=""/>
 <service mode="mirror" boot="on" boot_delay="1500ms" loop_interval="24">
  <heart pulse="700ms" timeout="30000">
   <heartbeat name="default" ident="flow"/>
   <heartbeat name=""/>
  </heart>
  <rfs mountover="off" locktimeout="200" ruzone_blocksize="8388608" reipacketsize="65536">
   <replicated dir="%VM_PATH%/%VM_NAME%" mode="read_only">
    <tocheck path="conf"/>
    <notreplicated path="tmp"/>
    <notreplicated regexpath="!.*\.mdf$"/>
   </replicated>
   <flow name="private"/>
  </rfs>
  <user><var name="SERVICES" value="%SERVICES%"/></user>
  <check>
   <custom ident="%VM_NAME%_check" exec="vmcheck" arg="%VM_NAME%" when="prim" action="restart"/>
   <splitbrain ident="witness" exec="ping" arg="192.168.1.1 192.168.1.2"/>
  </check>
  <failover period="5s" handle_time="15s"><![CDATA[
c: if (custom.x == down) then restart();
]]></failover>
 </service>
</safe>`,
	`<safe>
<macro name="VIRTUAL_IP" value="" />
<service mode="farm">
 <farm><lan name="default"/></farm>
 <vip>
  <interface_list><interface arpreroute="on">
   <virtual_interface type="vmac_directed"><virtual_addr addr="%VIRTUAL_IP%" where="alias"/></virtual_interface>
  </interface></interface_list>
  <loadbalancing_list><group name="g">
   <cluster><host name="node1" power="1"/></cluster>
   <rule port="*" proto="tcp" filter="on_port"/>
  </group></loadbalancing_list>
 </vip>
 <errd polltimer="10"><proc name="app.exe" atleast="1" action="restart_app" class="app"/></errd>
 <check><tcp ident="web" when="both"><to addr="[::1]" port="80" interval="10" timeout="5"/></tcp></check>
</service>
</safe>`,
	`<macro name="A" value="%B%"/><safe><macro name="B" value="%A%"/><service mode="light"><user><var name="V" value="%A%"/></user></service></safe>`,
	`<safe><service mode="mirror"><heart><heartbeat><server addr="10.0.0.1"/></heartbeat><heartbeat name="default"/></heart><heart/></service></safe>`,
	`<safe><service mode="mirror"><heart><heartbeat name="default"/></heart><heart><heartbeat name="default"/><heartbeat name="private"/></heart></service></safe>`,
	`<safe><service mode="mirror"><check><check><splitbrain ident="w" exec="ping" arg="a"/></check></check></service></safe>`,
	"\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><safe><service mode=\"light\" x:y=\"1\"><x:user/>caf\xe9</service></safe>",
	`<safe><service mode="light"></servce></safe>`,
	`<safe><service mode="light" mode="farm"/>`,
	"<safe>\n<service mode=\"light\"/>\n</safe>\ntrailing text",
	``,
}

var fragmentSeeds = []string{
	`<heart><heartbeat name="default"/><heartbeat name="private" ident="flow"/></heart>`,
	`<replicated dir="/safedir"><notreplicated regexpath=".*\.tmp$"/></replicated>`,
	`<check><module name="leader"/></check><failover><![CDATA[--Lua Rules
Rules.disable("ip_failure")]]></failover>`,
	`<module name="leader"><to addr="127.0.0.1" port="9010"/></module>`,
	`<macro name="PATH" value="e:\path"/><service><rfs><replicated dir="%PATH%"/></rfs></service`,
	`<service mode="mirror" loop_interval="24">…</service>`,
	`</fragment><safe/><fragment>`,
	`<!--`,
}

var clusterSeeds = []string{
	`<?xml version="1.0" encoding="utf-8"?>
<cluster><lans port="4800" pulse="100">
 <lan name="default" command="on" console="on">
  <node name="node1" addr="192.168.1.10"/><node name="node2" addr="[2001:db8::1]" laddr="10.0.0.2"/>
 </lan>
 <lan name="private"><node name="node1" addr="10.1.0.1"/><node name="node3" addr="node3.example.com"/></lan>
</lans></cluster>`,
	`<cluster><lans><lan name="a"><node name="n[1]" addr="${EIP1}"/></lan><lan name="a"/></lans></cluster><x/>`,
	`<cluster/>`,
}

// checkDiags holds for the diagnostics of any input.
func checkDiags(t *testing.T, data []byte, file string, diags Diagnostics) {
	t.Helper()
	lines := bytes.Count(data, []byte("\n")) + 1
	for _, d := range diags {
		if d.File != file {
			t.Errorf("%s: file %q; want %q", d, d.File, file)
		}
		if strings.HasPrefix(d.Msg, "XML syntax error") && d.Pos.Line == 0 {
			t.Errorf("%s: a syntax error without a line", d)
		}
		if d.Pos.Line > 0 && (d.Pos.Col < 1 || d.Pos.Line > lines) {
			t.Errorf("%s: position outside the %d lines of the input", d, lines)
		}
		if d.Msg == "" {
			t.Errorf("%s: empty message", d)
		}
	}
}

// isSyntaxError tells whether diags is what a file that is not well-formed
// gets: one positioned error.
func isSyntaxError(diags Diagnostics) bool {
	return len(diags) == 1 && diags[0].Severity == Error && diags[0].Pos.Line > 0
}

func FuzzParseUserconfig(f *testing.F) {
	for _, s := range userconfigSeeds {
		f.Add([]byte(s))
	}
	cl := testCluster(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range []Options{
			{File: "f.xml", Cluster: cl, Scripts: []string{"start_prim", "vmcheck"}},
			{File: "f.xml"},
		} {
			u := ParseUserconfig(data, opts)
			if u == nil || u.Config == nil {
				t.Fatal("no Userconfig or no Config")
			}
			checkDiags(t, data, opts.File, u.Diags)
			if u.Doc == nil && !isSyntaxError(u.Diags) {
				t.Errorf("no document and no syntax error: %v", u.Diags)
			}
			if u.Doc != nil && u.Expanded == nil {
				t.Error("a document without its expanded form")
			}
		}
	})
}

func FuzzParseFragment(f *testing.F) {
	for _, s := range append(fragmentSeeds, userconfigSeeds...) {
		f.Add([]byte(s))
	}
	cl := testCluster(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		u := ParseFragment(data, Options{File: "f.xml", Cluster: cl})
		if u == nil || u.Config == nil {
			t.Fatal("no Userconfig or no Config")
		}
		checkDiags(t, data, "f.xml", u.Diags)
		if u.Doc == nil && !isSyntaxError(u.Diags) {
			t.Errorf("no document and no syntax error: %v", u.Diags)
		}
	})
}

func FuzzParseCluster(f *testing.F) {
	for _, s := range clusterSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cl, diags := ParseCluster(data, "cluster.xml")
		checkDiags(t, data, "cluster.xml", diags)
		if cl == nil && !diags.HasErrors() {
			t.Fatalf("no cluster and no error: %v", diags)
		}
		if cl == nil || diags.HasErrors() {
			return
		}
		// A valid cluster written back by String reads the same.
		text := cl.String()
		back, diags := ParseCluster([]byte(text), "cluster.xml")
		if back == nil || diags.HasErrors() {
			t.Fatalf("String() gives a cluster.xml with errors:\n%s\n%v", text, diags)
		}
		if back.Port != cl.Port || !slices.EqualFunc(back.Lans, cl.Lans, func(a, b Lan) bool {
			return a.Name == b.Name && a.Command == b.Command && slices.Equal(a.Nodes, b.Nodes)
		}) {
			t.Errorf("String() does not round-trip:\n%s\ngot  %+v\nwant %+v", text, back, cl)
		}
	})
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"", "50%", "%%", "a % b %", "%A%", "%A%%B%", "%1A%", "100%%A%", "%VM_PATH%\\%VM_NAME%", "%A", "%é%"} {
		f.Add(s)
	}
	macros := map[string]string{"A": "x", "B": "%A%", "C": "%C%"}
	env := func(string) (string, bool) { return "env", true }
	f.Fuzz(func(t *testing.T, s string) {
		// With nothing defined, every reference is left as written.
		got, err := NewExpander(nil, nil).Expand(s)
		if err != nil || got != s {
			t.Errorf("Expand(%q) with nothing defined = %q, %v; want the input", s, got, err)
		}
		// Without '%', there is nothing to expand.
		if !strings.Contains(s, "%") {
			got, err := NewExpander(macros, env).Expand(s)
			if err != nil || got != s {
				t.Errorf("Expand(%q) = %q, %v; want the input", s, got, err)
			}
		}
	})
}

package safe

import (
	"slices"
	"strings"
	"testing"
)

// TestDiagnosticAttr: a diagnostic about one attribute names it, so that
// an editor can point at the field; one about the element as a whole does
// not. The text (String) does not show it: the fixtures of
// testdata/errors pin the text.
func TestDiagnosticAttr(t *testing.T) {
	for _, tc := range []struct {
		name, parse, input string
		// want is element.attr (element. when there is no attribute) of
		// each diagnostic, in order.
		want []string
	}{
		{"a value of the wrong kind", "userconfig", `<safe><service mode="light" boot="sometimes"><user/></service></safe>`,
			[]string{"service.boot"}},
		{"a missing attribute", "userconfig", `<safe><service><user/></service></safe>`,
			[]string{"service.mode"}},
		{"an unknown attribute, then an element without attribute", "userconfig", `<safe><service mode="light" colour="blue"><user/><heart/></service></safe>`,
			[]string{"service.colour", "heart.", "heart."}},
		{"a macro used by an attribute", "userconfig", `<safe><macro name="DIR" value="data"/><service mode="mirror">
<heart><heartbeat name="default"/></heart><rfs><replicated dir="%DIR%"/></rfs><user/></service></safe>`,
			[]string{"replicated.dir"}},
		{"an undefined macro: the attribute, no element", "userconfig", `<safe><service mode="light"><user><var name="A" value="%NOPE%"/></user></service></safe>`,
			[]string{".value"}},
		{"a macro defined twice", "userconfig", `<safe><macro name="A" value="1"/><macro name="A" value="2"/><service mode="light"><user/></service></safe>`,
			[]string{"macro.name"}},
		{"a lan name that cluster.xml does not have", "userconfig", `<safe><service mode="mirror"><heart><heartbeat name="lan9"/></heart><user/></service></safe>`,
			[]string{"heartbeat.name"}},
		{"a heartbeat timeout set on the heartbeat", "userconfig", `<safe><service mode="mirror"><heart><heartbeat name="default" pulse="700" timeout="500"/></heart><user/></service></safe>`,
			[]string{"heartbeat.timeout"}},
		{"cluster.xml: an address twice", "cluster", `<cluster><lans><lan name="default">
<node name="node1" addr="10.0.0.1"/><node name="node2" addr="10.0.0.1"/></lan></lans></cluster>`,
			[]string{"node.addr"}},
		{"cluster.xml: a node twice", "cluster", `<cluster><lans><lan name="default"><node name="node1" addr="10.0.0.1"/>
<node name="node1" addr="10.0.0.2"/></lan></lans></cluster>`,
			[]string{"node.name"}},
		{"cluster.xml: a lan with one node", "cluster", `<cluster><lans><lan name="default"><node name="node1" addr="10.0.0.1"/></lan></lans></cluster>`,
			[]string{"lan."}},
		{"cluster.xml: an empty address", "cluster", `<cluster><lans><lan name="default"><node name="node1" addr="10.0.0.1"/>
<node name="node2" addr=""/></lan></lans></cluster>`,
			[]string{"node.addr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var diags Diagnostics
			switch tc.parse {
			case "userconfig":
				diags = ParseUserconfig([]byte(tc.input), Options{File: fixtureFile, Cluster: testCluster(t)}).Diags
			case "cluster":
				_, diags = ParseCluster([]byte(tc.input), fixtureFile)
			}
			var got []string
			for _, d := range diags {
				got = append(got, d.Element+"."+d.Attr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q\n%s", got, tc.want, strings.Join(diagStrings(diags), "\n"))
			}
		})
	}
}

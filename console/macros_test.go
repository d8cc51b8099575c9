package console

import (
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
)

// handWritten is a userconfig.xml as people write them: comments (one with
// a macro in it), a prolog, both quotes, attributes in any order, blanks,
// references, a macro without value and one with an end tag.
const handWritten = `<?xml version="1.0" encoding="utf-8"?>
<!-- kvm module: edit the macros below -->
<safe>
  <!-- <macro name="COMMENTED" value="x"/> -->
  <macro name="VM_PATH"   value="/var/lib/libvirt/images"/>
	<macro value='vm1' name='VM_NAME' />
  <macro name="EMPTY"/>
  <macro name="AMP" value="a &amp; b"></macro>
  <service mode="mirror" boot="auto">
    <heart><heartbeat name="default"/></heart>
    <user><var name="X" value="%VM_NAME%"/></user>
  </service>
</safe>
`

func TestReadMacros(t *testing.T) {
	got, err := readMacros([]byte(handWritten))
	if err != nil {
		t.Fatal(err)
	}
	want := []Macro{{"VM_PATH", "/var/lib/libvirt/images"}, {"VM_NAME", "vm1"}, {"EMPTY", ""}, {"AMP", "a & b"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("macros %q, want %q", got, want)
	}
}

func TestSetMacrosKeepsTheRest(t *testing.T) {
	all := []Macro{{"VM_PATH", "/var/lib/libvirt/images"}, {"VM_NAME", "vm1"}, {"EMPTY", ""}, {"AMP", "a & b"}}
	with := func(name, value string) []Macro {
		out := append([]Macro(nil), all...)
		for i := range out {
			if out[i].Name == name {
				out[i].Value = value
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		set  []Macro
		want string
	}{
		{"unchanged", all, handWritten},
		{"one value", with("VM_NAME", "vm2"), strings.Replace(handWritten, "value='vm1'", "value='vm2'", 1)},
		{"escaped, in its own quotes", with("VM_NAME", `it's <"x"> & y`), strings.Replace(handWritten, "value='vm1'", "value='it&apos;s &lt;\"x\"&gt; &amp; y'", 1)},
		{"an end tag", with("AMP", "c"), strings.Replace(handWritten, `value="a &amp; b"></macro>`, `value="c"></macro>`, 1)},
		{"a value where there was none", with("EMPTY", "e"), strings.Replace(handWritten, `<macro name="EMPTY"/>`, `<macro name="EMPTY" value="e"/>`, 1)},
		{"removed with its line, one added after the last", []Macro{{"VM_NAME", "vm1"}, {"EMPTY", ""}, {"AMP", "a & b"}, {"NEW", "n"}},
			strings.Replace(strings.Replace(handWritten, "  <macro name=\"VM_PATH\"   value=\"/var/lib/libvirt/images\"/>\n", "", 1),
				"b\"></macro>\n", "b\"></macro>\n  <macro name=\"NEW\" value=\"n\"/>\n", 1)},
	} {
		got, err := setMacros([]byte(handWritten), tc.set)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.name, got, tc.want)
		}
		if back, err := readMacros(got); err != nil || !reflect.DeepEqual(back, tc.set) {
			t.Errorf("%s: read back %q %v, want %q", tc.name, back, err, tc.set)
		}
	}
}

func TestSetMacrosAddsToAFileWithout(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"<safe>\n  <service mode=\"light\"/>\n</safe>\n", "<safe>\n  <macro name=\"A\" value=\"1\"/>\n  <service mode=\"light\"/>\n</safe>\n"},
		{"<safe>\r\n\t<service mode=\"light\"/>\r\n</safe>\r\n", "<safe>\r\n\t<macro name=\"A\" value=\"1\"/>\r\n\t<service mode=\"light\"/>\r\n</safe>\r\n"},
		{"\xEF\xBB\xBF<safe><macro name=\"A\" value=\"0\"/></safe>", "\xEF\xBB\xBF<safe><macro name=\"A\" value=\"1\"/></safe>"},
	} {
		got, err := setMacros([]byte(tc.in), []Macro{{"A", "1"}})
		if err != nil || string(got) != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSetMacrosRefuses(t *testing.T) {
	for _, tc := range []struct {
		in   string
		set  []Macro
		want string
	}{
		{handWritten, []Macro{{"BAD NAME", "x"}}, "invalid macro name"},
		{handWritten, []Macro{{"A", "1"}, {"A", "2"}}, "given twice"},
		{"<safe><macro name=\"A\" value=\"1\"></safe>", []Macro{{"A", "2"}}, "not well-formed"},
	} {
		if _, err := setMacros([]byte(tc.in), tc.set); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %q: %v, want %q", tc.in, tc.set, err, tc.want)
		}
	}
}

func TestMacrosEndpoint(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", handWritten, false)
	admin := n.login("admin")
	var cfg ModuleConfig
	admin.json(http.MethodGet, "/api/v1.0/modules/m1/config", nil, http.StatusOK, &cfg)
	if len(cfg.Macros) != 4 || cfg.Macros[1] != (Macro{"VM_NAME", "vm1"}) || cfg.Userconfig != handWritten {
		t.Fatalf("config: %+v", cfg)
	}
	set := append(append([]Macro(nil), cfg.Macros[:1]...), Macro{"VM_NAME", "vm9"}, cfg.Macros[2], cfg.Macros[3])
	var check Check
	admin.json(http.MethodPut, "/api/v1.0/modules/m1/macros", set, http.StatusOK, &check)
	data, _ := os.ReadFile(n.roots.Module("m1").Userconfig())
	if string(data) != strings.Replace(handWritten, "'vm1'", "'vm9'", 1) {
		t.Errorf("userconfig.xml after PUT macros:\n%s", data)
	}
	admin.json(http.MethodPut, "/api/v1.0/modules/m1/macros", []Macro{{"", "x"}}, http.StatusBadRequest, nil)
	if after, _ := os.ReadFile(n.roots.Module("m1").Userconfig()); string(after) != string(data) {
		t.Error("a refused PUT changed the file")
	}
}

package safe

import (
	"slices"
	"strconv"
	"testing"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		name      string
		macros    map[string]string
		env       map[string]string
		in        string
		want      string
		err       string
		undefined []string
	}{
		{name: "macro", macros: map[string]string{"VM": "vm1"}, in: "/images/%VM%.qcow2", want: "/images/vm1.qcow2"},
		{name: "macro wins over env", macros: map[string]string{"A": "macro"}, env: map[string]string{"A": "env"}, in: "%A%", want: "macro"},
		{name: "env fallback", env: map[string]string{"APP_HOME": "/opt/app"}, in: "%APP_HOME%/bin", want: "/opt/app/bin"},
		{name: "empty macro", macros: map[string]string{"VIP": ""}, in: "%VIP%", want: ""},
		{name: "adjacent", macros: map[string]string{"A": "x", "B": "y"}, in: "%A%%B%", want: "xy"},
		{name: "names are case-sensitive", macros: map[string]string{"a": "x"}, in: "%A%", want: "%A%", undefined: []string{"A"}},
		{name: "percent sign", in: "50%", want: "50%"},
		{name: "two percent signs", in: "%%", want: "%%"},
		{name: "blanks between percent signs", in: "a % b %", want: "a % b %"},
		{name: "not a name", macros: map[string]string{"1A": "x"}, in: "%1A%", want: "%1A%"},
		{name: "percent before a reference", macros: map[string]string{"A": "x"}, in: "100%%A%", want: "100%x"},
		{name: "undefined left as written", in: "%NOPE%/%NOPE%/%ALSO%", want: "%NOPE%/%NOPE%/%ALSO%", undefined: []string{"ALSO", "NOPE"}},
		{name: "nested", macros: map[string]string{"DIR": "%ROOT%/%NAME%", "ROOT": "/var/lib", "NAME": "%SHORT%", "SHORT": "vm1"}, in: "%DIR%", want: "/var/lib/vm1"},
		{name: "env inside a macro", macros: map[string]string{"DIR": "%HOME%/data"}, env: map[string]string{"HOME": "/root"}, in: "%DIR%", want: "/root/data"},
		{name: "undefined inside a macro", macros: map[string]string{"DIR": "%BASE%/data"}, in: "%DIR%", want: "%BASE%/data", undefined: []string{"BASE"}},
		{name: "macro used twice", macros: map[string]string{"A": "%B%", "B": "b"}, in: "%A%-%A%", want: "b-b"},
		{name: "self reference", macros: map[string]string{"A": "x%A%"}, in: "%A%", err: "macro A refers to itself (A -> A)"},
		{name: "recursion", macros: map[string]string{"A": "%B%", "B": "%C%", "C": "%A%"}, in: "v=%A%", err: "macro A refers to itself (A -> B -> C -> A)"},
		{name: "too long", macros: doubling(21), in: "%M0%", err: "macro M0 is longer than 1048576 bytes once expanded: check the macros it uses"},
		{name: "too long at the top", macros: doubling(21), in: "%M1%%M1%", err: "the value is longer than 1048576 bytes once its macros are expanded: check the macros it uses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var env func(string) (string, bool)
			if tt.env != nil {
				env = func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			}
			x := NewExpander(tt.macros, env)
			got, err := x.Expand(tt.in)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Expand(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if u := x.Undefined(); !slices.Equal(u, tt.undefined) {
				t.Errorf("Undefined() = %q; want %q", u, tt.undefined)
			}
		})
	}
}

// doubling returns n macros M0..M(n-1), each twice the next one, over a
// last macro Mn of one byte: M0 expands to 2^n bytes.
func doubling(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[macroName(i)] = "%" + macroName(i+1) + "%%" + macroName(i+1) + "%"
	}
	m[macroName(n)] = "x"
	return m
}

func macroName(i int) string { return "M" + strconv.Itoa(i) }

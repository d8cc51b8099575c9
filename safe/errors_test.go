package safe

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Each file in testdata/errors is one rule: a small input and the exact
// diagnostics it gets, written in the file as whole-line XML comments:
//
//	<!-- rule: what the fixture shows -->
//	<!-- parse: fragment -->        userconfig (default), fragment or cluster
//	<!-- cluster: none -->          no cluster.xml; by default the lans are
//	                                default and private, the nodes node1 and node2
//	<!-- scripts: start_prim vmcheck -->   the names in the module's bin/
//	<!-- env: APP_HOME=/opt/app --> an environment variable
//	...the input...
//	<!-- want: t.xml:3:2: <service>: missing attribute mode: ... -->
//
// There is one want line per diagnostic, in order, errors and warnings
// alike; "want: none" says there is none. The want lines close the file, so
// that adding one does not move the positions they give. The file is always
// read as t.xml. When the input cannot hold the comments (an empty file, an
// unclosed comment, text outside the root, an XML declaration that must come
// first), the same directives, without the comment marks, sit in a sidecar
// <name>.want.

const fixtureFile = "t.xml"

// testClusterXML is the cluster.xml every test uses unless it says
// otherwise: two lans and two nodes, as in the User's Guide §15.1.
const testClusterXML = `<cluster>
 <lans>
  <lan name="default">
   <node name="node1" addr="192.168.1.10"/>
   <node name="node2" addr="192.168.1.20"/>
  </lan>
  <lan name="private">
   <node name="node1" addr="10.0.0.10"/>
   <node name="node2" addr="10.0.0.20"/>
  </lan>
 </lans>
</cluster>
`

func testCluster(t testing.TB) *Cluster {
	t.Helper()
	cl, diags := ParseCluster([]byte(testClusterXML), "cluster.xml")
	if len(diags) > 0 {
		t.Fatalf("test cluster.xml: %v", diags)
	}
	return cl
}

// diagStrings renders diagnostics the way the commands print them.
func diagStrings(ds Diagnostics) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return out
}

// fixture holds the directives of one file of testdata/errors.
type fixture struct {
	rule    string
	parse   string // userconfig, fragment or cluster
	cluster bool   // check names against testCluster
	scripts []string
	env     map[string]string
	want    []string // Diagnostic.String() of every diagnostic, in order
}

// readFixture reads the directives of the fixture at path, whose content is
// data: from its sidecar .want file if there is one, else from its comments.
func readFixture(t *testing.T, path string, data []byte) fixture {
	t.Helper()
	fx := fixture{parse: "userconfig", cluster: true}
	var lines []string
	side, err := os.ReadFile(strings.TrimSuffix(path, ".xml") + ".want")
	switch {
	case err == nil:
		for _, line := range strings.Split(string(side), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				lines = append(lines, line)
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if d, ok := strings.CutPrefix(line, "<!-- "); ok && isDirective(d) {
				lines = append(lines, strings.TrimSuffix(d, " -->"))
			}
		}
	default:
		t.Fatal(err)
	}
	sawWant := false
	for _, line := range lines {
		key, val, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("%s: %q is not a directive", path, line)
		}
		switch key {
		case "rule":
			fx.rule = val
		case "parse":
			fx.parse = val
		case "cluster":
			fx.cluster = val != "none"
		case "scripts":
			fx.scripts = strings.Fields(val)
		case "env":
			if fx.env == nil {
				fx.env = map[string]string{}
			}
			k, v, _ := strings.Cut(val, "=")
			fx.env[k] = v
		case "want":
			sawWant = true
			if val != "none" {
				fx.want = append(fx.want, val)
			}
		default:
			t.Fatalf("%s: unknown directive %q", path, key)
		}
	}
	if fx.rule == "" || !sawWant {
		t.Fatalf("%s: a fixture needs a rule line and at least one want line", path)
	}
	return fx
}

var directives = []string{"rule", "parse", "cluster", "scripts", "env", "want"}

// isDirective tells a directive from a comment of the input itself.
func isDirective(s string) bool {
	key, _, ok := strings.Cut(s, ": ")
	return ok && slices.Contains(directives, key) && strings.HasSuffix(s, " -->")
}

// check parses data as the fixture says and returns the diagnostics as
// strings, and the Userconfig for the typed checks (nil for cluster.xml).
func (fx fixture) check(t *testing.T, data []byte) ([]string, *Userconfig) {
	t.Helper()
	var diags Diagnostics
	var u *Userconfig
	opts := Options{File: fixtureFile, Scripts: fx.scripts}
	if fx.cluster {
		opts.Cluster = testCluster(t)
	}
	if fx.env != nil {
		opts.Env = func(k string) (string, bool) { v, ok := fx.env[k]; return v, ok }
	}
	switch fx.parse {
	case "userconfig":
		u = ParseUserconfig(data, opts)
		diags = u.Diags
	case "fragment":
		u = ParseFragment(data, opts)
		diags = u.Diags
	case "cluster":
		_, diags = ParseCluster(data, fixtureFile)
	default:
		t.Fatalf("unknown parse %q", fx.parse)
	}
	return diagStrings(diags), u
}

// typedChecks look past the diagnostics of some fixtures, at what the file
// means once read.
var typedChecks = map[string]func(t *testing.T, u *Userconfig){
	"value-time-truncation.xml": func(t *testing.T, u *Userconfig) {
		s := u.Config.Service
		if s.BootDelay.D() != time.Second || s.LoopInterval.D() != time.Hour {
			t.Errorf("boot_delay, loop_interval = %v, %v; want 1s, 1h (truncated toward zero)", s.BootDelay, s.LoopInterval)
		}
	},
	"heartbeat-empty-name.xml": func(t *testing.T, u *Userconfig) {
		hb := u.Config.Heart.Heartbeats[0]
		if hb.Lan != "default" || hb.Ident != "default" {
			t.Errorf("heartbeat lan, ident = %q, %q; want the first lan of cluster.xml for both", hb.Lan, hb.Ident)
		}
		if got := u.Config.FlowLan(); got != "default" {
			t.Errorf("FlowLan() = %q; want default", got)
		}
	},
	"macro-env-fallback.xml": func(t *testing.T, u *Userconfig) {
		want := map[string]string{"HOME_DIR": "/opt/app", "DATA": "/srv/data", "SHADOWED": "from-macro"}
		for name, v := range want {
			if got, _ := u.Config.Var(name); got != v {
				t.Errorf("var %s = %q; want %q", name, got, v)
			}
		}
	},
	"value-empty-allowed.xml": func(t *testing.T, u *Userconfig) {
		if got, ok := u.Config.Var("SERVICES"); !ok || got != "" {
			t.Errorf("var SERVICES = %q, %v; want the empty string", got, ok)
		}
	},
	"xml-latin1.xml": func(t *testing.T, u *Userconfig) {
		if got, _ := u.Config.Var("GREETING"); got != "café" {
			t.Errorf("var GREETING = %q; want %q (read as ISO-8859-1)", got, "café")
		}
	},
	"schema-repeated-heart.xml": func(t *testing.T, u *Userconfig) {
		if n := len(u.Config.Heart.Heartbeats); n != 1 {
			t.Errorf("%d heartbeats; want the 1 of the first <heart> (the second is refused)", n)
		}
	},
}

func TestErrorFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.xml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no fixtures in testdata/errors")
	}
	for name := range typedChecks {
		if !slices.Contains(files, filepath.Join("testdata/errors", name)) {
			t.Errorf("typedChecks names %s, which is not a fixture", name)
		}
	}
	rules := map[string]string{}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".xml"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			fx := readFixture(t, path, data)
			if other, dup := rules[fx.rule]; dup {
				t.Errorf("rule %q is also shown by %s: one rule per fixture", fx.rule, other)
			}
			rules[fx.rule] = name
			got, u := fx.check(t, data)
			if !slices.Equal(got, fx.want) {
				t.Errorf("rule: %s\ngot:\n\t%s\nwant:\n\t%s", fx.rule, strings.Join(got, "\n\t"), strings.Join(fx.want, "\n\t"))
			}
			if check := typedChecks[name]; check != nil {
				check(t, u)
			}
		})
	}
}

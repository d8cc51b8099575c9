package safe

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/safekit-oss/safekit/internal/corpus"
	"github.com/safekit-oss/safekit/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/golden and the generated part of docs/userconfig.md")

// goldenModule is a corpus module, filled so that it validates, as the
// runtime receives it.
type goldenModule struct {
	golden string // file name in testdata/golden
	u      *Userconfig
}

// goldenModules parses the 22 published modules, filled, and the seed kvm
// module.
func goldenModules(t *testing.T) map[string]goldenModule {
	t.Helper()
	corpus := testenv.CorpusDir(t)
	out := map[string]goldenModule{}
	for _, m := range corpusModules {
		data, scripts := readModule(t, filepath.Join(corpus, "modules", m.OS, m.Name+".safe"))
		out[m.key()] = goldenModule{m.OS + "-" + m.Name + ".json", m.parse(t, m.filled(t, data), scripts)}
	}
	data, err := os.ReadFile(filepath.Join(corpus, "seed-kvm", "conf", "userconfig.xml"))
	if err != nil {
		t.Fatal(err)
	}
	out["seed-kvm"] = goldenModule{"seed-kvm.json",
		ParseUserconfig(data, Options{Cluster: testCluster(t), Scripts: seedKVMScripts(t, corpus)})}
	return out
}

func TestGoldenConfig(t *testing.T) {
	for key, m := range goldenModules(t) {
		t.Run(key, func(t *testing.T) {
			if errs := m.u.Diags.Errors(); len(errs) > 0 {
				t.Fatalf("the module does not validate: %v", errs)
			}
			got, err := json.MarshalIndent(m.u.Config, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", m.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./safe -run TestGoldenConfig -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the typed configuration differs from %s (run go test ./safe -run TestGoldenConfig -update and review the diff):\n%s", path, got)
			}
		})
	}
}

// TestExpandedDocument looks at Userconfig.Expanded, the content of
// safeconf.xml, where module scripts find their values: Evidian's scripts
// read it with XPath such as //user/var[@name='SERVICES']/@value.
func TestExpandedDocument(t *testing.T) {
	modules := goldenModules(t)
	tests := []struct {
		module, path, attr, want string
	}{
		{"linux/mirror", "//user/var[@name='SERVICES']", "value", "svc1,svc2"},
		{"windows/mirror", "//user/var[@name='SERVICES']", "value", "svc1,svc2"},
		{"linux/kvm", "//user/var[@name='VM_PATH']", "value", "/var/lib/libvirt/images/vm1"},
		{"linux/kvm", "//rfs/replicated", "dir", "/var/lib/libvirt/images/vm1"},
		{"linux/kvm", "//check/custom", "ident", "vm1_check"},
		{"linux/kvm", "//check/custom", "arg", "vm1"},
		{"linux/k3s", "//errd/proc", "name", "mariadbd"},
		{"linux/apache_farm", "//check/tcp/to", "port", "80"},
		{"linux/apache_farm", "//vip//virtual_addr", "addr", corpus.TestVIP},
		{"windows/hyperv", "//rfs/replicated", "dir", `C:\Hyper-V\vm1`},
		{"windows/hyperv", "//user/var[@name='NORMAL_STOP']", "value", "stop"},
		{"seed-kvm", "//user/var[@name='VM_PATH']", "value", "/var/lib/libvirt/images/vm1"},
		// Names are not resolved in safeconf.xml: the empty heartbeat name
		// stays as written; the typed Config carries the lan it means.
		{"seed-kvm", "//heart/heartbeat", "name", ""},
		// The macros themselves are kept.
		{"linux/mirror", "//macro[@name='SERVICES']", "value", "svc1,svc2"},
	}
	for _, tt := range tests {
		m, ok := modules[tt.module]
		if !ok {
			t.Fatalf("no module %s", tt.module)
		}
		e := m.u.Expanded.FindElement(tt.path)
		if e == nil {
			t.Errorf("%s: no element %s in the expanded document", tt.module, tt.path)
			continue
		}
		if got := e.SelectAttrValue(tt.attr, "<absent>"); got != tt.want {
			t.Errorf("%s: %s/@%s = %q; want %q", tt.module, tt.path, tt.attr, got, tt.want)
		}
	}
	// The document as written keeps the references.
	if got := modules["linux/kvm"].u.Doc.FindElement("//user/var[@name='VM_PATH']").SelectAttrValue("value", ""); got != "%VM_PATH%/%VM_NAME%" {
		t.Errorf("linux/kvm: Doc keeps %q; want the reference as written", got)
	}
	if got := modules["seed-kvm"].u.Config.Heart.Heartbeats[0].Lan; got != "default" {
		t.Errorf("seed-kvm: heartbeat lan %q; want the first lan of cluster.xml", got)
	}
}

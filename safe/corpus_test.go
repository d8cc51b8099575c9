package safe

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/internal/corpus"
	"github.com/safekit-oss/safekit/internal/testenv"
)

// The compat corpus holds third-party files: the tests read them in place
// and never copy them into the repository.

// corpusModule is one published .safe archive (see internal/corpus).
type corpusModule struct{ corpus.Module }

var corpusModules = func() []corpusModule {
	out := make([]corpusModule, len(corpus.Modules))
	for i, m := range corpus.Modules {
		out[i] = corpusModule{m}
	}
	return out
}()

func (m corpusModule) key() string { return m.Key() }

// readModule returns conf/userconfig.xml of a .safe archive and the names
// of the files directly under bin/.
func readModule(t *testing.T, path string) ([]byte, []string) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var conf []byte
	var scripts []string
	for _, f := range zr.File {
		if f.Name == "conf/userconfig.xml" {
			r, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			conf, err = io.ReadAll(r)
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
		}
		if name, ok := strings.CutPrefix(f.Name, "bin/"); ok && name != "" && !strings.Contains(name, "/") {
			scripts = append(scripts, name)
		}
	}
	if conf == nil {
		t.Fatalf("%s has no conf/userconfig.xml", path)
	}
	return conf, scripts
}

// filled applies the module's edits.
func (m corpusModule) filled(t *testing.T, data []byte) []byte {
	t.Helper()
	data, err := m.Filled(data)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (m corpusModule) parse(t *testing.T, data []byte, scripts []string) *Userconfig {
	t.Helper()
	return ParseUserconfig(data, Options{Cluster: testCluster(t), Scripts: scripts})
}

func TestCorpusModules(t *testing.T) {
	corpus := testenv.CorpusDir(t)
	archives, err := filepath.Glob(filepath.Join(corpus, "modules", "*", "*.safe"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, m := range corpusModules {
		known[filepath.Join(corpus, "modules", m.OS, m.Name+".safe")] = true
	}
	for _, a := range archives {
		if !known[a] {
			t.Errorf("%s has no row in corpusModules: decide what it must give", a)
		}
	}
	if len(archives) != len(corpusModules) {
		t.Errorf("%d archives in the corpus, %d rows in corpusModules", len(archives), len(corpusModules))
	}
	for _, m := range corpusModules {
		t.Run(m.key(), func(t *testing.T) {
			data, scripts := readModule(t, filepath.Join(corpus, "modules", m.OS, m.Name+".safe"))

			shipped := m.parse(t, data, scripts)
			if got := diagStrings(shipped.Diags.Errors()); !slices.Equal(got, m.Shipped) {
				t.Errorf("as shipped, errors:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(m.Shipped, "\n\t"))
			}

			u := m.parse(t, m.filled(t, data), scripts)
			if got := diagStrings(u.Diags.Errors()); len(got) > 0 {
				t.Errorf("filled, errors remain:\n\t%s", strings.Join(got, "\n\t"))
			}
			if u.Config.Windows != (m.OS == "windows") {
				t.Errorf("Config.Windows = %v for a %s module", u.Config.Windows, m.OS)
			}
			var winWarnings []string
			for _, d := range u.Diags.Warnings() {
				if strings.Contains(d.Msg, "Windows module") {
					winWarnings = append(winWarnings, d.String())
				}
			}
			var want []string
			if m.Windows != "" {
				want = []string{m.Windows}
			}
			if !slices.Equal(winWarnings, want) {
				t.Errorf("Windows warnings:\n\t%s\nwant:\n\t%s", strings.Join(winWarnings, "\n\t"), strings.Join(want, "\n\t"))
			}
		})
	}
}

// corpusFile is the decision for one configuration file of the corpus.
type corpusFile struct {
	// cluster is the corpus file to read as cluster.xml; "" for the test
	// cluster (lans default and private, nodes node1 and node2).
	cluster string
	// errors are the exact error diagnostics the file gets.
	errors []string
}

// corpusFiles has a row for every other file of the corpus. Files whose
// root element is <cluster> are read with ParseCluster, *.xml-fragment files
// with ParseFragment, the others with ParseUserconfig.
var corpusFiles = map[string]corpusFile{
	"seed-kvm/conf/userconfig.xml": {},

	"aws-quickstart/userconfig-farm.xml":           {},
	"aws-quickstart/userconfig-mirror-Linux.xml":   {},
	"aws-quickstart/userconfig-mirror-Windows.xml": {},
	// The Quick Start fills ${...} when it deploys; as stored, the addresses
	// are not addresses.
	"aws-quickstart/cluster-from-template.xml.txt": {errors: []string{
		"cluster-from-template.xml.txt:4:1: <node>: invalid value '${EIP1}' for the attribute addr (expected an IPv4 address, an IPv6 address or a host name)",
		"cluster-from-template.xml.txt:5:1: <node>: invalid value '${EIP2}' for the attribute addr (expected an IPv4 address, an IPv6 address or a host name)",
		"cluster-from-template.xml.txt:8:1: <node>: invalid value '${NetStack.Outputs.PrivateIp1}' for the attribute addr (expected an IPv4 address, an IPv6 address or a host name)",
		"cluster-from-template.xml.txt:9:1: <node>: invalid value '${NetStack.Outputs.PrivateIp2}' for the attribute addr (expected an IPv4 address, an IPv6 address or a host name)",
	}},

	"kb/SK-0025-rfs-notreplicated-path.xml-fragment":                         {},
	"kb/SK-0030-replicated-tocheck.xml-fragment":                             {},
	"kb/SK-0043-mirror-vip-vmac_invisible-with-legacy-farm-lan.xml-fragment": {},
	"kb/SK-0080-cluster-two-lans-legacy-console-framework-connect.xml":       {},
	"userguide-examples/15.1.2.1-mirror-vip-rfs.xml":                         {},
	"userguide-examples/15.1.2.2-mirror-dedicated-replication-network.xml":   {},
	"userguide-examples/15.12.1-vhost.xml":                                   {},
	"userguide-examples/15.2.2.2-farm-tcp-lb-rules.xml":                      {},
	"userguide-examples/15.2.2.3-farm-udp-lb-on_ipid.xml":                    {},
	// A farm of three nodes: the guide pairs it with the cluster.xml of §15.2.1.
	"userguide-examples/15.2.2.4-farm-power-groups.xml":                                  {cluster: "userguide-examples/fragments/15.2.1-cluster-three-nodes.xml"},
	"userguide-examples/15.3.1-hyperv-macros-vars.xml":                                   {},
	"userguide-examples/15.4.1-softerrd-errd.xml":                                        {},
	"userguide-examples/15.5-farm-tcp-checker.xml":                                       {},
	"userguide-examples/15.6-mirror-ping-checker.xml":                                    {},
	"userguide-examples/15.7.1-customchecker.xml":                                        {},
	"userguide-examples/15.9.1-farm-module-checker.xml":                                  {},
	"userguide-examples/fragments/12.1.1-cluster-nat-laddr.xml":                          {},
	"userguide-examples/fragments/12.1.1-cluster-two-lans.xml":                           {},
	"userguide-examples/fragments/15.1.1-cluster-default-private.xml":                    {},
	"userguide-examples/fragments/15.2.1-cluster-three-nodes.xml":                        {},
	"userguide-examples/fragments/13.1.1-service-loop_interval-no-unit.xml-fragment":     {},
	"userguide-examples/fragments/13.1.1-service-loop_interval-unit.xml-fragment":        {},
	"userguide-examples/fragments/13.10.1.1-errd-nameregex.xml-fragment":                 {},
	"userguide-examples/fragments/13.10.1.1-errd-proc.xml-fragment":                      {},
	"userguide-examples/fragments/13.10.1.2-errd-service.xml-fragment":                   {},
	"userguide-examples/fragments/13.10.1.3-errd-restart_services.xml-fragment":          {},
	"userguide-examples/fragments/13.10.1.3-errd-special-handler.xml-fragment":           {},
	"userguide-examples/fragments/13.11.3.1-ping.xml-fragment":                           {},
	"userguide-examples/fragments/13.11.3.2-custom-noaction-plus-failover.xml-fragment":  {},
	"userguide-examples/fragments/13.12.1-tcp.xml-fragment":                              {},
	"userguide-examples/fragments/13.13.1-ping.xml-fragment":                             {},
	"userguide-examples/fragments/13.14.1-intf.xml-fragment":                             {},
	"userguide-examples/fragments/13.15.1-ip.xml-fragment":                               {},
	"userguide-examples/fragments/13.16.1-custom-noaction-plus-failover.xml-fragment":    {},
	"userguide-examples/fragments/13.16.1-custom-stopstart.xml-fragment":                 {},
	"userguide-examples/fragments/13.17.1-module-http.xml-fragment":                      {},
	"userguide-examples/fragments/13.17.1-module-https.xml-fragment":                     {},
	"userguide-examples/fragments/13.18.1-splitbrain-two-witnesses.xml-fragment":         {},
	"userguide-examples/fragments/13.19.1-failover-legacy-language.xml-fragment":         {},
	"userguide-examples/fragments/13.19.1-failover-lua-disable-plus-legacy.xml-fragment": {},
	"userguide-examples/fragments/13.19.1-failover-lua.xml-fragment":                     {},
	"userguide-examples/fragments/13.19.4.2-default-failover-rules.xml-fragment":         {},
	"userguide-examples/fragments/13.3.1.1-service-mirror.xml-fragment":                  {},
	"userguide-examples/fragments/13.3.1.2-service-farm.xml-fragment":                    {},
	"userguide-examples/fragments/13.3.1.3-service-light.xml-fragment":                   {},
	"userguide-examples/fragments/13.4.1-heart-basic.xml-fragment":                       {},
	"userguide-examples/fragments/13.4.1-heart-flow.xml-fragment":                        {},
	"userguide-examples/fragments/13.5.1-farm.xml-fragment":                              {},
	"userguide-examples/fragments/13.6.1-vip-mirror.xml-fragment":                        {},
	"userguide-examples/fragments/13.6.2-vip-farm.xml-fragment":                          {},
	"userguide-examples/fragments/13.7.1-rfs-linux.xml-fragment":                         {},
	"userguide-examples/fragments/13.7.1-rfs-windows.xml-fragment":                       {},
	"userguide-examples/fragments/13.7.3-notreplicated-regex-except.xml-fragment":        {},
	"userguide-examples/fragments/13.7.3-notreplicated-regex-only.xml-fragment":          {},
	"userguide-examples/fragments/13.7.4.2-replicated-tocheck.xml-fragment":              {},
	"userguide-examples/fragments/13.8.1-user-var.xml-fragment":                          {},
	"userguide-examples/fragments/13.9.1-vhost.xml-fragment":                             {},
	"userguide-examples/fragments/15.10-generated-intf-checker.xml-fragment":             {},
	"userguide-examples/fragments/15.11-generated-ip-checker.xml-fragment":               {},
	"userguide-examples/fragments/15.9.2-follower-module-check-short.xml-fragment":       {},
	"userguide-examples/fragments/15.9.2-module-check-long.xml-fragment":                 {},
	"userguide-examples/fragments/4.2.10-heart-repli-flow.xml-fragment":                  {},
	"userguide-examples/fragments/4.2.10-vip-arpreroute-no-check.xml-fragment":           {},
	"userguide-examples/fragments/4.2.9-heart-two-heartbeats.xml-fragment":               {},

	// The guide's own mistakes, kept in the corpus on purpose.
	"userguide-examples/15.2.2.1-farm-vip-lb-MACRO-OUTSIDE-SAFE.xml": {errors: []string{
		"15.2.2.1-farm-vip-lb-MACRO-OUTSIDE-SAFE.xml:2:1: <macro>: <macro> is outside <safe>: an XML document has a single root element; move it inside <safe>, before <service>",
	}},
	"userguide-examples/15.2.2.5-farm-scriptcontrol-MACRO-OUTSIDE-SAFE.xml": {errors: []string{
		"15.2.2.5-farm-scriptcontrol-MACRO-OUTSIDE-SAFE.xml:2:1: <macro>: <macro> is outside <safe>: an XML document has a single root element; move it inside <safe>, before <service>",
	}},
	"userguide-examples/15.8-splitbrain-NESTED-CHECK.xml": {errors: []string{
		"15.8-splitbrain-NESTED-CHECK.xml:22:1: <check>: <check> is not allowed inside <check>: it belongs in <service>; remove the inner <check> and keep its content in the outer one",
	}},
	"userguide-examples/fragments/13.2.1-macro-DOC-TYPO-unclosed-service.xml-fragment": {errors: []string{
		"13.2.1-macro-DOC-TYPO-unclosed-service.xml-fragment:8:1: XML syntax error: invalid characters between </service and >",
	}},
}

// notConfiguration are the corpus files that are neither a module archive
// nor a configuration file.
var notConfiguration = []string{"README.md", "k3sconfig.sh.txt", "seed-kvm/bin/start_prim", "seed-kvm/bin/stop_prim"}

// guideMistake names the corpus files that keep an error of the guide.
var guideMistake = regexp.MustCompile(`-(MACRO-OUTSIDE-SAFE|NESTED-CHECK|DOC-TYPO-)`)

// rootElement is the name of the first element of data, or "".
func rootElement(data []byte) string {
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se.Name.Local
		}
	}
}

// parseCorpusFile reads one configuration file of the corpus the way its
// kind asks.
func parseCorpusFile(t *testing.T, corpus, rel string, f corpusFile) Diagnostics {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(corpus, rel))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{File: filepath.Base(rel), Cluster: testCluster(t)}
	if f.cluster != "" {
		cdata, err := os.ReadFile(filepath.Join(corpus, f.cluster))
		if err != nil {
			t.Fatal(err)
		}
		if opts.Cluster, _ = ParseCluster(cdata, f.cluster); opts.Cluster == nil {
			t.Fatalf("%s is not a usable cluster.xml", f.cluster)
		}
	}
	switch {
	case rootElement(data) == "cluster":
		_, diags := ParseCluster(data, opts.File)
		return diags
	case strings.HasSuffix(rel, ".xml-fragment"):
		return ParseFragment(data, opts).Diags
	case strings.HasPrefix(rel, "seed-kvm/"):
		opts.Scripts = seedKVMScripts(t, corpus)
	}
	return ParseUserconfig(data, opts).Diags
}

func seedKVMScripts(t *testing.T, corpus string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(corpus, "seed-kvm", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestCorpusFiles(t *testing.T) {
	corpus := testenv.CorpusDir(t)
	seen := map[string]bool{}
	err := filepath.WalkDir(corpus, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(corpus, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch _, row := corpusFiles[rel]; {
		case strings.HasPrefix(rel, "modules/"), slices.Contains(notConfiguration, rel):
			// TestCorpusModules, or nothing to parse
		case !row:
			t.Errorf("%s has no row in corpusFiles: decide what it must give", rel)
		default:
			seen[rel] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel := range corpusFiles {
		if !seen[rel] {
			t.Errorf("corpusFiles names %s, which the corpus does not have", rel)
		}
	}
	for rel, f := range corpusFiles {
		if !seen[rel] {
			continue
		}
		t.Run(rel, func(t *testing.T) {
			diags := parseCorpusFile(t, corpus, rel, f)
			if got := diagStrings(diags.Errors()); !slices.Equal(got, f.errors) {
				t.Errorf("errors:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(f.errors, "\n\t"))
			}
			if guideMistake.MatchString(rel) {
				errs := diags.Errors()
				if len(errs) == 0 || errs[0].Pos.Line == 0 {
					t.Errorf("a mistake of the guide must get a positioned error; got %v", errs)
				}
			}
		})
	}
}

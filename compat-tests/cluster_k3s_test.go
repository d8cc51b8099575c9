package compattests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/internal/testcluster"
	"github.com/safekit-oss/safekit/internal/testenv"
	"github.com/safekit-oss/safekit/safe/archive"
)

// testK3sSequence runs the SafeKit commands of Evidian's k3sconfig.sh (the
// compat corpus) as written, read from the file: the web service made
// unsecure on both nodes (its "prereq" part), then on node1 cluster
// create, cluster config, -H "*" -G, module install, the macros edited
// with sed, -H "*" -E, prim, waitstart ("first"), then on node2 waitstart
// through -H and start ("second"). The module is the project's mirror
// template with the three macros of k3s.safe, packed as k3s.safe: the
// application itself (k3s, MariaDB, NFS) is not what is tested.
func testK3sSequence(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(testenv.CorpusDir(t), "k3sconfig.sh.txt"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	prereq, first, second := k3sSection(t, text, "prereq"), k3sSection(t, text, "first"), k3sSection(t, text, "second")
	if len(prereq) != 1 || len(first) != 10 || len(second) != 2 {
		t.Fatalf("k3sconfig.sh: %d, %d and %d safekit lines in prereq, first and second, want 1, 10 and 2:\n%q\n%q\n%q", len(prereq), len(first), len(second), prereq, first, second)
	}
	dir := t.TempDir()
	packK3sModule(t, filepath.Join(dir, "k3s.safe"))

	c := newCluster(t, 2)
	n1, n2 := c.Node("node1"), c.Node("node2")
	vip := strings.TrimSuffix(n1.Addr("default"), ".11") + ".100"
	env := fmt.Sprintf("set -e\nexport NODE1IP=%s NODE2IP=%s VIRTUALIP=%s\n%s\ncd %s\n",
		n1.Addr("default"), n2.Addr("default"), vip, k3sExports(t, text, "STORAGEDIR", "NFSPROVDIR"), dir)
	runScript := func(n *testcluster.Node, name string, lines []string) string {
		t.Helper()
		script := filepath.Join(dir, name)
		body := "#!/bin/bash\n" + env + strings.Join(lines, "\n") + "\n"
		if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := n.Run("bash", "-x", script)
		if err != nil {
			t.Fatalf("%s: %s: %v\n%s\n--- stdout ---\n%s--- stderr ---\n%s", n.Name, name, err, body, stdout, stderr)
		}
		return stdout
	}

	for _, n := range c.Nodes {
		runScript(n, "prereq-"+n.Name+".sh", prereq)
	}
	out := runScript(n1, "first.sh", first)
	for _, want := range []string{"this node is node1", "this node is node2", "Module k3s configured"} {
		if !strings.Contains(out, want) {
			t.Errorf("the first part does not say %q:\n%s", want, out)
		}
	}
	waitState(t, n1, "k3s", "ALONE Ready")
	for _, n := range c.Nodes {
		conf := readFile(t, n.HostPath("/opt/safekit/modules/k3s/conf/userconfig.xml"))
		if !regexp.MustCompile(`<macro name="VIRTUALIP" +value="` + regexp.QuoteMeta(vip) + `"/>`).MatchString(conf) {
			t.Errorf("%s: the VIRTUALIP macro set with sed on node1 is not in its userconfig.xml:\n%s", n.Name, conf)
		}
	}

	t0 := time.Now()
	runScript(n2, "second.sh", second)
	waitState(t, n2, "k3s", "SECOND Ready")
	waitState(t, n1, "k3s", "PRIM Ready")
	wantLogged(t, n2, "k3s", t0, "Action start called by root", "Local state SECOND Ready")
	if log := readFile(t, filepath.Join(n2.Dir, "safekitd.log")); !strings.Contains(log, "UNSECURE web service") {
		t.Errorf("node2's daemon does not say its web service is unsecure")
	}
}

// k3sSection returns the SafeKit command lines of a part of k3sconfig.sh
// (from `if [ $1 == "first" ]; then` to the next part): those calling /opt/safekit/...,
// and the sed editing a module's configuration. The node name server0 of
// Evidian's cluster is node1 here.
func k3sSection(t *testing.T, text, name string) []string {
	t.Helper()
	start := strings.Index(text, `if [ $1 == "`+name+`" ]; then`)
	if start < 0 {
		t.Fatalf("k3sconfig.sh has no %q part", name)
	}
	body := text[start+1:]
	// The parts follow each other; an inner if has its own fi.
	if end := strings.Index(body, `if [ $1 == "`); end >= 0 {
		body = body[:end]
	}
	var out []string
	for _, l := range strings.Split(body, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "/opt/safekit/") || (strings.HasPrefix(l, "sed -i ") && strings.Contains(l, "/opt/safekit/modules/")) {
			out = append(out, strings.ReplaceAll(l, `"server0"`, `"node1"`))
		}
	}
	return out
}

// k3sExports returns the export lines of k3sconfig.sh for these names.
func k3sExports(t *testing.T, text string, names ...string) string {
	t.Helper()
	var out []string
	for _, name := range names {
		m := regexp.MustCompile(`(?m)^export ` + name + `=.*$`).FindString(text)
		if m == "" {
			t.Fatalf("k3sconfig.sh does not export %s", name)
		}
		out = append(out, m)
	}
	return strings.Join(out, "\n")
}

// packK3sModule packs the project's mirror template, with the macros of
// k3s.safe that k3sconfig.sh edits (as <var>s of the scripts), into file.
func packK3sModule(t *testing.T, file string) {
	t.Helper()
	src := filepath.Join(testenv.RepoRoot(), "modules", "templates", "mirror")
	dst := filepath.Join(t.TempDir(), "k3s")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dst, "conf", "userconfig.xml")
	s := readFile(t, conf)
	edited := strings.Replace(s, `<macro name="SERVICES" value=""/>`, `<macro name="SERVICES" value=""/>
  <macro name="STORAGEDIR" value="/var/SKreplicated-storage"/>
  <macro name="NFSPROVDIR" value="/var/SKexported-storage"/>
  <macro name="VIRTUALIP"  value=""/>`, 1)
	edited = strings.Replace(edited, `<var name="SERVICES" value="%SERVICES%"/>`, `<var name="SERVICES" value="%SERVICES%"/>
      <var name="STORAGEDIR" value="%STORAGEDIR%"/>
      <var name="NFSPROVDIR" value="%NFSPROVDIR%"/>
      <var name="VIRTUALIP" value="%VIRTUALIP%"/>`, 1)
	if strings.Count(edited, "STORAGEDIR") != 3 {
		t.Fatalf("the mirror template changed: cannot add the macros of k3s.safe to:\n%s", s)
	}
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := archive.WriteFile(file, dst); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

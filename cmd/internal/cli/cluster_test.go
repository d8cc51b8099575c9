package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/modules/clusterconf"
	"github.com/safekit-oss/safekit/modules/layout"
)

// node is a node without daemon, in a temporary directory.
func node(t *testing.T) layout.Roots {
	t.Helper()
	dir := t.TempDir()
	return layout.Roots{SAFE: filepath.Join(dir, "safe"), SAFEVAR: filepath.Join(dir, "var")}
}

// run runs safekit args on the node r.
func run(t *testing.T, r layout.Roots, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &Env{Stdout: &out, Stderr: &errb, Roots: r, Getenv: func(string) string { return "" }}
	return e.Run(args), out.String(), errb.String()
}

var confinfoRow = regexp.MustCompile(`(?m)^Node +Signature +Date +Lock\n(\S+) +([0-9a-f]{64}|-) +(\S+) +([01])\n$`)

// confinfo returns the signature and lock of `cluster confinfo`.
func confinfo(t *testing.T, r layout.Roots) (sig, lock string) {
	t.Helper()
	code, out, errs := run(t, r, "cluster", "confinfo")
	m := confinfoRow.FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("cluster confinfo: %d\n%s%s", code, out, errs)
	}
	return m[2], m[4]
}

func TestClusterConfig(t *testing.T) {
	r := node(t)
	if code, _, _ := run(t, r, "cluster", "create", "192.0.2.1", "192.0.2.2"); code != 0 {
		t.Fatal("cluster create")
	}
	if sig, lock := confinfo(t, r); sig == "-" || lock != "0" {
		// create writes cluster.xml; confinfo shows it before config too.
		t.Errorf("confinfo after create: %s %s", sig, lock)
	}
	code, out, errs := run(t, r, "cluster", "config")
	if code != 0 || !strings.Contains(out, "Cluster configuration applied on this node (signature ") {
		t.Fatalf("cluster config: %d %s%s", code, out, errs)
	}
	key1, err := clusterconf.Key(r)
	if err != nil || key1 == nil {
		t.Fatalf("cluster config made no key: %v", err)
	}
	sig1, _ := confinfo(t, r)

	// Each config makes a new key; lock refuses the next until unlock.
	if code, _, _ := run(t, r, "cluster", "config", "lock"); code != 0 {
		t.Fatal("cluster config lock")
	}
	sig2, lock := confinfo(t, r)
	if sig2 == sig1 || lock != "1" {
		t.Errorf("after config lock: signature %s (was %s), lock %s", sig2, sig1, lock)
	}
	if code, _, errs := run(t, r, "cluster", "config"); code != 1 || !strings.Contains(errs, "is locked: apply it with safekit cluster config [file] unlock") {
		t.Errorf("config of a locked node: %d %s", code, errs)
	}
	if code, _, _ := run(t, r, "cluster", "config", "unlock"); code != 0 {
		t.Fatal("cluster config unlock")
	}
	if _, lock := confinfo(t, r); lock != "0" {
		t.Error("unlock kept the lock")
	}

	// A broken file changes nothing.
	sig3, _ := confinfo(t, r)
	bad := filepath.Join(t.TempDir(), "bad.xml")
	os.WriteFile(bad, []byte("<cluster><lans><lan name=\"default\">\n<node name=\"n1\" addr=\"192.0.2.1\"/></lan></lans></cluster>"), 0o644)
	code, _, errs = run(t, r, "cluster", "config", bad)
	if code != 1 || !strings.Contains(errs, "bad.xml:1:") || !strings.Contains(errs, "the cluster configuration is unchanged") {
		t.Errorf("config of a broken file: %d %s", code, errs)
	}
	if sig, _ := confinfo(t, r); sig != sig3 {
		t.Error("a broken file changed the configuration")
	}

	// genkey and delkey change the signature; delkey leaves no key.
	run(t, r, "cluster", "genkey")
	if sig, _ := confinfo(t, r); sig == sig3 {
		t.Error("genkey kept the signature")
	}
	run(t, r, "cluster", "delkey")
	if k, _ := clusterconf.Key(r); k != nil {
		t.Error("delkey kept the key")
	}

	// A zip applies its cluster.xml and key.
	other := node(t)
	run(t, other, "cluster", "create", "192.0.2.7", "192.0.2.8")
	run(t, other, "cluster", "config")
	b, _ := clusterconf.Collect(other)
	data, _ := b.Zip()
	zipFile := filepath.Join(t.TempDir(), "cluster.zip")
	os.WriteFile(zipFile, data, 0o644)
	if code, out, errs := run(t, r, "cluster", "config", zipFile); code != 0 {
		t.Fatalf("config of a zip: %s%s", out, errs)
	}
	if s1, _ := confinfo(t, r); s1 != func() string { s, _ := confinfo(t, other); return s }() {
		t.Error("config of a zip: the signature differs from the node it comes from")
	}

	if code, _, _ := run(t, r, "cluster", "deconfig"); code != 0 {
		t.Fatal("cluster deconfig")
	}
	if sig, _ := confinfo(t, r); sig != "-" {
		t.Error("deconfig kept the configuration")
	}
	if entries, _ := os.ReadDir(r.ClusterDir()); len(entries) != 0 {
		t.Errorf("deconfig left %v", entries)
	}
}

func TestWebservercfg(t *testing.T) {
	r := node(t)
	code, out, errs := run(t, r, "webservercfg", "-rcmdpasswd", "pw1")
	if code != 0 || !strings.Contains(out, "Password of rcmdadmin, the user of distributed commands, set on this node") {
		t.Fatalf("-rcmdpasswd: %d %s%s", code, out, errs)
	}
	data, _ := os.ReadFile(filepath.Join(r.SAFE, "private", "conf", "rcmd"))
	if string(data) != "rcmdadmin:pw1\n" {
		t.Errorf("rcmd: %q", data)
	}
	if code, _, _ := run(t, r, "webservercfg", "-passwd", "pw2", "-user", "bob"); code != 0 {
		t.Fatal("-passwd")
	}
	users, _ := os.ReadFile(filepath.Join(r.SAFE, "web", "conf", "user.conf"))
	if !regexp.MustCompile(`^rcmdadmin:\$2y\$.*\nbob:\$2y\$`).Match(users) {
		t.Errorf("user.conf:\n%s", users)
	}
	code, _, errs = run(t, r, "webservercfg", "-unsecure")
	httpd, _ := os.ReadFile(filepath.Join(r.SAFE, "web", "conf", "httpd.conf"))
	if code != 0 || !strings.Contains(errs, "WARNING") || !strings.Contains(string(httpd), "Define unsecure\n") {
		t.Errorf("-unsecure: %d %s\n%s", code, errs, httpd)
	}
	run(t, r, "webservercfg", "-secure")
	httpd, _ = os.ReadFile(filepath.Join(r.SAFE, "web", "conf", "httpd.conf"))
	if strings.Contains(string(httpd), "unsecure") || !strings.Contains(string(httpd), "Define usefile\n") {
		t.Errorf("-secure:\n%s", httpd)
	}
	for _, args := range [][]string{{}, {"-secure", "-unsecure"}, {"-user", "bob"}, {"-rcmduser", "x"}, {"extra"}} {
		if code, _, _ := run(t, r, append([]string{"webservercfg"}, args...)...); code != ExitUsage {
			t.Errorf("webservercfg %q: exit %d, want %d", args, code, ExitUsage)
		}
	}
}

func TestDistributedRefusals(t *testing.T) {
	r := node(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-H", "*", "logview", "-m", "AM"}, "safekit logview is not supported with -H"},
		{[]string{"-H", "*", "-p"}, "safekit -p is not supported with -H"},
		{[]string{"-H", "*", "-r", "boundcmd"}, "safekit -r is not supported with -H"},
		{[]string{"-H", "*", "nosuch"}, `unknown command "nosuch"`},
		{[]string{"-H", "*"}, "no command after -H"},
		{[]string{"-H", "*", "-E"}, "-E needs the module"},
		{[]string{"-H", "*", "level"}, `-H "*" means every node of cluster.xml, and this node has none`},
	} {
		code, _, errs := run(t, r, tc.args...)
		if code != ExitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("safekit %q: exit %d %s, want %q", tc.args, code, errs, tc.want)
		}
	}
	// Without the credential of distributed commands nothing is sent.
	code, _, errs := run(t, r, "-H", "[http:1],127.0.0.1", "level")
	if code != ExitFailure || !strings.Contains(errs, "safekit webservercfg -rcmdpasswd pwd") {
		t.Errorf("no rcmd credential: %d %s", code, errs)
	}
}

package clusterconf

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
)

const clusterXML = `<cluster>
  <lans>
    <lan name="default">
      <node name="node1" addr="10.0.0.1"/>
      <node name="node2" addr="10.0.0.2"/>
    </lan>
  </lans>
</cluster>
`

func roots(t *testing.T) layout.Roots {
	t.Helper()
	dir := t.TempDir()
	return layout.Roots{SAFE: filepath.Join(dir, "safe"), SAFEVAR: filepath.Join(dir, "var")}
}

func TestKey(t *testing.T) {
	r := roots(t)
	if k, err := Key(r); k != nil || err != nil {
		t.Fatalf("no key: %x %v", k, err)
	}
	if err := GenKey(r); err != nil {
		t.Fatal(err)
	}
	k, err := Key(r)
	if err != nil || len(k) != KeySize {
		t.Fatalf("key %x %v", k, err)
	}
	if st, _ := os.Stat(KeyPath(r)); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	if err := GenKey(r); err != nil {
		t.Fatal(err)
	}
	if k2, _ := Key(r); bytes.Equal(k, k2) {
		t.Error("genkey made the same key")
	}
	if err := os.WriteFile(KeyPath(r), []byte("abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Key(r); err == nil || !strings.Contains(err.Error(), "safekit cluster genkey") {
		t.Errorf("a short key: %v", err)
	}
	if err := DelKey(r); err != nil {
		t.Fatal(err)
	}
	if k, err := Key(r); k != nil || err != nil {
		t.Errorf("after delkey: %x %v", k, err)
	}
}

func TestBundleRoundTrip(t *testing.T) {
	from, to := roots(t), roots(t)
	date := time.Date(2016, 5, 20, 17, 6, 45, 0, time.UTC)
	key, _ := NewKey()
	if err := Apply(from, &Bundle{XML: []byte(clusterXML), Key: key, Locked: true, Date: date}); err != nil {
		t.Fatal(err)
	}
	b, err := Collect(from)
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.Zip()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadZip(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := got.Check("cluster.xml"); err != nil {
		t.Fatal(err)
	}
	if err := Apply(to, got); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{XMLName, KeyName, LockName} {
		a, _ := os.ReadFile(filepath.Join(from.ClusterDir(), name))
		b, err := os.ReadFile(filepath.Join(to.ClusterDir(), name))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs after the trip: %v", name, err)
		}
	}
	i1, _ := ReadInfo(from)
	i2, _ := ReadInfo(to)
	if i1 != i2 || !i2.Date.Equal(date) || !i2.Locked || !i2.Keyed || len(i2.Signature) != 64 {
		t.Errorf("confinfo differs: %+v and %+v", i1, i2)
	}
	// A bundle without key nor lock removes them.
	if err := Apply(to, &Bundle{XML: []byte(clusterXML)}); err != nil {
		t.Fatal(err)
	}
	if i, _ := ReadInfo(to); i.Keyed || i.Locked || i.Signature == i1.Signature {
		t.Errorf("after a bundle without key: %+v", i)
	}
}

func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(content))
	}
	zw.Close()
	return buf.Bytes()
}

func TestReadZip(t *testing.T) {
	if b, err := ReadZip(zipOf(t, map[string]string{"cluster/cluster.xml": clusterXML})); err != nil || string(b.XML) != clusterXML || b.Key != nil {
		t.Errorf("cluster.zip with a folder: %v", err)
	}
	for _, tc := range []struct {
		data []byte
		want string
	}{
		{[]byte("not a zip"), "not a zip file"},
		{zipOf(t, map[string]string{"cluster.key": "00"}), "has no cluster.xml"},
		{zipOf(t, map[string]string{"cluster.xml": clusterXML, "passwd": "x"}), `unexpected file "passwd"`},
		{zipOf(t, map[string]string{"a/cluster.xml": clusterXML, "b/cluster.xml": clusterXML}), "cluster.xml appears twice"},
		{zipOf(t, map[string]string{"cluster.xml": strings.Repeat(" ", MaxBundle+1)}), "expands beyond"},
	} {
		if _, err := ReadZip(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadZip: %v, want %q", err, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	broken := &Bundle{XML: []byte("<cluster>\n  <lans>\n    <lan name=\"default\">\n      <node name=\"node1\" addr=\"10.0.0.1\"/>\n    </lan>\n  </lans>\n</cluster>\n"), Key: []byte("xyz")}
	_, diags, err := broken.Check("cluster.xml")
	if err == nil || !diags.HasErrors() {
		t.Fatal("a one-node cluster with a bad key passes")
	}
	if !strings.HasPrefix(diags[0].String(), "cluster.xml:3:") || !strings.Contains(err.Error(), "cluster.key: not a key") {
		t.Errorf("diagnostics %v, error %v", diags, err)
	}
}

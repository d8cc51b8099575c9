package cli

import (
	"archive/zip"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/safe/archive"
)

const dumpUserconfig = `<safe><service mode="light"><user/></service></safe>`

// dumpNode is a node with module m1 installed and configured, its files,
// four kept configurations, and a fake safekitd on its socket.
//
// dumpSecret marks the secrets; a word of its own, because the dump holds
// the process list of the machine, where any other command may say "secret".
const dumpSecret = "Zq7dumpsecretXk"

func dumpNode(t *testing.T) (layout.Roots, func()) {
	t.Helper()
	r := node(t)
	mod := r.Module("m1")
	files := map[string]string{
		mod.Userconfig(): dumpUserconfig,
		filepath.Join(mod.UserConf(), "userconfig.xml"):                           dumpUserconfig,
		filepath.Join(mod.UserBin(), "start_both"):                                "#!/bin/sh\n",
		filepath.Join(mod.UserVar(), "userlog_2026-11-25T100000_start_both.ulog"): "started\n",
		filepath.Join(mod.UserVar(), "state.json"):                                `{"state":"UP"}`,
		r.ClusterXML(): `<cluster><lans><lan name="default"><node name="node1" addr="192.0.2.1"/><node name="node2" addr="192.0.2.2"/></lan></lans></cluster>`,
		filepath.Join(r.ClusterDir(), "cluster.key"):       dumpSecret + "-key",
		filepath.Join(r.SAFE, "web", "conf", "httpd.conf"): "Define httpport 9010\n",
		filepath.Join(r.SAFE, "web", "conf", "user.conf"):  "admin:$2y$10$" + dumpSecret + "-hash\n",
	}
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(r.LastConfig(), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, day := range []string{"21", "22", "23", "24"} {
		if err := archive.WriteFile(filepath.Join(r.LastConfig(), "m1_2026-11-"+day+"_100000.safe"), mod.Dir()); err != nil {
			t.Fatal(err)
		}
	}
	entries := []modlog.Entry{
		{Seq: 1, Time: time.Now(), Origin: "heart", Level: "E", Msg: "Local state UP Ready"},
		{Seq: 2, Time: time.Now(), Origin: "heart", Level: "I", Msg: "a verbose line"},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/modules/m1/log", func(w http.ResponseWriter, req *http.Request) {
		out := entries[:1]
		if req.URL.Query().Get("verbose") == "1" {
			out = entries
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /v1/modules/m1/state", func(w http.ResponseWriter, req *http.Request) {
		json.NewEncoder(w).Encode(module.Snapshot{Module: "m1", State: "UP", Ready: "Ready", Resources: [][2]string{{"usersetting.checker", "on"}}})
	})
	mux.HandleFunc("GET /v1/cmdlog", func(w http.ResponseWriter, req *http.Request) {
		json.NewEncoder(w).Encode([]string{"| 2026-11-25 10:00:00.000000 |   safekit |       m1 |     1 | START | start -m m1"})
	})
	mux.HandleFunc("GET /v1/level", func(w http.ResponseWriter, req *http.Request) {
		json.NewEncoder(w).Encode(daemon.Level{Host: "h1", OS: "Debian", Version: "0.1.0", License: "open"})
	})
	mux.HandleFunc("GET /v1/modules", func(w http.ResponseWriter, req *http.Request) {
		json.NewEncoder(w).Encode([]daemon.ModuleInfo{{Name: "m1", ID: 1, Mode: "light", Configured: true, Running: true, State: "UP", Ready: "Ready"}})
	})
	mux.HandleFunc("GET /v1/node", func(w http.ResponseWriter, req *http.Request) {
		json.NewEncoder(w).Encode(daemon.Node{Name: "node1"})
	})
	sock := daemon.SocketPath(r)
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	stop := func() { srv.Close(); os.Remove(sock) }
	t.Cleanup(stop)
	return r, stop
}

func readDump(t *testing.T, dir, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		t.Errorf("dump: %v", err)
	}
	return string(data)
}

func TestDump(t *testing.T) {
	r, _ := dumpNode(t)
	code, out, errs := run(t, r, "dump", "-m", "m1")
	dir := strings.TrimSuffix(strings.TrimPrefix(out, "Dump of module m1 in "), "\n")
	if code != 0 || errs != "" || !strings.HasPrefix(filepath.Base(dir), "dump_2") || filepath.Dir(dir) != filepath.Join(r.SAFEVAR, "snapshot", "modules", "m1") {
		t.Fatalf("dump: %d %q %q", code, out, errs)
	}
	for rel, want := range map[string]string{
		"log.txt":            "Local state UP Ready",
		"logverbose.txt":     "a verbose line",
		"csv/logverbose.csv": "heart,I,a verbose line",
		"state.json":         `"state": "UP"`,
		"csv/resource.csv":   "usersetting.checker,on",
		"commandlog.txt":     "START | start -m m1",
		"csv/commandlog.csv": "2026-11-25 10:00:00.000000,safekit,m1,1,START,start -m m1",
		"csv/modules.csv":    "m1,1,light,true,true,UP,Ready",
		"level.txt":          "SafeKit: 0.1.0",
		"userlog/userlog_2026-11-25T100000_start_both.ulog": "started",
		"var/cluster/cluster.xml":                           `<node name="node2"`,
		"var/modules/m1/state.json":                         `{"state":"UP"}`,
		"web/httpd.conf":                                    "httpport 9010",
		"heartplug":                                         "==== uname -a",
		"healthcheck.txt":                                   "[TEST] cluster configuration\n[OK] nodes node1, node2",
		"ps.txt":                                            "PID",
	} {
		if got := readDump(t, dir, rel); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", rel, got, want)
		}
	}
	// No secret goes into a dump.
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if data, _ := os.ReadFile(p); strings.Contains(string(data), dumpSecret) {
			t.Errorf("%s holds a secret", p)
		}
		return nil
	})
	// Only the last 3 dumps are kept.
	for range 3 {
		if code, _, errs := run(t, r, "dump", "-m", "m1"); code != 0 {
			t.Fatal(errs)
		}
	}
	if got := datedEntries(filepath.Dir(dir), "dump_"); len(got) != snapshotKeep || got[0] == filepath.Base(dir) {
		t.Errorf("dumps kept: %q", got)
	}
	if code, _, errs := run(t, r, "dump", "-m", "nope"); code != 1 || !strings.Contains(errs, "module not installed: nope") {
		t.Errorf("dump of an unknown module: %d %s", code, errs)
	}
}

// TestDumpWithoutDaemon: the module log is read from its file, and what
// safekitd alone knows is said missing.
func TestDumpWithoutDaemon(t *testing.T) {
	r, stop := dumpNode(t)
	stop()
	s, err := modlog.Open(module.LogPath(r.Module("m1")), modlog.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Append(modlog.Entry{Origin: "heart", Level: "E", Msg: "from the file"})
	s.Close()
	code, out, errs := run(t, r, "dump", "-m", "m1")
	if code != 0 || !strings.Contains(errs, "warning: dump: state.json: safekitd is not running") {
		t.Fatalf("dump: %d %s %s", code, out, errs)
	}
	dir := strings.TrimSuffix(strings.TrimPrefix(out, "Dump of module m1 in "), "\n")
	if got := readDump(t, dir, "log.txt"); !strings.Contains(got, "from the file") {
		t.Errorf("log.txt: %q", got)
	}
	if got := readDump(t, dir, "errors.txt"); !strings.Contains(got, "state.json: safekitd is not running") {
		t.Errorf("errors.txt: %q", got)
	}
}

func TestSnapshot(t *testing.T) {
	r, _ := dumpNode(t)
	if code, _, errs := run(t, r, "snapshot", "-m", "m1", "relative.zip"); code != ExitUsage || !strings.Contains(errs, "absolute path") {
		t.Errorf("relative path: %d %s", code, errs)
	}
	file := filepath.Join(t.TempDir(), "snap.zip")
	code, out, errs := run(t, r, "snapshot", "-m", "m1", file)
	if code != 0 || out != "Snapshot of module m1 in "+file+"\n" {
		t.Fatalf("snapshot: %d %q %q", code, out, errs)
	}
	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	dirs := map[string]bool{}
	names := map[string]bool{}
	for _, f := range zr.File {
		names[f.Name] = true
		rest, ok := strings.CutPrefix(f.Name, "snapshot_node1_m1/m1/")
		if !ok {
			t.Fatalf("entry %s is not under snapshot_node1_m1/m1/", f.Name)
		}
		top, _, _ := strings.Cut(rest, "/")
		dirs[top] = true
	}
	var got []string
	for d := range dirs {
		got = append(got, d)
	}
	sort.Strings(got)
	if len(got) != 4 || got[0] != "config_2026_11_22_10_00_00" || got[2] != "config_2026_11_24_10_00_00" || !strings.HasPrefix(got[3], "dump_") {
		t.Errorf("snapshot holds %q, want the last 3 configurations and the dump", got)
	}
	for _, want := range []string{
		"snapshot_node1_m1/m1/config_2026_11_22_10_00_00/module/conf/userconfig.xml",
		"snapshot_node1_m1/m1/config_2026_11_24_10_00_00/private/conf/userconfig.xml",
		"snapshot_node1_m1/m1/" + got[3] + "/log.txt",
	} {
		if !names[want] {
			t.Errorf("no %s in the snapshot", want)
		}
	}
	if names["snapshot_node1_m1/m1/config_2026_11_22_10_00_00/private/conf/userconfig.xml"] {
		t.Error("an older configuration has the active one")
	}
}

package console

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/runtime/checkers"
	"github.com/safekit-oss/safekit/runtime/modlog"
	"github.com/safekit-oss/safekit/safe/archive"
)

const mirrorModule = `<safe>
  <macro name="DIR" value="/data"/>
  <service mode="mirror">
    <heart><heartbeat name="default"/></heart>
    <rfs><replicated dir="%DIR%"/></rfs>
    <user/>
  </service>
</safe>
`

func TestReads(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	writeTestFile(t, n.roots.ClusterXML(), `<cluster><lans><lan name="default"><node name="node1" addr="192.0.2.1"/><node name="node2" addr="192.0.2.2"/></lan></lans></cluster>`)
	m := n.addModule("m1", mirrorModule, true)
	writeTestFile(t, filepath.Join(n.roots.Module("m1").Bin(), "start_prim"), "#!/bin/sh\necho start\n")
	if err := os.Chmod(filepath.Join(n.roots.Module("m1").Bin(), "start_prim"), 0o755); err != nil {
		t.Fatal(err)
	}
	mon := n.login("mon")

	var cl ClusterInfo
	mon.json(http.MethodGet, "/api/v1.0/cluster", nil, http.StatusOK, &cl)
	if !cl.Configured || cl.Self != "node1" || len(cl.Nodes) != 2 || cl.Nodes[1].URL != "http://192.0.2.2:9010" || cl.Cluster == nil || !strings.Contains(cl.XML, "192.0.2.2") || cl.Signature == "" {
		t.Errorf("cluster: %+v", cl)
	}
	var mods Modules
	mon.json(http.MethodGet, "/api/v1.0/modules", nil, http.StatusOK, &mods)
	if mods.Node != "node1" || len(mods.Modules) != 1 || mods.Modules[0].State != "ALONE" || !mods.Modules[0].Running || mods.Modules[0].Mode != "mirror" || mods.Modules[0].Signature == "" {
		t.Errorf("modules: %+v", mods)
	}
	// bin/start_prim is saved, not applied: the row has the date of the
	// newest file of the installed configuration.
	saved := time.Date(2026, 11, 24, 8, 30, 0, 0, time.UTC)
	for f, mtime := range map[string]time.Time{
		filepath.Join(n.roots.Module("m1").Bin(), "start_prim"): saved,
		n.roots.Module("m1").Userconfig():                       saved.Add(-time.Hour),
	} {
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	mon.json(http.MethodGet, "/api/v1.0/modules", nil, http.StatusOK, &mods)
	if s := mods.Modules[0].Saved; s == nil || !s.Equal(saved) {
		t.Errorf("saved, not applied: %v", s)
	}
	// Applied: no saved date, even when a file is written again unchanged.
	writeTestFile(t, filepath.Join(n.roots.Module("m1").UserBin(), "start_prim"), "#!/bin/sh\necho start\n")
	if err := os.Chmod(filepath.Join(n.roots.Module("m1").UserBin(), "start_prim"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, n.roots.Module("m1").Userconfig(), mirrorModule)
	mods = Modules{}
	mon.json(http.MethodGet, "/api/v1.0/modules", nil, http.StatusOK, &mods)
	if s := mods.Modules[0].Saved; s != nil {
		t.Errorf("an applied configuration has a saved date: %v", s)
	}
	if err := os.Remove(filepath.Join(n.roots.Module("m1").UserBin(), "start_prim")); err != nil {
		t.Fatal(err)
	}

	// The log: the last n, or after a seq.
	for i := range 5 {
		appendLog(t, m, "E", fmt.Sprintf("line %d", i))
		appendLog(t, m, "I", fmt.Sprintf("verbose %d", i))
	}
	var entries []modlog.Entry
	mon.json(http.MethodGet, "/api/v1.0/modules/m1/log?n=2", nil, http.StatusOK, &entries)
	if len(entries) != 2 || entries[1].Msg != "line 4" {
		t.Errorf("log n=2: %+v", entries)
	}
	mon.json(http.MethodGet, "/api/v1.0/modules/m1/log?after=6&verbose=1&n=3", nil, http.StatusOK, &entries)
	if len(entries) != 3 || entries[0].Seq != 7 || entries[2].Seq != 9 {
		t.Errorf("log after=6 n=3: %+v", entries)
	}
	mon.json(http.MethodGet, "/api/v1.0/modules/m1/log?after=6", nil, http.StatusOK, &entries)
	if len(entries) != 2 || entries[0].Msg != "line 3" || entries[1].Msg != "line 4" {
		t.Errorf("log after=6: %+v", entries)
	}

	// Script logs, newest first.
	dir := n.roots.Module("m1").UserVar()
	for _, name := range []string{"userlog_2026-11-25T100000_start_prim.ulog", "userlog_2026-11-25T100000_start_prim_2.ulog", "userlog_2026-11-25T090000_stop_prim.ulog"} {
		writeTestFile(t, filepath.Join(dir, name), "output of "+name+"\n")
	}
	var logs []Userlog
	mon.json(http.MethodGet, "/api/v1.0/modules/m1/userlogs", nil, http.StatusOK, &logs)
	if len(logs) != 3 || logs[0].Name != "userlog_2026-11-25T100000_start_prim_2.ulog" || logs[0].Script != "start_prim" || logs[2].Script != "stop_prim" ||
		!logs[2].Time.Equal(time.Date(2026, 11, 25, 9, 0, 0, 0, time.Local)) {
		t.Errorf("userlogs: %+v", logs)
	}
	req := mon.request(http.MethodGet, "/api/v1.0/modules/m1/userlogs/userlog_2026-11-25T090000_stop_prim.ulog", nil)
	req.Header.Set("Range", "bytes=0-5")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "output" {
		t.Errorf("userlog range: %d %q", resp.StatusCode, body)
	}

	// The configuration.
	var cfg ModuleConfig
	mon.json(http.MethodGet, "/api/v1.0/modules/m1/config", nil, http.StatusOK, &cfg)
	if cfg.Userconfig != mirrorModule || len(cfg.Macros) != 1 || len(cfg.Bin) != 1 || cfg.Bin[0].Name != "start_prim" || !cfg.Bin[0].Executable ||
		!cfg.Check.Valid || cfg.Config == nil || cfg.Config.RFS == nil || cfg.Config.RFS.Replicated[0].Dir != "/data" {
		t.Errorf("config: %+v", cfg)
	}
	code, data := mon.do(http.MethodGet, "/api/v1.0/modules/m1/files/conf/userconfig.xml", nil)
	if code != http.StatusOK || string(data) != mirrorModule {
		t.Errorf("userconfig.xml: %d %s", code, data)
	}
	if code, _ := mon.do(http.MethodGet, "/api/v1.0/modules/m1/files/bin/..", nil); code != http.StatusBadRequest && code != http.StatusNotFound {
		t.Errorf("bin/..: %d", code)
	}
	if code, _ := mon.do(http.MethodGet, "/api/v1.0/modules/m1/files/conf/safeconf.xml", nil); code != http.StatusNotFound {
		t.Errorf("a file outside bin/ and userconfig.xml: %d", code)
	}
	var ci ConfInfo
	mon.json(http.MethodGet, "/api/v1.0/modules/m1/confinfo", nil, http.StatusOK, &ci)
	if ci.Current.Signature == "" || ci.Active.Signature == "" || ci.Applied {
		t.Errorf("confinfo (bin/start_prim is not in the active configuration): %+v", ci)
	}

	// The probes. checkstate gives the start of the application, by which
	// the module checkers of other modules see a restart.
	started := time.Date(2026, 11, 25, 21, 39, 46, 718803000, time.UTC)
	m.mu.Lock()
	m.snap.Started = started
	m.mu.Unlock()
	var st CheckState
	n.anonymous().json(http.MethodGet, "/api/v1.0/modules/m1/checkstate", nil, http.StatusOK, &st)
	if st.State != "ALONE" || st.Ready != "Ready" || !st.Started.Equal(started) {
		t.Errorf("checkstate: %+v, want ALONE Ready started at %s", st, started)
	}
	// What the <module> checkers read of it.
	var ms checkers.ModuleState
	n.anonymous().json(http.MethodGet, "/api/v1.0/modules/m1/checkstate", nil, http.StatusOK, &ms)
	if !ms.Serving() || !ms.Started.Equal(started) {
		t.Errorf("checkstate read by a module checker: %+v", ms)
	}
	n.anonymous().json(http.MethodGet, "/api/v1.0/modules/nope/checkstate", nil, http.StatusNotFound, nil)
	if code, body := n.anonymous().do(http.MethodGet, "/var/modules/m1/ready.txt", nil); code != http.StatusOK || string(body) != "OK\n" {
		t.Errorf("ready.txt: %d %s", code, body)
	}
	m.set("SECOND", "Ready")
	if code, _ := n.anonymous().do(http.MethodGet, "/var/modules/m1/ready.txt", nil); code != http.StatusNotFound {
		t.Errorf("ready.txt of a secondary: %d", code)
	}
}

func TestConfigure(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", mirrorModule, false)
	admin := n.login("admin")
	mod := n.roots.Module("m1")

	// Files of the installed module.
	var check Check
	admin.json(http.MethodPut, "/api/v1.0/modules/m1/files/bin/start_prim", "#!/bin/sh\nexit 0\n", http.StatusOK, &check)
	if st, err := os.Stat(filepath.Join(mod.Bin(), "start_prim")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("new script: %v %v", st, err)
	}
	broken := strings.Replace(mirrorModule, `mode="mirror"`, `mode="mirrror"`, 1)
	admin.json(http.MethodPut, "/api/v1.0/modules/m1/files/conf/userconfig.xml", broken, http.StatusOK, &check)
	if check.Valid || len(check.Diagnostics) == 0 || check.Diagnostics[0].File != "conf/userconfig.xml" || check.Diagnostics[0].Line != 3 || check.Diagnostics[0].Element != "service" || check.Diagnostics[0].Attribute != "mode" {
		t.Errorf("check of a broken file: %+v", check)
	}
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/check", nil, http.StatusOK, &check)
	if check.Valid {
		t.Error("check of a broken file: valid")
	}
	admin.json(http.MethodPut, "/api/v1.0/modules/m1/files/conf/userconfig.xml", mirrorModule, http.StatusOK, &check)
	admin.json(http.MethodDelete, "/api/v1.0/modules/m1/files/bin/start_prim", nil, http.StatusOK, nil)
	admin.json(http.MethodDelete, "/api/v1.0/modules/m1/files/conf/userconfig.xml", nil, http.StatusBadRequest, nil)

	// The cluster (a new Check each time: an attribute left out by the
	// JSON must not be an earlier one).
	check = Check{}
	admin.json(http.MethodPost, "/api/v1.0/cluster/check", ClusterXML{XML: "<cluster><lans><lan name=\"default\">\n<node name=\"node1\" addr=\"192.0.2.1\"/>\n</lan></lans></cluster>"}, http.StatusOK, &check)
	if check.Valid || check.Diagnostics[0].Line == 0 || check.Diagnostics[0].Attribute != "" {
		t.Errorf("cluster check: %+v", check)
	}
	check = Check{}
	admin.json(http.MethodPost, "/api/v1.0/cluster/check", ClusterXML{XML: "<cluster><lans><lan name=\"default\">\n<node name=\"node1\" addr=\"192.0.2.1\"/>\n<node name=\"node2\" addr=\"\"/>\n</lan></lans></cluster>"}, http.StatusOK, &check)
	if check.Valid || len(check.Diagnostics) != 1 || check.Diagnostics[0].Line != 3 || check.Diagnostics[0].Element != "node" || check.Diagnostics[0].Attribute != "addr" {
		t.Errorf("cluster check of an empty address: %+v", check)
	}
	good := `<cluster><lans><lan name="default"><node name="node1" addr="192.0.2.1"/><node name="node2" addr="192.0.2.2"/></lan></lans></cluster>`
	admin.json(http.MethodPut, "/api/v1.0/cluster", ClusterXML{XML: "<cluster>"}, http.StatusUnprocessableEntity, nil)
	if _, err := os.Stat(n.roots.ClusterXML()); err == nil {
		t.Error("a broken cluster.xml was written")
	}
	admin.json(http.MethodPut, "/api/v1.0/cluster", ClusterXML{XML: good}, http.StatusOK, &check)
	if data, _ := os.ReadFile(n.roots.ClusterXML()); string(data) != good {
		t.Errorf("cluster.xml: %s", data)
	}

	// Install: from SAFE/Application_Modules, or uploaded.
	app := filepath.Join(n.roots.ApplicationModules(), "generic", "mirror.safe")
	src := filepath.Join(t.TempDir(), "src")
	writeTestFile(t, filepath.Join(src, "conf", "userconfig.xml"), mirrorModule)
	if err := os.MkdirAll(filepath.Dir(app), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := archive.WriteFile(app, src); err != nil {
		t.Fatal(err)
	}
	var apps map[string][]AppModule
	admin.json(http.MethodGet, "/api/v1.0/application_modules", nil, http.StatusOK, &apps)
	if len(apps["generic"]) != 1 || apps["generic"][0].Path != "generic/mirror.safe" || apps["backup"] == nil {
		t.Errorf("application modules: %+v", apps)
	}
	var res CommandResult
	admin.json(http.MethodPost, "/api/v1.0/modules/m2/install", Install{Source: "generic/mirror.safe"}, http.StatusOK, &res)
	admin.json(http.MethodPost, "/api/v1.0/modules/m2/install", Install{Source: "../../etc/passwd"}, http.StatusBadRequest, nil)
	var uploaded []byte
	n.runner = func(args []string, by string) Result {
		uploaded, _ = os.ReadFile(args[len(args)-1])
		return Result{}
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("reinstall", "1")
	fw, _ := mw.CreateFormFile("file", "m3.safe")
	appData, _ := os.ReadFile(app)
	fw.Write(appData)
	mw.Close()
	req := admin.request(http.MethodPost, "/api/v1.0/modules/m3/install", body.Bytes())
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("upload: %v %v", resp, err)
	}
	resp.Body.Close()
	n.runner = nil
	got := n.commands()
	if len(got) != 2 || strings.Join(got[0], " ") != "module install -m m2 "+app+" admin@127.0.0.1" ||
		strings.Join(got[1][:5], " ") != "module install -m m3 -r" || !bytes.Equal(uploaded, appData) {
		t.Errorf("installs ran %q", got)
	}
	if _, err := os.Stat(got[1][5]); err == nil {
		t.Error("the upload is left behind")
	}

	// The last configurations, and their restore.
	writeTestFile(t, filepath.Join(n.roots.LastConfig(), "m1_2026-11-25_100000.safe"), "zip")
	writeTestFile(t, filepath.Join(n.roots.LastConfig(), "m1_2026-11-24_100000.safe"), "zip")
	writeTestFile(t, filepath.Join(n.roots.LastConfig(), "m10_2026-11-24_100000.safe"), "zip")
	var lcs []LastConfig
	admin.json(http.MethodGet, "/api/v1.0/modules/m1/lastconfig", nil, http.StatusOK, &lcs)
	if len(lcs) != 2 || lcs[0].File != "m1_2026-11-25_100000.safe" {
		t.Errorf("lastconfig: %+v", lcs)
	}
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/restore", Restore{File: "m10_2026-11-24_100000.safe"}, http.StatusNotFound, nil)
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/restore", Restore{File: "m1_2026-11-24_100000.safe"}, http.StatusOK, nil)
	if got := n.commands(); len(got) != 1 || got[0][5] != filepath.Join(n.roots.LastConfig(), "m1_2026-11-24_100000.safe") {
		t.Errorf("restore ran %q", got)
	}

	// Control: actions and their arguments; a failure is a 409.
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "second", Arg: "fullsync"}, http.StatusOK, nil)
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "swap", Arg: "fullsync"}, http.StatusBadRequest, nil)
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "reboot"}, http.StatusBadRequest, nil)
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/settings", Setting{Name: "checker", On: false}, http.StatusOK, nil)
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/dump", nil, http.StatusOK, nil)
	n.runner = func(args []string, by string) Result {
		return Result{Stderr: "Error: module m1 is already stopped\n", Code: 1}
	}
	admin.json(http.MethodPost, "/api/v1.0/modules/m1/command", Command{Action: "stop"}, http.StatusConflict, &res)
	if res.OK || res.Output != "Error: module m1 is already stopped\n" {
		t.Errorf("failed command: %+v", res)
	}
	n.runner = nil
	want := []string{"second fullsync -m m1", "checker off -m m1", "dump -m m1", "stop -m m1"}
	got = n.commands()
	for i := range want {
		if i >= len(got) || strings.Join(got[i][:len(got[i])-1], " ") != want[i] {
			t.Errorf("commands %q, want %q", got, want)
			break
		}
	}
}

func TestDownloads(t *testing.T) {
	n := newTestNode(t, "node1", nodeOptions{})
	n.addModule("m1", mirrorModule, true)
	mon := n.login("mon")
	resp, err := http.DefaultClient.Do(mon.request(http.MethodGet, "/api/v1.0/modules/m1/download", nil))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ar, err := archive.Read(bytes.NewReader(data), int64(len(data)), archive.DefaultLimits)
	if err != nil || string(ar.Userconfig()) != mirrorModule || resp.Header.Get("Content-Disposition") != `attachment; filename="m1.safe"` {
		t.Errorf("download: %v %v", err, resp.Header)
	}

	// The snapshot is made by safekit snapshot, into the file it names.
	n.runner = func(args []string, by string) Result {
		if args[0] != "snapshot" {
			return Result{Code: 1}
		}
		f, _ := os.Create(args[len(args)-1])
		zw := zip.NewWriter(f)
		w, _ := zw.Create("snapshot_node1_m1/m1/dump_x/log.txt")
		w.Write([]byte("log"))
		zw.Close()
		f.Close()
		return Result{Stdout: "Snapshot\n"}
	}
	resp, err = http.DefaultClient.Do(mon.request(http.MethodGet, "/api/v1.0/modules/m1/snapshot", nil))
	if err != nil {
		t.Fatal(err)
	}
	data, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil || len(zr.File) != 1 || resp.Header.Get("Content-Disposition") != `attachment; filename="snapshot_node1_m1.zip"` {
		t.Errorf("snapshot: %v %v", err, resp.Header)
	}
	if got := n.commands(); len(got) != 1 || got[0][0] != "snapshot" || !filepath.IsAbs(got[0][3]) {
		t.Errorf("ran %q", got)
	}
}

// TestLogText: the whole module log as text, as safekit log prints it,
// also through another node.
func TestLogText(t *testing.T) {
	n1, n2 := twoNodes(t)
	m := n2.addModule("m1", lightModule, true)
	var want, wantVerbose strings.Builder
	for i := range 3000 {
		e := appendLog(t, m, "E", fmt.Sprintf("event %d", i))
		want.WriteString(e.String() + "\n")
		wantVerbose.WriteString(e.String() + "\n")
		e = appendLog(t, m, "I", fmt.Sprintf("detail %d", i))
		wantVerbose.WriteString(e.String() + "\n")
	}
	mon := n1.login("mon")
	for _, tc := range []struct {
		query, want, file string
	}{{"", want.String(), "m1_node2_log.txt"}, {"?verbose=1", wantVerbose.String(), "m1_node2_verbose_log.txt"}} {
		resp, err := http.DefaultClient.Do(mon.request(http.MethodGet, "/api/v1.0/nodes/node2/modules/m1/log.txt"+tc.query, nil))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != tc.want || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" ||
			resp.Header.Get("Content-Disposition") != `attachment; filename="`+tc.file+`"` {
			t.Errorf("log.txt%s: %d %v, %d bytes, want %d", tc.query, resp.StatusCode, resp.Header, len(body), len(tc.want))
		}
	}
	mon.json(http.MethodGet, "/api/v1.0/modules/nope/log.txt", nil, http.StatusNotFound, nil)
}

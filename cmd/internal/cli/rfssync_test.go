package cli

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/automaton"
	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/module"
)

// fakeDaemon answers module AM's state with snap and records the commands
// sent to it.
type fakeDaemon struct {
	roots layout.Roots
	mu    sync.Mutex
	snap  module.Snapshot
	got   []module.CommandRequest
}

func newFakeDaemon(t *testing.T) *fakeDaemon {
	t.Helper()
	f := &fakeDaemon{}
	f.roots = serveStandIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch r.URL.Path {
		case "/v1/modules/AM/command":
			var req module.CommandRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				t.Error(err)
			}
			f.got = append(f.got, req)
		case "/v1/modules/AM/state":
			json.NewEncoder(w).Encode(f.snap)
			return
		}
		w.Write([]byte("{}"))
	}))
	return f
}

// serveStandIn serves h as the daemon of new, empty roots (on its unix
// socket) until the end of the test, and returns the roots.
func serveStandIn(t *testing.T, h http.Handler) layout.Roots {
	t.Helper()
	roots := layout.Roots{SAFE: filepath.Join(t.TempDir(), "safe"), SAFEVAR: filepath.Join(t.TempDir(), "var")}
	sock := daemon.SocketPath(roots)
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return roots
}

// run runs safekit args and returns the exit code, its output and the
// commands the module got.
func (f *fakeDaemon) run(args ...string) (int, string, []module.CommandRequest) {
	f.mu.Lock()
	f.got = nil
	f.mu.Unlock()
	var out bytes.Buffer
	e := &Env{Stdout: &out, Stderr: &out, Roots: f.roots, Getenv: func(string) string { return "" }}
	code := e.Run(args)
	f.mu.Lock()
	defer f.mu.Unlock()
	return code, out.String(), f.got
}

// TestSyncDates: the date formats of secondforce -d (User's Guide
// §13.7.4.8): local time, or UTC with Z.
func TestSyncDates(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		in   string
		want time.Time // zero: refused
	}{
		{"2016-03-01", time.Date(2016, 3, 1, 0, 0, 0, 0, cet)},
		{"2016-03-01Z", time.Date(2016, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"2016-03-01 12:00:00", time.Date(2016, 3, 1, 12, 0, 0, 0, cet)},
		{"2016-03-01 12:00:00Z", time.Date(2016, 3, 1, 12, 0, 0, 0, time.UTC)},
		{"2016-03-01T12:00:00", time.Date(2016, 3, 1, 12, 0, 0, 0, cet)},
		{"2016-03-01T12:00:00Z", time.Date(2016, 3, 1, 12, 0, 0, 0, time.UTC)},
		{"2016-03-01T23:59:59", time.Date(2016, 3, 1, 23, 59, 59, 0, cet)},
		{"", time.Time{}},
		{"Z", time.Time{}},
		{"2016-3-1", time.Time{}},
		{"2016-03-01 12:00", time.Time{}},
		{"2016-03-01T12:00:00+01:00", time.Time{}},
		{"2016-03-01ZZ", time.Time{}},
		{"2016-02-30", time.Time{}},
		{"01/03/2016", time.Time{}},
		{" 2016-03-01", time.Time{}},
	} {
		got, err := parseSyncDate(tc.in, cet)
		switch {
		case tc.want.IsZero() && err == nil:
			t.Errorf("%q: %v, want an error", tc.in, got)
		case tc.want.IsZero() && !strings.Contains(err.Error(), `YYYY-MM-DD[Z], "YYYY-MM-DD hh:mm:ss[Z]" or YYYY-MM-DDThh:mm:ss[Z]`):
			t.Errorf("%q: error %q does not give the formats", tc.in, err)
		case !tc.want.IsZero() && (err != nil || !got.Equal(tc.want) || got.Location() != tc.want.Location()):
			t.Errorf("%q: %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestRFSSyncAndSecondforceArguments: what reaches the module for each
// command line; a wrong one is a usage error, and nothing is sent.
func TestRFSSyncAndSecondforceArguments(t *testing.T) {
	f := newFakeDaemon(t)
	ext := func(role, uid string, d bool) module.CommandRequest {
		return module.CommandRequest{Action: "rfssync", Sync: automaton.SyncPolicy{Mode: "external", Role: role, UID: uid, NoDetect: d}}
	}
	local := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		args []string
		want *module.CommandRequest // nil: a usage error, with this in its message
		msg  string
	}{
		{args: []string{"rfssync", "full", "-m", "AM"}, want: &module.CommandRequest{Action: "rfssync", Sync: automaton.SyncPolicy{Mode: "full"}}},
		{args: []string{"rfssync", "external", "prim", "bk-2024.01", "-m", "AM"}, want: ptr(ext("prim", "bk-2024.01", false))},
		{args: []string{"rfssync", "-m", "AM", "external", "second", "bk1"}, want: ptr(ext("second", "bk1", false))},
		{args: []string{"rfssync", "-d", "second", "bk1", "-m", "AM"}, want: ptr(ext("second", "bk1", true))},
		{args: []string{"rfssync", "-d", "external", "prim", "123456789012345678901234", "-m", "AM"}, want: ptr(ext("prim", "123456789012345678901234", true))},
		{args: []string{"secondforce", "-d", "2016-03-01T12:00:00Z", "-m", "AM"}, want: &module.CommandRequest{Action: "secondforce", Since: time.Date(2016, 3, 1, 12, 0, 0, 0, time.UTC)}},
		{args: []string{"secondforce", "-m", "AM", "-d", "2016-03-01 12:00:00"}, want: &module.CommandRequest{Action: "secondforce", Since: local("2016-03-01 12:00:00")}},
		{args: []string{"secondforce", "-d", "2016-03-01", "-m", "AM"}, want: &module.CommandRequest{Action: "secondforce", Since: local("2016-03-01 00:00:00")}},

		{args: []string{"rfssync", "external", "prim", "1234567890123456789012345", "-m", "AM"}, msg: "has 25 characters: at most 24"},
		{args: []string{"rfssync", "external", "primary", "bk1", "-m", "AM"}, msg: `role "primary": prim (the node backed up) or second`},
		{args: []string{"rfssync", "external", "prim", "-m", "AM"}, msg: "needs the role of this node"},
		{args: []string{"rfssync", "external", "prim", "a b", "-m", "AM"}, msg: "without spaces"},
		{args: []string{"rfssync", "external", "prim", "a", "b", "-m", "AM"}, msg: "needs the role of this node"},
		{args: []string{"rfssync", "-d", "second", "-m", "AM"}, msg: "needs the role of this node"},
		{args: []string{"rfssync", "-d", "full", "-m", "AM"}, msg: "-d applies to the external policy"},
		{args: []string{"rfssync", "full", "now", "-m", "AM"}, msg: `unexpected argument "now" after full`},
		{args: []string{"rfssync", "default", "-m", "AM"}, msg: `unknown policy "default"`},
		{args: []string{"rfssync", "full"}, msg: "no module given"},
		{args: []string{"secondforce", "-m", "AM"}, msg: "secondforce needs -d <date>"},
		{args: []string{"secondforce", "-d", "yesterday", "-m", "AM"}, msg: `date "yesterday": use YYYY-MM-DD[Z]`},
		{args: []string{"secondforce", "-d", "2016-03-01", "fullsync", "-m", "AM"}, msg: `unexpected argument "fullsync"`},
		{args: []string{"secondforce", "-d"}, msg: "option -d needs a value"},
	} {
		name := strings.Join(tc.args, " ")
		code, out, sent := f.run(tc.args...)
		if tc.want == nil {
			if code != ExitUsage || len(sent) != 0 || !strings.Contains(out, tc.msg) || !strings.Contains(out, "usage: safekit "+tc.args[0]) {
				t.Errorf("safekit %s: exit %d, sent %+v, said %q; want a usage error saying %q and nothing sent", name, code, sent, out, tc.msg)
			}
			continue
		}
		if code != ExitOK || len(sent) != 1 {
			t.Errorf("safekit %s: exit %d, sent %+v\n%s", name, code, sent, out)
			continue
		}
		got := sent[0]
		if got.Action != tc.want.Action || got.Sync != tc.want.Sync || !got.Since.Equal(tc.want.Since) || got.By == "" {
			t.Errorf("safekit %s: the module got %+v, want %+v", name, got, *tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestRFSSyncShow: safekit rfssync without a policy prints the policy
// from the module's resources, and refuses a module without <rfs>.
func TestRFSSyncShow(t *testing.T) {
	f := newFakeDaemon(t)
	res := func(mode, role, uid, ok string) [][2]string {
		return [][2]string{{"rfs.rfssync", ok}, {"state.local", "STOP"}, {"usersetting.rfssyncmode", mode},
			{"usersetting.rfssyncrole", role}, {"usersetting.rfssyncuid", uid}}
	}
	since := time.Date(2016, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		snap module.Snapshot
		code int
		want []string
	}{
		{"default", module.Snapshot{Resources: res("default", "default", "default", "up")}, ExitOK,
			[]string{"Synchronisation policy of module AM: default", "  usersetting.rfssyncmode  default\n", "  rfs.rfssync              up\n"}},
		{"full", module.Snapshot{Resources: res("full", "default", "default", "up")}, ExitOK,
			[]string{"Synchronisation policy of module AM: full (the next synchronisation copies every file whole)"}},
		{"external not matched, -d", module.Snapshot{Resources: res("external", "second", "bk1", "down"),
			Persisted: automaton.Persisted{Sync: automaton.SyncPolicy{Mode: "external", Role: "second", UID: "bk1", NoDetect: true}}}, ExitOK,
			[]string{"Synchronisation policy of module AM: external, role second, uid bk1", "  usersetting.rfssyncuid   bk1\n",
				"-d: no change detection between the backup or restore and the start (no effect here",
				"rfs.rfssync is down: the other node is not known, or its policy is not external prim bk1 (run safekit rfssync external prim bk1 -m AM there)"}},
		{"secondforce date", module.Snapshot{Resources: res("default", "default", "default", "up"), Persisted: automaton.Persisted{SyncSince: since}}, ExitOK,
			[]string{"secondforce -d: the next resynchronisation of this node copies the files modified since " + since.Local().Format("2006-01-02 15:04:05 MST")}},
		{"no rfs", module.Snapshot{Resources: [][2]string{{"state.local", "STOP"}}}, ExitFailure,
			[]string{"Error: module AM has no replicated directories (<rfs>)"}},
	} {
		f.mu.Lock()
		f.snap = tc.snap
		f.mu.Unlock()
		code, out, sent := f.run("rfssync", "-m", "AM")
		if code != tc.code || len(sent) != 0 {
			t.Errorf("%s: exit %d, sent %+v, want %d and nothing sent\n%s", tc.name, code, sent, tc.code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, out)
			}
		}
		if tc.name == "default" && strings.Contains(out, "-d:") {
			t.Errorf("default: -d shown although not given:\n%s", out)
		}
	}
}

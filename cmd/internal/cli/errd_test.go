package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/safekit-oss/safekit/runtime/module"
)

// TestErrd: what each form of safekit errd asks the module (through a
// stand-in daemon), what list prints, and the usage errors, which ask
// nothing.
func TestErrd(t *testing.T) {
	var mu sync.Mutex
	var got []string
	list := module.ErrdList{On: true, Procs: []module.ErrdProc{
		{Resource: "proc.mysqld", State: "up", Class: "prim", Action: "restart", What: "processes named mysqld", Monitored: true, Running: 2, AtLeast: 1, AtMax: -1},
		{Resource: "proc.myappli", State: "init", Class: "myappli", Action: "restart_myappli", What: "processes named myappli", Running: -1, AtLeast: 1, AtMax: -1},
	}}
	roots := serveStandIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.URL.Path, "/v1/modules/AM/") {
			mu.Lock()
			got = append(got, r.Method+" "+strings.TrimPrefix(r.URL.Path, "/v1/modules/AM")+" "+strings.TrimSpace(string(body)))
			mu.Unlock()
		}
		if r.URL.Path == "/v1/modules/AM/errd" {
			mu.Lock()
			defer mu.Unlock()
			json.NewEncoder(w).Encode(list)
			return
		}
		w.Write([]byte("{}"))
	}))

	run := func(args ...string) (int, string, []string) {
		mu.Lock()
		got = nil
		mu.Unlock()
		var out, errOut bytes.Buffer
		e := &Env{Stdout: &out, Stderr: &errOut, Roots: roots, Getenv: func(string) string { return "" }, By: "tester"}
		code := e.Run(args)
		mu.Lock()
		defer mu.Unlock()
		return code, out.String() + errOut.String(), got
	}
	for _, tc := range []struct {
		args []string
		code int
		sent string
	}{
		{[]string{"errd", "enable", "myappli", "-m", "AM"}, ExitOK, `POST /errd/class {"class":"myappli","on":true,"by":"tester"}`},
		{[]string{"errd", "disable", "myappli", "-m", "AM"}, ExitOK, `POST /errd/class {"class":"myappli","on":false,"by":"tester"}`},
		{[]string{"errd", "off", "-m", "AM"}, ExitOK, `POST /setting {"name":"errd","on":false,"by":"tester"}`},
		{[]string{"errd", "on", "-m", "AM"}, ExitOK, `POST /setting {"name":"errd","on":true,"by":"tester"}`},
		{[]string{"errd", "suspend", "-m", "AM"}, ExitOK, `POST /setting {"name":"errd","on":false,"by":"tester"}`},
		{[]string{"errd", "resume", "-m", "AM"}, ExitOK, `POST /setting {"name":"errd","on":true,"by":"tester"}`},
		{[]string{"errd", "enable", "-m", "AM"}, ExitUsage, ""},
		{[]string{"errd", "enable", "a", "b", "-m", "AM"}, ExitUsage, ""},
		{[]string{"errd", "pause", "-m", "AM"}, ExitUsage, ""},
		{[]string{"errd", "-m", "AM"}, ExitUsage, ""},
		{[]string{"errd", "on", "now", "-m", "AM"}, ExitUsage, ""},
	} {
		code, out, sent := run(tc.args...)
		name := strings.Join(tc.args, " ")
		if code != tc.code {
			t.Errorf("safekit %s: exit code %d, want %d\n%s", name, code, tc.code, out)
		}
		if want := []string{tc.sent}; (tc.sent == "" && len(sent) != 0) || (tc.sent != "" && strings.Join(sent, "\n") != strings.Join(want, "\n")) {
			t.Errorf("safekit %s: sent %q, want %q", name, sent, tc.sent)
		}
	}

	code, out, _ := run("errd", "list", "-m", "AM")
	want := `Process monitoring of AM: on
RESOURCE      STATE  CLASS    MONITORED  RUNNING  ATLEAST  ATMAX  ACTION           WHAT
proc.mysqld   up     prim     yes        2        1        -1     restart          processes named mysqld
proc.myappli  init   myappli  no         -        1        -1     restart_myappli  processes named myappli
`
	if code != ExitOK || out != want {
		t.Errorf("safekit errd list: exit %d\n%s\nwant:\n%s", code, out, want)
	}
	mu.Lock()
	list.On = false
	mu.Unlock()
	if _, out, _ := run("errd", "list", "-m", "AM"); !strings.HasPrefix(out, "Process monitoring of AM: off: nothing is monitored (safekit errd on -m AM)\n") {
		t.Errorf("safekit errd list with errd off:\n%s", out)
	}
}

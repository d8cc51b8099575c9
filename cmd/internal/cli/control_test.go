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

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/module"
)

// TestControlArgument: the word after prim, primforce and second
// (fullsync) reaches the module; any other word is a usage error, before
// the daemon is asked anything.
func TestControlArgument(t *testing.T) {
	roots := layout.Roots{SAFE: filepath.Join(t.TempDir(), "safe"), SAFEVAR: filepath.Join(t.TempDir(), "var")}
	sock := daemon.SocketPath(roots)
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []module.CommandRequest
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/modules/AM/command" {
			var req module.CommandRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				t.Error(err)
			}
			mu.Lock()
			got = append(got, req)
			mu.Unlock()
		}
		w.Write([]byte("{}"))
	})}
	go srv.Serve(l)
	defer srv.Close()

	for _, tc := range []struct {
		args []string
		code int
		want module.CommandRequest
	}{
		{[]string{"second", "fullsync", "-m", "AM"}, ExitOK, module.CommandRequest{Action: "second", Arg: "fullsync"}},
		{[]string{"prim", "-m", "AM", "fullsync"}, ExitOK, module.CommandRequest{Action: "prim", Arg: "fullsync"}},
		{[]string{"primforce", "-m", "AM"}, ExitOK, module.CommandRequest{Action: "primforce"}},
		{[]string{"start", "-m", "AM"}, ExitOK, module.CommandRequest{Action: "start"}},
		{[]string{"second", "fulsync", "-m", "AM"}, ExitUsage, module.CommandRequest{}},
		{[]string{"start", "fullsync", "-m", "AM"}, ExitUsage, module.CommandRequest{}},
	} {
		mu.Lock()
		got = nil
		mu.Unlock()
		var out, errOut bytes.Buffer
		e := &Env{Stdout: &out, Stderr: &errOut, Roots: roots, Getenv: func(string) string { return "" }}
		code := e.Run(tc.args)
		name := strings.Join(tc.args, " ")
		mu.Lock()
		sent := got
		mu.Unlock()
		if code != tc.code {
			t.Errorf("safekit %s: exit code %d, want %d\n%s%s", name, code, tc.code, out.String(), errOut.String())
			continue
		}
		if tc.code != ExitOK {
			if len(sent) != 0 || !strings.Contains(errOut.String(), "unexpected argument") {
				t.Errorf("safekit %s: sent %+v, said %q; want a usage error and nothing sent", name, sent, errOut.String())
			}
			continue
		}
		if len(sent) != 1 || sent[0].Action != tc.want.Action || sent[0].Arg != tc.want.Arg {
			t.Errorf("safekit %s: the module got %+v, want %+v", name, sent, tc.want)
		}
	}
}

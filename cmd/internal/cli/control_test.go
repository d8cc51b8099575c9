package cli

import (
	"strings"
	"testing"

	"github.com/safekit-oss/safekit/runtime/module"
)

// TestControlArgument: the word after prim, primforce and second
// (fullsync) reaches the module; any other word is a usage error, before
// the daemon is asked anything.
func TestControlArgument(t *testing.T) {
	f := newFakeDaemon(t)
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
		code, out, sent := f.run(tc.args...)
		name := strings.Join(tc.args, " ")
		if code != tc.code {
			t.Errorf("safekit %s: exit code %d, want %d\n%s", name, code, tc.code, out)
			continue
		}
		if tc.code != ExitOK {
			if len(sent) != 0 || !strings.Contains(out, "unexpected argument") {
				t.Errorf("safekit %s: sent %+v, said %q; want a usage error and nothing sent", name, sent, out)
			}
			continue
		}
		if len(sent) != 1 || sent[0].Action != tc.want.Action || sent[0].Arg != tc.want.Arg {
			t.Errorf("safekit %s: the module got %+v, want %+v", name, sent, tc.want)
		}
	}
}

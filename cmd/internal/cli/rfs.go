package cli

import (
	"context"
	"net/http"

	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/runtime/rfs"
)

func init() {
	register(&command{
		name:  "rfsverify",
		usage: "rfsverify -m AM",
		help:  "on the secondary (SECOND Ready): compare every replicated file with the primary's; exit 1 on a difference",
		flags: map[string]bool{"-m": true},
		run:   runRFSVerify,
	})
	register(&command{
		name:  "rfsdiff",
		usage: "rfsdiff -m AM",
		help:  "on the primary: what the resynchronisation of the secondary would copy",
		flags: map[string]bool{"-m": true},
		run:   runRFSDiff,
	})
}

func runRFSVerify(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["rfsverify"], "%v", err)
	}
	var resp module.VerifyResponse
	if err := e.daemon().do(context.Background(), http.MethodPost, "/v1/modules/"+name+"/rfs/verify", nil, &resp); err != nil {
		return e.fail(err)
	}
	if len(resp.Differences) == 0 {
		e.printf("No difference between the replicated directories of the secondary and the primary\n")
		return ExitOK
	}
	for _, d := range resp.Differences {
		e.printf("%s\n", d)
	}
	e.printf("%d difference(s): resynchronise with safekit stop -m %s then safekit second fullsync -m %s\n", len(resp.Differences), name, name)
	return ExitFailure
}

func runRFSDiff(e *Env, a *args) int {
	name, err := e.module(a)
	if err != nil {
		return e.usage(commands["rfsdiff"], "%v", err)
	}
	var rep rfs.DiffReport
	if err := e.daemon().do(context.Background(), http.MethodGet, "/v1/modules/"+name+"/rfs/diff", nil, &rep); err != nil {
		return e.fail(err)
	}
	if rep.Unusable {
		e.printf("The modification bitmaps are not usable (the primary did not stop cleanly): the next resynchronisation compares checksums of the files changed since the last synchronisation\n")
	}
	for _, f := range rep.Files {
		what := "modified zones"
		if f.Whole {
			what = "whole file"
		}
		e.printf("%12d  %s (%s)\n", f.Bytes, f.Path, what)
	}
	for _, p := range rep.Checksum {
		e.printf("%12s  %s (renamed: compared by checksums)\n", "?", p)
	}
	e.printf("Total: %d bytes to copy in %d file(s)\n", rep.Bytes, len(rep.Files))
	return ExitOK
}

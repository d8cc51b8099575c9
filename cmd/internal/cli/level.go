package cli

import (
	"context"
	"net/http"

	"github.com/safekit-oss/safekit/runtime/daemon"
)

func init() {
	register(&command{
		name:  "level",
		usage: "level [-m AM]",
		help:  "version of this node (with -m: and the output of the module's level script)",
		flags: map[string]bool{"-m": true},
		run: func(e *Env, a *args) int {
			var l daemon.Level
			if err := e.daemon().do(context.Background(), http.MethodGet, "/v1/level", nil, &l); err != nil {
				return e.fail(err)
			}
			e.printf("Host: %s\nOS: %s\nSafeKit: %s (safekit-oss)\nLicense: %s\n", l.Host, l.OS, l.Version, l.License)
			if name := a.get("-m"); name != "" {
				e.runInfoScript(name, "level")
			}
			return ExitOK
		},
	})
}

package daemon

import (
	"bytes"
	"net/http"
	"time"

	"github.com/safekit-oss/safekit/console"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/localsock"
)

// The web service of the node is the console's (package console): the
// API, the pages, the probes and the relay to the other nodes. The daemon
// gives it its roots, its local API (the one the safekit command uses),
// the Runner, and its handlers of the distributed commands.

// consoleBackend is the daemon as the console sees it.
type consoleBackend struct {
	d     *Daemon
	local *http.Client
}

func (b consoleBackend) Roots() layout.Roots { return b.d.o.Roots }

func (b consoleBackend) Local() *http.Client { return b.local }

// Run runs a command for a caller of the console, recorded in the command
// log as the distributed commands are.
func (b consoleBackend) Run(args []string, by string) console.Result {
	if b.d.o.Runner == nil {
		return console.Result{Stderr: "Error: this safekitd cannot run safekit commands\n", Code: 1}
	}
	var out, errb bytes.Buffer
	code := b.d.record(by, args, func() int { return b.d.o.Runner(args, by, &out, &errb) })
	return console.Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// newWeb builds the web service of the daemon.
func (d *Daemon) newWeb() (*console.Server, error) {
	return console.New(console.Config{
		Backend: consoleBackend{d: d, local: localsock.Client(SocketPath(d.o.Roots), 0)},
		Remote: console.Remote{
			CLI:     http.HandlerFunc(d.handleRemoteCLI),
			Cluster: http.HandlerFunc(d.handleClusterPush),
			Module:  http.HandlerFunc(d.handleModulePush),
		},
		UI:  d.o.UI,
		Log: d.log,
	})
}

// serveHTTPS serves the web service on the HTTPS port when httpd.conf
// configures it; the returned function stops it.
func (d *Daemon) serveHTTPS() func() {
	l, err := d.web.ListenTLS(d.o.Listen)
	if err != nil {
		d.log.Errorf("%v", err)
	}
	if l == nil {
		return func() {}
	}
	srv := &http.Server{Handler: d.webAPI(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	d.log.Infof("web service in HTTPS on %s; the HTTP port sends browsers there", l.Addr())
	return func() { srv.Close() }
}

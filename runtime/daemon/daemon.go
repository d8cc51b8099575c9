// Package daemon is safekitd: one process per node that owns the configured
// modules. It runs each module's runtime in a child process (package
// module), restarts it when it dies, routes the CLI's requests to it over a
// local socket that admits root and the safekit group, and stops every
// module cleanly when it is asked to end.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/safekit-oss/safekit/console"
	"github.com/safekit-oss/safekit/modules"
	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/cmdlog"
	"github.com/safekit-oss/safekit/runtime/localsock"
	"github.com/safekit-oss/safekit/runtime/module"
	"github.com/safekit-oss/safekit/runtime/webauth"
)

// Options of the daemon.
type Options struct {
	Roots layout.Roots
	// Listen is the TCP address of the web service (console, API, health
	// probe, peers, distributed commands): by default ":" and the httpport
	// of SAFE/web/conf/httpd.conf (9010).
	Listen string
	// Node is the name of this node in cluster.xml; empty: the node whose
	// address is one of this machine's.
	Node string
	// Runner runs the commands other nodes send (safekit -H); nil refuses
	// them.
	Runner Runner
	// Exe is the safekitd binary used for module processes.
	Exe string
	// CLI is the safekit binary installed as $SAFE/safekit.
	CLI string
	// ShAsBash: run "#!/bin/sh" scripts with bash.
	ShAsBash bool
	// Syslog: main module messages also go to syslog.
	Syslog bool
	// UI serves the pages of the web console (/console/...); nil: a page
	// that says this build has none.
	UI  http.Handler
	Log *logrus.Logger
}

// SocketPath is the CLI socket of a node.
func SocketPath(roots layout.Roots) string {
	return filepath.Join(roots.SAFEVAR, "run", "safekitd.sock")
}

// Daemon is a running safekitd.
type Daemon struct {
	o      Options
	log    *logrus.Logger
	cmdlog *cmdlog.Store
	web    *console.Server
	id     identity

	mu     sync.Mutex
	procs  map[string]*proc
	ending bool
}

// proc is one module process.
type proc struct {
	name     string
	cmd      *exec.Cmd
	exited   chan struct{}
	stopping bool
	client   *http.Client
	started  time.Time
}

// New prepares a daemon.
func New(o Options) (*Daemon, error) {
	if o.Log == nil {
		o.Log = logrus.New()
	}
	if o.Listen == "" {
		o.Listen = fmt.Sprintf(":%d", webauth.HTTPPort(o.Roots))
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.Exe = exe
	}
	d := &Daemon{o: o, log: o.Log, procs: map[string]*proc{}}
	web, err := d.newWeb()
	if err != nil {
		return nil, err
	}
	d.web = web
	return d, nil
}

// Run starts the modules and serves until ctx ends, then stops every module
// and returns.
func (d *Daemon) Run(ctx context.Context) error {
	r := d.o.Roots
	for _, dir := range []string{r.SAFE, r.SAFEVAR, filepath.Join(r.SAFEVAR, "run"), filepath.Join(r.SAFEVAR, "modules")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if err := d.installCommands(); err != nil {
		return fmt.Errorf("cannot install the safekit command: %w", err)
	}
	cl, err := cmdlog.Open(filepath.Join(r.SAFEVAR, "cmdlog.db"))
	if err != nil {
		return err
	}
	d.cmdlog = cl
	defer cl.Close()
	d.notePreviousRun()
	d.checkWebService()
	d.id.notified = d.node().ClusterSignature

	unixL, err := localsock.Listen(SocketPath(r), localsock.DefaultPolicy(), func(c *syscall.Ucred) {
		d.log.Warnf("refused a CLI connection from uid %d pid %d (not root nor in group safekit)", c.Uid, c.Pid)
	})
	if err != nil {
		return err
	}
	tcpL, err := net.Listen("tcp", d.o.Listen)
	if err != nil {
		unixL.Close()
		return fmt.Errorf("cannot listen on %s: %w (another safekitd running? use --listen)", d.o.Listen, err)
	}
	api := &http.Server{Handler: d.localAPI(), ReadHeaderTimeout: 10 * time.Second}
	web := &http.Server{Handler: d.webAPI(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = api.Serve(unixL) }()
	go func() { _ = web.Serve(tcpL) }()
	d.log.Infof("safekitd listening on %s and %s", SocketPath(r), tcpL.Addr())
	stopHTTPS := d.serveHTTPS()
	defer stopHTTPS()
	go d.watchCluster(ctx)

	infos, err := modules.NewManager(r, nil).List()
	if err != nil {
		d.log.Errorf("cannot list modules: %v", err)
	}
	for _, i := range infos {
		if i.Configured {
			d.spawn(i.Name, true)
		}
	}

	<-ctx.Done()
	d.log.Infof("safekitd ending: stopping the modules")
	d.shutdownModules(context.Background(), "SYSTEM")
	d.mu.Lock()
	d.ending = true
	d.mu.Unlock()
	d.stopAll()
	api.Close()
	web.Close()
	_ = os.Remove(SocketPath(r))
	_ = os.Remove(d.pidFile())
	return nil
}

func (d *Daemon) pidFile() string { return filepath.Join(d.o.Roots.SAFEVAR, "run", "safekitd.pid") }

// notePreviousRun records this daemon's pid and says when the previous one
// did not end cleanly (its pid file is still there).
func (d *Daemon) notePreviousRun() {
	if data, err := os.ReadFile(d.pidFile()); err == nil {
		d.log.Warnf("the previous safekitd (pid %s) did not stop cleanly: its modules are recovered (stop scripts with force for those that were running)", strings.TrimSpace(string(data)))
	}
	_ = os.WriteFile(d.pidFile(), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644)
}

// installCommands places the CLI at $SAFE/safekit and the special commands
// in SAFEBIN, as links to it (it dispatches on its name).
func (d *Daemon) installCommands() error {
	r := d.o.Roots
	if d.o.CLI == "" {
		return nil
	}
	src, err := filepath.Abs(d.o.CLI)
	if err != nil {
		return err
	}
	dst := r.SafekitCmd()
	if src != dst {
		if err := copyFile(src, dst, 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(r.SAFEBIN(), 0o755); err != nil {
		return err
	}
	for _, name := range SpecialCommands {
		link := filepath.Join(r.SAFEBIN(), name)
		_ = os.Remove(link)
		if err := os.Symlink(dst, link); err != nil {
			return err
		}
	}
	return nil
}

// SpecialCommands are the SAFEBIN commands published scripts call;
// webservercfg is how Evidian's k3sconfig.sh makes a node unsecure.
var SpecialCommands = []string{"xpathGet", "logI18nMSG", "boundcmd", "webservercfg"}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".new"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// spawn starts the module process of name.
func (d *Daemon) spawn(name string, boot bool) {
	node := d.node().Name
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ending {
		return
	}
	if p := d.procs[name]; p != nil && !p.stopping {
		return
	}
	args := []string{"module", "--name", name}
	if boot {
		args = append(args, "--boot")
	}
	if !d.o.ShAsBash {
		args = append(args, "--sh-as-bash=false")
	}
	if d.o.Syslog {
		args = append(args, "--syslog")
	}
	if node != "" {
		args = append(args, "--node", node)
	}
	cmd := exec.Command(d.o.Exe, args...)
	cmd.Env = append(os.Environ(), "SAFE="+d.o.Roots.SAFE, "SAFEVAR="+d.o.Roots.SAFEVAR)
	cmd.Stdout = d.log.WithField("module", name).WriterLevel(logrus.InfoLevel)
	cmd.Stderr = d.log.WithField("module", name).WriterLevel(logrus.WarnLevel)
	// The module process dies with the daemon: the next daemon recovers the
	// module, so that nothing runs unsupervised.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		d.log.Errorf("cannot start the process of module %s: %v", name, err)
		return
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{}), started: time.Now(),
		client: localsock.Client(module.SocketName(d.o.Roots, name), 0)}
	d.procs[name] = p
	go d.supervise(p)
}

// supervise waits for a module process and starts it again when it ended
// without being asked to.
func (d *Daemon) supervise(p *proc) {
	err := p.cmd.Wait()
	close(p.exited)
	d.mu.Lock()
	stopping, ending := p.stopping, d.ending
	if d.procs[p.name] == p {
		delete(d.procs, p.name)
	}
	d.mu.Unlock()
	if stopping || ending {
		return
	}
	// A process killed by a signal was running; one that exited by itself
	// soon after its start cannot start: do not spin on it.
	delay := time.Second
	if time.Since(p.started) < 10*time.Second && !killed(err) {
		delay = 10 * time.Second
	}
	d.log.Errorf("the process of module %s ended (%v): starting it again in %s", p.name, err, delay)
	time.Sleep(delay)
	if d.o.Roots.Module(p.name).Configured() {
		d.spawn(p.name, true)
	}
}

// killed tells whether a process ended by a signal.
func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}

// stopProc ends a module process (after its module is stopped) and waits.
func (d *Daemon) stopProc(name string) {
	d.mu.Lock()
	p := d.procs[name]
	if p != nil {
		p.stopping = true
	}
	d.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (d *Daemon) stopAll() {
	d.mu.Lock()
	names := make([]string, 0, len(d.procs))
	for n := range d.procs {
		names = append(names, n)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() { defer wg.Done(); d.stopProc(n) }()
	}
	wg.Wait()
}

// client returns the HTTP client of a running module process.
func (d *Daemon) client(name string) *http.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.procs[name]; p != nil && !p.stopping {
		return p.client
	}
	return nil
}

// moduleState asks a module process for its state.
func (d *Daemon) moduleState(ctx context.Context, name string) (*module.Snapshot, error) {
	c := d.client(name)
	if c == nil {
		return nil, fmt.Errorf("module %s has no running process", name)
	}
	var s module.Snapshot
	if err := getJSON(ctx, c, "http://local/state", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// shutdownModules stops every running module (safekit shutdown) and waits
// until they are all in STOP, saying every half minute which ones it still
// waits for (a stop script can take its time; systemd's TimeoutStopSec is
// the bound).
func (d *Daemon) shutdownModules(ctx context.Context, by string) {
	var mu sync.Mutex
	left := map[string]bool{}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				mu.Lock()
				names := slices.Sorted(maps.Keys(left))
				mu.Unlock()
				d.log.Infof("safekitd ending: still waiting for the modules %s to stop", strings.Join(names, " "))
			}
		}
	}()
	defer close(done)
	d.eachModule(func(name string, c *http.Client) {
		mu.Lock()
		left[name] = true
		mu.Unlock()
		body := strings.NewReader(fmt.Sprintf(`{"action":"shutdown","by":%q}`, by))
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://local/command", body)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
		waitStop(ctx, c)
		mu.Lock()
		delete(left, name)
		mu.Unlock()
	})
}

// eachModule calls f for every running module process at the same time,
// and returns when all calls have returned.
func (d *Daemon) eachModule(f func(name string, c *http.Client)) {
	d.mu.Lock()
	names := make([]string, 0, len(d.procs))
	for n := range d.procs {
		names = append(names, n)
	}
	d.mu.Unlock()
	sort.Strings(names)
	var wg sync.WaitGroup
	for _, name := range names {
		c := d.client(name)
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(name, c)
		}()
	}
	wg.Wait()
}

// waitStop follows a module's events until it rests in STOP.
func waitStop(ctx context.Context, c *http.Client) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://local/events", nil)
	resp, err := c.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var s module.Snapshot
		if err := dec.Decode(&s); err != nil {
			return
		}
		if s.State == "STOP" && !s.Busy {
			return
		}
	}
}

// proxy forwards a request to a module process.
func (d *Daemon) proxy(w http.ResponseWriter, r *http.Request, name, path string) {
	c := d.client(name)
	if c == nil {
		d.offline(w, r, name, path)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = &url.URL{Scheme: "http", Host: "local", Path: path, RawQuery: r.URL.RawQuery}
			pr.Out.Host = "local"
		},
		Transport:     c.Transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeErr(w, http.StatusServiceUnavailable, fmt.Errorf("module %s does not answer: %v", name, err))
		},
	}
	rp.ServeHTTP(w, r)
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, errorBody{Error: err.Error()})
}

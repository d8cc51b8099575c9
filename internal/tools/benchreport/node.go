package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/localsock"
	"github.com/safekit-oss/safekit/safe/archive"
)

// Bounds on the scratch node, far above what a healthy node takes.
const (
	readyTimeout = 20 * time.Second // from starting safekitd to its first answer
	cliTimeout   = 60 * time.Second // one safekit command (waitstart included)
	stopTimeout  = 60 * time.Second // from SIGTERM to the end of safekitd and its modules
	pollInterval = 20 * time.Millisecond
)

// lightUserconfig is the smallest module that runs: light, no scripts.
const lightUserconfig = `<safe><service mode="light"><user/></service></safe>`

// node is a scratch safekitd with its own SAFE and SAFEVAR under dir.
type node struct {
	bin    string // holds safekit and safekitd
	dir    string
	roots  layout.Roots
	web    string // host:port of the web service
	api    *http.Client
	daemon *exec.Cmd
	exited chan struct{} // closed once safekitd has ended
}

// startNode starts bin/safekitd on a new scratch directory and waits until
// it answers. On error nothing is left behind.
func startNode(ctx context.Context, bin string) (*node, error) {
	dir, err := os.MkdirTemp("", "benchreport-")
	if err != nil {
		return nil, fmt.Errorf("scratch node: %w", err)
	}
	n := &node{bin: bin, dir: dir, roots: layout.Roots{SAFE: filepath.Join(dir, "safe"), SAFEVAR: filepath.Join(dir, "var")}}
	n.api = localsock.Client(daemon.SocketPath(n.roots), cliTimeout)
	if err := n.startDaemon(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("scratch node: %w", err), n.stop())
	}
	return n, nil
}

func (n *node) env() []string {
	return append(os.Environ(), "SAFE="+n.roots.SAFE, "SAFEVAR="+n.roots.SAFEVAR)
}

func (n *node) logPath() string { return filepath.Join(n.dir, "safekitd.log") }

func (n *node) startDaemon(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	logf, err := os.Create(n.logPath())
	if err != nil {
		return err
	}
	defer logf.Close()
	n.web = "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(filepath.Join(n.bin, "safekitd"), "--listen", n.web, "--syslog=false")
	cmd.Env = n.env()
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group keeps a ^C away from it, so that stop ends it
	// in order; the parent-death signal ends it if benchreport is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start safekitd (run make build first): %w", err)
	}
	n.daemon, n.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.exited) }()

	deadline := time.Now().Add(readyTimeout)
	for {
		if _, err := n.call(ctx, http.MethodGet, "/v1/level", nil); err == nil {
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("safekitd ended: %s\n%s", cmd.ProcessState, n.daemonLog())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("safekitd does not answer on %s after %s:\n%s", daemon.SocketPath(n.roots), readyTimeout, n.daemonLog())
		}
	}
}

// freePort is a TCP port of 127.0.0.1 that nothing listens on (safekitd
// needs a number: it does not accept port 0).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (n *node) daemonLog() string {
	data, err := os.ReadFile(n.logPath())
	if err != nil {
		return err.Error()
	}
	return string(data)
}

// cli runs bin/safekit on the node and returns its output.
func (n *node) cli(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(n.bin, "safekit"), args...)
	cmd.Env = n.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("safekit %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// call sends a request to the daemon's local API and returns the body of
// its answer.
func (n *node) call(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := n.api.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
}

// addLightModule installs the light module name with id, configures and
// starts it, and waits until it is Ready.
func (n *node) addLightModule(ctx context.Context, name string, id int) error {
	src := filepath.Join(n.dir, "src", name)
	if err := os.MkdirAll(filepath.Join(src, "conf"), 0o755); err != nil {
		return fmt.Errorf("module %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(src, "conf", "userconfig.xml"), []byte(lightUserconfig), 0o644); err != nil {
		return fmt.Errorf("module %s: %w", name, err)
	}
	file := filepath.Join(n.dir, name+".safe")
	if err := archive.WriteFile(file, src); err != nil {
		return fmt.Errorf("module %s: %w", name, err)
	}
	for _, args := range [][]string{
		{"module", "install", "-m", name, "-M", strconv.Itoa(id), file},
		{"config", "-m", name},
		{"start", "-m", name},
		{"waitstart", "-m", name},
	} {
		if _, err := n.cli(ctx, args...); err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
	}
	return nil
}

// stop ends safekitd with SIGTERM, waits until it and its module processes
// are gone, and removes the scratch directory.
func (n *node) stop() error {
	var err error
	if n.daemon != nil {
		err = n.stopDaemon()
	}
	if rerr := os.RemoveAll(n.dir); rerr != nil {
		err = errors.Join(err, fmt.Errorf("remove the scratch node: %w", rerr))
	}
	return err
}

func (n *node) stopDaemon() error {
	var err error
	_ = n.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(stopTimeout):
		_ = n.daemon.Process.Kill()
		<-n.exited
		err = fmt.Errorf("stop the scratch node: safekitd did not end within %s of SIGTERM: killed it", stopTimeout)
	}
	// Module processes end with their daemon (parent-death signal).
	deadline := time.Now().Add(stopTimeout)
	for {
		procs, perr := nodeProcs(n.roots.SAFEVAR)
		if perr != nil {
			return errors.Join(err, fmt.Errorf("stop the scratch node: %w", perr))
		}
		if len(procs) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return errors.Join(err, fmt.Errorf("stop the scratch node: %d module processes still run after %s", len(procs), stopTimeout))
		}
		time.Sleep(pollInterval)
	}
}

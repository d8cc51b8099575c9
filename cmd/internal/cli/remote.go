package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/safekit-oss/safekit/modules/layout"
	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/webauth"
	"github.com/safekit-oss/safekit/safe"
)

// dialTimeout bounds the connection to a node's web service: past it the
// node is reported unreachable.
const dialTimeout = 5 * time.Second

// distributed recognises `safekit -H "<hosts>" <command...>` and the User's
// Guide form `safekit config -H "<hosts>" -E AM`.
func distributed(args []string) (hosts string, rest []string, ok bool) {
	switch {
	case args[0] == "-H" && len(args) >= 2:
		return args[1], args[2:], true
	case args[0] == "config" && len(args) >= 4 && args[1] == "-H" && args[3] == "-E":
		return args[2], args[3:], true
	}
	return "", nil, false
}

// RemoteRunner is the daemon's Runner: it runs the commands that other
// nodes send, in the daemon's process, with its roots and none of its
// environment.
func RemoteRunner(roots layout.Roots) daemon.Runner {
	return func(args []string, by string, stdout, stderr io.Writer) int {
		e := &Env{Stdout: stdout, Stderr: stderr, Roots: roots, Getenv: func(string) string { return "" }, By: by}
		return e.Run(args)
	}
}

const distributedUsage = `-H "<hosts>" <command> | -H "<hosts>" -G | -H "<hosts>" -E AM`

func (e *Env) distributedUsage(format string, args ...any) int {
	fmt.Fprintf(e.Stderr, "Error: "+format+"\n", args...)
	fmt.Fprintf(e.Stderr, "usage: safekit %s\n", distributedUsage)
	return ExitUsage
}

// runDistributed runs a command, -G or -E on the hosts.
func (e *Env) runDistributed(hosts string, rest []string) int {
	if len(rest) == 0 {
		return e.distributedUsage("no command after -H %q", hosts)
	}
	switch rest[0] {
	case "-G":
		if len(rest) != 1 {
			return e.distributedUsage("-G takes nothing more")
		}
	case "-E":
		if len(rest) != 2 {
			return e.distributedUsage("-E needs the module: -E AM")
		}
	default:
		if err := daemon.LocalOnly(rest); err != nil {
			return e.distributedUsage("%v", err)
		}
		if _, known := commands[rest[0]]; !known {
			return e.distributedUsage("unknown command %q; see safekit help", rest[0])
		}
	}
	conf := e.webConf()
	targets, err := e.targets(hosts, conf)
	if err != nil {
		return e.distributedUsage("%v", err)
	}
	c, err := e.remoteClient(conf)
	if err != nil {
		return e.fail(err)
	}
	switch rest[0] {
	case "-G":
		return e.exportCluster(c, targets)
	case "-E":
		return e.exportModule(c, targets, rest[1])
	}
	body, err := json.Marshal(daemon.RemoteCommand{Args: rest})
	if err != nil {
		return e.fail(err)
	}
	return e.onEach(targets, func(ctx context.Context, t target) (*daemon.RemoteResult, error) {
		var res daemon.RemoteResult
		err := c.call(ctx, http.MethodPost, t.URL+"/api/v1.0/cli", "application/json", func() (io.Reader, error) { return bytes.NewReader(body), nil }, &res)
		return &res, err
	})
}

// webConf reads this node's web service configuration, whose port and
// protocol -H uses for the other nodes.
func (e *Env) webConf() webauth.HTTPConf {
	conf, err := webauth.ReadHTTPConf(e.Roots)
	if err != nil {
		fmt.Fprintf(e.Stderr, "warning: %v; using port %d\n", err, conf.HTTPPort)
	}
	return conf
}

// targets resolves the -H argument with this node's cluster.xml and web
// service configuration.
func (e *Env) targets(hosts string, conf webauth.HTTPConf) ([]target, error) {
	var cl *safe.Cluster
	var diags safe.Diagnostics
	if data, err := os.ReadFile(e.Roots.ClusterXML()); err == nil {
		cl, diags = safe.ParseCluster(data, e.Roots.ClusterXML())
		if cl != nil && len(cl.Lans) == 0 {
			cl = nil
		}
	}
	ts, err := parseHosts(hosts, cl, "http", conf.HTTPPort)
	for _, t := range ts {
		if t.Node != "" && diags.HasErrors() {
			fmt.Fprintf(e.Stderr, "warning: %s has errors (safekit cluster confcheck %s); its nodes are used as they are\n", e.Roots.ClusterXML(), e.Roots.ClusterXML())
			break
		}
	}
	return ts, err
}

// remoteClient calls the web services of the nodes.
type remoteClient struct {
	http *http.Client
	// cred is sent with every request; nil when this node is unsecure.
	cred *webauth.Credential
}

// remoteClient authenticates with SAFE/private/conf/rcmd, or not at all
// when this node does not authenticate (unsecure: a lab cluster).
func (e *Env) remoteClient(conf webauth.HTTPConf) (*remoteClient, error) {
	c := &remoteClient{http: &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLSHandshakeTimeout: dialTimeout,
	}}}
	if conf.Unsecure {
		return c, nil
	}
	cred, err := webauth.ReadRcmd(e.Roots)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no credential for distributed commands on this node (%s): set the password of the other nodes with safekit webservercfg -rcmdpasswd pwd", webauth.RcmdFile(e.Roots))
	}
	if err != nil {
		return nil, err
	}
	c.cred = &cred
	return c, nil
}

// call sends a request to a node and decodes its JSON answer into out.
// body is called for each request so that it can be a file.
func (c *remoteClient) call(ctx context.Context, method, url, contentType string, body func() (io.Reader, error), out any) error {
	r, err := body()
	if err != nil {
		return err
	}
	if rc, ok := r.(io.Closer); ok {
		defer rc.Close()
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.cred != nil {
		req.SetBasicAuth(c.cred.User, c.cred.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %s", req.URL.Host, reason(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: %w", req.URL.Host, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized && c.cred == nil:
		return fmt.Errorf("%s requires authentication and this node is unsecure: set the same password on every node (safekit webservercfg -rcmdpasswd pwd) and run safekit webservercfg -secure here", req.URL.Host)
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("authentication refused by %s: the password of %s is not the same there: set the same one on every node with safekit webservercfg -rcmdpasswd pwd", req.URL.Host, c.cred.User)
	case resp.StatusCode/100 != 2:
		var eb struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return fmt.Errorf("%s: %s", req.URL.Host, eb.Error)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: unexpected answer (is it a safekitd web service?): %w", req.URL.Host, err)
	}
	return nil
}

// reason explains why a node could not be reached.
func reason(err error) string {
	var ne net.Error
	var dns *net.DNSError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (is safekitd running there, on this port?)"
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot resolve %s", dns.Name)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to host"
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("timeout: no answer within %s (node down, wrong address, or a firewall on the port)", dialTimeout)
	}
	return err.Error()
}

// onEach runs f on every target at once and prints, in the order of the
// targets, a banner, the node's output, then Success or the error. The
// exit code is the node's for one target, else 0 when every node
// succeeded and 1 otherwise.
func (e *Env) onEach(targets []target, f func(context.Context, target) (*daemon.RemoteResult, error)) int {
	type outcome struct {
		res  *daemon.RemoteResult
		err  error
		done chan struct{}
	}
	outs := make([]*outcome, len(targets))
	for i, t := range targets {
		o := &outcome{done: make(chan struct{})}
		outs[i] = o
		go func() {
			defer close(o.done)
			o.res, o.err = f(context.Background(), t)
		}()
	}
	code := ExitOK
	for i, t := range targets {
		o := outs[i]
		<-o.done
		e.printf("---------------- Server=%s ----------------\n", t.URL)
		if o.err != nil {
			fmt.Fprintf(e.Stderr, "Error: %v\n", o.err)
			code = ExitFailure
			continue
		}
		io.WriteString(e.Stdout, o.res.Stdout)
		io.WriteString(e.Stderr, o.res.Stderr)
		if o.res.Code == 0 {
			e.printf("Success\n")
			continue
		}
		fmt.Fprintf(e.Stderr, "Error: %s: exit code %d\n", t.URL, o.res.Code)
		code = ExitFailure
		if len(targets) == 1 {
			code = o.res.Code
		}
	}
	return code
}

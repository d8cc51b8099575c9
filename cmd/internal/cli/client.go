package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/safekit-oss/safekit/runtime/daemon"
	"github.com/safekit-oss/safekit/runtime/localsock"
)

// errDaemonDown explains how to get a daemon.
var errDaemonDown = errors.New("safekitd is not running on this node: start it (systemctl start safekit, or safekitd in a shell)")

// daemonClient talks to the local safekitd over its unix socket.
type daemonClient struct {
	http *http.Client
	path string
}

func (e *Env) daemon() *daemonClient {
	p := daemon.SocketPath(e.Roots)
	return &daemonClient{http: localsock.Client(p, 0), path: p}
}

// apiError is a non-2xx answer.
type apiError struct {
	Status int
	Msg    string
}

func (e *apiError) Error() string { return e.Msg }

// do sends a request and decodes the JSON answer into out (when not nil).
func (c *daemonClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://local"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if _, serr := os.Stat(c.path); serr != nil || strings.Contains(err.Error(), "connection refused") {
			return errDaemonDown
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var eb struct {
			Error string `json:"error"`
		}
		data, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return &apiError{Status: resp.StatusCode, Msg: eb.Error}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// stream opens a streaming GET and hands each JSON line to f until f
// returns false or the stream ends.
func (c *daemonClient) stream(ctx context.Context, path string, f func(json.RawMessage) bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://local"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if _, serr := os.Stat(c.path); serr != nil {
			return errDaemonDown
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(resp.Body)
		var eb struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			return &apiError{Status: resp.StatusCode, Msg: eb.Error}
		}
		return fmt.Errorf("%s", resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !f(raw) {
			return nil
		}
	}
}

// logCommand records a state-changing command in the command log; the
// returned function records its end. A daemon that is down does not stop
// the command. Remote commands are recorded by the daemon that runs them.
func (e *Env) logCommand(module string, args []string) func(code int) {
	if e.By != "" {
		return func(int) {}
	}
	c := e.daemon()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var resp struct {
		ID uint64 `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/cmdlog/start", daemon.CmdlogStart{Kind: "safekit", Module: module, Args: args}, &resp); err != nil {
		return func(int) {}
	}
	return func(code int) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = c.do(ctx, http.MethodPost, "/v1/cmdlog/end", daemon.CmdlogEnd{ID: resp.ID, Code: code}, nil)
	}
}

package uitest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// bidi is a WebDriver BiDi connection (https://w3c.github.io/webdriver-bidi/):
// JSON commands over a websocket, each answered by a message with its id,
// and events in between. It holds only what the Firefox test sends.
type bidi struct {
	ws      *websocket.Conn
	onEvent func(method string, params json.RawMessage)

	mu      sync.Mutex // guards next and pending, and serialises the writes
	next    int
	pending map[int]chan bidiMessage

	done chan struct{} // closed when the reader stops, err says why
	err  error
}

// bidiMessage is any message of the remote end: a command's answer
// (type success or error, with its id) or an event.
type bidiMessage struct {
	Type    string          `json:"type"`
	ID      int             `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// dialBiDi connects to the BiDi endpoint url (ws://host:port/session) from
// the network namespace /run/netns/<netns>, where the browser listens on
// its loopback. onEvent is called by the reader for every event: it must
// not block, nor call the connection.
func dialBiDi(ctx context.Context, netns, url string, onEvent func(method string, params json.RawMessage)) (*bidi, error) {
	d := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialInNetns(ctx, netns, network, addr)
	}}
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s in %s: %w", url, netns, err)
	}
	c := &bidi{ws: ws, onEvent: onEvent, pending: map[int]chan bidiMessage{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *bidi) read() {
	defer close(c.done)
	for {
		var m bidiMessage
		if err := c.ws.ReadJSON(&m); err != nil {
			c.err = err
			return
		}
		if m.Type == "event" {
			c.onEvent(m.Method, m.Params)
			continue
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// call sends the command method with params and decodes its result into
// result (nil: ignore it).
func (c *bidi) call(ctx context.Context, method string, params, result any) error {
	ch := make(chan bidiMessage, 1)
	c.mu.Lock()
	c.next++
	id := c.next
	c.pending[id] = ch
	err := c.ws.WriteJSON(map[string]any{"id": id, "method": method, "params": params})
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Type != "success" {
			return fmt.Errorf("%s: %s: %s", method, m.Error, m.Message)
		}
		if result == nil {
			return nil
		}
		if err := json.Unmarshal(m.Result, result); err != nil {
			return fmt.Errorf("%s: decoding %s: %w", method, m.Result, err)
		}
		return nil
	case <-c.done:
		return fmt.Errorf("%s: the connection ended: %w", method, c.err)
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// close ends the connection and waits for the reader.
func (c *bidi) close() {
	c.ws.Close()
	<-c.done
}

// dialInNetns connects to addr from the network namespace
// /run/netns/<netns>. A socket belongs to the namespace of the thread that
// makes it, and stays there whichever thread uses it afterwards: the dial
// runs on a goroutine locked to its thread, which goes back to the host's
// namespace after. If it cannot, the goroutine ends still locked, and Go
// ends the thread with it rather than run other code in the node's
// namespace.
func dialInNetns(ctx context.Context, netns, network, addr string) (net.Conn, error) {
	type dialed struct {
		conn net.Conn
		err  error
	}
	ch := make(chan dialed, 1)
	go func() {
		runtime.LockOSThread()
		inHost := true
		defer func() {
			if inHost {
				runtime.UnlockOSThread()
			}
		}()
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- dialed{nil, err}
			return
		}
		defer host.Close()
		ns, err := os.Open(filepath.Join("/run/netns", netns))
		if err != nil {
			ch <- dialed{nil, err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- dialed{nil, fmt.Errorf("entering the network namespace %s: %w", netns, err)}
			return
		}
		inHost = false
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		inHost = unix.Setns(int(host.Fd()), unix.CLONE_NEWNET) == nil
		ch <- dialed{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// remoteValue is a BiDi script.RemoteValue: a primitive has a value, a
// node a sharedId that commands take as an element reference.
type remoteValue struct {
	Type     string          `json:"type"`
	Value    json.RawMessage `json:"value"`
	SharedID string          `json:"sharedId"`
}

// evaluateResult is the result of script.evaluate: type success with a
// result, or exception with what the page threw.
type evaluateResult struct {
	Type             string      `json:"type"`
	Result           remoteValue `json:"result"`
	ExceptionDetails struct {
		Text string `json:"text"`
	} `json:"exceptionDetails"`
}

// evaluate runs the JavaScript expression js in the top document of the
// browsing context bc.
func (c *bidi) evaluate(ctx context.Context, bc, js string) (remoteValue, error) {
	var r evaluateResult
	err := c.call(ctx, "script.evaluate", map[string]any{
		"expression":   js,
		"target":       map[string]any{"context": bc},
		"awaitPromise": false,
		// A node comes back as a reference, without its subtree.
		"serializationOptions": map[string]any{"maxDomDepth": 0},
	}, &r)
	if err != nil {
		return remoteValue{}, err
	}
	if r.Type != "success" {
		return remoteValue{}, fmt.Errorf("the page threw: %s", r.ExceptionDetails.Text)
	}
	return r.Result, nil
}

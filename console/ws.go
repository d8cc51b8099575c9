package console

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The websocket connections follow gorilla/websocket's chat example: one
// goroutine writes (messages and pings), one reads (pongs and the close),
// and producers hand messages to a bounded queue.
const (
	// writeWait is the time allowed to write a message to the peer.
	writeWait = 10 * time.Second
	// pongWait is the time allowed to read the next pong from the peer.
	pongWait = 60 * time.Second
	// pingPeriod sends pings to the peer; less than pongWait.
	pingPeriod = (pongWait * 9) / 10
	// maxMessageSize is the largest message accepted from the peer, which
	// has nothing to say but pongs and the close.
	maxMessageSize = 4096
	// sendQueue is how many messages wait for a slow peer; past it the
	// streams drop (the module log) or wait (the others, which coalesce or
	// read a file at their pace).
	sendQueue = 256
)

// wsConn is an open websocket.
type wsConn struct {
	conn *websocket.Conn
	send chan []byte
	// done is closed once the connection is gone.
	done chan struct{}
	once sync.Once
}

// upgrade makes r a websocket, refused (403) from a foreign Origin, and
// starts its reader and writer. The session of the caller stays in use
// while it is open.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) (*wsConn, bool) {
	up := websocket.Upgrader{
		ReadBufferSize:   1024,
		WriteBufferSize:  4096,
		HandshakeTimeout: writeWait,
		CheckOrigin: func(r *http.Request) bool {
			if s.originAllowed(r) {
				return true
			}
			s.log.Warnf("refused websocket %s from %s: Origin %s is not this console's", r.URL.Path, r.RemoteAddr, r.Header.Get("Origin"))
			return false
		},
	}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return nil, false
	}
	c := &wsConn{conn: conn, send: make(chan []byte, sendQueue), done: make(chan struct{})}
	if caller, _ := CallerFrom(r.Context()); caller.how == bySession {
		s.sessions.stream(caller.session.id, +1)
		go func() { <-c.done; s.sessions.stream(caller.session.id, -1) }()
	}
	go c.readPump()
	go c.writePump()
	return c, true
}

func (c *wsConn) closeDone() { c.once.Do(func() { close(c.done) }) }

// readPump reads until the peer goes (or stops answering pings).
func (c *wsConn) readPump() {
	defer func() {
		c.closeDone()
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		if _, _, err := c.conn.ReadMessage(); err != nil {
			return
		}
	}
}

// writePump writes the queued messages and the pings; a closed queue ends
// the connection with a normal close.
func (c *wsConn) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.closeDone()
		c.conn.Close()
	}()
	for {
		select {
		case msg, open := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !open {
				_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
				return
			}
			if err := c.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
				return
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		case <-c.done:
			return
		}
	}
}

// trySend queues v unless the queue is full; it never waits.
func (c *wsConn) trySend(v any) bool {
	msg, err := json.Marshal(v)
	if err != nil {
		return false
	}
	select {
	case c.send <- msg:
		return true
	default:
		return false
	}
}

// sendWait queues v, waiting for room; false once the connection is gone.
func (c *wsConn) sendWait(v any) bool {
	msg, err := json.Marshal(v)
	if err != nil {
		return false
	}
	select {
	case c.send <- msg:
		return true
	case <-c.done:
		return false
	}
}

// finish ends the connection once the queued messages are written. The
// producer calls it when it is done; nothing is sent after.
func (c *wsConn) finish() { close(c.send) }

// context ends when the connection does.
func (c *wsConn) context() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}

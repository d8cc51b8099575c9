package rfs

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// tickEvery is how often the pair in sync refreshes its synctimestamp.
var tickEvery = 30 * time.Second

// errDropped answers the requests of a session that was dropped.
var errDropped = errors.New("the secondary was dropped")

// session is the primary's end of the stream to one secondary.
//
// Writers call send, which puts the operation on the socket (under sendMu,
// so the sequence numbers are the socket order), then do the local
// operation, then wait: "send, then do the local operation, then wait for
// both". The reader matches acknowledgements to pending operations; the
// watchdog drops the secondary when the oldest one waits longer than
// locktimeout.
type session struct {
	r     *Replica
	conn  net.Conn
	async string

	sendMu sync.Mutex
	head   []byte
	seq    uint64

	mu       sync.Mutex
	inflight []*pending // sent, not yet applied by the secondary, in seq order
	relIdx   int        // inflight[:relIdx] are released to their writers
	reqs     map[uint64]*pending
	recv     uint64
	applied  uint64
	dead     bool
	graceful bool
	revisits map[string]bool
	done     chan struct{}

	// inSync: the reintegration ended; the secondary is up to date.
	inSync atomic.Bool
}

// pending is one operation on the stream.
type pending struct {
	seq    uint64
	mk     mark
	sent   time.Time
	req    bool // answered by a reply, not by the acknowledgements
	done   chan struct{}
	closed bool
	reply  []byte
	err    error
}

// wait returns when the operation is acknowledged or the secondary
// dropped; a nil pending (nothing sent) does not wait.
func (p *pending) wait() {
	if p != nil {
		<-p.done
	}
}

func (p *pending) result() ([]byte, error) {
	if p == nil {
		return nil, errDropped
	}
	<-p.done
	return p.reply, p.err
}

func newSession(r *Replica, conn net.Conn) *session {
	return &session{r: r, conn: conn, async: r.cfg.Async, reqs: map[uint64]*pending{},
		revisits: map[string]bool{}, done: make(chan struct{})}
}

func (s *session) start() {
	go s.reader()
	go s.watchdog()
}

// send puts m on the stream. It returns nil when the session is dead: the
// caller then records the change in the bitmaps.
func (s *session) send(m *msg, mk mark, req bool) *pending {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return nil
	}
	s.seq++
	m.seq = s.seq
	p := &pending{seq: m.seq, mk: mk, sent: time.Now(), req: req, done: make(chan struct{})}
	s.inflight = append(s.inflight, p)
	if req {
		s.reqs[m.seq] = p
	}
	s.mu.Unlock()
	s.head = m.encodeHead(s.head)
	s.conn.SetWriteDeadline(time.Now().Add(s.r.cfg.SendTimeout))
	err := sendMsg(s.conn, s.head, m)
	n := int64(len(s.head) + m.dataLen())
	if m.typ == opZone {
		s.r.stats.reiBytes.Add(n)
	} else {
		s.r.stats.repBytes.Add(n)
	}
	if err != nil {
		s.fail(fmt.Sprintf("sending to the secondary: %v", err))
	}
	return p
}

func (s *session) reader() {
	br := bufio.NewReaderSize(s.conn, 64<<10)
	hdr := make([]byte, frameHeader)
	for {
		typ, seq, body, err := readFrame(br, hdr)
		if err != nil {
			s.fail(fmt.Sprintf("connection to the secondary lost: %v", err))
			return
		}
		switch typ {
		case ansAck:
			d := decoder{b: body}
			recv, applied := d.uvarint(), d.uvarint()
			s.acked(recv, applied)
		case ansReply:
			s.mu.Lock()
			p := s.reqs[seq]
			delete(s.reqs, seq)
			if p != nil && !p.closed {
				p.reply, p.closed = body, true
				close(p.done)
			}
			s.mu.Unlock()
		case ansErr:
			d := decoder{b: body}
			d.uvarint()
			s.fail("the secondary could not apply an operation: " + d.str())
			return
		default:
			s.fail(fmt.Sprintf("unexpected frame %d from the secondary", typ))
			return
		}
	}
}

func (s *session) acked(recv, applied uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recv = max(s.recv, recv)
	s.applied = max(s.applied, applied)
	thr := s.applied
	if s.async == "second" {
		thr = s.recv
	}
	for s.relIdx < len(s.inflight) && s.inflight[s.relIdx].seq <= thr {
		p := s.inflight[s.relIdx]
		if !p.req && !p.closed {
			p.closed = true
			close(p.done)
		}
		s.relIdx++
	}
	for len(s.inflight) > 0 && s.inflight[0].seq <= s.applied {
		s.inflight[0] = nil
		s.inflight = s.inflight[1:]
		s.relIdx--
	}
}

func (s *session) watchdog() {
	lock, rei := s.r.cfg.LockTimeout, s.r.cfg.ReiTimeout
	t := time.NewTicker(min(lock, rei, time.Second) / 4)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			why := ""
			s.mu.Lock()
			for _, p := range s.inflight[s.relIdx:] {
				if !p.req && !p.closed {
					if now.Sub(p.sent) > lock {
						why = fmt.Sprintf("no acknowledgement from the secondary within locktimeout (%v)", lock)
					}
					break
				}
			}
			for _, p := range s.reqs {
				if now.Sub(p.sent) > rei {
					why = fmt.Sprintf("no answer from the secondary within reitimeout (%v)", rei)
				}
			}
			s.mu.Unlock()
			if why != "" {
				s.fail(why)
				return
			}
		}
	}
}

// fail drops the secondary: what it may not have applied goes to the
// bitmaps, then the writers waiting for it are released.
func (s *session) fail(reason string) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	s.dead = true
	list, reqs := s.inflight, s.reqs
	s.inflight, s.reqs, s.relIdx = nil, nil, 0
	graceful := s.graceful
	s.mu.Unlock()
	s.conn.Close()
	for _, p := range list {
		s.r.st.mark(p.mk)
	}
	s.mu.Lock()
	for _, p := range list {
		if !p.closed {
			p.closed, p.err = true, errDropped
			close(p.done)
		}
	}
	for _, p := range reqs {
		if !p.closed {
			p.closed, p.err = true, errDropped
			close(p.done)
		}
	}
	s.mu.Unlock()
	close(s.done)
	s.r.sess.CompareAndSwap(s, nil)
	if !graceful {
		s.r.logf("nfsbox", "E", "Replication to the secondary stopped: %s", reason)
		s.r.emit(SecondaryLost{Reason: reason})
	}
}

// closeGracefully ends the stream once the secondary applied everything
// sent (bounded by locktimeout).
func (s *session) closeGracefully(reason string) {
	s.mu.Lock()
	s.graceful = true
	s.mu.Unlock()
	if p := s.send(&msg{typ: opNop}, mark{}, true); p != nil {
		select {
		case <-p.done:
		case <-time.After(s.r.cfg.LockTimeout):
		}
	}
	s.fail(reason)
}

func (s *session) isDead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

func (s *session) revisit(dir int, rel string) {
	s.mu.Lock()
	s.revisits[key(dir, rel)] = true
	s.mu.Unlock()
}

func (s *session) takeRevisits() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ks []string
	for k := range s.revisits {
		ks = append(ks, k)
	}
	s.revisits = map[string]bool{}
	return ks
}

// ticker refreshes the synctimestamp on both nodes while in sync.
func (s *session) ticker() {
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			p := s.send(&msg{typ: opTick, mtime: now.UnixNano()}, mark{}, true)
			if _, err := p.result(); err != nil {
				return
			}
			s.r.st.update(func(st *state) { st.LastSync = now.UnixNano() })
		}
	}
}

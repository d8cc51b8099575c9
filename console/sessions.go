package console

import (
	"errors"
	"sync"
	"time"
)

// maxSessions bounds the sessions kept in memory: past it, a new login
// ends the least recently used session without an open websocket.
const maxSessions = 1000

// session is a console login. Sessions live in memory: a restart of the
// daemon logs everybody out.
type session struct {
	id   string // the value of the cookie sessionSK
	user string
	// hash is the password hash of user at login: a new password (or a
	// removed user) ends the session.
	hash string
	csrf string
	// created bounds the life of the session; used its idle time.
	created, used time.Time
	// streams counts the open websockets of the session, which keep it in
	// use.
	streams int
}

// sessions are the console sessions of a node.
type sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, m: map[string]*session{}}
}

var errNoSession = errors.New("not logged in, or the session ended: log in again")

// create opens a session for user.
func (ss *sessions) create(user, hash string) (*session, error) {
	id, err := randomToken()
	if err != nil {
		return nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return nil, err
	}
	now := ss.now()
	s := &session{id: id, user: user, hash: hash, csrf: csrf, created: now, used: now}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= maxSessions {
		var oldest *session
		for _, o := range ss.m {
			if o.streams == 0 && (oldest == nil || o.used.Before(oldest.used)) {
				oldest = o
			}
		}
		if oldest != nil {
			delete(ss.m, oldest.id)
		}
	}
	ss.m[id] = s
	return s, nil
}

// get returns the session id when it is still valid, and marks it used.
// maxAge and idle are its limits (httpd.conf may change them at any time).
func (ss *sessions) get(id string, maxAge, idle time.Duration) (session, error) {
	now := ss.now()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, found := ss.m[id]
	if !found {
		return session{}, errNoSession
	}
	if now.Sub(s.created) >= maxAge || (s.streams == 0 && now.Sub(s.used) >= idle) {
		delete(ss.m, id)
		return session{}, errNoSession
	}
	s.used = now
	return *s, nil
}

// stream counts an open (+1) or closed (-1) websocket of session id.
func (ss *sessions) stream(id string, delta int) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.m[id]; ok {
		s.streams += delta
		s.used = ss.now()
	}
}

func (ss *sessions) delete(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, id)
}

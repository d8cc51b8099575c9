package console

import (
	"sync"
	"time"
)

// The failed logins (and refused API keys) of each address are limited: an
// address has loginBurst attempts, and gets one more every loginRefill.
// Successful logins cost nothing.
const (
	loginBurst  = 5
	loginRefill = 12 * time.Second
	// maxTracked bounds the addresses followed; past it the ones back to
	// a full allowance are forgotten first.
	maxTracked = 10000
)

// limiter is a token bucket per address.
type limiter struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, m: map[string]*bucket{}}
}

// refill brings b to now; the mutex is held.
func (l *limiter) refill(b *bucket, now time.Time) {
	b.tokens = min(loginBurst, b.tokens+float64(now.Sub(b.at))/float64(loginRefill))
	b.at = now
}

// allow tells whether addr may try again, and else in how long.
func (l *limiter) allow(addr string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[addr]
	if !ok {
		return true, 0
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(loginRefill))
}

// fail counts a failed attempt of addr.
func (l *limiter) fail(addr string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.m[addr]
	if !ok {
		if len(l.m) >= maxTracked {
			l.forget(now)
		}
		b = &bucket{tokens: loginBurst, at: now}
		l.m[addr] = b
	}
	l.refill(b, now)
	b.tokens = max(0, b.tokens-1)
}

// forget drops the addresses back to a full allowance, or all of them if
// none is; the mutex is held.
func (l *limiter) forget(now time.Time) {
	for a, b := range l.m {
		if l.refill(b, now); b.tokens >= loginBurst {
			delete(l.m, a)
		}
	}
	if len(l.m) >= maxTracked {
		clear(l.m)
	}
}

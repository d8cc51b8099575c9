package modlog

import (
	"sync"
	"sync/atomic"
)

// DefaultSubBuffer is the channel capacity of a Sub when Subscribe is given
// none.
const DefaultSubBuffer = 1024

// Sub is a live view of the entries appended after Subscribe.
type Sub struct {
	// C delivers the entries in Seq order. It is closed by Sub.Close and
	// Store.Close.
	C <-chan Entry

	c       chan Entry
	verbose bool
	missed  atomic.Uint64
	store   *Store
	once    sync.Once
}

// Subscribe follows the log: the entries appended from now on (only the
// main ones unless verbose) arrive on Sub.C, which holds up to buffer of
// them. Appends never wait for a subscriber: when its channel is full, the
// entry is dropped for it and counted in Missed.
func (s *Store) Subscribe(verbose bool, buffer int) *Sub {
	if buffer <= 0 {
		buffer = DefaultSubBuffer
	}
	c := make(chan Entry, buffer)
	sub := &Sub{C: c, c: c, verbose: verbose, store: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(c)
		return sub
	}
	s.subs[sub] = struct{}{}
	return sub
}

// Missed returns how many entries were dropped for this subscriber since the
// last call, and starts counting again from zero. A reader that gets a
// non-zero count says so ("N messages missed") and catches up with
// Store.After from the Seq of the last entry it received; the entries still
// in C then come twice, and the reader skips those it already has by Seq.
func (sub *Sub) Missed() uint64 {
	return sub.missed.Swap(0)
}

// Close ends the subscription and closes C.
func (sub *Sub) Close() {
	sub.once.Do(func() {
		s := sub.store
		s.mu.Lock()
		defer s.mu.Unlock()
		// Store.Close may have closed it already.
		if _, ok := s.subs[sub]; ok {
			delete(s.subs, sub)
			close(sub.c)
		}
	})
}

// publish hands a committed entry to the subscribers. Concurrent appends
// return from their commit in any order; entries are held back until the
// ones before them are published, so that C is in Seq order.
func (s *Store) publish(e Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Seq != s.nextPub {
		s.early[e.Seq] = e
		return
	}
	for {
		s.fanOut(e)
		s.nextPub++
		next, ok := s.early[s.nextPub]
		if !ok {
			return
		}
		delete(s.early, s.nextPub)
		e = next
	}
}

// fanOut sends e to every subscriber that wants it, without ever waiting.
// s.mu is held.
func (s *Store) fanOut(e Entry) {
	main := Main(e.Level)
	for sub := range s.subs {
		if !sub.verbose && !main {
			continue
		}
		select {
		case sub.c <- e:
		default:
			sub.missed.Add(1)
		}
	}
}

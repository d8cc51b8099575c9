package rfs

import "sync"

// rangeLocks serialise overlapping operations on one file (by inode
// number): a live write and the reintegration's read of the same zone, or
// two concurrent writes to one range, get the same order on the stream as
// on the local disk. Non-overlapping operations run in parallel (qemu with
// aio keeps many requests in flight on one image).
type rangeLocks struct {
	mu   sync.Mutex
	cond *sync.Cond
	held map[uint64][]span
}

type span struct{ off, end int64 }

func newRangeLocks() *rangeLocks {
	l := &rangeLocks{held: map[uint64][]span{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// lock takes [off, off+n) of file ino and returns its release.
func (l *rangeLocks) lock(ino uint64, off, n int64) func() {
	if n <= 0 {
		n = 1
	}
	s := span{off, off + n}
	if s.end < off { // overflow: to the end
		s.end = 1<<63 - 1
	}
	l.mu.Lock()
	for overlaps(l.held[ino], s) {
		l.cond.Wait()
	}
	l.held[ino] = append(l.held[ino], s)
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		h := l.held[ino]
		for i, x := range h {
			if x == s {
				h[i] = h[len(h)-1]
				h = h[:len(h)-1]
				break
			}
		}
		if len(h) == 0 {
			delete(l.held, ino)
		} else {
			l.held[ino] = h
		}
		l.cond.Broadcast()
		l.mu.Unlock()
	}
}

func overlaps(h []span, s span) bool {
	for _, x := range h {
		if x.off < s.end && s.off < x.end {
			return true
		}
	}
	return false
}

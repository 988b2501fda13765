package basicauth

import (
	"crypto/sha256"
	"runtime"
	"sync"
	"sync/atomic"
)

// Gate bounds the password hash comparisons (bcrypt) that run at once. One
// Gate is meant to be shared by every File of a process: the CPU is shared.
// A check waits for a free slot; nothing is refused.
type Gate struct {
	slots   chan struct{}
	waiting atomic.Int64 // checks waiting for a slot
}

// NewGate returns a Gate letting n comparisons run at once; n <= 0 means
// runtime.GOMAXPROCS(0).
func NewGate(n int) *Gate {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return &Gate{slots: make(chan struct{}, n)}
}

// Cap is the number of comparisons that may run at once.
func (g *Gate) Cap() int { return cap(g.slots) }

// Waiting is the number of checks waiting for a slot.
func (g *Gate) Waiting() int { return int(g.waiting.Load()) }

func (g *Gate) acquire() {
	select {
	case g.slots <- struct{}{}:
		return
	default:
	}
	g.waiting.Add(1)
	g.slots <- struct{}{}
	g.waiting.Add(-1)
}

func (g *Gate) release() { <-g.slots }

// flight collapses identical checks in progress: the first caller of a key
// runs fn, later callers of the same key wait for its answer. It is the
// small part of golang.org/x/sync/singleflight this package needs.
type flight struct {
	mu    sync.Mutex
	calls map[[sha256.Size]byte]*call
}

type call struct {
	done    chan struct{}
	ok      bool
	waiters int // callers waiting for this one's answer (under flight.mu)
}

// do returns fn's answer for key and whether it was shared (another
// caller's fn ran).
func (f *flight) do(key [sha256.Size]byte, fn func() bool) (ok, shared bool) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = make(map[[sha256.Size]byte]*call)
	}
	if c, busy := f.calls[key]; busy {
		c.waiters++
		f.mu.Unlock()
		<-c.done
		return c.ok, true
	}
	c := &call{done: make(chan struct{})}
	f.calls[key] = c
	f.mu.Unlock()
	defer func() { // also when fn panics: the waiters must not hang
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
	}()
	c.ok = fn()
	return c.ok, false
}

// waiting is the number of callers waiting for another's answer.
func (f *flight) waiting() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c.waiters
	}
	return n
}

// Package ratelimit enforces per-client request budgets ("N requests per
// hour") with token buckets from golang.org/x/time/rate, keyed by an
// arbitrary client key, with bounded memory.
//
// A budget of N per period is a bucket of N tokens refilled at N/period: a
// fresh client may burst N requests, then gets one more every period/N. The
// limiter keeps at most MaxKeys buckets; when full it evicts the least
// recently used one. Keys idle for longer than one full refill (period) are
// dropped as well: a full bucket carries no state worth keeping.
package ratelimit

import (
	"container/list"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the number of tracked clients when Config.MaxKeys is 0.
const DefaultMaxKeys = 50_000

// Config describes one budget.
type Config struct {
	// Limit is the number of requests allowed per Period. Zero or negative
	// disables the budget: every request is allowed and nothing is stored.
	Limit int
	// Period is the window the Limit refers to; one hour when zero.
	Period time.Duration
	// MaxKeys bounds the number of clients tracked; DefaultMaxKeys when zero.
	MaxKeys int
	// Now returns the current time; time.Now when nil (tests inject a clock).
	Now func() time.Time
}

// Limiter is a keyed budget. The zero value is not usable; call New.
// A Limiter is safe for concurrent use.
type Limiter struct {
	limit   rate.Limit
	burst   int
	period  time.Duration
	maxKeys int
	now     func() time.Time

	mu    sync.Mutex
	byKey map[string]*list.Element
	lru   *list.List // front = most recently used; values are *entry
}

type entry struct {
	key  string
	lim  *rate.Limiter
	seen time.Time
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	if cfg.Period <= 0 {
		cfg.Period = time.Hour
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{
		burst:   cfg.Limit,
		period:  cfg.Period,
		maxKeys: cfg.MaxKeys,
		now:     cfg.Now,
		byKey:   make(map[string]*list.Element),
		lru:     list.New(),
	}
	if cfg.Limit > 0 {
		l.limit = rate.Limit(float64(cfg.Limit) / cfg.Period.Seconds())
	}
	return l
}

// Enabled reports whether the budget limits anything.
func (l *Limiter) Enabled() bool { return l != nil && l.burst > 0 }

// Allow spends one request of key's budget. When the budget is exhausted it
// returns false and how long the client must wait before one request is
// allowed again (at least one second, so Retry-After is never 0).
func (l *Limiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	if !l.Enabled() {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.get(key, now)
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, max(d, time.Second)
	}
	return true, 0
}

// Blocked reports, without spending anything, whether key's budget is
// exhausted, and if so how long until one request is allowed again (at
// least one second). A key not tracked is not blocked and is not added:
// a cheap check before Take for the requests that might not need one.
func (l *Limiter) Blocked(key string) (bool, time.Duration) {
	if !l.Enabled() {
		return false, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.byKey[key]
	if !ok {
		return false, 0
	}
	tokens := el.Value.(*entry).lim.TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	wait := time.Duration((1 - tokens) / float64(l.limit) * float64(time.Second))
	return true, max(wait, time.Second)
}

// Take is Allow that can be undone: when allowed, giveBack returns the
// request to key's budget (a failure counter takes before the costly work,
// so that concurrent attempts cannot overrun it, and gives back when the
// work did not fail). giveBack is nil when not allowed.
func (l *Limiter) Take(key string) (ok bool, retryAfter time.Duration, giveBack func()) {
	if !l.Enabled() {
		return true, 0, func() {}
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.get(key, now).lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, max(d, time.Second), nil
	}
	return true, 0, func() {
		l.mu.Lock()
		r.CancelAt(l.now())
		l.mu.Unlock()
	}
}

// RetryAfterSeconds renders d as a Retry-After value: whole seconds, rounded up.
func RetryAfterSeconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}

// Len is the number of clients currently tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// get returns key's entry, creating it and evicting as needed. l.mu is held.
func (l *Limiter) get(key string, now time.Time) *entry {
	if el, ok := l.byKey[key]; ok {
		e := el.Value.(*entry)
		e.seen = now
		l.lru.MoveToFront(el)
		l.evictIdle(now)
		return e
	}
	l.evictIdle(now)
	for l.lru.Len() >= l.maxKeys {
		l.remove(l.lru.Back())
	}
	e := &entry{key: key, lim: rate.NewLimiter(l.limit, l.burst), seen: now}
	l.byKey[key] = l.lru.PushFront(e)
	return e
}

// evictIdle drops a few least recently used entries idle for a full period:
// their buckets are full again, so forgetting them changes no answer.
func (l *Limiter) evictIdle(now time.Time) {
	for i := 0; i < 4; i++ {
		el := l.lru.Back()
		if el == nil || now.Sub(el.Value.(*entry).seen) < l.period {
			return
		}
		l.remove(el)
	}
}

func (l *Limiter) remove(el *list.Element) {
	e := el.Value.(*entry)
	delete(l.byKey, e.key)
	l.lru.Remove(el)
}

package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestBudget(t *testing.T) {
	tests := []struct {
		name      string
		limit     int
		period    time.Duration
		calls     int
		wantOK    int
		wantRetry time.Duration // after the last refused call
	}{
		{"disabled", 0, 0, 1000, 1000, 0},
		{"per hour", 60, time.Hour, 61, 60, time.Minute},
		{"per hour of 3", 3, time.Hour, 5, 3, 20 * time.Minute},
		{"retry at least one second", 10, time.Second, 11, 10, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{t: time.Unix(1_700_000_000, 0)}
			l := New(Config{Limit: tt.limit, Period: tt.period, Now: c.now})
			ok, last := 0, time.Duration(0)
			for i := 0; i < tt.calls; i++ {
				allowed, retry := l.Allow("client")
				if allowed {
					ok++
				} else {
					last = retry
				}
			}
			if ok != tt.wantOK {
				t.Fatalf("allowed %d of %d, want %d", ok, tt.calls, tt.wantOK)
			}
			if last != tt.wantRetry {
				t.Fatalf("retry after %v, want %v", last, tt.wantRetry)
			}
		})
	}
}

func TestRefillAndRefusalsDoNotSpend(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := New(Config{Limit: 2, Period: time.Hour, Now: c.now})
	l.Allow("a")
	l.Allow("a")
	for i := 0; i < 10; i++ { // refusals must not push the next token further out
		if ok, retry := l.Allow("a"); ok || retry != 30*time.Minute {
			t.Fatalf("call %d: ok=%v retry=%v, want refused with 30m", i, ok, retry)
		}
	}
	c.add(30 * time.Minute)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("not allowed after refill")
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another client shares a's budget")
	}
	if got := RetryAfterSeconds(1500 * time.Millisecond); got != 2 {
		t.Fatalf("RetryAfterSeconds(1.5s) = %d, want 2", got)
	}
}

// TestBoundedKeys drives 100,000 distinct clients; the limiter never tracks
// more than MaxKeys, and idle clients are forgotten after one period.
func TestBoundedKeys(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := New(Config{Limit: 5, Period: time.Hour, MaxKeys: 1000, Now: c.now})
	for i := 0; i < 100_000; i++ {
		l.Allow(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if n := l.Len(); n > 1000 {
			t.Fatalf("after %d clients tracking %d keys, bound is 1000", i+1, n)
		}
	}
	c.add(2 * time.Hour)
	for i := 0; i < 400; i++ {
		l.Allow(fmt.Sprintf("new-%d", i))
	}
	if n := l.Len(); n > 1000 {
		t.Fatalf("tracking %d keys", n)
	}
	// Evicting an exhausted client forgets its debt only when it was idle a
	// full period (its bucket would be full again anyway) or under pressure.
	l2 := New(Config{Limit: 1, Period: time.Hour, MaxKeys: 10, Now: c.now})
	l2.Allow("x")
	if ok, _ := l2.Allow("x"); ok {
		t.Fatal("second request within budget of 1")
	}
}

func TestConcurrent(t *testing.T) {
	l := New(Config{Limit: 100, Period: time.Hour})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if ok, _ := l.Allow("shared"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 100 {
		t.Fatalf("allowed %d of 400 concurrent requests, want exactly 100", allowed)
	}
}

func TestBlockedAndTake(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := New(Config{Limit: 3, Period: time.Minute, MaxKeys: 2, Now: c.now})
	if b, _ := l.Blocked("a"); b || l.Len() != 0 {
		t.Fatalf("an unknown key is blocked (%v) or tracked (%d)", b, l.Len())
	}
	ok, _, giveBack := l.Take("a")
	if !ok {
		t.Fatal("first take refused")
	}
	giveBack() // a success: the budget is whole again
	for i := range 3 {
		if b, _ := l.Blocked("a"); b {
			t.Fatalf("blocked after %d of 3 takes", i)
		}
		if ok, _, _ := l.Take("a"); !ok {
			t.Fatalf("take %d of 3 refused", i+1)
		}
	}
	b, wait := l.Blocked("a")
	if !b || wait != 20*time.Second {
		t.Fatalf("after 3 takes: blocked %v, wait %s; want true, 20s", b, wait)
	}
	if ok, w, gb := l.Take("a"); ok || w != 20*time.Second || gb != nil {
		t.Fatalf("fourth take: ok %v, wait %s, giveBack %v; want refused, 20s, nil", ok, w, gb != nil)
	}
	if _, w := l.Blocked("a"); w != 20*time.Second {
		t.Fatalf("a refused take changed the wait to %s", w)
	}
	c.add(20 * time.Second)
	if b, _ := l.Blocked("a"); b {
		t.Fatal("still blocked after a refill")
	}
	l.Take("b")
	l.Take("c")
	if l.Len() != 2 {
		t.Fatalf("tracked %d keys, want at most MaxKeys=2", l.Len())
	}
	if b, _ := New(Config{}).Blocked("a"); b {
		t.Fatal("a disabled limiter blocks")
	}
}

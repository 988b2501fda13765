package statuspage

import (
	"sync"
	"time"
)

// Window counts events per key over the last hour in one-minute buckets:
// memory is 60 buckets per key, whatever the rate. The zero value is
// ready; it is safe for concurrent use.
type Window struct {
	mu   sync.Mutex
	keys map[string]*minutes
}

type minutes struct {
	count [60]int64
	at    [60]int64 // the Unix minute each bucket counts
}

// Add counts one event for key at now.
func (w *Window) Add(key string, now time.Time) {
	m := now.Unix() / 60
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.keys == nil {
		w.keys = make(map[string]*minutes)
	}
	b := w.keys[key]
	if b == nil {
		b = &minutes{}
		w.keys[key] = b
	}
	i := m % 60
	if b.at[i] != m {
		b.at[i], b.count[i] = m, 0
	}
	b.count[i]++
}

// LastHour returns the events counted for key in the hour before now
// (the current minute and the 59 before it).
func (w *Window) LastHour(key string, now time.Time) int64 {
	m := now.Unix() / 60
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.keys[key]
	if b == nil {
		return 0
	}
	var n int64
	for i := range b.at {
		if b.at[i] > m-60 && b.at[i] <= m {
			n += b.count[i]
		}
	}
	return n
}

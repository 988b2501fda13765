package cache

import (
	"net/http"
	"strconv"
	"time"
)

// hitValue is the X-Cache-Status value of ServeHit's answers (capacity 1:
// an append by a later handler copies instead of writing into it).
var hitValue = []string{string(StatusHit)}

// ServeHit is the fast path for the commonest request at an edge: a plain
// GET or HEAD of a small, fresh object held in the memory tier. It writes
// the stored response (200, X-Cache-Status: HIT, Age) straight to w with no
// disk I/O and no upstream request built, and returns true. For anything
// else (another method, Range or conditional headers, client Cache-Control
// when HonourClientNoCache is set, an object that is stale, not stored or
// not in memory) it writes nothing and returns false: the caller then sends
// the request through the proxy whose Transport is the cache, which
// answers it fully. key is Key of the URL the proxy would send upstream.
//
// Like RoundTrip, it does no authentication: call it only after auth and
// policy have accepted the request.
func (c *Cache) ServeHit(w http.ResponseWriter, r *http.Request, key string) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	h := r.Header
	if len(h["Range"]) > 0 || len(h["If-None-Match"]) > 0 || len(h["If-Modified-Since"]) > 0 ||
		len(h["If-Match"]) > 0 || len(h["If-Unmodified-Since"]) > 0 || len(h["If-Range"]) > 0 {
		return false
	}
	if c.cfg.HonourClientNoCache && (len(h["Cache-Control"]) > 0 || len(h["Pragma"]) > 0) {
		return false
	}
	now := c.now()
	c.mu.Lock()
	e := c.entries[key]
	if e == nil || e.mem == nil || !e.fresh.fresh(now) {
		c.mu.Unlock()
		return false
	}
	c.touchLocked(e)
	mem := e.mem
	c.mu.Unlock()

	wh := w.Header()
	for k, v := range e.meta.Header {
		wh[k] = v[:len(v):len(v)] // shared, read-only: a later append copies
	}
	wh["Content-Length"] = e.contentLength[:1:1]
	wh["Age"] = []string{strconv.FormatInt(int64(e.fresh.age(now)/time.Second), 10)}
	wh[Header] = hitValue[:1:1]
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		n, _ := w.Write(mem)
		c.m.servedCache.Add(float64(n))
	}
	c.m.requests[StatusHit].Inc()
	return true
}

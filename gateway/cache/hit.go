package cache

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// hitValue is the X-Cache-Status value of ServeHit's answers (capacity 1:
// an append by a later handler copies instead of writing into it).
var hitValue = []string{string(StatusHit)}

// ServeHit is the fast path for the commonest request at an edge: a plain
// GET or HEAD of a fresh object. It writes the stored response (200,
// X-Cache-Status: HIT, Age) straight to w, with no upstream request built,
// and returns true: a memory-tier body with one Write; a body on disk (an
// object larger than the memory tier takes) by copying the file with
// io.Copy, so that the server sends it from the file itself (sendfile on
// plain TCP; on TLS no hand-off per chunk between goroutines). For
// anything else (another method, Range or conditional headers, client
// Cache-Control when HonourClientNoCache is set, an object that is stale or
// not stored, a small object not yet in memory) it writes nothing and
// returns false: the caller then sends the request through the proxy whose
// Transport is the cache, which answers it fully. key is Key of the URL
// the proxy would send upstream. A file that cannot be read whole aborts
// the response (http.ErrAbortHandler): the client never gets a short body
// that looks complete.
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
	if e == nil || !e.fresh.fresh(now) || (e.mem == nil && e.meta.Size <= int64(c.cfg.MemoryMaxObjectSize)) {
		// (a small object not in memory goes the slow way, which promotes it)
		c.mu.Unlock()
		return false
	}
	c.touchLocked(e)
	mem := e.mem
	c.mu.Unlock()
	var fh *os.File
	if mem == nil && r.Method == http.MethodGet {
		var err error
		if fh, err = os.Open(e.body); err != nil {
			return false // evicted meanwhile: the slow path sorts it out
		}
		defer fh.Close()
	}

	wh := w.Header()
	for k, v := range e.meta.Header {
		wh[k] = v[:len(v):len(v)] // shared, read-only: a later append copies
	}
	wh["Content-Length"] = e.contentLength[:1:1]
	wh["Age"] = []string{strconv.FormatInt(int64(e.fresh.age(now)/time.Second), 10)}
	wh[Header] = hitValue[:1:1]
	w.WriteHeader(http.StatusOK)
	c.m.requests[StatusHit].Inc()
	switch {
	case r.Method != http.MethodGet:
	case mem != nil:
		n, _ := w.Write(mem)
		c.m.servedCache.Add(float64(n))
	default:
		n, err := io.Copy(w, io.LimitReader(fh, e.meta.Size))
		c.m.servedCache.Add(float64(n))
		if err != nil || n != e.meta.Size {
			panic(http.ErrAbortHandler)
		}
	}
	return true
}

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

// hitConditionals are the request fields that make a request more than a
// plain hit (a 304 or 206 the full path answers).
var hitConditionals = [...]string{"Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"}

// Hit is a fresh stored response that a plain GET or HEAD may be answered
// with as is: status 200, the stored fields, Content-Length, Age and
// X-Cache-Status: HIT. It is what LookupHit hands to a server engine's own
// hit path; the cache itself knows no server engine.
//
// Everything it points to is shared with the cache and other requests and
// must not be modified: Header, ContentLength and Body are read-only.
// File is the caller's alone until Release.
type Hit struct {
	// Status is the stored response's status code (200 mostly).
	Status int
	// Header holds the stored response's fields, canonical keys, without
	// Age and X-Cache-Status (the caller adds them). It may hold
	// Content-Length.
	Header http.Header
	// ContentLength is Size formatted, as a one-value field slice.
	ContentLength []string
	// Age is the Age field's value, in seconds.
	Age string
	// Size is the body's length in bytes.
	Size int64
	// Body is the body when it is in the memory tier, else nil.
	Body []byte
	// File is the body on disk, open at offset 0, for a GET whose body is
	// not in memory; nil otherwise (a HEAD, or Body is set). The caller
	// reads at most Size bytes from it and never closes it: Release does.
	File *os.File

	c *Cache
}

// Release ends the use of a hit: it closes File (when set) and counts sent
// body bytes as served from the cache. Every hit LookupHit returns must be
// released exactly once, on every path — sent in full, cut off by the
// client, a failed write, a reset by a write deadline — and as soon as the
// body is no longer being sent, since an open File holds a descriptor.
// Release is safe to call from any goroutine.
func (h Hit) Release(sent int64) {
	if h.File != nil {
		h.File.Close()
	}
	if sent > 0 {
		h.c.m.servedCache.Add(float64(sent))
	}
}

// LookupHit returns the stored response for key when a plain GET (get) or
// HEAD may be answered from it as is, and counts the HIT. has reports
// whether the request carries a header field (by canonical name); a
// request with Range or conditional fields, or with Cache-Control or
// Pragma when Config.HonourClientNoCache is set, is no plain hit. Neither
// is an object that is not stored or not fresh, nor a small object not yet
// in memory (the full path promotes it). For those it returns false, and
// the caller sends the request through RoundTrip, which answers them all.
// For a GET of a body on disk, Hit.File is open: the caller must call
// Hit.Release (see Hit). Like RoundTrip, LookupHit does no authentication,
// and it is safe for concurrent use.
func (c *Cache) LookupHit(key string, get bool, has func(name string) bool) (Hit, bool) {
	for _, k := range hitConditionals {
		if has(k) {
			return Hit{}, false
		}
	}
	if c.cfg.HonourClientNoCache && (has("Cache-Control") || has("Pragma")) {
		return Hit{}, false
	}
	now := c.now()
	c.mu.Lock()
	var e *entry
	g := c.gen
	if g != nil && len(key) > len(concelierMirror) && key[:len(concelierMirror)] == concelierMirror {
		// An unversioned Concelier file: the current generation's pinned
		// entry, when this path has been mapped to it and the index that
		// names the generation still holds (fresh, or expired less than
		// GenerationGrace ago: coherence.go; else the full path
		// revalidates the index first).
		if c.generationHeldLocked(now) {
			e = c.aliasedLocked(key)
		}
	} else {
		e, g = c.entries[key], nil
	}
	if e == nil || e.meta.Vary != nil || !e.fresh.fresh(now) || (e.mem == nil && e.meta.Size <= int64(c.cfg.MemoryMaxObjectSize)) {
		c.mu.Unlock()
		return Hit{}, false
	}
	c.touchLocked(e)
	hdr, age := e.meta.Header, e.fresh.age(now)
	if g != nil && e.view != nil {
		hdr, age = e.view, viewAge(g, age, now)
	}
	h := Hit{Status: e.meta.status(), Header: hdr, ContentLength: e.contentLength, Size: e.meta.Size, Body: e.mem, c: c,
		Age: strconv.FormatInt(int64(age/time.Second), 10)}
	c.mu.Unlock()
	if h.Body == nil && get {
		var err error
		if h.File, err = os.Open(e.body); err != nil {
			return Hit{}, false // evicted meanwhile: the full path sorts it out
		}
	}
	c.m.requests[StatusHit].Inc()
	return h, true
}

// ServeHit is net/http's fast path for the commonest request at an edge:
// a plain GET or HEAD of a fresh object (see LookupHit). It writes the
// stored response (200, X-Cache-Status: HIT, Age) straight to w, with no
// upstream request built, and returns true: a memory-tier body with one
// Write; a body on disk (an object larger than the memory tier takes) by
// copying the file with io.Copy, so that the server sends it from the file
// itself (sendfile on plain TCP). For anything else it writes nothing and
// returns false: the caller then sends the request through the proxy whose
// Transport is the cache, which answers it fully. key is Key of the URL
// the proxy would send upstream.
//
// A body that cannot be sent whole — a file cut short, a client gone, a
// write that failed or hit the server's write deadline — aborts the
// response (panic(http.ErrAbortHandler)): the client never gets a short
// body that looks complete, and the file is closed on the way out.
//
// Like RoundTrip, it does no authentication: call it only after auth and
// policy have accepted the request.
func (c *Cache) ServeHit(w http.ResponseWriter, r *http.Request, key string) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	hdr := r.Header
	hit, ok := c.LookupHit(key, r.Method == http.MethodGet, func(k string) bool { return len(hdr[k]) > 0 })
	if !ok {
		return false
	}
	var sent int64
	defer func() { hit.Release(sent) }()
	wh := w.Header()
	for k, v := range hit.Header {
		wh[k] = v[:len(v):len(v)] // shared, read-only: a later append copies
	}
	wh["Content-Length"] = hit.ContentLength[:1:1]
	wh["Age"] = []string{hit.Age}
	wh[Header] = hitValue[:1:1]
	w.WriteHeader(hit.Status)
	switch {
	case r.Method != http.MethodGet:
	case hit.Body != nil:
		n, _ := w.Write(hit.Body)
		sent = int64(n)
	default:
		n, err := io.Copy(w, io.LimitReader(hit.File, hit.Size))
		sent = n
		if err != nil || n != hit.Size {
			panic(http.ErrAbortHandler)
		}
	}
	return true
}

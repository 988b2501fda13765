package cache

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// hitValue is the X-Cache-Status value of ServeHit's answers (capacity 1:
// an append by a later handler copies instead of writing into it).
var hitValue = []string{string(StatusHit)}

// hit is a fresh stored response the fast hit paths may answer.
type hit struct {
	e   *entry
	mem []byte   // the body in memory, or nil
	fh  *os.File // the body on disk (GET only), or nil
	age string   // the Age value
}

// lookupHit returns the stored response for key when the request may be
// answered from it as is. has reports whether the request carries a
// header field. A small object not yet in memory is no hit here: the slow
// path promotes it. When the body is on disk (and get), the file is open.
func (c *Cache) lookupHit(key string, get bool, has func(string) bool) (hit, bool) {
	for _, k := range []string{"Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
		if has(k) {
			return hit{}, false
		}
	}
	if c.cfg.HonourClientNoCache && (has("Cache-Control") || has("Pragma")) {
		return hit{}, false
	}
	now := c.now()
	c.mu.Lock()
	e := c.entries[key]
	if e == nil || !e.fresh.fresh(now) || (e.mem == nil && e.meta.Size <= int64(c.cfg.MemoryMaxObjectSize)) {
		c.mu.Unlock()
		return hit{}, false
	}
	c.touchLocked(e)
	h := hit{e: e, mem: e.mem, age: strconv.FormatInt(int64(e.fresh.age(now)/time.Second), 10)}
	c.mu.Unlock()
	if h.mem == nil && get {
		var err error
		if h.fh, err = os.Open(e.body); err != nil {
			return hit{}, false // evicted meanwhile: the slow path sorts it out
		}
	}
	c.m.requests[StatusHit].Inc()
	return h, true
}

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
	hit, ok := c.lookupHit(key, r.Method == http.MethodGet, func(k string) bool { return len(r.Header[k]) > 0 })
	if !ok {
		return false
	}
	e := hit.e
	wh := w.Header()
	for k, v := range e.meta.Header {
		wh[k] = v[:len(v):len(v)] // shared, read-only: a later append copies
	}
	wh["Content-Length"] = e.contentLength[:1:1]
	wh["Age"] = []string{hit.age}
	wh[Header] = hitValue[:1:1]
	w.WriteHeader(http.StatusOK)
	switch {
	case r.Method != http.MethodGet:
	case hit.mem != nil:
		n, _ := w.Write(hit.mem)
		c.m.servedCache.Add(float64(n))
	default:
		defer hit.fh.Close()
		n, err := io.Copy(w, io.LimitReader(hit.fh, e.meta.Size))
		c.m.servedCache.Add(float64(n))
		if err != nil || n != e.meta.Size {
			panic(http.ErrAbortHandler)
		}
	}
	return true
}

// ServeHitFast is ServeHit for a request fasthttp received (a GET or HEAD
// that fastserve.Plain accepted), answered in fc. done is called once with
// the body bytes sent and whether the response was cut off: at once, or,
// for a body streamed from disk, when fasthttp has sent it (a file that
// cannot be read whole ends the connection: fasthttp announced its length).
// It returns false, with fc untouched and done not called, when ServeHit
// would.
func (c *Cache) ServeHitFast(fc *fasthttp.RequestCtx, key string, done func(bytes int64, aborted bool)) bool {
	rh := &fc.Request.Header
	get := rh.IsGet()
	if !get && !rh.IsHead() {
		return false
	}
	hit, ok := c.lookupHit(key, get, func(k string) bool { return rh.Peek(k) != nil })
	if !ok {
		return false
	}
	e := hit.e
	resp := &fc.Response
	resp.SetStatusCode(http.StatusOK)
	for k, vv := range e.meta.Header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue
		case "Content-Type":
			if len(vv) > 0 {
				resp.Header.SetContentType(vv[0])
			}
			continue
		}
		if len(vv) == 1 {
			// Stored keys are canonical (net/http's): no normalizing.
			resp.Header.SetCanonical(bytesOf(k), bytesOf(vv[0]))
			continue
		}
		for _, v := range vv {
			resp.Header.Add(k, v)
		}
	}
	resp.Header.SetCanonical(ageKey, bytesOf(hit.age))
	resp.Header.SetCanonical(statusKey, hitBytes)
	switch {
	case !get:
		resp.SkipBody = true
		resp.Header.SetContentLength(int(e.meta.Size))
		done(0, false)
	case hit.mem != nil:
		resp.SetBodyRaw(hit.mem) // never modified: an evicted entry drops it, nothing writes into it
		c.m.servedCache.Add(float64(len(hit.mem)))
		done(int64(len(hit.mem)), false)
	default:
		resp.SetBodyStream(&fileStream{f: hit.fh, size: e.meta.Size, c: c, done: done}, int(e.meta.Size))
	}
	return true
}

var (
	ageKey    = []byte("Age")
	statusKey = []byte(Header)
	hitBytes  = []byte(StatusHit)
)

// bytesOf is s as bytes without a copy, for calls that copy it.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// fileStream is a cached body on disk as fasthttp reads it.
type fileStream struct {
	f    *os.File
	size int64
	n    int64
	c    *Cache
	done func(int64, bool)
	once sync.Once
}

func (s *fileStream) Read(p []byte) (int, error) {
	if rest := s.size - s.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	if len(p) == 0 {
		return 0, io.EOF
	}
	n, err := s.f.Read(p)
	s.n += int64(n)
	if err == io.EOF && s.n < s.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close is called by fasthttp once the body was sent, or abandoned.
func (s *fileStream) Close() error {
	s.once.Do(func() {
		s.f.Close()
		s.c.m.servedCache.Add(float64(s.n))
		s.done(s.n, s.n != s.size)
	})
	return nil
}

// Package fasthit is the gateway's fasthttp hit path: it answers a plain
// GET or HEAD of a fresh stored object (cache.LookupHit) straight into a
// fasthttp response, without building an http.Request. It is shared by the
// gateway's Native hook and the conformance harness (bench/cmd/cacheproxy),
// so that the harness measures exactly the code the gateway runs.
package fasthit

import (
	"io"
	"sync"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/gateway/cache"
	"github.com/stella-ops/stella-mirror/internal/fastserve"
)

// Serve is cache.ServeHit for a request fasthttp received (a GET or
// HEAD that fastserve.Plain accepted), answered in fc from c.LookupHit.
// done is called once with the body bytes sent and whether the response
// was cut off: at once, or, for a body streamed from disk, when fasthttp
// has sent it or given up on it (a file that cannot be read whole, a
// client gone, a write that failed or hit the connection's write
// deadline: fasthttp announced the length, so it ends the connection).
// The cache file is closed at that moment, by fasthttp closing the body
// stream. It returns false, with fc untouched and done not called, when
// cache.ServeHit would.
func Serve(c *cache.Cache, fc *fasthttp.RequestCtx, key string, done func(bytes int64, aborted bool)) bool {
	rh := &fc.Request.Header
	get := rh.IsGet()
	if !get && !rh.IsHead() {
		return false
	}
	hit, ok := c.LookupHit(key, get, func(k string) bool { return rh.Peek(k) != nil })
	if !ok {
		return false
	}
	resp := &fc.Response
	resp.SetStatusCode(hit.Status)
	for k, vv := range hit.Header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue
		case "Content-Type":
			if len(vv) > 0 {
				resp.Header.SetContentType(vv[0])
			}
			continue
		case "Date":
			// The stored Date (RFC 9111 section 4); fasthttp drops a Date
			// set the ordinary way.
			if len(vv) > 0 {
				fastserve.SetDate(&resp.Header, bytesOf(vv[0]))
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
	resp.Header.SetCanonical(ageKey, bytesOf(hit.Age))
	resp.Header.SetCanonical(cacheStatusKey, hitBytes)
	switch {
	case !get:
		resp.SkipBody = true
		resp.Header.SetContentLength(int(hit.Size))
		hit.Release(0)
		done(0, false)
	case hit.Body != nil:
		resp.SetBodyRaw(hit.Body) // never modified: an evicted entry drops it, nothing writes into it
		hit.Release(int64(len(hit.Body)))
		done(int64(len(hit.Body)), false)
	default:
		resp.SetBodyStream(&hitStream{hit: hit, done: done}, int(hit.Size))
	}
	return true
}

var (
	ageKey         = []byte("Age")
	cacheStatusKey = []byte(cache.Header)
	hitBytes       = []byte(cache.StatusHit)
)

// bytesOf is s as bytes without a copy, for calls that copy it.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// hitStream is a cached body on disk as fasthttp reads it. fasthttp closes
// it once the body was sent, or abandoned (a write error, a connection
// closed before or while sending, a response reset): Close releases the
// hit, which closes the file.
type hitStream struct {
	hit  cache.Hit
	n    int64
	done func(int64, bool)
	once sync.Once
}

func (s *hitStream) Read(p []byte) (int, error) {
	if rest := s.hit.Size - s.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	if len(p) == 0 {
		return 0, io.EOF
	}
	n, err := s.hit.File.Read(p)
	s.n += int64(n)
	if err == io.EOF && s.n < s.hit.Size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close is called by fasthttp once the body was sent, or abandoned. A
// stream closed before its last byte reports the response as aborted.
func (s *hitStream) Close() error {
	s.once.Do(func() {
		s.hit.Release(s.n)
		s.done(s.n, s.n != s.hit.Size)
	})
	return nil
}

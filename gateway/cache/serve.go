package cache

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// opener returns the body bytes [off, end) of an object (end -1: to its
// end). It is called at most once per response, and not for HEAD, 304 or
// 416 responses.
type opener func(off, end int64) (io.ReadCloser, error)

// serveEntry answers req from a stored entry; mem is its memory-tier body
// (nil: read the file). g is the generation of an unversioned request
// answered from a pinned entry (nil: the entry's own path).
func (c *Cache) serveEntry(req *http.Request, e *entry, mem []byte, status Status, now time.Time, g *generation) (*http.Response, error) {
	open := func(off, end int64) (io.ReadCloser, error) {
		if mem != nil {
			return io.NopCloser(bytes.NewReader(mem[off:end])), nil
		}
		if e.meta.Size <= int64(c.cfg.MemoryMaxObjectSize) {
			// Small and hot: promote to the memory tier.
			b, err := os.ReadFile(e.body)
			if err != nil {
				return nil, c.gone(e, err)
			}
			if int64(len(b)) == e.meta.Size {
				c.mu.Lock()
				c.memPutLocked(e, b)
				c.mu.Unlock()
				return io.NopCloser(bytes.NewReader(b[off:end])), nil
			}
		}
		fh, err := os.Open(e.body)
		if err != nil {
			return nil, c.gone(e, err)
		}
		if off > 0 {
			if _, err := fh.Seek(off, io.SeekStart); err != nil {
				fh.Close()
				return nil, err
			}
		}
		return &fileBody{Reader: io.LimitReader(fh, end-off), f: fh}, nil
	}
	hdr, age := e.meta.Header, e.fresh.age(now)
	if g != nil && e.view != nil {
		hdr, age = e.view, viewAge(g, age, now)
	}
	return c.respond(req, e.meta.status(), hdr, e.meta.Size, age, status, open, c.m.servedCache)
}

// gone turns a vanished body into errGone, dropping the entry if it is
// still indexed.
func (c *Cache) gone(e *entry, err error) error {
	if !isNotExist(err) {
		return err
	}
	c.mu.Lock()
	if c.entries[e.meta.Key] == e {
		c.unlinkLocked(e)
	}
	c.mu.Unlock()
	return errGone
}

type fileBody struct {
	io.Reader
	f *os.File
}

func (b *fileBody) Close() error { return b.f.Close() }

// serveFill answers req from the fill of flight fl, taking over the
// request's reference to the fill's file and its place among the flight's
// waiters, which the body's Close gives up. joined says whether the bytes
// count as served from the cache (a joiner) or from upstream (the request
// that caused the fill).
func (c *Cache) serveFill(req *http.Request, fl *flight, status Status, joined bool, g *generation) (*http.Response, error) {
	f := fl.fill
	counter := c.m.servedUpstream
	if joined {
		counter = c.m.servedCache
	}
	opened := false
	open := func(off, end int64) (io.ReadCloser, error) {
		opened = true
		return f.reader(req.Context(), off, end, func(abandoned bool) {
			c.leave(fl, abandoned)
			fl.unhold()
		}), nil
	}
	now := c.now()
	hdr, age := f.header, f.freshness.age(now)
	if g != nil {
		hdr, age = c.unversionedHeader(f.header, g.id), viewAge(g, age, now)
	}
	resp, err := c.respond(req, f.status, hdr, f.size, age, status, open, counter)
	if !opened { // HEAD, 304, 416: answered without the body
		c.leave(fl, false)
		fl.unhold()
	}
	return resp, err
}

// respond builds the response for an object with status code, header hdr
// and size (-1: unknown): for a 200, 304 for a matching conditional
// request and 206/416 for a Range; else the stored status; a body only for
// GET.
func (c *Cache) respond(req *http.Request, code int, hdr http.Header, size int64, age time.Duration, status Status,
	open opener, counter prometheus.Counter) (*http.Response, error) {
	h := hdr.Clone()
	h["Age"] = []string{strconv.FormatInt(int64(age/time.Second), 10)}
	h[Header] = []string{string(status)}
	resp := &http.Response{
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Request: req, Body: http.NoBody,
	}
	if code != http.StatusOK {
		resp.StatusCode, resp.Status = code, strconv.Itoa(code)+" "+http.StatusText(code)
		resp.ContentLength = size
		if size >= 0 {
			h["Content-Length"] = []string{strconv.FormatInt(size, 10)}
		}
		if req.Method != http.MethodHead && size != 0 {
			body, err := open(0, size)
			if err != nil {
				return nil, err
			}
			resp.Body = &countingBody{rc: body, counter: counter}
		}
		c.m.requests[status].Inc()
		return resp, nil
	}
	if notModified(req, h) {
		for _, k := range []string{"Content-Type", "Content-Encoding", "Content-Length"} {
			delete(h, k)
		}
		if h.Get("ETag") != "" {
			delete(h, "Last-Modified")
		}
		resp.StatusCode, resp.Status = http.StatusNotModified, "304 Not Modified"
		c.m.requests[status].Inc()
		return resp, nil
	}
	off, end := int64(0), size
	resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
	if rng := req.Header.Get("Range"); rng != "" && size >= 0 && ifRangeMatches(req, h) {
		start, stop, ok, satisfiable := parseRange(rng, size)
		switch {
		case ok && !satisfiable:
			h["Content-Range"] = []string{"bytes */" + strconv.FormatInt(size, 10)}
			h["Content-Length"] = []string{"0"}
			delete(h, "Content-Type")
			resp.StatusCode, resp.Status = http.StatusRequestedRangeNotSatisfiable, "416 Requested Range Not Satisfiable"
			c.m.requests[status].Inc()
			return resp, nil
		case ok:
			off, end = start, stop
			h["Content-Range"] = []string{"bytes " + strconv.FormatInt(start, 10) + "-" +
				strconv.FormatInt(stop-1, 10) + "/" + strconv.FormatInt(size, 10)}
			resp.StatusCode, resp.Status = http.StatusPartialContent, "206 Partial Content"
		}
	}
	resp.ContentLength = -1
	if end >= 0 {
		resp.ContentLength = end - off
		h["Content-Length"] = []string{strconv.FormatInt(end-off, 10)}
	}
	if req.Method != http.MethodHead {
		body, err := open(off, end)
		if err != nil {
			return nil, err
		}
		resp.Body = &countingBody{rc: body, counter: counter}
	}
	c.m.requests[status].Inc()
	return resp, nil
}

// notModified evaluates If-None-Match, or without it If-Modified-Since
// (RFC 9110 section 13.2.2), against a stored header.
func notModified(req *http.Request, h http.Header) bool {
	if inm := req.Header.Get("If-None-Match"); inm != "" {
		etag := h.Get("ETag")
		if etag == "" {
			return false
		}
		for _, t := range strings.Split(inm, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag, "W/") {
				return true
			}
		}
		return false
	}
	ims := req.Header.Get("If-Modified-Since")
	if ims == "" {
		return false
	}
	since, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil {
		return false
	}
	return !lm.After(since)
}

// ifRangeMatches: no If-Range, or one that matches the stored strong ETag
// or Last-Modified exactly.
func ifRangeMatches(req *http.Request, h http.Header) bool {
	ir := strings.TrimSpace(req.Header.Get("If-Range"))
	if ir == "" {
		return true
	}
	if strings.HasPrefix(ir, `"`) {
		etag := h.Get("ETag")
		return etag != "" && !strings.HasPrefix(etag, "W/") && ir == etag
	}
	t, err := http.ParseTime(ir)
	if err != nil {
		return false
	}
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	return err == nil && t.Equal(lm)
}

// parseRange reads a single byte range (RFC 9110 section 14.1.2) against a
// representation of size bytes and returns [start, end). ok is false when
// the header is not a single bytes range the cache serves as 206 (then the
// whole representation is sent, which a server may always do); satisfiable
// is false when it is well formed but outside the representation (416).
func parseRange(v string, size int64) (start, end int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	first, last = strings.TrimSpace(first), strings.TrimSpace(last)
	if first == "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, false
		}
		if n == 0 || size == 0 {
			return 0, 0, true, false
		}
		return max(0, size-n), size, true, true
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s < 0 {
		return 0, 0, false, false
	}
	e := size - 1
	if last != "" {
		l, err := strconv.ParseInt(last, 10, 64)
		if err != nil || l < s {
			return 0, 0, false, false
		}
		e = min(l, size-1)
	}
	if s >= size {
		return 0, 0, true, false
	}
	return s, e + 1, true, true
}

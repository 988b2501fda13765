package cache

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// Request Cache-Control (RFC 9111 section 5.2.1). The cache answers by a
// client's max-age, min-fresh, max-stale, no-cache, no-store and
// only-if-cached (and Pragma: no-cache without Cache-Control) only when
// Config.HonourClientNoCache is set, or for a request whose context
// WithClientCacheControl marked (the gateway's per-site switch,
// GATEWAY__SITES__{n}__HONOURCLIENTCACHECONTROL). Otherwise a client
// cannot make the cache refetch at will.

type clientCCKey struct{}

// WithClientCacheControl marks ctx: the cache honours the Cache-Control
// of the request carrying it.
func WithClientCacheControl(ctx context.Context) context.Context {
	return context.WithValue(ctx, clientCCKey{}, true)
}

// honoursClient: req's Cache-Control counts.
func (c *Cache) honoursClient(req *http.Request) bool {
	return c.cfg.HonourClientNoCache || req.Context().Value(clientCCKey{}) != nil
}

// anyStale is max-stale without a value: any staleness is accepted.
const anyStale = -2

// requestDirectives are a request's Cache-Control directives; durations
// in seconds, -1 when absent.
type requestDirectives struct {
	noCache, noStore, onlyIfCached bool
	maxAge, minFresh, maxStale     int64
}

func parseRequestDirectives(h http.Header) requestDirectives {
	r := requestDirectives{maxAge: -1, minFresh: -1, maxStale: -1}
	lines := h.Values("Cache-Control")
	for _, line := range lines {
		for _, part := range strings.Split(line, ",") {
			name, val, hasVal := strings.Cut(strings.TrimSpace(part), "=")
			val = strings.Trim(strings.TrimSpace(val), `"`)
			secs := func() int64 {
				// Digits only, past 2^31 is 2^31 (RFC 9111 section
				// 1.2.2); -1 when invalid.
				n, ok := parseDeltaSeconds(val)
				if !ok {
					return -1
				}
				return n
			}
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-cache":
				r.noCache = true
			case "no-store":
				r.noStore = true
			case "only-if-cached":
				r.onlyIfCached = true
			case "max-age":
				if n := secs(); n >= 0 {
					r.maxAge = n
				} else {
					r.maxAge = 0 // invalid: the strictest reading
				}
			case "min-fresh":
				r.minFresh = secs()
			case "max-stale":
				if !hasVal {
					r.maxStale = anyStale
				} else {
					r.maxStale = secs()
				}
			}
		}
	}
	if len(lines) == 0 {
		for _, p := range h.Values("Pragma") {
			if strings.Contains(strings.ToLower(p), "no-cache") {
				r.noCache = true
			}
		}
	}
	return r
}

// accepts: a stored response with freshness f may answer the request at
// now without validation.
func (r requestDirectives) accepts(f *freshness, now time.Time) bool {
	if r.noCache {
		return false
	}
	age := f.age(now)
	if r.maxAge >= 0 && age > seconds(r.maxAge) {
		return false
	}
	if r.minFresh >= 0 && f.lifetime-age < seconds(r.minFresh) {
		return false
	}
	stale := f.staleness(now)
	switch {
	case stale < 0:
		return true
	case f.noStale:
		return false
	case r.maxStale == anyStale:
		return true
	}
	return r.maxStale >= 0 && stale <= seconds(r.maxStale)
}

// acceptable: a stored response with freshness f may answer req at now
// without validation (fresh, or as the client's directives allow).
func (c *Cache) acceptable(req *http.Request, f *freshness, now time.Time) bool {
	if !c.honoursClient(req) {
		return f.fresh(now)
	}
	return parseRequestDirectives(req.Header).accepts(f, now)
}

// notCached is the answer to only-if-cached without an acceptable stored
// response (RFC 9111 section 5.2.1.7): 504.
func (c *Cache) notCached(req *http.Request) *http.Response {
	c.m.requests[StatusMiss].Inc()
	return &http.Response{
		Status: "504 Gateway Timeout", StatusCode: http.StatusGatewayTimeout,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Length": {"0"}, "Cache-Control": {"no-store"}, Header: {string(StatusMiss)}},
		Body:    http.NoBody,
		Request: req,
	}
}

package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// directives are the Cache-Control directives the cache acts on. Durations
// are in seconds, -1 when absent.
type directives struct {
	noStore, noCache, private, public  bool
	mustRevalidate, proxyRevalidate    bool
	immutable                          bool
	maxAge, sMaxAge, swr, staleIfError int64
}

// parseDirectives reads every Cache-Control field line of h. Unknown
// directives are ignored; a malformed delta-seconds counts as 0 (stale),
// as RFC 9111 section 1.2.2 suggests. Qualified no-cache="f" and
// private="f" are treated as their unqualified, stricter forms.
func parseDirectives(h http.Header) directives {
	d := directives{maxAge: -1, sMaxAge: -1, swr: -1, staleIfError: -1}
	for _, line := range h.Values("Cache-Control") {
		for _, part := range strings.Split(line, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			name, val, hasVal := strings.Cut(part, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			val = strings.Trim(strings.TrimSpace(val), `"`)
			secs := func() int64 {
				if !hasVal {
					return 0
				}
				n, err := strconv.ParseInt(val, 10, 64)
				if err != nil || n < 0 {
					return 0
				}
				return n
			}
			switch name {
			case "no-store":
				d.noStore = true
			case "no-cache":
				d.noCache = true
			case "private":
				d.private = true
			case "public":
				d.public = true
			case "must-revalidate":
				d.mustRevalidate = true
			case "proxy-revalidate":
				d.proxyRevalidate = true
			case "immutable":
				d.immutable = true
			case "max-age":
				d.maxAge = secs()
			case "s-maxage":
				d.sMaxAge = secs()
			case "stale-while-revalidate":
				d.swr = secs()
			case "stale-if-error":
				d.staleIfError = secs()
			}
		}
	}
	if strings.Contains(strings.ToLower(h.Get("Pragma")), "no-cache") && len(h.Values("Cache-Control")) == 0 {
		d.noCache = true
	}
	return d
}

// storable says whether a response to a GET may be stored by a shared cache
// (RFC 9111 section 3), conservatively: only 200, never no-store or
// private, never with Vary or Set-Cookie (the key ignores request headers
// and the content is the same for every user), and only when it is
// useful: fresh for a while or revalidatable.
func storable(resp *http.Response, d directives) bool {
	if resp.StatusCode != http.StatusOK || d.noStore || d.private {
		return false
	}
	h := resp.Header
	if len(h.Values("Vary")) > 0 || len(h.Values("Set-Cookie")) > 0 {
		return false
	}
	if resp.Request != nil && resp.Request.Header.Get("Authorization") != "" &&
		!d.public && d.sMaxAge < 0 && !d.mustRevalidate {
		// RFC 9111 section 3.5.
		return false
	}
	if lifetime(h, d) > 0 {
		return true
	}
	return h.Get("ETag") != "" || h.Get("Last-Modified") != ""
}

// lifetime is the freshness lifetime (RFC 9111 section 4.2.1) of a stored
// response. There is no heuristic freshness: without explicit expiry the
// response is stored but revalidated on every use.
func lifetime(h http.Header, d directives) time.Duration {
	switch {
	case d.noCache:
		return 0
	case d.sMaxAge >= 0:
		return seconds(d.sMaxAge)
	case d.maxAge >= 0:
		return seconds(d.maxAge)
	}
	if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil {
			return 0
		}
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil {
			return 0
		}
		if t.After(date) {
			return t.Sub(date)
		}
	}
	return 0
}

// initialAge is corrected_initial_age of RFC 9111 section 4.2.3.
func initialAge(h http.Header, requestTime, responseTime time.Time) time.Duration {
	var apparent time.Duration
	if date, err := http.ParseTime(h.Get("Date")); err == nil && responseTime.After(date) {
		apparent = responseTime.Sub(date)
	}
	var ageValue time.Duration
	if n, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && n > 0 {
		ageValue = seconds(n)
	}
	delay := responseTime.Sub(requestTime)
	if delay < 0 {
		delay = 0
	}
	return max(apparent, ageValue+delay)
}

func seconds(n int64) time.Duration {
	const maxSecs = int64(1<<63-1) / int64(time.Second)
	if n > maxSecs {
		n = maxSecs
	}
	return time.Duration(n) * time.Second
}

// freshness is what the cache derives from a stored response's headers.
type freshness struct {
	lifetime   time.Duration
	initialAge time.Duration
	responseAt time.Time
	immutable  bool
	// noStale: must-revalidate, proxy-revalidate, s-maxage (which implies
	// proxy-revalidate for shared caches) or no-cache: never served stale.
	noStale      bool
	swr          time.Duration // stale-while-revalidate, 0 when absent
	staleIfError time.Duration // stale-if-error, 0 when absent
}

func newFreshness(h http.Header, requestTime, responseTime time.Time) freshness {
	d := parseDirectives(h)
	f := freshness{
		lifetime:   lifetime(h, d),
		initialAge: initialAge(h, requestTime, responseTime),
		responseAt: responseTime,
		immutable:  d.immutable,
		noStale:    d.mustRevalidate || d.proxyRevalidate || d.sMaxAge >= 0 || d.noCache,
	}
	if d.swr > 0 {
		f.swr = seconds(d.swr)
	}
	if d.staleIfError > 0 {
		f.staleIfError = seconds(d.staleIfError)
	}
	return f
}

// age is current_age (RFC 9111 section 4.2.3) at now.
func (f *freshness) age(now time.Time) time.Duration {
	resident := now.Sub(f.responseAt)
	if resident < 0 {
		resident = 0
	}
	return f.initialAge + resident
}

// staleness is how far past its lifetime the response is at now (<= 0
// while fresh).
func (f *freshness) staleness(now time.Time) time.Duration {
	return f.age(now) - f.lifetime
}

func (f *freshness) fresh(now time.Time) bool { return f.staleness(now) < 0 }

// usableWhileRevalidating: within stale-while-revalidate.
func (f *freshness) usableWhileRevalidating(now time.Time) bool {
	return !f.noStale && f.swr > 0 && f.staleness(now) <= f.swr
}

// usableOnError: within stale-if-error or the configured grace.
func (f *freshness) usableOnError(now time.Time, grace time.Duration) bool {
	return !f.noStale && f.staleness(now) <= max(grace, f.staleIfError)
}

// hopByHop are the header fields never stored or served from the cache.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Age", Header, "Content-Length",
}

// storedHeader is the header block kept with a stored response: the
// response's end-to-end fields (RFC 9111 section 3.1).
func storedHeader(h http.Header) http.Header {
	out := h.Clone()
	for _, c := range h.Values("Connection") {
		for _, f := range strings.Split(c, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out.Del(f)
			}
		}
	}
	for _, k := range hopByHop {
		delete(out, k)
	}
	return out
}

// mergeNotModified updates a stored header block with a 304's fields (RFC
// 9111 section 3.2), leaving the fields that describe the stored body alone.
func mergeNotModified(stored, notModified http.Header) http.Header {
	out := stored.Clone()
	for k, v := range storedHeader(notModified) {
		switch k {
		case "Content-Type", "Content-Encoding", "Content-Range":
			continue
		}
		out[k] = v
	}
	return out
}

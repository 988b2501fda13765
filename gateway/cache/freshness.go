package cache

import (
	"net/http"
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
	// targeted: read from CDN-Cache-Control (RFC 9213), which makes the
	// cache ignore Cache-Control and Expires.
	targeted bool
}

// responseDirectives are the directives a response is stored and reused
// by: CDN-Cache-Control's when cdn is set and the field is valid, else
// Cache-Control's.
func responseDirectives(h http.Header, cdn bool) directives {
	if cdn {
		if d, ok := parseCDN(h); ok {
			return d
		}
	}
	return parseDirectives(h)
}

// parseDirectives reads every Cache-Control field line of h. Unknown
// directives are ignored; a malformed delta-seconds counts as 0 (stale),
// as RFC 9111 section 1.2.2 suggests, and one too large as 2^31. Qualified no-cache="f" and
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
				// Digits only; past 2^31 (however many digits) is 2^31
				// (RFC 9111 section 1.2.2).
				n, ok := parseDeltaSeconds(val)
				if !hasVal || !ok {
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

// storable says whether a response to a GET stored under key may be
// stored by a shared cache (RFC 9111 section 3): a status the cache
// understands (storableStatus; only 200 for the export coherence files;
// 401, 403 and 407 only when r says so),
// never no-store or private, nor Vary: * (a Vary listing fields is
// stored per variant), nor for a request with Authorization (when r says
// so) unless public, s-maxage or must-revalidate; and only when useful:
// explicit freshness, or a heuristically cacheable status with heuristic
// freshness or validators.
func storable(resp *http.Response, d directives, r rules, key string) bool {
	code := resp.StatusCode
	if !storableStatus(code) || d.noStore || d.private {
		return false
	}
	if code != http.StatusOK && coherenceKey(key) {
		return false
	}
	if authStatus(code) && !r.authErrors {
		return false
	}
	h := resp.Header
	if varyStar(h) || (coherenceKey(key) && len(h["Vary"]) > 0) {
		return false
	}
	if r.authorization && resp.Request != nil && resp.Request.Header.Get("Authorization") != "" &&
		!d.public && d.sMaxAge < 0 && !d.mustRevalidate {
		// RFC 9111 section 3.5.
		return false
	}
	lt, explicit := explicitLifetime(h, d, time.Time{})
	switch {
	case explicit && lt > 0:
		return true
	case !heuristicStatus(code):
		return explicit && (h.Get("ETag") != "" || h.Get("Last-Modified") != "")
	case negative(code, key):
		return true
	}
	return h.Get("ETag") != "" || h.Get("Last-Modified") != ""
}

// lifetime is the explicit freshness lifetime (RFC 9111 section 4.2.1) of
// a response (see freshnessLifetime for the one the cache uses).
func lifetime(h http.Header, d directives) time.Duration {
	lt, _ := explicitLifetime(h, d, time.Time{})
	return lt
}

// explicitLifetime is the freshness lifetime the response states, and
// whether it states one: s-maxage, max-age or Expires (Cache-Control's
// no-cache makes it 0). An invalid Expires, or several, is an expired
// one. Expires counts from Date, or without one from responseAt.
func explicitLifetime(h http.Header, d directives, responseAt time.Time) (time.Duration, bool) {
	switch {
	case d.noCache:
		return 0, true
	case d.sMaxAge >= 0:
		return seconds(d.sMaxAge), true
	case d.maxAge >= 0:
		return seconds(d.maxAge), true
	case d.targeted:
		return 0, false
	}
	t, ok, valid := expires(h)
	if !ok {
		return 0, false
	}
	if !valid {
		return 0, true
	}
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		if responseAt.IsZero() {
			return 0, true
		}
		date = responseAt
	}
	if t.After(date) {
		return t.Sub(date), true
	}
	return 0, true
}

// freshnessLifetime is the lifetime the cache gives a stored response
// with status code under key: the explicit one, else heuristic freshness
// for a heuristically cacheable status (RFC 9111 section 4.2.2): a tenth
// of the time since Last-Modified, at most MaxHeuristicLifetime; a 404 or
// 410 of the export tree at most NegativeMaxAge.
func freshnessLifetime(h http.Header, d directives, code int, key string, responseAt time.Time) time.Duration {
	lt, explicit := explicitLifetime(h, d, responseAt)
	if !explicit && heuristicStatus(code) {
		lt = heuristicLifetime(h, responseAt)
	}
	if negative(code, key) {
		if !explicit {
			lt = NegativeMaxAge
		}
		lt = min(lt, NegativeMaxAge)
	}
	return lt
}

// heuristicLifetime: HeuristicFraction of Date (or the response time)
// minus Last-Modified, capped.
func heuristicLifetime(h http.Header, responseAt time.Time) time.Duration {
	lm, err := http.ParseTime(h.Get("Last-Modified"))
	if err != nil {
		return 0
	}
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		date = responseAt
	}
	if !date.After(lm) {
		return 0
	}
	return min(date.Sub(lm)/HeuristicFraction, MaxHeuristicLifetime)
}

// maxAge is the largest age the cache computes or sends: 2^31 seconds
// (RFC 9111 sections 1.2.2 and 5.1: a calculation that overflows is
// 2147483648). An upstream Date far in the past would otherwise saturate
// time.Duration, and the resident time added to it wrap the age around
// to a negative value: fresh forever.
const maxAge = time.Duration(maxAgeValue) * time.Second

// initialAge is corrected_initial_age of RFC 9111 section 4.2.3, at most
// maxAge.
func initialAge(h http.Header, requestTime, responseTime time.Time) time.Duration {
	var apparent time.Duration
	if date, err := http.ParseTime(h.Get("Date")); err == nil && responseTime.After(date) {
		apparent = responseTime.Sub(date)
	}
	delay := min(max(responseTime.Sub(requestTime), 0), maxAge)
	return min(max(apparent, seconds(ageValue(h))+delay), maxAge)
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
	// proxy-revalidate for shared caches), no-cache, or a negative-cached
	// 404/410: never served stale.
	noStale      bool
	swr          time.Duration // stale-while-revalidate, 0 when absent
	staleIfError time.Duration // stale-if-error, 0 when absent
}

func newFreshness(h http.Header, requestTime, responseTime time.Time) freshness {
	return freshnessOf(h, http.StatusOK, "", false, requestTime, responseTime)
}

// freshnessOf is the freshness of a response with status code stored
// under key; cdn: its CDN-Cache-Control applies (rules.cdn).
func freshnessOf(h http.Header, code int, key string, cdn bool, requestTime, responseTime time.Time) freshness {
	d := responseDirectives(h, cdn)
	f := freshness{
		lifetime:   freshnessLifetime(h, d, code, key, responseTime),
		initialAge: initialAge(h, requestTime, responseTime),
		responseAt: responseTime,
		immutable:  d.immutable,
		// A negative-cached 404/410 is kept NegativeMaxAge at most, also
		// while the origin fails.
		noStale: d.mustRevalidate || d.proxyRevalidate || d.sMaxAge >= 0 || d.noCache || negative(code, key),
	}
	if d.swr > 0 {
		f.swr = seconds(d.swr)
	}
	if d.staleIfError > 0 {
		f.staleIfError = seconds(d.staleIfError)
	}
	return f
}

// age is current_age (RFC 9111 section 4.2.3) at now, at most maxAge.
func (f *freshness) age(now time.Time) time.Duration {
	resident := min(max(now.Sub(f.responseAt), 0), maxAge)
	return min(min(f.initialAge, maxAge)+resident, maxAge)
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
// Age is stored (the initial age is computed from it) and replaced by the
// current age on every answer.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	Header, "Content-Length",
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
	delete(out, "Age") // the 304's Age, or none, describes the refreshed response
	for k, v := range storedHeader(notModified) {
		switch k {
		case "Content-Type", "Content-Encoding", "Content-Range":
			continue
		}
		out[k] = v
	}
	return out
}

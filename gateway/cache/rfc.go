package cache

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// rules are the RFC 9111 choices that differ between the gateway's cache
// and a generic shared cache (Options; RFCOptions selects the generic
// ones). The zero value is the gateway's.
type rules struct {
	// authorization: a request's Authorization restricts storing (RFC
	// 9111 section 3.5). The gateway authenticates before the cache, strips
	// the client's Authorization, and keys objects by path alone.
	authorization bool
	// cdn: the upstream's CDN-Cache-Control (RFC 9213) is the response's
	// caching policy when present and valid.
	cdn bool
	// setCookie: a stored response keeps its Set-Cookie fields (the
	// gateway stores the response without them, as its proxy never passes
	// them on).
	setCookie bool
	// authErrors: 401, 403 and 407 are stored like any other status (with
	// explicit freshness). The gateway never stores them: behind its own
	// authentication they answer its token or the forwarded user, and its
	// key never depends on who asked.
	authErrors bool
}

// maxAgeValue is what a delta-seconds too large to represent becomes (RFC
// 9111 section 1.2.2: 2^31).
const maxAgeValue = 1 << 31

// parseDeltaSeconds reads a delta-seconds (RFC 9111 section 1.2.2): digits
// only; a value past 2^31 is 2^31.
func parseDeltaSeconds(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxAgeValue {
		return maxAgeValue, true
	}
	return n, true
}

// ageValue is the Age field of h (RFC 9111 section 5.1): the first
// member of the first field line; an invalid value is ignored (0).
func ageValue(h http.Header) int64 {
	vv := h["Age"]
	if len(vv) == 0 {
		return 0
	}
	v, _, _ := strings.Cut(vv[0], ",")
	v, _, _ = strings.Cut(v, ";")
	n, ok := parseDeltaSeconds(strings.TrimSpace(v))
	if !ok {
		return 0
	}
	return n
}

// The three date forms of RFC 9110 section 5.6.7, with a literal GMT.
const (
	imfFixdate = "Mon, 02 Jan 2006 15:04:05 GMT"
	rfc850Date = "Monday, 02-Jan-06 15:04:05 GMT"
	asctime    = "Mon Jan _2 15:04:05 2006"
)

// parseHTTPDate parses an HTTP-date strictly (RFC 9110 section 5.6.7):
// IMF-fixdate or one of the obsolete forms, exactly (no extra spaces, two
// digit hours, GMT), names compared case-insensitively. http.ParseTime
// accepts more (a one digit hour, repeated spaces); an Expires it accepts
// and this does not is invalid, hence already expired.
func parseHTTPDate(s string) (time.Time, bool) {
	if n := len(s); n > 4 && strings.EqualFold(s[n-4:], " GMT") {
		s = s[:n-4] + " GMT"
	}
	for _, layout := range [...]string{imfFixdate, rfc850Date, asctime} {
		t, err := time.Parse(layout, s)
		if err == nil && strings.EqualFold(t.Format(layout), s) {
			return t, true
		}
	}
	return time.Time{}, false
}

// expires is the Expires of h: ok is false when there is none; valid is
// false for an invalid date or more than one field line (RFC 9111 section
// 5.3: both mean already expired).
func expires(h http.Header) (t time.Time, ok, valid bool) {
	vv := h["Expires"]
	if len(vv) == 0 {
		return time.Time{}, false, false
	}
	if len(vv) > 1 {
		return time.Time{}, true, false
	}
	t, valid = parseHTTPDate(strings.TrimSpace(vv[0]))
	return t, true, valid
}

// parseCDN reads CDN-Cache-Control (RFC 9213), a Structured Field
// Dictionary with Cache-Control's directives. ok is false when the field
// is absent, empty or not a valid dictionary: then Cache-Control applies.
// A directive with a value of the wrong type is ignored.
func parseCDN(h http.Header) (directives, bool) {
	vv := h["Cdn-Cache-Control"]
	if len(vv) == 0 {
		return directives{}, false
	}
	d := directives{maxAge: -1, sMaxAge: -1, swr: -1, staleIfError: -1, targeted: true}
	members := 0
	for _, line := range vv {
		for _, part := range strings.Split(line, ",") {
			part = strings.Trim(part, " \t")
			if part == "" {
				return directives{}, false
			}
			name, val, hasVal := strings.Cut(part, "=")
			if !validSFKey(name) {
				return directives{}, false
			}
			val, _, _ = strings.Cut(val, ";") // parameters are ignored
			members++
			integer := int64(-1)
			if hasVal {
				n, err := strconv.ParseInt(val, 10, 64)
				switch {
				case err == nil && n >= 0:
					integer = n
				case err == nil, val == "?0", val == "?1", strings.HasPrefix(val, `"`), validSFKey(val), isDecimal(val):
					// another item type: valid syntax, wrong type
				default:
					return directives{}, false
				}
			}
			boolean := !hasVal || val == "?1"
			switch name {
			case "no-store":
				d.noStore = d.noStore || boolean
			case "no-cache":
				d.noCache = d.noCache || boolean || (hasVal && strings.HasPrefix(val, `"`))
			case "private":
				d.private = d.private || boolean || (hasVal && strings.HasPrefix(val, `"`))
			case "public":
				d.public = d.public || boolean
			case "must-revalidate":
				d.mustRevalidate = d.mustRevalidate || boolean
			case "proxy-revalidate":
				d.proxyRevalidate = d.proxyRevalidate || boolean
			case "immutable":
				d.immutable = d.immutable || boolean
			case "max-age":
				if integer >= 0 {
					d.maxAge = min(integer, maxAgeValue)
				}
			case "s-maxage":
				if integer >= 0 {
					d.sMaxAge = min(integer, maxAgeValue)
				}
			case "stale-while-revalidate":
				if integer >= 0 {
					d.swr = integer
				}
			case "stale-if-error":
				if integer >= 0 {
					d.staleIfError = integer
				}
			}
		}
	}
	return d, members > 0
}

// validSFKey: an sf-key (RFC 8941 section 3.2): lcalpha or "*", then
// lcalpha, digits, "_", "-", ".", "*".
func validSFKey(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] == '*') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*') {
			return false
		}
	}
	return true
}

func isDecimal(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && strings.Contains(s, ".")
}

// heuristicStatus are the status codes a cache may give heuristic
// freshness (RFC 9110 section 15.1, "heuristically cacheable").
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// storableStatus: the status codes the cache stores. Final, understood,
// not a partial answer, and below 500: an origin's 5xx is a failure here
// (STALE), never a response to serve again. Never 428, 429 or 431 (RFC
// 6585: "MUST NOT be stored by a cache"; a 429 is the budget of whoever
// asked).
func storableStatus(code int) bool {
	switch code {
	case http.StatusPartialContent, http.StatusNotModified,
		http.StatusPreconditionRequired, http.StatusTooManyRequests, http.StatusRequestHeaderFieldsTooLarge:
		return false
	}
	return code >= 200 && code < 500
}

// authStatus: 401, 403 and 407, answers about who asked, which the
// gateway's cache never stores (rules.authErrors).
func authStatus(code int) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusProxyAuthRequired
}

// Heuristic freshness (RFC 9111 section 4.2.2): HeuristicFraction of the
// time since Last-Modified, at most MaxHeuristicLifetime.
const (
	HeuristicFraction    = 10 // 1/10
	MaxHeuristicLifetime = 24 * time.Hour
)

// NegativeMaxAge bounds the freshness of a stored 404 or 410 under
// /concelier/exports/, and is the freshness of one that carries none: a
// short negative cache that spares the origin repeated requests for a
// missing export, and forgets it soon after it is published.
const NegativeMaxAge = 10 * time.Second

// negative: a 404 or 410 for a key of the export tree (the coherence
// files excepted, which are only ever stored as 200s).
func negative(code int, key string) bool {
	return (code == http.StatusNotFound || code == http.StatusGone) && strings.HasPrefix(key, concelierExports)
}

// safeMethod: RFC 9110 section 9.2.1.
func safeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// invalidate drops the stored responses an unsafe request changed (RFC
// 9111 section 4.4): on a non-error answer, its target URI, and the URIs in
// Location and Content-Location when they have the same origin.
func (c *Cache) invalidate(req *http.Request, resp *http.Response) {
	if safeMethod(req.Method) || resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return
	}
	keys := []string{Key(req.URL)}
	for _, f := range [...]string{"Location", "Content-Location"} {
		v := resp.Header.Get(f)
		if v == "" {
			continue
		}
		u, err := req.URL.Parse(v)
		if err != nil || !sameOrigin(u, req) {
			continue
		}
		keys = append(keys, Key(u))
	}
	match := func(key string) bool {
		for _, k := range keys {
			if key == k || strings.HasPrefix(key, k+varySep) {
				return true
			}
		}
		return false
	}
	// Like purge, but for these keys alone: fills of other keys go on
	// being stored.
	var victims []*entry
	c.mu.Lock()
	for key, f := range c.flights {
		if match(key) {
			f.dropped = true
			delete(c.flights, key)
		}
	}
	for _, k := range keys {
		if e := c.entries[k]; e != nil {
			c.unlinkLocked(e)
			victims = append(victims, e)
		}
		for _, vk := range c.variants[k] {
			if e := c.entries[vk]; e != nil {
				c.unlinkLocked(e)
				victims = append(victims, e)
			}
		}
	}
	c.mu.Unlock()
	c.removeFiles(victims)
}

// sameOrigin: u is on the origin req was sent to, or on the host the
// client asked for.
func sameOrigin(u *url.URL, req *http.Request) bool {
	if strings.EqualFold(u.Host, req.URL.Host) && u.Scheme == req.URL.Scheme {
		return true
	}
	return req.Host != "" && strings.EqualFold(u.Host, req.Host)
}

// coherenceKey: the export coherence files (coherence.go), which are only
// ever stored as 200s.
func coherenceKey(key string) bool {
	if key == concelierIndex || unversionedFile(key) {
		return true
	}
	_, ok := pinnedFileID(key)
	return ok
}

// varySep separates a key from the request fields of its variant (vary.go).
const varySep = "\x00"

// varyStar: Vary lists "*": the response never matches a later request.
func varyStar(h http.Header) bool {
	for _, line := range h["Vary"] {
		for _, f := range strings.Split(line, ",") {
			if strings.TrimSpace(f) == "*" {
				return true
			}
		}
	}
	return false
}

// validCDN: h has a valid CDN-Cache-Control.
func validCDN(h http.Header) bool {
	_, ok := parseCDN(h)
	return ok
}

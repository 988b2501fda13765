package cache

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzResponseFields feeds the parsers of upstream response fields the
// cache decides by (Age, Expires, CDN-Cache-Control, Cache-Control, Vary)
// arbitrary values: none may panic, and what they return stays within
// their contracts. Seeds: testdata/fuzz/FuzzResponseFields.
func FuzzResponseFields(f *testing.F) {
	for _, s := range []string{
		"Thu, 18 Aug 2050 02:01:18 GMT", "Thursday, 18-Aug-50 02:01:18 GMT", "Thu Aug  8 02:01:18 2050",
		"7200, 0", "7200;foo=bar", "2147483649", "max-age=60, private", `no-cache="a", s-maxage=1`,
		"max-age=?1", "max-age=\"60\"", "Foo, *", "", ",,", "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Age": {v}, "Expires": {v}, "Cdn-Cache-Control": {v}, "Cache-Control": {v}, "Vary": {v},
			"Date": {"Mon, 30 Nov 2026 12:00:00 GMT"}, "Last-Modified": {v}}
		if n := ageValue(h); n < 0 || n > maxAgeValue {
			t.Fatalf("Age %q: %d", v, n)
		}
		if tm, ok := parseHTTPDate(v); ok && !strings.EqualFold(tm.Format(imfFixdate), v) &&
			!strings.EqualFold(tm.Format(rfc850Date), v) && !strings.EqualFold(tm.Format(asctime), v) {
			t.Fatalf("date %q accepted as %v", v, tm)
		}
		for _, cdn := range []bool{false, true} {
			d := responseDirectives(h, cdn)
			if lt := freshnessLifetime(h, d, http.StatusOK, "/x", time.Now()); lt < 0 {
				t.Fatalf("negative lifetime %v for %q", lt, v)
			}
		}
		for _, name := range varyFields(h) {
			if name == "" || name == "Accept-Encoding" {
				t.Fatalf("Vary %q: field %q", v, name)
			}
		}
	})
}

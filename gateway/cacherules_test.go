package gateway

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCacheRulesThroughGateway attacks the gateway's cache rules (issue
// 17) with its real configuration, on both engines, from an upstream that
// sends what the fixture origin never does:
//   - an origin's 401 or 403 with a long max-age is never stored, so never
//     answered to another user (it was: carol got the 403 written for
//     alice, as a HIT, on the other site);
//   - 429 is never stored (RFC 6585);
//   - a 404 of an export-pinned index is negative-cached (HIT), and never
//     longer than 10 s (max-age=3600 with Age 15: no HIT);
//   - an ancient Date does not make a response fresh forever (it was a
//     HIT with Age -9223372036); Age stays within 0 to 2^31;
//   - CDN-Cache-Control from upstream is no input (no-store in it: HIT);
//   - a header the upstream varies on cannot grow the store past
//     MaxVariants copies of a URL;
//   - the query string makes no second object, and never reaches the
//     origin;
//   - only-if-cached is answered 504 without the origin on the site that
//     honours the client's Cache-Control, and ignored on the other.
func TestCacheRulesThroughGateway(t *testing.T) {
	forEngines(t, func(t *testing.T, engine string) {
		var mu sync.Mutex
		hits := map[string]int{} // upstream requests per pinned id
		var queries []string
		up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/concelier/exports/"), "/index.json")
			mu.Lock()
			hits[id]++
			if r.URL.RawQuery != "" {
				queries = append(queries, r.URL.RawQuery)
			}
			mu.Unlock()
			h := w.Header()
			h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
			h.Set("Cache-Control", "public, max-age=600")
			status := http.StatusOK
			switch id {
			case "e-forbidden":
				status = http.StatusForbidden
			case "e-unauthorized":
				status = http.StatusUnauthorized
			case "e-budget":
				status = http.StatusTooManyRequests
			case "e-missing":
				h.Del("Cache-Control")
				status = http.StatusNotFound
			case "e-missing-long":
				h.Set("Cache-Control", "max-age=3600")
				h.Set("Age", "15")
				status = http.StatusNotFound
			case "e-ancient":
				h.Set("Cache-Control", "no-cache")
				h.Set("ETag", `"e"`)
				h.Set("Date", "Mon, 01 Jan 0001 00:00:00 GMT")
			case "e-cdn":
				h.Set("Cdn-Cache-Control", "no-store")
			case "e-vary":
				h.Set("Vary", "X-Foo")
			}
			w.WriteHeader(status)
			w.Write([]byte("for " + r.Header.Get("X-Stella-Forwarded-User") + " " + id))
		})
		dir := t.TempDir()
		h := newHarness(t, harnessOpts{engine: engine, upstream: up, edit: func(c *Config) {
			withCache(dir, "")(c)
			c.Gateway.Sites[0].HonourClientCacheControl = true
		}})
		alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
		carol := map[string]string{"Authorization": basic("carol", "carol-pw")}
		with := func(base map[string]string, k, v string) map[string]string {
			m := map[string]string{k: v}
			for bk, bv := range base {
				m[bk] = bv
			}
			return m
		}
		path := func(id string) string { return "/concelier/exports/" + id + "/index.json" }
		upstream := func(id string) int {
			mu.Lock()
			defer mu.Unlock()
			return hits[id]
		}
		logged := 0
		get := func(host, id string, hdr map[string]string) resp {
			t.Helper()
			r := h.get(host, path(id), hdr)
			if r.err != nil {
				t.Fatalf("GET %s: %v", path(id), r.err)
			}
			logged++
			if line := accessLines(t, h, logged)[logged-1]; line["status"] != float64(r.status) || line["cache_status"] != r.header.Get("X-Cache-Status") {
				t.Errorf("GET %s: answered %d %s, logged %v %v", path(id), r.status, r.header.Get("X-Cache-Status"), line["status"], line["cache_status"])
			}
			return r
		}

		for _, tc := range []struct {
			id     string
			status int
		}{{"e-forbidden", 403}, {"e-unauthorized", 401}, {"e-budget", 429}} {
			get(hostPrimary, tc.id, alice)
			r := get(hostCommunity, tc.id, carol)
			if r.status != tc.status || r.header.Get("X-Cache-Status") == "HIT" || r.body != "for carol "+tc.id || upstream(tc.id) != 2 {
				t.Errorf("%d with max-age=600, asked by alice then carol: carol got %d %s %q, origin asked %d times; want her own answer",
					tc.status, r.status, r.header.Get("X-Cache-Status"), r.body, upstream(tc.id))
			}
		}

		for i, want := range []string{"MISS", "HIT", "HIT"} {
			if r := get(hostPrimary, "e-missing", alice); r.status != 404 || r.header.Get("X-Cache-Status") != want {
				t.Errorf("404 of a pinned index, request %d: %d %s, want 404 %s", i, r.status, r.header.Get("X-Cache-Status"), want)
			}
		}
		for i := range 2 {
			if r := get(hostPrimary, "e-missing-long", alice); r.status != 404 || r.header.Get("X-Cache-Status") == "HIT" {
				t.Errorf("404 with max-age=3600 and Age 15, request %d: %d %s, want no HIT (10 s at most)", i, r.status, r.header.Get("X-Cache-Status"))
			}
		}

		for i := range 2 {
			r := get(hostPrimary, "e-ancient", alice)
			age, err := strconv.ParseInt(r.header.Get("Age"), 10, 64)
			if r.header.Get("X-Cache-Status") == "HIT" || (r.header.Get("Age") != "" && (err != nil || age < 0 || age > 1<<31)) {
				t.Errorf("no-cache with a Date in year 1, request %d: %s, Age %q", i, r.header.Get("X-Cache-Status"), r.header.Get("Age"))
			}
		}

		get(hostPrimary, "e-cdn", alice)
		if r := get(hostPrimary, "e-cdn", alice); r.header.Get("X-Cache-Status") != "HIT" {
			t.Errorf("CDN-Cache-Control: no-store from upstream: %s, want HIT (no input to the gateway)", r.header.Get("X-Cache-Status"))
		}

		for i := range 40 {
			get(hostPrimary, "e-vary", with(alice, "X-Foo", strconv.Itoa(i)))
		}
		get(hostPrimary, "e-query", alice)
		for i := range 3 {
			r := h.get(hostPrimary, path("e-query")+"?x="+strconv.Itoa(i), alice)
			logged++
			if r.header.Get("X-Cache-Status") != "HIT" {
				t.Errorf("query ?x=%d: %s, want the HIT of the path", i, r.header.Get("X-Cache-Status"))
			}
		}
		oic := with(alice, "Cache-Control", "only-if-cached")
		if r := get(hostPrimary, "e-not-stored", oic); r.status != http.StatusGatewayTimeout || upstream("e-not-stored") != 0 {
			t.Errorf("only-if-cached, not stored: %d, origin asked %d times; want 504 and none", r.status, upstream("e-not-stored"))
		}
		if r := get(hostCommunity, "e-other-site", with(carol, "Cache-Control", "only-if-cached")); r.status != 200 || upstream("e-other-site") != 1 {
			t.Errorf("only-if-cached on a site that does not honour it: %d, want the origin's 200", r.status)
		}

		// Stopped, the cache has committed every fill (and removed what
		// they displaced): the directory shows what stays stored.
		h.stop()
		h.stop = func() {}
		if n := storedFor(t, filepath.Join(dir, "cache"), path("e-vary")); n == 0 || n > 8 {
			t.Errorf("40 values of a header the upstream varies on: %d copies stored, want 1 to 8", n)
		}
		if n := storedFor(t, filepath.Join(dir, "cache"), path("e-query")); n != 1 || len(queries) != 0 {
			t.Errorf("queries: %d objects stored, the origin saw %q; want 1 and none", n, queries)
		}
		h = newHarness(t, harnessOpts{engine: engine, upstream: up, edit: func(c *Config) {
			withCache(dir, "")(c)
			c.Gateway.Sites[0].HonourClientCacheControl = true
		}})
		logged = 0
		if r := get(hostPrimary, "e-query", oic); r.status != 200 || r.header.Get("X-Cache-Status") != "HIT" {
			t.Errorf("only-if-cached, stored: %d %s, want a 200 HIT", r.status, r.header.Get("X-Cache-Status"))
		}
	})
}

// storedFor counts the objects stored for path, variants included.
func storedFor(t *testing.T, dir, path string) int {
	t.Helper()
	metas, err := filepath.Glob(filepath.Join(dir, "v1", "*.meta"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range metas {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // replaced meanwhile
		}
		var m struct{ Key string }
		if json.Unmarshal(b, &m) == nil && strings.SplitN(m.Key, "\x00", 2)[0] == path {
			n++
		}
	}
	return n
}

// TestFastHitLogsStoredStatus: a hit of a stored 404 answered by the
// fasthttp hit path is logged (and counted) as the 404 it is; it was
// logged as a 200. The object is stored by a first gateway and found on
// disk by a second one, whose first hit (full path) puts it in the memory
// tier, so that the next is the fast path's.
func TestFastHitLogsStoredStatus(t *testing.T) {
	forEngines(t, func(t *testing.T, engine string) {
		up := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		})
		dir := t.TempDir()
		const missing = "/concelier/exports/e-missing/index.json"
		alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
		first := newHarness(t, harnessOpts{engine: engine, upstream: up, edit: withCache(dir, "")})
		if r := first.get(hostPrimary, missing, alice); r.status != 404 || r.header.Get("X-Cache-Status") != "MISS" {
			t.Fatalf("first gateway: %d %s, want a 404 MISS", r.status, r.header.Get("X-Cache-Status"))
		}
		first.stop() // the cache closes: the 404 is stored
		first.stop = func() {}
		h := newHarness(t, harnessOpts{engine: engine, upstream: up, edit: withCache(dir, "")})
		for i := range 3 {
			if r := h.get(hostPrimary, missing, alice); r.status != 404 || r.header.Get("X-Cache-Status") != "HIT" {
				t.Fatalf("request %d: %d %s, want a 404 HIT", i, r.status, r.header.Get("X-Cache-Status"))
			}
		}
		for i, line := range accessLines(t, h, 3) {
			if line["status"] != float64(404) || line["cache_status"] != "HIT" {
				t.Errorf("request %d logged status %v %v, want 404 HIT", i, line["status"], line["cache_status"])
			}
		}
		if n := len(h.upstream.paths()); n != 0 {
			t.Errorf("the origin was asked %d times, want 0", n)
		}
	})
}

package cache

import (
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// headerOrigin is a test origin that answers every request with status
// and the header fields fields(path) gives, and a body that counts the
// requests.
func headerOrigin(t *testing.T, clk *clock, status func(path string) int, fields func(path string) http.Header) (*origin, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		for k, v := range fields(r.URL.Path) {
			w.Header()[k] = v
		}
		if w.Header().Get("Date") == "" {
			w.Header().Set("Date", clk.Now().Format(http.TimeFormat))
		}
		w.WriteHeader(status(r.URL.Path))
		fmt.Fprintf(w, "answer %d", i)
	}))
	return &origin{Server: srv, clock: clk}, &n
}

// TestAgeBounded: an upstream Date far in the past makes the age 2^31
// seconds at most (RFC 9111 section 1.2.2), never a value that wraps
// around: the response is stale, not fresh forever, and every answer's
// Age is between 0 and 2147483648. Before, the age saturated
// time.Duration, the resident time then wrapped it negative, and a
// no-cache response was a HIT with "Age: -9223372036".
func TestAgeBounded(t *testing.T) {
	clk := newClock()
	fields := map[string]http.Header{
		"/year1-no-cache": {"Date": {"Mon, 01 Jan 0001 00:00:00 GMT"}, "Cache-Control": {"no-cache"}, "Etag": {`"x"`}},
		"/year1-max-age":  {"Date": {"Mon, 01 Jan 0001 00:00:00 GMT"}, "Cache-Control": {"max-age=60"}},
		"/year1700":       {"Date": {"Fri, 01 Jan 1700 00:00:00 GMT"}, "Cache-Control": {"max-age=600"}},
		"/age-huge":       {"Age": {"99999999999999999999"}, "Cache-Control": {"max-age=600"}},
		"/age-max-int64":  {"Age": {"9223372036854775807"}, "Cache-Control": {"max-age=600"}},
	}
	o, _ := headerOrigin(t, clk, func(string) int { return http.StatusOK }, func(p string) http.Header { return fields[p] })
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	for path := range fields {
		for i := range 3 {
			r := mustGet(t, cl, p.URL+path)
			c.bg.Wait()
			age, err := strconv.ParseInt(r.header.Get("Age"), 10, 64)
			if err != nil || age < 0 || age > maxAgeValue {
				t.Errorf("%s, answer %d: Age %q, want 0 to %d", path, i, r.header.Get("Age"), int64(maxAgeValue))
			}
			if r.cache == "HIT" {
				t.Errorf("%s, answer %d: HIT of a response older than its lifetime", path, i)
			}
			clk.Advance(time.Second)
		}
	}
	f := freshness{initialAge: 1<<63 - 1, responseAt: clk.Now(), lifetime: time.Hour}
	if f.fresh(clk.Now().Add(time.Hour)) || f.age(clk.Now().Add(time.Hour)) != time.Duration(maxAgeValue)*time.Second {
		t.Errorf("saturated initial age: age %v, fresh %v", f.age(clk.Now().Add(time.Hour)), f.fresh(clk.Now().Add(time.Hour)))
	}
}

// TestVaryDropped: when a URL's response stops varying, the response
// without Vary is the URL's one answer for every request (HITs whatever
// the formerly listed field says), and the old variants are dropped.
// Before, it was stored under the variant key of the request that fetched
// it, so every other value of the field missed and stored one more copy:
// 20 values, 20 fetches, 21 entries for one URL, and no fast-path hit.
func TestVaryDropped(t *testing.T) {
	clk := newClock()
	var vary atomic.Bool
	vary.Store(true)
	o, fetches := headerOrigin(t, clk, func(string) int { return http.StatusOK }, func(string) http.Header {
		h := http.Header{"Cache-Control": {"max-age=600"}}
		if vary.Load() {
			h.Set("Vary", "Foo")
		}
		return h
	})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	for _, foo := range []string{"a", "b", "a"} {
		mustGet(t, cl, p.URL+"/v", "Foo", foo)
		c.bg.Wait()
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("with Vary: %d fetches for two variants, want 2", n)
	}
	vary.Store(false)
	clk.Advance(time.Hour) // both variants stale
	for i := range 20 {
		r := mustGet(t, cl, p.URL+"/v", "Foo", strconv.Itoa(i))
		c.bg.Wait()
		if want := i > 0; (r.cache == "HIT") != want {
			t.Errorf("without Vary, Foo %d: %q, want HIT %v", i, r.cache, want)
		}
	}
	if n := fetches.Load(); n != 3 {
		t.Errorf("%d fetches, want 3 (one after Vary was dropped)", n)
	}
	c.mu.Lock()
	var keys []string
	for k := range c.entries {
		keys = append(keys, fmt.Sprintf("%q", k))
	}
	varies := len(c.varies)
	c.mu.Unlock()
	if len(keys) != 1 || keys[0] != `"/v"` || varies != 0 {
		t.Errorf("stored keys %v (URLs that vary: %d), want only \"/v\"", keys, varies)
	}
	hit, ok := c.LookupHit("/v", true, func(string) bool { return false })
	if !ok {
		t.Errorf("no fast-path hit for the URL's one response")
	} else {
		hit.Release(0)
	}
}

// TestAuthErrorsNotStored: the gateway's cache never stores an
// upstream's 401, 403 or 407, however long its freshness: behind the
// gateway's authentication they answer who asked, and the key never
// depends on that (a 403 for one user was a HIT for every other).
// Options.StoreAuthErrors (the harness's RFC mode) stores them. 428, 429
// and 431 are stored in neither (RFC 6585: MUST NOT be stored).
func TestAuthErrorsNotStored(t *testing.T) {
	for _, tc := range []struct {
		status   int
		gateway  bool // stored by the gateway's cache
		rfcStore bool // stored with StoreAuthErrors
	}{
		{http.StatusUnauthorized, false, true},
		{http.StatusForbidden, false, true},
		{http.StatusProxyAuthRequired, false, true},
		{http.StatusPreconditionRequired, false, false},
		{http.StatusTooManyRequests, false, false},
		{http.StatusRequestHeaderFieldsTooLarge, false, false},
		{http.StatusNotFound, true, true}, // the same fields, a status the cache stores
	} {
		for _, rfc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d rfc %v", tc.status, rfc), func(t *testing.T) {
				clk := newClock()
				o, fetches := headerOrigin(t, clk, func(string) int { return tc.status }, func(string) http.Header {
					return http.Header{"Cache-Control": {"public, max-age=600"}, "Etag": {`"e"`}}
				})
				c := rfcCache(t, o, Options{StoreAuthErrors: rfc})
				p := proxy(t, c, o)
				cl := client(t)
				mustGet(t, cl, p.URL+"/x")
				c.bg.Wait()
				r := mustGet(t, cl, p.URL+"/x")
				want := tc.gateway
				if rfc {
					want = tc.rfcStore
				}
				if r.status != tc.status || (r.cache == "HIT") != want || (fetches.Load() == 1) != want {
					t.Errorf("second answer %d %q after %d fetches, want %d, HIT %v", r.status, r.cache, fetches.Load(), tc.status, want)
				}
			})
		}
	}
}

// TestJoinedFillOtherVariant: a request that arrives while a response
// with Vary is being stored, and differs in a listed field, is not
// answered from that fill: it selects another variant, and goes upstream
// itself.
func TestJoinedFillOtherVariant(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/v", object{body: []byte("0123456789"), cacheControl: "max-age=600", extra: http.Header{"Vary": {"Foo"}}})
	started, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
		w.WriteHeader(http.StatusOK)
		if !first.CompareAndSwap(false, true) {
			w.Write([]byte("other-vari"))
			return
		}
		w.Write(obj.body[:5])
		w.(http.Flusher).Flush()
		close(started)
		<-release
		w.Write(obj.body[5:])
	}
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	done := make(chan result, 1)
	go func() { done <- get(t, cl, http.MethodGet, p.URL+"/v", "Foo", "1") }()
	<-started
	// A HEAD: one that (wrongly) joins the fill is answered at once.
	r2 := get(t, cl, http.MethodHead, p.URL+"/v", "Foo", "2")
	close(release)
	r1 := <-done
	if r1.err != nil || r1.cache != "MISS" || string(r1.body) != "0123456789" {
		t.Fatalf("first: %v cache %q body %q", r1.err, r1.cache, r1.body)
	}
	if r2.err != nil || r2.cache == "HIT" {
		t.Errorf("another variant during the fill: %v cache %q, want no HIT", r2.err, r2.cache)
	}
	if n := o.reqs.Load(); n != 2 {
		t.Errorf("origin got %d requests, want 2", n)
	}
}

// TestInvalidateOnlyWhatChanged: an unsafe request invalidates nothing
// when it fails (RFC 9111 section 4.4: on a non-error status), and never
// a URL of another origin named in Location or Content-Location.
func TestInvalidateOnlyWhatChanged(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/a", object{body: []byte("a"), cacheControl: "max-age=600"})
	o.set("/b", object{body: []byte("b"), cacheControl: "max-age=600",
		extra: http.Header{"Content-Location": {"http://elsewhere.example/a"}, "Location": {"//elsewhere.example/a"}}})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	mustGet(t, cl, p.URL+"/a")
	c.bg.Wait()
	post := func(path string) int {
		req, _ := http.NewRequest(http.MethodPost, p.URL+path, nil)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("/b"); code != http.StatusOK {
		t.Fatalf("POST /b: %d", code)
	}
	if r := mustGet(t, cl, p.URL+"/a"); r.cache != "HIT" {
		t.Errorf("/a after a POST naming another origin's /a: %q, want HIT", r.cache)
	}
	o.setDown(true)
	if code := post("/a"); code != http.StatusServiceUnavailable {
		t.Fatalf("POST /a, origin down: %d", code)
	}
	o.setDown(false)
	if r := mustGet(t, cl, p.URL+"/a"); r.cache != "HIT" {
		t.Errorf("/a after a failed POST /a: %q, want HIT", r.cache)
	}
}

// TestFreshnessCaps: a 404 of the export tree is fresh NegativeMaxAge at
// most whatever its own freshness says (an upstream Age counts against
// it), and heuristic freshness is MaxHeuristicLifetime at most however
// old Last-Modified is.
func TestFreshnessCaps(t *testing.T) {
	const (
		missing    = "/concelier/exports/20261201T000000Z/index.json"
		missingOld = "/concelier/exports/20261202T000000Z/index.json"
	)
	clk := newClock()
	o, _ := headerOrigin(t, clk, func(p string) int {
		if p == "/old" {
			return http.StatusOK
		}
		return http.StatusNotFound
	}, func(p string) http.Header {
		switch p {
		case missing:
			return http.Header{"Cache-Control": {"max-age=3600"}}
		case missingOld:
			return http.Header{"Cache-Control": {"max-age=3600"}, "Age": {"15"}}
		}
		return http.Header{"Last-Modified": {"Mon, 01 Jan 1990 00:00:00 GMT"}}
	})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	for _, path := range []string{missing, missingOld, "/old"} {
		mustGet(t, cl, p.URL+path)
		c.bg.Wait()
	}
	if r := mustGet(t, cl, p.URL+missingOld); r.cache == "HIT" {
		t.Errorf("a 404 with max-age=3600 and Age 15: HIT, want stale (at most %v)", NegativeMaxAge)
	}
	clk.Advance(NegativeMaxAge - time.Second)
	if r := mustGet(t, cl, p.URL+missing); r.cache != "HIT" || r.status != http.StatusNotFound {
		t.Errorf("a 404 with max-age=3600 after %v: %d %q, want a 404 HIT", NegativeMaxAge-time.Second, r.status, r.cache)
	}
	clk.Advance(time.Second)
	if r := mustGet(t, cl, p.URL+missing); r.cache == "HIT" {
		t.Errorf("a 404 with max-age=3600 after %v: HIT", NegativeMaxAge)
	}
	clk.Advance(MaxHeuristicLifetime - NegativeMaxAge - time.Second)
	if r := mustGet(t, cl, p.URL+"/old"); r.cache != "HIT" {
		t.Errorf("Last-Modified in 1990, after %v: %q, want HIT", MaxHeuristicLifetime-time.Second, r.cache)
	}
	clk.Advance(time.Second)
	if r := mustGet(t, cl, p.URL+"/old"); r.cache == "HIT" {
		t.Errorf("Last-Modified in 1990, after %v: HIT", MaxHeuristicLifetime)
	}
}

// TestCoherenceKeysNeverVary: the index and the Concelier files the
// export generation rules keep coherent are never stored with Vary (a
// variant key would take them out of those rules); other keys are.
func TestCoherenceKeysNeverVary(t *testing.T) {
	for _, tc := range []struct {
		path   string
		stored bool
	}{
		{concelierIndex, false},
		{"/concelier/exports/20261130T100000Z/mirror/primary/bundle.json", false},
		{"/concelier/exports/20261130T100000Z/index.json", true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			o.set(tc.path, object{body: []byte(`{"x":1}`), cacheControl: "public, max-age=600", extra: http.Header{"Vary": {"Foo"}}})
			c := testCache(t, t.TempDir(), o, nil)
			p := proxy(t, c, o)
			cl := client(t)
			mustGet(t, cl, p.URL+tc.path, "Foo", "1")
			c.bg.Wait()
			r := mustGet(t, cl, p.URL+tc.path, "Foo", "1")
			c.mu.Lock()
			n := len(c.entries)
			c.mu.Unlock()
			if (r.cache == "HIT") != tc.stored || (n > 0) != tc.stored {
				t.Errorf("second answer %q, %d entries; want stored %v", r.cache, n, tc.stored)
			}
		})
	}
}

// TestNegativeNeverStale: a negative-cached 404 is kept NegativeMaxAge at
// most, also while the origin fails: past it, the origin's failure is
// the answer, not the old 404 as STALE (it was, for the whole
// StaleIfErrorGrace of 24 h, hiding an export published meanwhile behind
// a "not found"). A 200 stored alongside is still served STALE.
func TestNegativeNeverStale(t *testing.T) {
	const missing = "/concelier/exports/20261130T100000Z/index.json"
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/present", object{body: []byte("p"), cacheControl: "max-age=5"})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	for _, path := range []string{missing, "/present"} {
		mustGet(t, cl, p.URL+path)
		c.bg.Wait()
	}
	clk.Advance(NegativeMaxAge + time.Second)
	o.setDown(true)
	if r := mustGet(t, cl, p.URL+missing); r.status == http.StatusNotFound || r.cache == "STALE" {
		t.Errorf("the origin down %v after a 404: %d %q, want its failure", NegativeMaxAge+time.Second, r.status, r.cache)
	}
	if r := mustGet(t, cl, p.URL+"/present"); r.status != http.StatusOK || r.cache != "STALE" {
		t.Errorf("the origin down, a stored 200: %d %q, want a 200 STALE", r.status, r.cache)
	}
}

// TestNegativePinnedIndexForgottenOnSwitch: a 404 for the pinned index of
// an export the origin had not published yet is forgotten when the
// cache's index switches to that export. It was answered for the rest of
// its 10 s, so a client (a downstream sync) that read the new index and
// then its pinned index got "not found" and fell back to the unversioned
// URLs.
func TestNegativePinnedIndexForgottenOnSwitch(t *testing.T) {
	const old, next = "20261130T100000Z", "20261130T110000Z"
	clk := newClock()
	var published atomic.Bool
	o, _ := headerOrigin(t, clk, func(p string) int {
		if p == "/concelier/exports/"+next+"/index.json" && !published.Load() {
			return http.StatusNotFound
		}
		return http.StatusOK
	}, func(p string) http.Header {
		id := old
		if published.Load() {
			id = next
		}
		switch p {
		case concelierIndex:
			return http.Header{"Cache-Control": {"public, max-age=5"}, ExportIDHeader: {id}, "Content-Type": {"application/json"}}
		case "/concelier/exports/" + next + "/index.json":
			if published.Load() {
				return http.Header{"Cache-Control": {"public, max-age=31536000, immutable"}, ExportIDHeader: {next}}
			}
		}
		return http.Header{}
	})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	pinned := p.URL + "/concelier/exports/" + next + "/index.json"
	mustGet(t, cl, p.URL+concelierIndex)
	c.bg.Wait()
	for i, want := range []string{"MISS", "HIT"} {
		if r := mustGet(t, cl, pinned); r.status != http.StatusNotFound || r.cache != want {
			t.Fatalf("pinned index before it is published, request %d: %d %q, want a 404 %s", i, r.status, r.cache, want)
		}
		c.bg.Wait()
	}
	published.Store(true)
	clk.Advance(6 * time.Second) // the index is stale, the 404 still fresh
	if r := mustGet(t, cl, p.URL+concelierIndex); r.header.Get(ExportIDHeader) != next {
		t.Fatalf("index after the switch names %q", r.header.Get(ExportIDHeader))
	}
	c.bg.Wait()
	if r := mustGet(t, cl, pinned); r.status != http.StatusOK {
		t.Errorf("pinned index of the export the index now names: %d %q, want 200", r.status, r.cache)
	}
}

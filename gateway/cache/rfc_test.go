package cache

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rfcCache is testCache with the cache's RFC options (the harness's).
func rfcCache(t *testing.T, o *origin, opts Options) *Cache {
	t.Helper()
	opts.Now = o.clock.Now
	c, err := New(Config{Dir: t.TempDir(), MaxSize: 64 << 20, MaxObjectSize: 64 << 20},
		&http.Transport{ResponseHeaderTimeout: 30 * time.Second}, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestJoinedFillNeedsFreshness: a request that arrives while a response
// without freshness is still being stored is not answered from that fill
// (it was a HIT without any upstream request: the race of issue 17).
func TestJoinedFillNeedsFreshness(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/n", object{body: []byte("0123456789"), cacheControl: "no-cache"})
	started, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
		w.WriteHeader(http.StatusOK)
		if !first.CompareAndSwap(false, true) {
			w.Write(obj.body)
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
	go func() { done <- get(t, cl, http.MethodGet, p.URL+"/n") }()
	<-started
	// A HEAD: a request that (wrongly) joins the fill is answered at once,
	// without waiting for the body the origin holds back.
	r2 := get(t, cl, http.MethodHead, p.URL+"/n")
	close(release)
	r1 := <-done
	if r1.err != nil || r1.cache != "MISS" || string(r1.body) != "0123456789" {
		t.Fatalf("first: %v cache %q body %q", r1.err, r1.cache, r1.body)
	}
	if r2.err != nil || r2.cache == "HIT" || r2.status != http.StatusOK {
		t.Errorf("second, during the fill of a response without freshness: %v status %d cache %q, want no HIT", r2.err, r2.status, r2.cache)
	}
	if n := o.reqs.Load(); n != 2 {
		t.Errorf("origin got %d requests, want 2", n)
	}
}

// TestJoinedCompleteFillRevalidates: a request that joins a fill of a
// response without freshness after its body is complete, while it is still
// being stored (fsync, rename), waits for the store and then revalidates
// it with a conditional request, as any later request would. Before, it
// fetched the whole body again, unconditionally: the public suite's
// cc-resp-no-cache-revalidate flipped between runs on this window.
func TestJoinedCompleteFillRevalidates(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/n", object{body: []byte("0123456789"), cacheControl: "no-cache"})
	c := testCache(t, t.TempDir(), o, nil)
	committing, commit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.beforeCommit = func() {
		once.Do(func() {
			close(committing)
			<-commit
		})
	}
	waiting := make(chan struct{}, 1)
	c.joinWaits = func() { waiting <- struct{}{} }
	p := proxy(t, c, o)
	cl := client(t)
	r1 := get(t, cl, http.MethodGet, p.URL+"/n")
	if r1.err != nil || r1.cache != "MISS" || string(r1.body) != "0123456789" {
		t.Fatalf("first: %v cache %q body %q", r1.err, r1.cache, r1.body)
	}
	<-committing // the client has every byte; the entry is not stored yet
	done := make(chan result, 1)
	go func() { done <- get(t, cl, http.MethodGet, p.URL+"/n") }()
	select {
	case <-waiting:
		close(commit)
	case r2 := <-done:
		close(commit)
		t.Fatalf("second, while the complete body was being stored: %v cache %q, answered without waiting for the store (origin: %d bodies, %d not modified)",
			r2.err, r2.cache, o.gets.Load(), o.notMods.Load())
	}
	r2 := <-done
	if r2.err != nil || r2.status != http.StatusOK || string(r2.body) != "0123456789" || r2.cache != "REVALIDATED" {
		t.Fatalf("second: %v status %d cache %q body %q, want a REVALIDATED 200", r2.err, r2.status, r2.cache, r2.body)
	}
	if g, n := o.gets.Load(), o.notMods.Load(); g != 1 || n != 1 {
		t.Errorf("origin sent %d bodies and %d not modified, want 1 and 1", g, n)
	}
}

// TestAgeFromUpstream: an upstream's Age counts against the freshness
// lifetime (it was dropped before the lifetime was computed).
func TestAgeFromUpstream(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/old", object{body: []byte("a"), cacheControl: "max-age=60", extra: http.Header{"Age": {"100"}}})
	o.set("/young", object{body: []byte("a"), cacheControl: "max-age=60", extra: http.Header{"Age": {"10"}}})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	mustGet(t, cl, p.URL+"/old")
	c.bg.Wait()
	if r := mustGet(t, cl, p.URL+"/old"); r.cache == "HIT" {
		t.Errorf("max-age=60 with Age: 100 served as a HIT")
	}
	if r := mustGet(t, cl, p.URL+"/young"); r.cache != "MISS" || r.header.Get("Age") != "10" {
		t.Errorf("the answer streamed from the fill: %q Age %q, want MISS with the upstream's Age 10", r.cache, r.header.Get("Age"))
	}
	c.bg.Wait()
	r := mustGet(t, cl, p.URL+"/young")
	if r.cache != "HIT" || r.header.Get("Age") != "10" {
		t.Errorf("max-age=60 with Age: 10: cache %q Age %q, want HIT with Age 10", r.cache, r.header.Get("Age"))
	}
	for _, tt := range []struct {
		lines []string
		want  int64
	}{
		{nil, 0}, {[]string{"abc"}, 0}, {[]string{"-7200"}, 0}, {[]string{"7200.0"}, 0},
		{[]string{"7200, 0"}, 7200}, {[]string{"0, 7200"}, 0}, {[]string{"0", "7200"}, 0},
		{[]string{"2147483649"}, maxAgeValue}, {[]string{"7200;foo=bar"}, 7200},
	} {
		if got := ageValue(http.Header{"Age": tt.lines}); got != tt.want {
			t.Errorf("Age %q: %d, want %d", tt.lines, got, tt.want)
		}
	}
}

// TestExpiresStrict: Expires is an HTTP-date in one of its three forms,
// exactly; anything else, or more than one line, means expired.
func TestExpiresStrict(t *testing.T) {
	date := "Mon, 30 Nov 2026 12:00:00 GMT"
	for _, tt := range []struct {
		expires []string
		fresh   bool
	}{
		{[]string{"Thu, 18 Aug 2050 02:01:18 GMT"}, true},
		{[]string{"Thursday, 18-Aug-50 02:01:18 GMT"}, true},
		{[]string{"Thu Aug 18 02:01:18 2050"}, true},
		{[]string{"THU, 18 AUG 2050 02:01:18 gmt"}, true},
		{[]string{"Thu, 18  Aug  2050 02:01:18 GMT"}, false},
		{[]string{"Thu, 18 Aug 2050 2:01:18 GMT"}, false},
		{[]string{"Thu, 18 Aug 2050 02:01:18 UTC"}, false},
		{[]string{"Thu, 18 Aug 50 02:01:18 GMT"}, false},
		{[]string{"Thu, 18-Aug-2050 02:01:18 GMT"}, false},
		{[]string{"Thu, 18 Aug 2050 02:01:18 GMT", "Thu, 18 Aug 2050 02:01:19 GMT"}, false},
		{[]string{"0"}, false},
	} {
		h := http.Header{"Expires": tt.expires, "Date": {date}}
		lt, explicit := explicitLifetime(h, parseDirectives(h), time.Time{})
		if (lt > 0) != tt.fresh || !explicit {
			t.Errorf("Expires %q: lifetime %v explicit %v, want fresh %v", tt.expires, lt, explicit, tt.fresh)
		}
	}
}

// TestInvalidateUnsafe: a successful unsafe request invalidates its URL
// and the same-origin URLs in Location and Content-Location.
func TestInvalidateUnsafe(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, "M-SEARCH"} {
		t.Run(method, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			o.set("/a", object{body: []byte("a"), cacheControl: "max-age=600"})
			o.set("/b", object{body: []byte("b"), cacheControl: "max-age=600"})
			o.set("/c", object{body: []byte("c"), cacheControl: "max-age=600",
				extra: http.Header{"Location": {"/b"}, "Content-Location": {"http://elsewhere.example/a"}}})
			c := testCache(t, t.TempDir(), o, nil)
			p := proxy(t, c, o)
			cl := client(t)
			for _, u := range []string{"/a", "/b"} {
				mustGet(t, cl, p.URL+u)
				c.bg.Wait()
				if r := mustGet(t, cl, p.URL+u); r.cache != "HIT" {
					t.Fatalf("%s before: %q", u, r.cache)
				}
			}
			for _, u := range []string{"/a", "/c"} {
				req, _ := http.NewRequest(method, p.URL+u, strings.NewReader("x"))
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			if r := mustGet(t, cl, p.URL+"/a"); r.cache != "MISS" {
				t.Errorf("/a after %s /a: %q, want MISS", method, r.cache)
			}
			if r := mustGet(t, cl, p.URL+"/b"); r.cache != "MISS" {
				t.Errorf("/b after %s /c (Location: /b): %q, want MISS", method, r.cache)
			}
		})
	}
}

// TestCDNCacheControl: with Options.CDNCacheControl a valid
// CDN-Cache-Control replaces Cache-Control and Expires (RFC 9213); the
// gateway's default ignores it.
func TestCDNCacheControl(t *testing.T) {
	tests := []struct {
		name, cc, cdn string
		rfc, gateway  bool // HIT on the second request
	}{
		{"cdn fresh, cc no-store", "no-store", "max-age=600", true, false},
		{"cdn no-store, cc fresh", "max-age=600", "no-store", false, true},
		{"cdn private", "max-age=600", "private", false, true},
		{"cdn max-age=0", "max-age=600", "max-age=0", false, true},
		{"invalid cdn is ignored", "max-age=600", "Max-Age=0", true, true},
	}
	for _, tt := range tests {
		for _, rfc := range []bool{true, false} {
			clk := newClock()
			o := newOrigin(t, clk)
			o.set("/x", object{body: []byte("x"), cacheControl: tt.cc, extra: http.Header{"Cdn-Cache-Control": {tt.cdn}}})
			c := rfcCache(t, o, Options{CDNCacheControl: rfc})
			p := proxy(t, c, o)
			cl := client(t)
			mustGet(t, cl, p.URL+"/x")
			c.bg.Wait()
			want := tt.gateway
			if rfc {
				want = tt.rfc
			}
			if r := mustGet(t, cl, p.URL+"/x"); (r.cache == "HIT") != want {
				t.Errorf("%s (CDNCacheControl %v): second request %q, want HIT %v", tt.name, rfc, r.cache, want)
			}
		}
	}
}

// TestHonourAuthorization: RFC 9111 section 3.5 applies only with the
// option; the gateway (auth before the cache) stores for everyone.
func TestHonourAuthorization(t *testing.T) {
	for _, honour := range []bool{true, false} {
		clk := newClock()
		o := newOrigin(t, clk)
		o.set("/x", object{body: []byte("x"), cacheControl: "max-age=600"})
		c := rfcCache(t, o, Options{HonourAuthorization: honour})
		p := proxy(t, c, o)
		cl := client(t)
		mustGet(t, cl, p.URL+"/x", "Authorization", "Basic YTpi")
		c.bg.Wait()
		r := mustGet(t, cl, p.URL+"/x", "Authorization", "Basic YTpi")
		if (r.cache == "HIT") == honour {
			t.Errorf("HonourAuthorization %v: second request %q", honour, r.cache)
		}
	}
}

// TestVary: a response with Vary is stored per variant of the listed
// request fields; Vary: Accept-Encoding alone makes none.
func TestVary(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/v", object{body: []byte("v"), cacheControl: "max-age=600", extra: http.Header{"Vary": {"Foo, Accept-Encoding"}}})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	steps := []struct{ foo, want string }{{"1", "MISS"}, {"1", "HIT"}, {"2", "MISS"}, {"2", "HIT"}, {"1", "HIT"}, {"", "MISS"}}
	for i, s := range steps {
		var r result
		if s.foo == "" {
			r = mustGet(t, cl, p.URL+"/v")
		} else {
			r = mustGet(t, cl, p.URL+"/v", "Foo", s.foo)
		}
		c.bg.Wait()
		if r.cache != s.want {
			t.Errorf("step %d (Foo %q): %q, want %q", i, s.foo, r.cache, s.want)
		}
	}
	c.mu.Lock()
	n := len(c.variants["/v"])
	c.mu.Unlock()
	if n != 3 {
		t.Errorf("%d variants stored, want 3", n)
	}
	// Bounded.
	for i := range MaxVariants + 3 {
		mustGet(t, cl, p.URL+"/v", "Foo", strings.Repeat("x", i+3))
		c.bg.Wait()
	}
	c.mu.Lock()
	n = 0
	for k := range c.entries {
		if baseKey(k) == "/v" {
			n++
		}
	}
	c.mu.Unlock()
	if n != MaxVariants {
		t.Errorf("%d variants stored, want at most %d", n, MaxVariants)
	}
}

// TestStatusesAndHeuristics: statuses other than 200 are stored, with
// heuristic freshness from Last-Modified, and 404/410 of the export tree
// for NegativeMaxAge at most.
func TestStatusesAndHeuristics(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	// Last-Modified 2 h before Date: heuristic lifetime 12 min.
	o.set("/h", object{body: []byte("h")})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	mustGet(t, cl, p.URL+"/h")
	c.bg.Wait()
	clk.Advance(11 * time.Minute)
	if r := mustGet(t, cl, p.URL+"/h"); r.cache != "HIT" {
		t.Errorf("heuristic freshness: %q, want HIT", r.cache)
	}
	clk.Advance(2 * time.Minute)
	if r := mustGet(t, cl, p.URL+"/h"); r.cache == "HIT" {
		t.Errorf("past the heuristic lifetime: HIT")
	}

	const missing = "/concelier/exports/20261130T100000Z/none.json"
	r := mustGet(t, cl, p.URL+missing)
	c.bg.Wait()
	if r.status != 404 || r.cache != "MISS" {
		t.Fatalf("404: %d %q", r.status, r.cache)
	}
	if r := mustGet(t, cl, p.URL+missing); r.status != 404 || r.cache != "HIT" {
		t.Errorf("404 of the export tree: %d %q, want a 404 HIT", r.status, r.cache)
	}
	clk.Advance(NegativeMaxAge)
	if r := mustGet(t, cl, p.URL+missing); r.cache == "HIT" {
		t.Errorf("404 after NegativeMaxAge: HIT")
	}
	if r := mustGet(t, cl, p.URL+"/elsewhere"); r.status != 404 {
		t.Fatalf("404 elsewhere: %d", r.status)
	}
	c.bg.Wait()
	if r := mustGet(t, cl, p.URL+"/elsewhere"); r.cache == "HIT" {
		t.Errorf("a 404 outside the export tree without freshness was stored")
	}
}

// TestSetCookie: a response with Set-Cookie is stored; the gateway's
// cache stores it without the field, Options.KeepSetCookie with it.
func TestSetCookie(t *testing.T) {
	for _, keep := range []bool{false, true} {
		clk := newClock()
		o := newOrigin(t, clk)
		o.set("/s", object{body: []byte("s"), cacheControl: "max-age=600", extra: http.Header{"Set-Cookie": {"a=b"}}})
		c := rfcCache(t, o, Options{KeepSetCookie: keep})
		p := proxy(t, c, o)
		cl := client(t)
		mustGet(t, cl, p.URL+"/s")
		c.bg.Wait()
		r := mustGet(t, cl, p.URL+"/s")
		if r.cache != "HIT" || (r.header.Get("Set-Cookie") != "") != keep {
			t.Errorf("KeepSetCookie %v: %q Set-Cookie %q", keep, r.cache, r.header.Get("Set-Cookie"))
		}
	}
}

// TestStoredDateOnHit: every answer from the cache carries the stored
// Date, the fast hit path's too (the engines must send it as given:
// internal/fastserve TestSetDate).
func TestStoredDateOnHit(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/d", object{body: []byte("d"), cacheControl: "max-age=600"})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	first := mustGet(t, cl, p.URL+"/d")
	c.bg.Wait()
	clk.Advance(30 * time.Second)
	r := mustGet(t, cl, p.URL+"/d")
	if r.cache != "HIT" || r.header.Get("Date") != first.header.Get("Date") || r.header.Get("Age") != "30" {
		t.Errorf("hit: %q Date %q Age %q, want HIT with Date %q and Age 30", r.cache, r.header.Get("Date"), r.header.Get("Age"), first.header.Get("Date"))
	}
	hit, ok := c.LookupHit("/d", true, func(string) bool { return false })
	if !ok {
		t.Fatal("LookupHit: no hit")
	}
	defer hit.Release(0)
	if hit.Header.Get("Date") != first.header.Get("Date") || hit.Status != http.StatusOK {
		t.Errorf("LookupHit: Date %q status %d", hit.Header.Get("Date"), hit.Status)
	}
}

// TestRequestCacheControl: a client's Cache-Control counts only for a
// request marked WithClientCacheControl (or with HonourClientNoCache).
func TestRequestCacheControl(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f := newFreshness(http.Header{"Cache-Control": {"max-age=60"}}, t0, t0)
	mr := newFreshness(http.Header{"Cache-Control": {"max-age=60, must-revalidate"}}, t0, t0)
	for _, tt := range []struct {
		cc     string
		f      *freshness
		at     time.Duration
		accept bool
	}{
		{"", &f, 30 * time.Second, true},
		{"max-age=10", &f, 30 * time.Second, false},
		{"max-age=40", &f, 30 * time.Second, true},
		{"min-fresh=40", &f, 30 * time.Second, false},
		{"min-fresh=20", &f, 30 * time.Second, true},
		{"no-cache", &f, 0, false},
		{"", &f, 90 * time.Second, false},
		{"max-stale", &f, 90 * time.Second, true},
		{"max-stale=20", &f, 90 * time.Second, false},
		{"max-stale=40", &f, 90 * time.Second, true},
		{"max-stale", &mr, 90 * time.Second, false},
		{"max-stale=99999999999999999999", &f, 90 * time.Second, true}, // 2^31 (RFC 9111 section 1.2.2)
		{"max-age=99999999999999999999", &f, 30 * time.Second, true},
		{"max-age=-1", &f, 30 * time.Second, false},
	} {
		h := http.Header{}
		if tt.cc != "" {
			h.Set("Cache-Control", tt.cc)
		}
		if got := parseRequestDirectives(h).accepts(tt.f, t0.Add(tt.at)); got != tt.accept {
			t.Errorf("%q at %v: accepts %v, want %v", tt.cc, tt.at, got, tt.accept)
		}
	}

	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/x", object{body: []byte("x"), cacheControl: "max-age=60"})
	c := testCache(t, t.TempDir(), o, nil)
	do := func(path, cc string, honour bool) *http.Response {
		t.Helper()
		ctx := t.Context()
		if honour {
			ctx = WithClientCacheControl(ctx)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.URL+path, nil)
		if cc != "" {
			req.Header.Set("Cache-Control", cc)
		}
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		c.bg.Wait()
		return resp
	}
	do("/x", "", false)
	clk.Advance(30 * time.Second)
	if r := do("/x", "max-age=10", false); StatusOf(r.Header) != StatusHit {
		t.Errorf("max-age=10 not honoured: %s, want HIT", StatusOf(r.Header))
	}
	if r := do("/x", "max-age=10", true); StatusOf(r.Header) != StatusRevalidated {
		t.Errorf("max-age=10 honoured: %s, want REVALIDATED", StatusOf(r.Header))
	}
	if r := do("/x", "no-store", true); StatusOf(r.Header) != StatusBypass {
		t.Errorf("no-store honoured: %s, want BYPASS", StatusOf(r.Header))
	}
	before := o.reqs.Load()
	if r := do("/none", "only-if-cached", true); r.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("only-if-cached, not stored: %d, want 504", r.StatusCode)
	}
	if n := o.reqs.Load(); n != before {
		t.Errorf("only-if-cached reached the origin")
	}
	if r := do("/none", "only-if-cached", false); r.StatusCode != http.StatusNotFound {
		t.Errorf("only-if-cached not honoured: %d, want the origin's 404", r.StatusCode)
	}
}

package cache

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	immutableCC = "public, max-age=300, immutable"
	indexCC     = "public, max-age=60"
)

func TestMissThenHit(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	body := pattern(10000, 1)
	o.set("/concelier/exports/mirror/primary/manifest.json", object{body: body, cacheControl: immutableCC})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	u := p.URL + "/concelier/exports/mirror/primary/manifest.json"

	r := mustGet(t, cl, u)
	if r.status != 200 || r.cache != "MISS" || !bytes.Equal(r.body, body) {
		t.Fatalf("first: status %d cache %q len %d", r.status, r.cache, len(r.body))
	}
	c.bg.Wait() // the fill is committed
	clk.Advance(10 * time.Second)
	r = mustGet(t, cl, u)
	if r.status != 200 || r.cache != "HIT" || !bytes.Equal(r.body, body) {
		t.Fatalf("second: status %d cache %q len %d", r.status, r.cache, len(r.body))
	}
	if got := r.header.Get("Age"); got != "10" {
		t.Errorf("Age = %q, want 10", got)
	}
	for _, k := range []string{"ETag", "Last-Modified", "X-Stella-Export-Id", "Content-Type", "Cache-Control"} {
		if r.header.Get(k) == "" {
			t.Errorf("HIT lacks %s", k)
		}
	}
	if n := o.gets.Load(); n != 1 {
		t.Errorf("origin served %d bodies, want 1", n)
	}
	// A client's conditional request is answered from the cache.
	r = mustGet(t, cl, u, "If-None-Match", etagOf(body))
	if r.status != http.StatusNotModified || r.cache != "HIT" || len(r.body) != 0 {
		t.Errorf("conditional: status %d cache %q", r.status, r.cache)
	}
	// HEAD from the cache: headers, no body.
	h := get(t, cl, http.MethodHead, u)
	if h.err != nil || h.status != 200 || h.cache != "HIT" || h.header.Get("Content-Length") != "10000" {
		t.Errorf("HEAD: %v status %d cache %q length %q", h.err, h.status, h.cache, h.header.Get("Content-Length"))
	}
	// Other methods bypass.
	pr := get(t, cl, http.MethodPost, u)
	if pr.err != nil || pr.cache != "BYPASS" {
		t.Errorf("POST: %v cache %q", pr.err, pr.cache)
	}
}

func TestHeadMissFillsCache(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	body := pattern(5000, 2)
	o.set("/x", object{body: body, cacheControl: immutableCC})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	h := get(t, cl, http.MethodHead, p.URL+"/x")
	if h.err != nil || h.status != 200 || h.cache != "MISS" || h.header.Get("Content-Length") != "5000" || len(h.body) != 0 {
		t.Fatalf("HEAD: %v status %d cache %q", h.err, h.status, h.cache)
	}
	c.bg.Wait() // the fill goes on without a reader
	r := mustGet(t, cl, p.URL+"/x")
	if r.cache != "HIT" || !bytes.Equal(r.body, body) {
		t.Fatalf("GET after HEAD: cache %q len %d", r.cache, len(r.body))
	}
	if n := o.gets.Load(); n != 1 {
		t.Errorf("origin served %d bodies, want 1", n)
	}
}

// TestStampede: 100 concurrent cold requests make one upstream fetch,
// every client receives its first bytes while the fill is still blocked
// mid-body, and all get identical complete bytes; one MISS, 99 HIT.
func TestStampede(t *testing.T) {
	const clients = 100
	clk := newClock()
	o := newOrigin(t, clk)
	body := pattern(1<<20, 3)
	o.set("/bundle", object{body: body, cacheControl: immutableCC})
	release := make(chan struct{})
	o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
		w.WriteHeader(http.StatusOK)
		w.Write(obj.body[:len(obj.body)/2])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write(obj.body[len(obj.body)/2:])
	}
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)

	firstBytes := make(chan struct{}, clients)
	results := make([]result, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Get(p.URL + "/bundle")
			if err != nil {
				results[i].err = err
				firstBytes <- struct{}{}
				return
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			one := make([]byte, 1)
			_, err = resp.Body.Read(one)
			buf.Write(one)
			firstBytes <- struct{}{}
			if err == nil {
				_, err = buf.ReadFrom(resp.Body)
			}
			results[i] = result{status: resp.StatusCode, cache: resp.Header.Get(Header), body: buf.Bytes(), err: err}
		}()
	}
	deadline := time.After(60 * time.Second)
	for range clients {
		select {
		case <-firstBytes:
		case <-deadline:
			close(release)
			t.Fatal("not every client received its first bytes while the fill was blocked")
		}
	}
	if c.m.fillsInFlight != nil && testutilGauge(c.m.fillsInFlight) != 1 {
		t.Errorf("fills in flight = %v while blocked, want 1", testutilGauge(c.m.fillsInFlight))
	}
	close(release)
	wg.Wait()
	want := sha256.Sum256(body)
	counts := map[string]int{}
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("client %d: %v", i, r.err)
		}
		if r.status != 200 || sha256.Sum256(r.body) != want {
			t.Fatalf("client %d: status %d, %d bytes, not the object", i, r.status, len(r.body))
		}
		counts[r.cache]++
	}
	if counts["MISS"] != 1 || counts["HIT"] != clients-1 {
		t.Errorf("statuses %v, want 1 MISS and %d HIT", counts, clients-1)
	}
	if n := o.reqs.Load(); n != 1 {
		t.Errorf("origin got %d requests, want 1", n)
	}
}

// TestFillFailure: a fill that breaks is never stored and every client
// streaming from it sees an error, never a short 200.
func TestFillFailure(t *testing.T) {
	tests := []struct {
		name string
		// fail ends the response after the first half was delivered.
		fail func(w http.ResponseWriter, obj object)
		etag string
	}{
		{name: "reset", fail: func(w http.ResponseWriter, obj object) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}},
		{name: "short body", fail: func(w http.ResponseWriter, obj object) {
			// return early: net/http closes a response shorter than its Content-Length
		}},
		{name: "digest mismatch", etag: etagOf([]byte("other")), fail: func(w http.ResponseWriter, obj object) {
			w.Write(obj.body[len(obj.body)/2:])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const clients = 5
			clk := newClock()
			o := newOrigin(t, clk)
			body := pattern(512<<10, 4)
			o.set("/bundle", object{body: body, cacheControl: immutableCC, etag: tt.etag})
			release := make(chan struct{})
			o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
				w.WriteHeader(http.StatusOK)
				w.Write(obj.body[:len(obj.body)/2])
				w.(http.Flusher).Flush()
				<-release
				tt.fail(w, obj)
			}
			dir := t.TempDir()
			c := testCache(t, dir, o, nil)
			p := proxy(t, c, o)
			cl := client(t)
			started := make(chan struct{}, clients)
			errs := make(chan error, clients)
			for range clients {
				go func() {
					resp, err := cl.Get(p.URL + "/bundle")
					if err != nil {
						started <- struct{}{}
						errs <- err
						return
					}
					defer resp.Body.Close()
					one := make([]byte, 1)
					_, err = resp.Body.Read(one)
					started <- struct{}{}
					if err == nil {
						_, err = bytes.NewBuffer(nil).ReadFrom(resp.Body)
					}
					errs <- err
				}()
			}
			for range clients {
				<-started
			}
			close(release)
			for range clients {
				if err := <-errs; err == nil {
					t.Error("a client read a complete body from a broken fill")
				}
			}
			nothingStored(t, c, dir, "after a failed fill")
			if testutilCounter(c.m.fillFailures) != 1 {
				t.Errorf("fill failures = %v, want 1", testutilCounter(c.m.fillFailures))
			}
			// The next request fetches again.
			o.hook = nil
			o.set("/bundle", object{body: body, cacheControl: immutableCC})
			r := mustGet(t, cl, p.URL+"/bundle")
			if r.cache != "MISS" || !bytes.Equal(r.body, body) {
				t.Errorf("after failure: cache %q len %d", r.cache, len(r.body))
			}
		})
	}
}

func TestStaleOnOriginFailure(t *testing.T) {
	tests := []struct {
		name string
		fail func(o *origin)
	}{
		{"503", func(o *origin) { o.setDown(true) }},
		{"connection refused", func(o *origin) { o.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			body := pattern(3000, 5)
			o.set("/concelier/exports/index.json", object{body: body, cacheControl: indexCC})
			c := testCache(t, t.TempDir(), o, func(cfg *Config) { cfg.StaleIfErrorGrace = time.Hour })
			p := proxy(t, c, o)
			cl := client(t)
			u := p.URL + "/concelier/exports/index.json"
			if r := mustGet(t, cl, u); r.cache != "MISS" {
				t.Fatalf("first: %q", r.cache)
			}
			c.bg.Wait()
			tt.fail(o)
			clk.Advance(30 * time.Minute) // stale, within the grace
			r := mustGet(t, cl, u)
			if r.status != 200 || r.cache != "STALE" || !bytes.Equal(r.body, body) {
				t.Fatalf("within grace: status %d cache %q len %d", r.status, r.cache, len(r.body))
			}
			clk.Advance(time.Hour) // beyond the grace
			r = mustGet(t, cl, u)
			if r.status < 500 || r.cache != "EXPIRED" {
				t.Fatalf("beyond grace: status %d cache %q, want 5xx EXPIRED", r.status, r.cache)
			}
		})
	}
}

func TestStaleIfErrorDirectiveAndMustRevalidate(t *testing.T) {
	tests := []struct {
		cc        string
		advance   time.Duration
		wantStale bool
	}{
		{"public, max-age=60, stale-if-error=7200", 90 * time.Minute, true}, // beyond the 1h grace, within the directive
		{"public, max-age=60", 90 * time.Minute, false},
		{"public, max-age=60, must-revalidate", 2 * time.Minute, false},
		{"public, s-maxage=60", 2 * time.Minute, false},
	}
	for _, tt := range tests {
		t.Run(tt.cc, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			o.set("/i", object{body: []byte("index"), cacheControl: tt.cc})
			c := testCache(t, t.TempDir(), o, func(cfg *Config) { cfg.StaleIfErrorGrace = time.Hour })
			p := proxy(t, c, o)
			cl := client(t)
			mustGet(t, cl, p.URL+"/i")
			c.bg.Wait()
			o.setDown(true)
			clk.Advance(tt.advance)
			r := mustGet(t, cl, p.URL+"/i")
			if got := r.cache == "STALE"; got != tt.wantStale {
				t.Errorf("status %d cache %q, want stale=%v", r.status, r.cache, tt.wantStale)
			}
		})
	}
}

func TestImmutableNotRevalidatedWhileFresh(t *testing.T) {
	tests := []struct {
		name      string
		cc        string
		honour    bool
		wantCache string
		wantReqs  int64
	}{
		{"immutable, client no-cache honoured", immutableCC, true, "HIT", 1},
		{"mutable, client no-cache honoured", indexCC, true, "REVALIDATED", 2},
		{"mutable, client no-cache ignored (default)", indexCC, false, "HIT", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			o.set("/m", object{body: []byte(`{"m":1}`), cacheControl: tt.cc})
			c := testCache(t, t.TempDir(), o, func(cfg *Config) { cfg.HonourClientNoCache = tt.honour })
			p := proxy(t, c, o)
			cl := client(t)
			mustGet(t, cl, p.URL+"/m")
			c.bg.Wait()
			clk.Advance(30 * time.Second)
			r := mustGet(t, cl, p.URL+"/m", "Cache-Control", "no-cache")
			if r.cache != tt.wantCache || string(r.body) != `{"m":1}` {
				t.Errorf("cache %q body %q, want %s", r.cache, r.body, tt.wantCache)
			}
			if n := o.reqs.Load(); n != tt.wantReqs {
				t.Errorf("origin requests %d, want %d", n, tt.wantReqs)
			}
		})
	}
}

func TestRevalidation304(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	body := pattern(200<<10, 6)
	o.set("/concelier/exports/index.json", object{body: body, cacheControl: indexCC})
	dir := t.TempDir()
	c := testCache(t, dir, o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	u := p.URL + "/concelier/exports/index.json"
	mustGet(t, cl, u)
	c.bg.Wait()
	clk.Advance(61 * time.Second)
	r := mustGet(t, cl, u)
	if r.cache != "REVALIDATED" || !bytes.Equal(r.body, body) {
		t.Fatalf("stale: cache %q len %d", r.cache, len(r.body))
	}
	if got := (*o.lastHeader.Load()).Get("If-None-Match"); got != etagOf(body) {
		t.Errorf("revalidation If-None-Match = %q", got)
	}
	if g, n := o.gets.Load(), o.notMods.Load(); g != 1 || n != 1 {
		t.Errorf("origin sent %d bodies and %d 304s, want 1 and 1", g, n)
	}
	if r.header.Get("Age") != "0" {
		t.Errorf("Age after revalidation = %q, want 0", r.header.Get("Age"))
	}
	// The refreshed metadata makes it fresh again, also after a restart.
	clk.Advance(30 * time.Second)
	if r := mustGet(t, cl, u); r.cache != "HIT" {
		t.Errorf("after revalidation: %q", r.cache)
	}
	c.Close()
	c2 := testCache(t, dir, o, nil)
	p2 := proxy(t, c2, o)
	if r := mustGet(t, cl, p2.URL+"/concelier/exports/index.json"); r.cache != "HIT" || !bytes.Equal(r.body, body) {
		t.Errorf("after restart: cache %q", r.cache)
	}
	if g := o.gets.Load(); g != 1 {
		t.Errorf("origin sent %d bodies, want 1", g)
	}
}

func TestRevalidationNewBody(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/i", object{body: []byte("v1"), cacheControl: indexCC})
	dir := t.TempDir()
	c := testCache(t, dir, o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	mustGet(t, cl, p.URL+"/i")
	c.bg.Wait()
	o.set("/i", object{body: []byte("version 2"), cacheControl: indexCC})
	clk.Advance(2 * time.Minute)
	if r := mustGet(t, cl, p.URL+"/i"); r.cache != "EXPIRED" || string(r.body) != "version 2" {
		t.Fatalf("cache %q body %q", r.cache, r.body)
	}
	c.bg.Wait()
	if r := mustGet(t, cl, p.URL+"/i"); r.cache != "HIT" || string(r.body) != "version 2" {
		t.Fatalf("cache %q body %q", r.cache, r.body)
	}
	if n := len(storedFiles(t, dir)); n != 2 {
		t.Errorf("%d files stored, want 2 (one body, one meta; the old version removed)", n)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/i", object{body: []byte("v1"), cacheControl: "public, max-age=60, stale-while-revalidate=120"})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	mustGet(t, cl, p.URL+"/i")
	c.bg.Wait()

	o.set("/i", object{body: []byte("v2"), cacheControl: "public, max-age=60, stale-while-revalidate=120"})
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
		arrived <- struct{}{}
		<-release
		w.WriteHeader(http.StatusOK)
		w.Write(obj.body)
	}
	clk.Advance(90 * time.Second)
	// Answered at once from the stale entry while the origin is blocked.
	for range 5 {
		r := mustGet(t, cl, p.URL+"/i")
		if r.cache != "UPDATING" || string(r.body) != "v1" {
			t.Fatalf("cache %q body %q, want UPDATING v1", r.cache, r.body)
		}
	}
	<-arrived
	close(release)
	c.bg.Wait()
	if n := o.reqs.Load(); n != 2 {
		t.Errorf("origin got %d requests, want 2 (fill + one background revalidation)", n)
	}
	if r := mustGet(t, cl, p.URL+"/i"); r.cache != "HIT" || string(r.body) != "v2" {
		t.Errorf("after revalidation: cache %q body %q", r.cache, r.body)
	}
}

func TestNotStored(t *testing.T) {
	tests := []struct {
		name   string
		obj    object
		status int
	}{
		{"no-store", object{body: []byte("a"), cacheControl: "no-store"}, 200},
		{"private", object{body: []byte("a"), cacheControl: "private, max-age=60"}, 200},
		{"public private", object{body: []byte("a"), cacheControl: "public, max-age=60, private"}, 200},
		{"vary star", object{body: []byte("a"), cacheControl: indexCC, extra: http.Header{"Vary": {"Accept, *"}}}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			o.set("/o", tt.obj)
			dir := t.TempDir()
			c := testCache(t, dir, o, nil)
			p := proxy(t, c, o)
			cl := client(t)
			for range 2 {
				r := mustGet(t, cl, p.URL+"/o")
				if r.status != tt.status || r.cache != "MISS" || string(r.body) != "a" {
					t.Fatalf("status %d cache %q body %q", r.status, r.cache, r.body)
				}
			}
			if n := o.reqs.Load(); n != 2 {
				t.Errorf("origin got %d requests, want 2", n)
			}
			c.bg.Wait()
			if files := storedFiles(t, dir); len(files) != 0 {
				t.Errorf("stored: %v", files)
			}
		})
	}
	t.Run("HEAD of a private object", func(t *testing.T) {
		clk := newClock()
		o := newOrigin(t, clk)
		o.set("/p", object{body: []byte("secret body"), cacheControl: "private"})
		c := testCache(t, t.TempDir(), o, nil)
		p := proxy(t, c, o)
		cl := client(t)
		for range 2 {
			r := get(t, cl, http.MethodHead, p.URL+"/p")
			if r.err != nil || r.status != 200 || r.cache != "MISS" || len(r.body) != 0 {
				t.Fatalf("HEAD: %v status %d cache %q body %q", r.err, r.status, r.cache, r.body)
			}
		}
	})
	t.Run("404", func(t *testing.T) {
		clk := newClock()
		o := newOrigin(t, clk)
		c := testCache(t, t.TempDir(), o, nil)
		p := proxy(t, c, o)
		cl := client(t)
		r := mustGet(t, cl, p.URL+"/missing")
		if r.status != 404 || r.cache != "MISS" {
			t.Errorf("status %d cache %q", r.status, r.cache)
		}
	})
}

func TestKeyIgnoresAuthorization(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/concelier/exports/index.json", object{body: []byte("idx"), cacheControl: indexCC})
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	u := p.URL + "/concelier/exports/index.json"
	r1 := mustGet(t, cl, u, "Authorization", "Bearer alice-token")
	r2 := mustGet(t, cl, u, "Authorization", "Bearer bob-token")
	r3 := mustGet(t, cl, u)
	if r1.cache != "MISS" || r2.cache != "HIT" || r3.cache != "HIT" {
		t.Errorf("statuses %q %q %q, want MISS HIT HIT", r1.cache, r2.cache, r3.cache)
	}
	if n := o.reqs.Load(); n != 1 {
		t.Errorf("origin got %d requests, want 1", n)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if strings.Contains(k, "token") {
			t.Errorf("key %q contains credentials", k)
		}
	}
	// Different queries are different objects.
	if Key(mustURL(t, "/a?x=1")) == Key(mustURL(t, "/a?x=2")) {
		t.Error("query ignored in the key")
	}
}

// TestUnknownLength: a chunked upstream body (no Content-Length) is
// streamed, checked against its digest, stored, and then served with a
// Content-Length; a digest mismatch still fails the clients.
func TestUnknownLength(t *testing.T) {
	for _, tt := range []struct {
		name string
		etag string
		ok   bool
	}{{"verified", "", true}, {"digest mismatch", etagOf([]byte("x")), false}} {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			body := pattern(300<<10, 11)
			o.set("/c", object{body: body, cacheControl: immutableCC, etag: tt.etag})
			o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
				w.Header().Del("Content-Length")
				w.WriteHeader(http.StatusOK)
				w.Write(obj.body[:1000])
				w.(http.Flusher).Flush()
				w.Write(obj.body[1000:])
			}
			c := testCache(t, t.TempDir(), o, nil)
			p := proxy(t, c, o)
			cl := client(t)
			r := get(t, cl, http.MethodGet, p.URL+"/c")
			if !tt.ok {
				if r.err == nil {
					t.Fatalf("read a complete body (%d bytes) from a fill that failed its digest", len(r.body))
				}
				return
			}
			if r.err != nil || !bytes.Equal(r.body, body) {
				t.Fatalf("%v, %d bytes", r.err, len(r.body))
			}
			c.bg.Wait()
			r = mustGet(t, cl, p.URL+"/c")
			if r.cache != "HIT" || r.header.Get("Content-Length") != "307200" || !bytes.Equal(r.body, body) {
				t.Errorf("cache %q Content-Length %q", r.cache, r.header.Get("Content-Length"))
			}
		})
	}
}

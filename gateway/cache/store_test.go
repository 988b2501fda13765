package cache

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testutilGauge(g prometheus.Gauge) float64     { return testutil.ToFloat64(g) }
func testutilCounter(c prometheus.Counter) float64 { return testutil.ToFloat64(c) }
func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRestartKeepsDiskCache(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	big := pattern(1<<20, 7)
	small := []byte(`{"small":true}`)
	o.set("/big", object{body: big, cacheControl: immutableCC})
	o.set("/small", object{body: small, cacheControl: immutableCC})
	dir := t.TempDir()
	c := testCache(t, dir, o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	mustGet(t, cl, p.URL+"/big")
	mustGet(t, cl, p.URL+"/small")
	c.bg.Wait()
	c.Close()
	o.setDown(true)

	c2 := testCache(t, dir, o, nil)
	p2 := proxy(t, c2, o)
	for path, want := range map[string][]byte{"/big": big, "/small": small} {
		r := mustGet(t, cl, p2.URL+path)
		if r.status != 200 || r.cache != "HIT" || !bytes.Equal(r.body, want) {
			t.Errorf("%s after restart: status %d cache %q len %d", path, r.status, r.cache, len(r.body))
		}
	}
	if n := o.reqs.Load(); n != 2 {
		t.Errorf("origin got %d requests, want 2", n)
	}
	if v := testutilGauge(c2.m.storedObjects); v != 2 {
		t.Errorf("stored objects after restart = %v, want 2", v)
	}
}

// TestPartialFilesNotServed: what a crash leaves behind (a temporary fill
// file, a body without metadata, metadata whose body is short) is deleted
// at start and never served.
func TestPartialFilesNotServed(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	body := pattern(300<<10, 8)
	o.set("/a", object{body: body, cacheControl: immutableCC})
	o.set("/b", object{body: body[:1000], cacheControl: immutableCC})
	dir := t.TempDir()
	c := testCache(t, dir, o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	mustGet(t, cl, p.URL+"/a")
	mustGet(t, cl, p.URL+"/b")
	c.bg.Wait()
	c.Close()

	vdir := filepath.Join(dir, formatDir)
	// Crash remnants.
	aBody := c.entries["/a"].body
	if err := os.Truncate(aBody, 100<<10); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vdir, tmpPrefix+"123"), body[:5000], 0o600)
	os.WriteFile(filepath.Join(vdir, keyHash("/c")+"-1-1"+bodySuffix), body, 0o600)
	os.WriteFile(filepath.Join(vdir, keyHash("/d")+"-1-1"+metaSuffix), []byte("{not json"), 0o600)

	c2 := testCache(t, dir, o, nil)
	p2 := proxy(t, c2, o)
	r := mustGet(t, cl, p2.URL+"/a")
	if r.cache != "MISS" || !bytes.Equal(r.body, body) {
		t.Errorf("truncated object: cache %q len %d, want a MISS with the full body", r.cache, len(r.body))
	}
	if r := mustGet(t, cl, p2.URL+"/b"); r.cache != "HIT" {
		t.Errorf("intact object: cache %q", r.cache)
	}
	c2.bg.Wait()
	for _, name := range storedFiles(t, dir) {
		if strings.HasPrefix(name, tmpPrefix) || strings.HasPrefix(name, keyHash("/c")) || strings.HasPrefix(name, keyHash("/d")) {
			t.Errorf("crash remnant %s not removed", name)
		}
	}
}

// TestSizeBoundUnderChurn: concurrent fills of many distinct objects never
// leave more than MaxSize on disk, and the most recently used survive.
func TestSizeBoundUnderChurn(t *testing.T) {
	const (
		objSize = 100 << 10
		maxSize = 1 << 20
		objects = 60
		workers = 4
	)
	clk := newClock()
	o := newOrigin(t, clk)
	for i := range objects {
		o.set(fmt.Sprintf("/o/%d", i), object{body: pattern(objSize, byte(i)), cacheControl: immutableCC})
	}
	dir := t.TempDir()
	c := testCache(t, dir, o, func(cfg *Config) { cfg.MaxSize = maxSize; cfg.MaxObjectSize = maxSize })
	p := proxy(t, c, o)
	cl := client(t)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < objects; i += workers {
				r := get(t, cl, http.MethodGet, p.URL+fmt.Sprintf("/o/%d", i))
				if r.err != nil || len(r.body) != objSize {
					t.Errorf("object %d: %v, %d bytes", i, r.err, len(r.body))
				}
			}
		}()
	}
	wg.Wait()
	c.bg.Wait()
	c.mu.Lock()
	size, n := c.size, len(c.entries)
	c.mu.Unlock()
	if size > maxSize {
		t.Errorf("index holds %d bytes, bound %d", size, maxSize)
	}
	var onDisk int64
	bodies := 0
	for _, name := range storedFiles(t, dir) {
		if strings.HasSuffix(name, bodySuffix) {
			st, err := os.Stat(filepath.Join(dir, formatDir, name))
			if err != nil {
				t.Fatal(err)
			}
			onDisk += st.Size()
			bodies++
		}
	}
	if onDisk > maxSize || bodies != n {
		t.Errorf("disk holds %d bytes in %d bodies (index %d), bound %d", onDisk, bodies, n, maxSize)
	}
	// Least recently used goes first: with room for 10 objects, touch
	// /o/0, then store 9 others; /o/0 stays, the one before it goes.
	for _, i := range []int{1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10} {
		mustGet(t, cl, p.URL+fmt.Sprintf("/o/%d", i))
		c.bg.Wait() // committed in this order
	}
	c.mu.Lock()
	_, hot := c.entries["/o/0"]
	_, cold := c.entries["/o/1"]
	c.mu.Unlock()
	if !hot || cold {
		t.Errorf("LRU order: /o/0 (recently used) kept %v, /o/1 (least recently used) kept %v", hot, cold)
	}
	if testutilCounter(c.m.evictDisk) < objects-maxSize/objSize {
		t.Errorf("evictions = %v", testutilCounter(c.m.evictDisk))
	}
}

func TestMemoryTier(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	for i := range 10 {
		o.set(fmt.Sprintf("/s/%d", i), object{body: pattern(1000, byte(i)), cacheControl: immutableCC})
	}
	c := testCache(t, t.TempDir(), o, func(cfg *Config) { cfg.MemoryMaxObjectSize = 1000; cfg.MemoryMaxSize = 3000 })
	p := proxy(t, c, o)
	cl := client(t)
	for i := range 10 {
		mustGet(t, cl, p.URL+fmt.Sprintf("/s/%d", i))
		c.bg.Wait() // committed, in this order
	}
	c.mu.Lock()
	memSize, memN := c.memSize, c.memLRU.Len()
	_, last := c.entries["/s/9"]
	inMem := last && c.entries["/s/9"].mem != nil
	c.mu.Unlock()
	if memSize > 3000 || memN != 3 || !inMem {
		t.Errorf("memory tier: %d bytes, %d objects, newest in memory %v", memSize, memN, inMem)
	}
	// Served from memory with the right bytes, even with the file gone.
	os.Remove(c.entries["/s/9"].body)
	if r := mustGet(t, cl, p.URL+"/s/9"); r.cache != "HIT" || !bytes.Equal(r.body, pattern(1000, 9)) {
		t.Errorf("memory hit: cache %q", r.cache)
	}
}

func TestRangeFromCache(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	body := pattern(100000, 9)
	o.set("/b", object{body: body, cacheControl: immutableCC})
	c := testCache(t, t.TempDir(), o, func(cfg *Config) { cfg.MemoryMaxObjectSize = 1 << 10; cfg.MemoryMaxSize = 1 << 20 })
	p := proxy(t, c, o)
	cl := client(t)
	// A Range on a cold cache: the fill fetches the whole object, the
	// client gets its part.
	r := mustGet(t, cl, p.URL+"/b", "Range", "bytes=10-19")
	if r.status != 206 || r.cache != "MISS" || !bytes.Equal(r.body, body[10:20]) {
		t.Fatalf("cold range: status %d cache %q body %d bytes", r.status, r.cache, len(r.body))
	}
	c.bg.Wait()
	tests := []struct {
		name, rng, ifRange string
		status             int
		want               []byte
		contentRange       string
	}{
		{"first bytes", "bytes=0-9", "", 206, body[:10], "bytes 0-9/100000"},
		{"open end", "bytes=99990-", "", 206, body[99990:], "bytes 99990-99999/100000"},
		{"suffix", "bytes=-5", "", 206, body[99995:], "bytes 99995-99999/100000"},
		{"end beyond size", "bytes=99000-200000", "", 206, body[99000:], "bytes 99000-99999/100000"},
		{"unsatisfiable", "bytes=100000-", "", 416, nil, "bytes */100000"},
		{"multi-range gets the whole", "bytes=0-1,5-6", "", 200, body, ""},
		{"malformed gets the whole", "bytes=x-y", "", 200, body, ""},
		{"if-range matches", "bytes=0-9", etagOf(body), 206, body[:10], "bytes 0-9/100000"},
		{"if-range differs", "bytes=0-9", `"other"`, 200, body, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := []string{"Range", tt.rng}
			if tt.ifRange != "" {
				kv = append(kv, "If-Range", tt.ifRange)
			}
			r := mustGet(t, cl, p.URL+"/b", kv...)
			if r.status != tt.status || r.cache != "HIT" || !bytes.Equal(r.body, tt.want) {
				t.Errorf("status %d cache %q, %d bytes (want %d, %d bytes)", r.status, r.cache, len(r.body), tt.status, len(tt.want))
			}
			if got := r.header.Get("Content-Range"); got != tt.contentRange {
				t.Errorf("Content-Range %q, want %q", got, tt.contentRange)
			}
		})
	}
	if n := o.reqs.Load(); n != 1 {
		t.Errorf("origin got %d requests, want 1", n)
	}
}

func TestPurge(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/a", object{body: []byte("a"), cacheControl: immutableCC})
	o.set("/a?x=1", object{body: []byte("ax"), cacheControl: immutableCC})
	o.set("/b", object{body: []byte("b"), cacheControl: immutableCC})
	dir := t.TempDir()
	c := testCache(t, dir, o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	for _, path := range []string{"/a", "/a?x=1", "/b"} {
		mustGet(t, cl, p.URL+path)
	}
	c.bg.Wait()
	admin := newServer(t, c.PurgeHandler())
	tests := []struct {
		method, query string
		status        int
		body          string
	}{
		{"GET", "?all=true", 405, ""},
		{"POST", "", 400, ""},
		{"POST", "?path=a", 400, ""},
		{"POST", "?path=/a&all=true", 400, ""},
		{"POST", "?path=/a", 200, `{"purged":2}`},
		{"PURGE", "?path=/a", 200, `{"purged":0}`},
		{"DELETE", "?all=true", 200, `{"purged":1}`},
	}
	for _, tt := range tests {
		r := get(t, cl, tt.method, admin.URL+"/"+tt.query)
		if r.err != nil || r.status != tt.status || (tt.body != "" && strings.TrimSpace(string(r.body)) != tt.body) {
			t.Errorf("%s %s: %v status %d body %s", tt.method, tt.query, r.err, r.status, r.body)
		}
	}
	if files := storedFiles(t, dir); len(files) != 0 {
		t.Errorf("files after purge: %v", files)
	}
	if r := mustGet(t, cl, p.URL+"/a"); r.cache != "MISS" {
		t.Errorf("after purge: %q", r.cache)
	}
}

func TestMetricsRegistered(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/a", object{body: []byte("aaaa"), cacheControl: immutableCC})
	reg := prometheus.NewRegistry()
	c, err := New(Config{Dir: t.TempDir()}, nil, Options{Registerer: reg, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := proxy(t, c, o)
	cl := client(t)
	mustGet(t, cl, p.URL+"/a")
	mustGet(t, cl, p.URL+"/a")
	c.bg.Wait()
	want := `
# HELP stella_mirror_cache_requests_total Requests answered through the cache, by X-Cache-Status.
# TYPE stella_mirror_cache_requests_total counter
stella_mirror_cache_requests_total{cache_status="BYPASS"} 0
stella_mirror_cache_requests_total{cache_status="EXPIRED"} 0
stella_mirror_cache_requests_total{cache_status="HIT"} 1
stella_mirror_cache_requests_total{cache_status="MISS"} 1
stella_mirror_cache_requests_total{cache_status="REVALIDATED"} 0
stella_mirror_cache_requests_total{cache_status="STALE"} 0
stella_mirror_cache_requests_total{cache_status="UPDATING"} 0
# HELP stella_mirror_cache_served_bytes_total Body bytes sent to clients, by source: cache (stored objects and joined fills) or upstream (the request that fetched them).
# TYPE stella_mirror_cache_served_bytes_total counter
stella_mirror_cache_served_bytes_total{source="cache"} 4
stella_mirror_cache_served_bytes_total{source="upstream"} 4
# HELP stella_mirror_cache_stored_objects Objects in the disk tier.
# TYPE stella_mirror_cache_stored_objects gauge
stella_mirror_cache_stored_objects 1
# HELP stella_mirror_cache_fills_in_flight Upstream fetches (fills and revalidations) in progress.
# TYPE stella_mirror_cache_fills_in_flight gauge
stella_mirror_cache_fills_in_flight 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"stella_mirror_cache_requests_total", "stella_mirror_cache_served_bytes_total",
		"stella_mirror_cache_stored_objects", "stella_mirror_cache_fills_in_flight"); err != nil {
		t.Error(err)
	}
	// A second cache on the same registry is refused, not silently merged.
	if _, err := New(Config{Dir: t.TempDir()}, nil, Options{Registerer: reg}); err == nil {
		t.Error("duplicate registration accepted")
	}
}

// TestPurgeDuringFill: a request after a purge does not join the purged
// path's fill in progress (MISS, a second upstream fetch); the client of
// that fill still gets every byte, and it is not stored.
func TestPurgeDuringFill(t *testing.T) {
	clk := newClock()
	o := newOrigin(t, clk)
	body := pattern(256<<10, 7)
	o.set("/a", object{body: body, cacheControl: immutableCC})
	release := o.stallFirst() // the first fill stalls half way
	c := testCache(t, t.TempDir(), o, nil)
	p := proxy(t, c, o)
	cl := client(t)
	resp, err := cl.Get(p.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len(body)/2)
	if _, err := io.ReadFull(resp.Body, first); err != nil || resp.Header.Get(Header) != "MISS" {
		t.Fatalf("first half: %v %q", err, resp.Header.Get(Header))
	}
	c.Purge("/a")
	if r := mustGet(t, cl, p.URL+"/a"); r.cache != "MISS" || !bytes.Equal(r.body, body) {
		t.Fatalf("after the purge: %q, %d bytes; want MISS and the whole body", r.cache, len(r.body))
	}
	close(release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(append(first, rest...), body) {
		t.Fatalf("the purged fill's client: %v, %d bytes", err, len(first)+len(rest))
	}
	resp.Body.Close()
	c.bg.Wait()
	if r := mustGet(t, cl, p.URL+"/a"); r.cache != "HIT" || o.gets.Load() != 2 {
		t.Fatalf("then: %q after %d upstream fetches; want HIT after 2", r.cache, o.gets.Load())
	}
}

// TestPurgedFillNotStored: a fill in progress when its path is purged is
// never stored, whether or not a newer fill followed: the purge is the
// operator saying the bytes being fetched are wrong. "alone": the next
// request after the purged fill is a MISS; "after a newer fill": the
// origin changed the object and a request after the purge stored the new
// bytes; the purged fill, ending last, must not put the old ones back.
// Before, the mutation cache-purge-during-fill (the purge epoch check
// dropped from the store decision) survived: TestPurgeDuringFill served
// the same bytes before and after, so which fill was stored did not show.
func TestPurgedFillNotStored(t *testing.T) {
	for _, newer := range []bool{false, true} {
		t.Run(map[bool]string{false: "alone", true: "after a newer fill"}[newer], func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			old, fresh := pattern(64<<10, 1), pattern(64<<10, 2)
			o.set("/a", object{body: old, cacheControl: immutableCC})
			release := o.stallFirst() // the first fill stalls half way
			c := testCache(t, t.TempDir(), o, nil)
			p := proxy(t, c, o)
			cl := client(t)
			resp, err := cl.Get(p.URL + "/a")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			first := make([]byte, 1<<10)
			if _, err := io.ReadFull(resp.Body, first); err != nil || resp.Header.Get(Header) != "MISS" {
				close(release)
				t.Fatalf("first bytes: %v %q", err, resp.Header.Get(Header))
			}
			o.set("/a", object{body: fresh, cacheControl: immutableCC})
			c.Purge("/a")
			if newer {
				if r := mustGet(t, cl, p.URL+"/a"); r.cache != "MISS" || !bytes.Equal(r.body, fresh) {
					close(release)
					t.Fatalf("after the purge: %q, %d bytes; want a MISS with the new body", r.cache, len(r.body))
				}
				// The newer fill is stored before the purged one ends (c.bg.Wait
				// would wait for the stalled fill too).
				waitFor(t, 30*time.Second, "the newer fill stored", func() bool {
					c.mu.Lock()
					defer c.mu.Unlock()
					return c.entries["/a"] != nil
				})
			}
			close(release)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(append(first, rest...), old) {
				t.Fatalf("the purged fill's client: %v, %d bytes, want the old body whole", err, len(first)+len(rest))
			}
			resp.Body.Close()
			c.bg.Wait()
			r := mustGet(t, cl, p.URL+"/a")
			switch {
			case bytes.Equal(r.body, old):
				t.Fatalf("the purged fill was stored: %q with the old body", r.cache)
			case !bytes.Equal(r.body, fresh):
				t.Fatalf("then: %d bytes, neither body", len(r.body))
			case !newer && r.cache != "MISS":
				t.Fatalf("then: %q, want MISS (nothing stored from the purged fill)", r.cache)
			case newer && r.cache != "HIT":
				t.Fatalf("then: %q, want a HIT of the newer fill", r.cache)
			}
		})
	}
}

// TestDirectoryLocked: a second cache on the same directory is refused,
// naming it, before it can delete the first one's fills; once the first is
// closed the directory opens again.
func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{Dir: dir}, http.DefaultTransport, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Dir: dir}, http.DefaultTransport, Options{})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second New on the same directory = %v, want an in-use error naming %s", err, dir)
	}
	c.Close()
	c2, err := New(Config{Dir: dir}, http.DefaultTransport, Options{})
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	c2.Close()
}

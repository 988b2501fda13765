package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// object is what the test origin serves at one path.
type object struct {
	body         []byte
	cacheControl string
	etag         string // default: the quoted sha256 of body
	extra        http.Header
}

func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// origin is a counting test origin: it serves objects like the real
// origin (strong sha256 ETag, Last-Modified, 304 on If-None-Match,
// X-Stella-Export-Id) and counts what it was asked.
type origin struct {
	*httptest.Server
	clock *clock

	mu      sync.Mutex
	objects map[string]object
	down    bool // answer 503

	gets    atomic.Int64 // 200 responses (bodies sent)
	notMods atomic.Int64 // 304 responses
	reqs    atomic.Int64 // every request
	// hook, when set, replaces the body writing of a 200 (after headers).
	hook func(w http.ResponseWriter, r *http.Request, o object)
	// lastHeader is the header of the last request.
	lastHeader atomic.Pointer[http.Header]
}

func newOrigin(t *testing.T, clk *clock) *origin {
	o := &origin{clock: clk, objects: map[string]object{}}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

// stallFirst makes o's first 200 send half its body, flush and wait for
// release before the rest; later 200s are sent whole.
func (o *origin) stallFirst() (release chan struct{}) {
	release = make(chan struct{})
	var calls atomic.Int64
	o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
		w.WriteHeader(http.StatusOK)
		if calls.Add(1) == 1 {
			w.Write(obj.body[:len(obj.body)/2])
			w.(http.Flusher).Flush()
			<-release
			w.Write(obj.body[len(obj.body)/2:])
			return
		}
		w.Write(obj.body)
	}
	return release
}

func (o *origin) set(path string, obj object) {
	o.mu.Lock()
	o.objects[path] = obj
	o.mu.Unlock()
}

func (o *origin) setDown(down bool) {
	o.mu.Lock()
	o.down = down
	o.mu.Unlock()
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.reqs.Add(1)
	h := r.Header.Clone()
	o.lastHeader.Store(&h)
	o.mu.Lock()
	obj, ok := o.objects[r.URL.RequestURI()]
	down := o.down
	hook := o.hook
	o.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	etag := obj.etag
	if etag == "" {
		etag = etagOf(obj.body)
	}
	hd := w.Header()
	for k, v := range obj.extra {
		hd[k] = v
	}
	hd.Set("ETag", etag)
	hd.Set("Last-Modified", "Mon, 30 Nov 2026 10:00:00 GMT")
	hd.Set("Date", o.clock.Now().Format(http.TimeFormat))
	hd.Set("X-Stella-Export-Id", "20261130T100000Z")
	hd.Set("Content-Type", "application/json")
	if obj.cacheControl != "" {
		hd.Set("Cache-Control", obj.cacheControl)
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag {
		o.notMods.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Header.Get("Range") != "" {
		panic("the cache must not forward Range")
	}
	o.gets.Add(1)
	hd.Set("Content-Length", strconv.Itoa(len(obj.body)))
	if hook != nil {
		hook(w, r, obj)
		return
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(obj.body)
	}
}

// nothingStored fails the test when the cache in dir holds an entry or a
// stored file once its background work is done; after says when.
func nothingStored(t *testing.T, c *Cache, dir, after string) {
	t.Helper()
	c.bg.Wait()
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	if n != 0 {
		t.Errorf("%d entries stored %s", n, after)
	}
	if files := storedFiles(t, dir); len(files) != 0 {
		t.Errorf("files left %s: %v", after, files)
	}
}

// testCache opens a cache in dir in front of o.
func testCache(t *testing.T, dir string, o *origin, mod func(*Config)) *Cache {
	t.Helper()
	cfg := Config{Dir: dir, MaxSize: 64 << 20, MaxObjectSize: 64 << 20}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg, &http.Transport{ResponseHeaderTimeout: 30 * time.Second}, Options{Now: o.clock.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proxy is the cache wired as the gateway wires it: behind
// httputil.ReverseProxy, served by an HTTP server.
func proxy(t *testing.T, c *Cache, o *origin) *httptest.Server {
	t.Helper()
	target, err := url.Parse(o.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:      func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:    c,
		ErrorHandler: c.ErrorHandler,
		ErrorLog:     discardLog(),
	}
	s := httptest.NewUnstartedServer(rp)
	s.Config.ErrorLog = discardLog()
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// client is an HTTP client with timeouts for the tests.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   128,
		DisableCompression:    true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 120 * time.Second}
}

type result struct {
	status int
	cache  string
	header http.Header
	body   []byte
	err    error
}

// get fetches url with optional request header fields (key, value, …).
func get(t *testing.T, cl *http.Client, method, u string, kv ...string) result {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := cl.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, cache: resp.Header.Get(Header), header: resp.Header, body: b, err: err}
}

func mustGet(t *testing.T, cl *http.Client, u string, kv ...string) result {
	t.Helper()
	r := get(t, cl, http.MethodGet, u, kv...)
	if r.err != nil {
		t.Fatalf("GET %s: %v", u, r.err)
	}
	return r
}

// storedFiles lists the object files in the cache directory.
func storedFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, formatDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }

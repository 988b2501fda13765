package gateway

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/gateway/cache"
	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// hitClock is a settable clock for the cache under test.
type hitClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *hitClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *hitClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// warmHit is a cache holding two fresh objects for the fast hit path:
// /index.json (public, max-age=60) in the memory tier, and /big
// (immutable, bigSize bytes) on disk only, past the 4 KiB memory tier.
type warmHit struct {
	c         *cache.Cache
	clk       *hitClock
	dir       string // the cache directory
	body, big []byte
}

func newWarmHit(t *testing.T, bigSize int) *warmHit {
	t.Helper()
	w := &warmHit{clk: &hitClock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}, dir: t.TempDir(),
		body: []byte(`{"domains":["primary"]}`), big: bytes.Repeat([]byte("0123456789abcdef"), bigSize/16)}
	objects := map[string]struct {
		body []byte
		cc   string
	}{
		"/index.json": {w.body, "public, max-age=60"},
		"/big":        {w.big, "public, max-age=300, immutable"},
	}
	origin := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		o, ok := objects[r.URL.Path]
		if !ok {
			http.NotFound(rw, r)
			return
		}
		sum := sha256.Sum256(o.body)
		rw.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
		rw.Header().Set("Cache-Control", o.cc)
		rw.Header().Set("Content-Type", "application/json")
		rw.Header().Set("Date", w.clk.Now().Format(http.TimeFormat))
		rw.Header().Set("Content-Length", strconv.Itoa(len(o.body)))
		rw.Write(o.body)
	}))
	t.Cleanup(origin.Close)
	up := &http.Transport{}
	t.Cleanup(up.CloseIdleConnections)
	c, err := cache.New(cache.Config{Dir: w.dir, MaxSize: 256 << 20, MaxObjectSize: 256 << 20, MemoryMaxObjectSize: 4 << 10},
		up, cache.Options{Now: w.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w.c = c
	// MISS (the fill), then HITs through RoundTrip until the fast path
	// takes the object (the fill committed; index.json promoted to memory).
	for _, key := range []string{"/index.json", "/big"} {
		deadline := time.Now().Add(20 * time.Second)
		for {
			req := httptest.NewRequest(http.MethodGet, origin.URL+key, nil)
			req.RequestURI = ""
			resp, err := c.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if h, ok := c.LookupHit(key, true, func(string) bool { return false }); ok {
				h.Release(0)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: never a plain hit", key)
			}
		}
	}
	return w
}

// bodyFile is the path of the stored body of size bytes.
func (w *warmHit) bodyFile(t *testing.T, size int) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(w.dir, "*", "*.body"))
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.Size() == int64(size) {
			return f
		}
	}
	t.Fatalf("no stored body of %d bytes in %v", size, files)
	return ""
}

// TestServeHitFast: serveHitFast answers what cache.ServeHit answers, with
// the same status, fields and body as they go on the wire, declines what
// ServeHit declines (leaving the response untouched), reports the outcome
// once, and cuts off a body whose file was truncated.
func TestServeHitFast(t *testing.T) {
	w := newWarmHit(t, 8<<10)
	body, big := w.body, w.big
	type outcome struct {
		bytes   int64
		aborted bool
		calls   int
	}
	// serve runs serveHitFast and writes the response as fasthttp would;
	// wire is nil when the write failed (the connection would be cut).
	serve := func(method, key string, hdr ...string) (ok bool, wire *http.Response, wireBody []byte, out *outcome, fc *fasthttp.RequestCtx) {
		fc = &fasthttp.RequestCtx{}
		fc.Request.Header.SetMethod(method)
		fc.Request.SetRequestURI(key)
		for i := 0; i+1 < len(hdr); i += 2 {
			fc.Request.Header.Set(hdr[i], hdr[i+1])
		}
		out = &outcome{}
		ok = serveHitFast(w.c, fc, key, func(n int64, aborted bool) {
			out.bytes, out.aborted = n, aborted
			out.calls++
		})
		if !ok {
			return ok, nil, nil, out, fc
		}
		if method == http.MethodHead {
			fc.Response.SkipBody = true
		}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		if err := fc.Response.Write(bw); err != nil {
			return ok, nil, nil, out, fc
		}
		bw.Flush()
		resp, err := http.ReadResponse(bufio.NewReader(&buf), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s %s: unreadable response: %v", method, key, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, key, err)
		}
		return ok, resp, b, out, fc
	}
	for _, tc := range []struct {
		method, key string
		body        []byte
	}{
		{http.MethodGet, "/index.json", body},
		{http.MethodHead, "/index.json", nil},
		{http.MethodGet, "/big", big},
		{http.MethodHead, "/big", nil},
	} {
		ok, resp, b, out, _ := serve(tc.method, tc.key)
		if !ok || resp == nil {
			t.Fatalf("%s %s: ok=%v, written=%v", tc.method, tc.key, ok, resp != nil)
		}
		wantLen := len(tc.body)
		if tc.method == http.MethodHead {
			wantLen = map[string]int{"/index.json": len(body), "/big": len(big)}[tc.key]
		}
		if resp.StatusCode != 200 || !bytes.Equal(b, tc.body) || resp.Header.Get(cache.Header) != "HIT" ||
			resp.ContentLength != int64(wantLen) || resp.Header.Get("Age") == "" || resp.Header.Get("ETag") == "" {
			t.Errorf("%s %s: %d, %d bytes, %v", tc.method, tc.key, resp.StatusCode, len(b), resp.Header)
		}
		if out.calls != 1 || out.bytes != int64(len(tc.body)) || out.aborted {
			t.Errorf("%s %s: outcome %+v, want one call with %d bytes", tc.method, tc.key, *out, len(tc.body))
		}
	}
	for _, tc := range []struct {
		name, method, key string
		hdr               []string
	}{
		{"POST", http.MethodPost, "/index.json", nil},
		{"range", http.MethodGet, "/index.json", []string{"Range", "bytes=0-1"}},
		{"if-none-match", http.MethodGet, "/index.json", []string{"If-None-Match", `"x"`}},
		{"if-modified-since", http.MethodGet, "/index.json", []string{"If-Modified-Since", "Mon, 30 Nov 2026 10:00:00 GMT"}},
		{"if-range", http.MethodGet, "/big", []string{"If-Range", `"x"`}},
		{"not stored", http.MethodGet, "/nope", nil},
	} {
		ok, _, _, out, fc := serve(tc.method, tc.key, tc.hdr...)
		rh := &fc.Response.Header
		touched := rh.StatusCode() != 200 || rh.Peek(cache.Header) != nil || rh.Peek("Age") != nil || rh.Peek("Etag") != nil ||
			rh.Peek("Cache-Control") != nil || len(fc.Response.Body()) != 0
		if ok || out.calls != 0 || touched {
			t.Errorf("%s: answered (ok=%v, calls %d):\n%s", tc.name, ok, out.calls, fc.Response.Header.String())
		}
	}
	// A body file cut short behind the cache's back: fasthttp announced
	// the stored length, so the write fails (the connection is cut) and
	// the outcome says so.
	file := w.bodyFile(t, len(big))
	if err := os.Truncate(file, 100); err != nil {
		t.Fatal(err)
	}
	ok, resp, _, out, _ := serve(http.MethodGet, "/big")
	if !ok || resp != nil || out.calls != 1 || !out.aborted || out.bytes != 100 {
		t.Fatalf("truncated file: ok=%v written=%v outcome %+v; want a failed write, aborted after 100 bytes", ok, resp != nil, *out)
	}
	if n := cacheFDs(t, w.dir); n != 0 {
		t.Fatalf("%d cache files still open after the aborted response", n)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if ok, _, _, _, _ := serve(http.MethodGet, "/big"); ok {
		t.Fatal("a missing body file was answered")
	}
	w.clk.Advance(2 * time.Minute) // index.json is stale now
	if ok, _, _, _, _ := serve(http.MethodGet, "/index.json"); ok {
		t.Fatal("a stale object was answered by the fast path")
	}
}

// TestServeHitFastAllocs: a memory-tier hit answered by serveHitFast
// allocates nothing (as ServeHitFast did inside the cache package before
// the engine-neutral LookupHit): moving it out cost no speed.
func TestServeHitFastAllocs(t *testing.T) {
	w := newWarmHit(t, 8<<10)
	fc := &fasthttp.RequestCtx{}
	done := func(int64, bool) {}
	allocs := testing.AllocsPerRun(1000, func() {
		fc.Request.Reset()
		fc.Response.Reset()
		fc.Request.Header.SetMethod(http.MethodGet)
		fc.Request.SetRequestURI("/index.json")
		if !serveHitFast(w.c, fc, "/index.json", done) {
			t.Fatal("not a memory-tier hit")
		}
	})
	if allocs != 0 {
		t.Fatalf("a memory-tier hit allocates %.1f times, want 0", allocs)
	}
}

// cacheFDs counts this process's open descriptors on files under dir
// other than its lock file (/proc/self/fd; the test is skipped where that
// does not exist).
func cacheFDs(t *testing.T, dir string) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		testenv.Missing(t, "no /proc/self/fd: %v", err)
	}
	n := 0
	for _, de := range des {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name())); err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) &&
			target != filepath.Join(dir, cache.LockFile) {
			n++
		}
	}
	return n
}

// waitCacheFDs polls (bounded) until no descriptor is open under dir.
func waitCacheFDs(t *testing.T, dir string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for cacheFDs(t, dir) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d cache files still open after %v", cacheFDs(t, dir), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeHitFastReleasesFileOnAbort (F3, the cache side): a client that
// reads a few bytes of a large disk-tier hit answered through fasthttp and
// then closes its connection, or stops reading until the connection's
// write deadline resets it, leaves no cache file open.
func TestServeHitFastReleasesFileOnAbort(t *testing.T) {
	const size = 16 << 20 // far more than the socket buffers hold
	w := newWarmHit(t, size)
	var outcomes sync.Map
	srv := &fasthttp.Server{
		Handler: func(fc *fasthttp.RequestCtx) {
			id := string(fc.Request.Header.Peek("X-Test"))
			if !serveHitFast(w.c, fc, string(fc.Path()), func(n int64, aborted bool) {
				outcomes.Store(id, aborted)
			}) {
				fc.SetStatusCode(http.StatusNotFound)
			}
		},
		WriteTimeout: 2 * time.Second, // stands for the write-progress deadline
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown() })
	for _, mode := range []string{"close", "stall"} {
		t.Run(mode, func(t *testing.T) {
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.(*net.TCPConn).SetReadBuffer(64 << 10)
			io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: gw\r\nX-Test: "+mode+"\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			buf := make([]byte, 4096)
			if _, err := io.ReadFull(conn, buf); err != nil {
				t.Fatalf("reading the first bytes: %v", err)
			}
			if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200")) {
				t.Fatalf("response: %q", buf[:64])
			}
			if cacheFDs(t, w.dir) == 0 {
				t.Fatal("the hit holds no cache file while it is sent: the test proves nothing")
			}
			if mode == "close" {
				conn.Close()
			}
			waitCacheFDs(t, w.dir, 30*time.Second)
			if v, ok := outcomes.Load(mode); !ok || v != true {
				t.Fatalf("outcome recorded %v (%v), want aborted", v, ok)
			}
		})
	}
}

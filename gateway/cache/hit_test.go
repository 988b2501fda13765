package cache

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// TestServeHit: the fast path answers plain GET/HEAD of fresh objects
// (memory tier, or a file on disk) with the stored response, and declines
// (writing nothing) everything it cannot answer that simply.
func TestServeHit(t *testing.T) {
	c, clk, body, _ := warmHits(t)
	serve := func(method, key string, hdr ...string) (*httptest.ResponseRecorder, bool) {
		r := httptest.NewRequest(method, "http://gw"+key, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		return w, c.ServeHit(w, r, key)
	}
	w, ok := serve(http.MethodGet, "/index.json")
	if !ok || w.Code != 200 || !bytes.Equal(w.Body.Bytes(), body) || w.Header().Get(Header) != "HIT" ||
		w.Header().Get("Content-Length") != "23" || w.Header().Get("ETag") != etagOf(body) || w.Header().Get("Age") == "" {
		t.Fatalf("GET: ok=%v %d %q %v", ok, w.Code, w.Body.String(), w.Header())
	}
	if w, ok := serve(http.MethodHead, "/index.json"); !ok || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "23" {
		t.Fatalf("HEAD: ok=%v body %d bytes, %v", ok, w.Body.Len(), w.Header())
	}
	big := pattern(8<<10, 3)
	w, ok = serve(http.MethodGet, "/big")
	if !ok || w.Code != 200 || !bytes.Equal(w.Body.Bytes(), big) || w.Header().Get(Header) != "HIT" || w.Header().Get("Content-Length") != "8192" {
		t.Fatalf("GET from disk: ok=%v %d, %d bytes, %v", ok, w.Code, w.Body.Len(), w.Header())
	}
	if w, ok := serve(http.MethodHead, "/big"); !ok || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "8192" {
		t.Fatalf("HEAD from disk: ok=%v body %d bytes, %v", ok, w.Body.Len(), w.Header())
	}
	for _, tt := range declinedHits(body) {
		t.Run(tt.name, func(t *testing.T) {
			if w, ok := serve(tt.method, tt.key, tt.hdr...); ok || w.Body.Len() != 0 || len(w.Header()) != 0 {
				t.Fatalf("answered: %d %v", w.Code, w.Header())
			}
		})
	}
	// A body file cut short behind the cache's back: the response is
	// aborted, never a short body under the stored Content-Length.
	c.mu.Lock()
	file := c.entries["/big"].body
	c.mu.Unlock()
	if err := os.Truncate(file, 100); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Fatalf("a truncated body file: recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		serve(http.MethodGet, "/big")
	}()
	// A body file gone: declined, and the slow path deals with it.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if w, ok := serve(http.MethodGet, "/big"); ok || len(w.Header()) != 0 {
		t.Fatalf("a missing body file was answered: %d %v", w.Code, w.Header())
	}
	clk.Advance(2 * time.Minute) // index.json is stale now
	if w, ok := serve(http.MethodGet, "/index.json"); ok || len(w.Header()) != 0 {
		t.Fatal("a stale object was answered by the fast path")
	}
}

// warmHits is a cache holding two fresh objects for the fast hit paths:
// /index.json (public, max-age=60: body) in the memory tier, and /big
// (immutable: big, 8 KiB) on disk only, past the 4 KiB memory-tier limit.
func warmHits(t *testing.T) (c *Cache, clk *clock, body, big []byte) {
	t.Helper()
	clk = newClock()
	o := newOrigin(t, clk)
	body = []byte(`{"domains":["primary"]}`)
	big = pattern(8<<10, 3)
	o.set("/index.json", object{body: body, cacheControl: "public, max-age=60"})
	o.set("/big", object{body: big, cacheControl: immutableCC})
	c = testCache(t, t.TempDir(), o, func(cfg *Config) { cfg.MemoryMaxObjectSize = 4 << 10 })
	p := proxy(t, c, o)
	cl := client(t)
	for range 2 { // MISS (fill), then HIT from disk: promoted to memory
		mustGet(t, cl, p.URL+"/index.json")
		mustGet(t, cl, p.URL+"/big")
		c.bg.Wait()
	}
	return c, clk, body, big
}

// hitCase is a request the fast hit paths must decline.
type hitCase struct {
	name, method, key string
	hdr               []string
}

// declinedHits are the requests of warmHits' objects that only the full
// path answers (body is /index.json's, for its ETag).
func declinedHits(body []byte) []hitCase {
	return []hitCase{
		{"POST", http.MethodPost, "/index.json", nil},
		{"range", http.MethodGet, "/index.json", []string{"Range", "bytes=0-1"}},
		{"if-none-match", http.MethodGet, "/index.json", []string{"If-None-Match", etagOf(body)}},
		{"if-modified-since", http.MethodGet, "/index.json", []string{"If-Modified-Since", "Mon, 30 Nov 2026 10:00:00 GMT"}},
		{"if-range", http.MethodGet, "/big", []string{"If-Range", `"x"`}},
		{"not stored", http.MethodGet, "/nope", nil},
	}
}

// openFDs counts this process's open descriptors on files under dir other
// than its lock file (/proc/self/fd; the test is skipped where that does
// not exist).
func openFDs(t *testing.T, dir string) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		testenv.Missing(t, "no /proc/self/fd: %v", err)
	}
	n := 0
	for _, de := range des {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) && target != filepath.Join(dir, LockFile) {
			n++
		}
	}
	return n
}

// waitNoFDs polls (bounded) until no descriptor is open under dir.
func waitNoFDs(t *testing.T, dir string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for openFDs(t, dir) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d cache files still open after %v", openFDs(t, dir), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeHitReleasesFileOnAbort (F3, the cache side): a client that
// reads a few bytes of a large disk-tier hit answered by ServeHit and then
// closes its connection, or stops reading until the server's write
// deadline cuts the response, leaves no cache file open, and the response
// is aborted, not ended.
func TestServeHitReleasesFileOnAbort(t *testing.T) {
	const size = 16 << 20 // far more than the socket buffers hold
	clk := newClock()
	o := newOrigin(t, clk)
	o.set("/big", object{body: pattern(size, 7), cacheControl: immutableCC})
	dir := t.TempDir()
	c := testCache(t, dir, o, nil)
	mustGet(t, client(t), proxy(t, c, o).URL+"/big")
	c.bg.Wait()
	var aborts atomic.Int64
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					aborts.Add(1)
				}
				panic(v)
			}
		}()
		if !c.ServeHit(w, r, Key(r.URL)) {
			http.NotFound(w, r)
		}
	}))
	s.Config.WriteTimeout = 2 * time.Second // stands for the write-progress deadline
	s.Config.ErrorLog = discardLog()
	s.Start()
	t.Cleanup(s.Close)
	for i, mode := range []string{"close", "stall"} {
		t.Run(mode, func(t *testing.T) {
			conn, err := net.Dial("tcp", s.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.(*net.TCPConn).SetReadBuffer(64 << 10)
			io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: gw\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			buf := make([]byte, 4096)
			if _, err := io.ReadFull(conn, buf); err != nil {
				t.Fatalf("reading the first bytes: %v", err)
			}
			if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200")) || !bytes.Contains(buf, []byte("X-Cache-Status: HIT")) {
				t.Fatalf("response: %q", buf[:128])
			}
			if openFDs(t, dir) == 0 {
				t.Fatal("the hit holds no cache file while it is sent: the test proves nothing")
			}
			if mode == "close" {
				conn.Close()
			}
			waitNoFDs(t, dir, 30*time.Second)
			deadline := time.Now().Add(10 * time.Second)
			for aborts.Load() != int64(i+1) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := aborts.Load(); n != int64(i+1) {
				t.Fatalf("%d responses aborted, want %d", n, i+1)
			}
		})
	}
}

// TestFastPathHonoursClientNoCache: with Config.HonourClientNoCache, a
// request carrying Cache-Control or Pragma is no plain hit (the full path
// applies the client's directives); without it, the fields are ignored and
// the fast path answers. The mutation that dropped the check
// (cache-fastpath-client-no-cache) survived every cache and gateway test.
func TestFastPathHonoursClientNoCache(t *testing.T) {
	for _, honour := range []bool{true, false} {
		t.Run(fmt.Sprintf("honourClientNoCache=%v", honour), func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			o.set("/index.json", object{body: []byte(`{"domains":["primary"]}`), cacheControl: "public, max-age=60"})
			c := testCache(t, t.TempDir(), o, func(cfg *Config) { cfg.HonourClientNoCache = honour })
			p := proxy(t, c, o)
			cl := client(t)
			for range 2 { // MISS (fill), then HIT: promoted to memory
				mustGet(t, cl, p.URL+"/index.json")
				c.bg.Wait()
			}
			for _, hdr := range [][]string{nil, {"Cache-Control", "no-cache"}, {"Pragma", "no-cache"}, {"Cache-Control", "max-age=0"}} {
				r := httptest.NewRequest(http.MethodGet, "http://gw/index.json", nil)
				if hdr != nil {
					r.Header.Set(hdr[0], hdr[1])
				}
				w := httptest.NewRecorder()
				answered := c.ServeHit(w, r, "/index.json")
				if want := hdr == nil || !honour; answered != want {
					t.Errorf("request with %v: answered by the fast path %v, want %v", hdr, answered, want)
				}
			}
		})
	}
}

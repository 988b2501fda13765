package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/serve"
)

// TestHarness: the harness caches (MISS then HIT on both engines),
// forwards the query and unsafe methods with their bodies, and
// invalidates after them.
func TestHarness(t *testing.T) {
	for _, engine := range []string{serve.EngineFast, serve.EngineStd} {
		t.Run(engine, func(t *testing.T) {
			var gets, posts atomic.Int64
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					b, _ := io.ReadAll(r.Body)
					posts.Add(1)
					io.WriteString(w, "posted "+string(b))
					return
				}
				gets.Add(1)
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
				io.WriteString(w, "q="+r.URL.RawQuery)
			}))
			t.Cleanup(origin.Close)
			ctx, cancel := context.WithCancel(context.Background())
			addrc := make(chan string, 1)
			errc := make(chan error, 1)
			go func() {
				errc <- start(ctx, "127.0.0.1:0", origin.URL, t.TempDir(), engine, false, io.Discard, func(a string) { addrc <- a })
			}()
			var addr string
			select {
			case addr = <-addrc:
			case err := <-errc:
				t.Fatalf("start: %v", err)
			}
			t.Cleanup(func() {
				cancel()
				if err := <-errc; err != nil {
					t.Errorf("shutdown: %v", err)
				}
			})
			cl := &http.Client{Timeout: 10 * time.Second}
			do := func(method, path, body string) (string, string) {
				req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.Header.Get("X-Cache-Status"), string(b)
			}
			steps := []struct{ method, path, body, status, want string }{
				{"GET", "/a?x=1", "", "MISS", "q=x=1"},
				{"GET", "/a?x=1", "", "HIT", "q=x=1"},
				{"GET", "/a?x=2", "", "MISS", "q=x=2"},
				{"POST", "/a?x=1", "hello", "BYPASS", "posted hello"},
				{"GET", "/a?x=1", "", "MISS", "q=x=1"},
			}
			for i, s := range steps {
				status, body := do(s.method, s.path, s.body)
				if status != s.status || body != s.want {
					t.Errorf("step %d %s %s: %s %q, want %s %q", i, s.method, s.path, status, body, s.status, s.want)
				}
			}
			if gets.Load() != 3 || posts.Load() != 1 {
				t.Errorf("origin: %d GETs %d POSTs, want 3 and 1", gets.Load(), posts.Load())
			}
		})
	}
}

func TestBadFlags(t *testing.T) {
	var out strings.Builder
	if code := run([]string{"--upstream", "ftp://x"}, &out); code != 1 || !strings.Contains(out.String(), `"ftp://x"`) {
		t.Errorf("exit %d, stderr %q", code, out.String())
	}
}

// TestHarnessStoredDateAndAuthorization: a hit carries the stored Date on
// both engines, from the fast hit paths too (fasthit on fasthttp: a Date
// set the ordinary way is dropped by fasthttp), and the harness forwards
// Authorization so that the cache applies RFC 9111 section 3.5 (a
// response without public is not stored for such a request). The object
// is stored by a first harness and found on disk by a second one, whose
// first hit puts it in the memory tier: the next one is the fast path's.
func TestHarnessStoredDateAndAuthorization(t *testing.T) {
	for _, engine := range []string{serve.EngineFast, serve.EngineStd} {
		t.Run(engine, func(t *testing.T) {
			date := time.Now().Add(-10 * time.Second).UTC().Format(http.TimeFormat)
			var authSeen atomic.Int64
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "" {
					authSeen.Add(1)
				}
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("Date", date)
				io.WriteString(w, "body of "+r.URL.Path)
			}))
			t.Cleanup(origin.Close)
			dir := t.TempDir()
			startHarness := func() (addr string, stop func()) {
				ctx, cancel := context.WithCancel(context.Background())
				addrc, errc := make(chan string, 1), make(chan error, 1)
				go func() {
					errc <- start(ctx, "127.0.0.1:0", origin.URL, dir, engine, false, io.Discard, func(a string) { addrc <- a })
				}()
				select {
				case addr = <-addrc:
				case err := <-errc:
					t.Fatalf("start: %v", err)
				}
				var once sync.Once
				stop = func() {
					once.Do(func() {
						cancel()
						if err := <-errc; err != nil {
							t.Errorf("shutdown: %v", err)
						}
					})
				}
				t.Cleanup(stop)
				return addr, stop
			}
			cl := &http.Client{Timeout: 10 * time.Second}
			get := func(addr, path string, kv ...string) *http.Response {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
				for i := 0; i+1 < len(kv); i += 2 {
					req.Header.Set(kv[i], kv[i+1])
				}
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}
			addr, stop := startHarness()
			if r := get(addr, "/d"); r.Header.Get("X-Cache-Status") != "MISS" {
				t.Fatalf("first: %s", r.Header.Get("X-Cache-Status"))
			}
			for i := range 2 {
				if r := get(addr, "/auth", "Authorization", "Basic eDp5"); r.Header.Get("X-Cache-Status") == "HIT" {
					t.Errorf("request %d with Authorization, response without public: HIT", i)
				}
			}
			if n := authSeen.Load(); n != 2 {
				t.Errorf("the origin saw Authorization %d times, want 2", n)
			}
			stop() // the cache closes: /d is stored
			addr, _ = startHarness()
			for i := range 3 {
				r := get(addr, "/d")
				if r.Header.Get("X-Cache-Status") != "HIT" || r.Header.Get("Date") != date || len(r.Header.Values("Date")) != 1 {
					t.Errorf("hit %d: %s, Date %q, want HIT with the stored %q", i, r.Header.Get("X-Cache-Status"), r.Header.Values("Date"), date)
				}
			}
		})
	}
}

package cache

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
)

// TestTruncatedFillWithoutDigestETag: an upstream whose ETag is not a
// sha256 (a strong opaque tag, a weak tag) cuts its body short of its
// Content-Length (a clean early close, or a reset). Only the length check
// can tell: the client must get an error, nothing may be stored in either
// tier (a body small enough for memory, one only on disk), and the next
// request fetches the whole body again.
func TestTruncatedFillWithoutDigestETag(t *testing.T) {
	ends := map[string]func(w http.ResponseWriter){
		"early close": func(http.ResponseWriter) {},
		"reset": func(w http.ResponseWriter) {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
		},
	}
	for _, size := range []int{16 << 10, 512 << 10} { // memory tier (≤ 256 KiB by default) and disk only
		for _, etag := range []string{`"v1"`, `W/"v1"`} {
			for endName, end := range ends {
				t.Run(fmt.Sprintf("%dKiB/%s/%s", size>>10, etag, endName), func(t *testing.T) {
					clk := newClock()
					o := newOrigin(t, clk)
					body := pattern(size, 9)
					o.set("/bundle", object{body: body, cacheControl: immutableCC, etag: etag})
					o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
						w.WriteHeader(http.StatusOK)
						w.Write(obj.body[:len(obj.body)/2])
						w.(http.Flusher).Flush()
						end(w)
					}
					dir := t.TempDir()
					c := testCache(t, dir, o, nil)
					p := proxy(t, c, o)
					cl := client(t)
					r := get(t, cl, http.MethodGet, p.URL+"/bundle")
					if r.err == nil {
						t.Fatalf("client read a complete response of %d bytes (status %d, %s) from a truncated upstream body",
							len(r.body), r.status, r.cache)
					}
					nothingStored(t, c, dir, "after a truncated fill")
					if _, ok := c.LookupHit("/bundle", true, func(string) bool { return false }); ok {
						t.Error("the fast path finds a hit after a truncated fill")
					}
					o.hook = nil
					r = mustGet(t, cl, p.URL+"/bundle")
					if r.cache != "MISS" || !bytes.Equal(r.body, body) {
						t.Errorf("after the truncated fill: cache %q, %d bytes, want MISS and %d", r.cache, len(r.body), len(body))
					}
					c.bg.Wait()
					if r := mustGet(t, cl, p.URL+"/bundle"); r.cache != "HIT" || !bytes.Equal(r.body, body) {
						t.Errorf("then: cache %q, %d bytes, want a HIT of %d", r.cache, len(r.body), len(body))
					}
					if n := o.gets.Load(); n != 2 {
						t.Errorf("origin sent %d bodies, want 2", n)
					}
				})
			}
		}
	}
}

// TestClientNoStoreBypasses: with HonourClientNoCache, a client's
// `Cache-Control: no-store` is passed through (BYPASS): answered by the
// origin whether or not a fresh entry exists, and nothing stored from it;
// without the option it is ignored (a HIT).
func TestClientNoStoreBypasses(t *testing.T) {
	for _, honour := range []bool{true, false} {
		t.Run(fmt.Sprintf("honour=%v", honour), func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			body := pattern(32<<10, 3)
			o.set("/a", object{body: body, cacheControl: immutableCC})
			o.set("/b", object{body: body, cacheControl: immutableCC})
			dir := t.TempDir()
			c := testCache(t, dir, o, func(cfg *Config) { cfg.HonourClientNoCache = honour })
			p := proxy(t, c, o)
			cl := client(t)
			// Not cached yet: a no-store request must not store.
			r := mustGet(t, cl, p.URL+"/a", "Cache-Control", "no-store")
			c.bg.Wait()
			want := "MISS"
			if honour {
				want = "BYPASS"
			}
			if r.cache != want || !bytes.Equal(r.body, body) {
				t.Errorf("uncached no-store: cache %q, want %s", r.cache, want)
			}
			c.mu.Lock()
			_, stored := c.entries["/a"]
			c.mu.Unlock()
			if stored == honour {
				t.Errorf("after a no-store request: stored %v, want %v", stored, !honour)
			}
			// Cached: a no-store request still goes to the origin.
			mustGet(t, cl, p.URL+"/b")
			c.bg.Wait()
			before := o.reqs.Load()
			r = mustGet(t, cl, p.URL+"/b", "Cache-Control", "no-store")
			want, wantReqs := "HIT", before
			if honour {
				want, wantReqs = "BYPASS", before+1
			}
			if r.cache != want || !bytes.Equal(r.body, body) {
				t.Errorf("cached no-store: cache %q, want %s", r.cache, want)
			}
			if n := o.reqs.Load(); n != wantReqs {
				t.Errorf("origin requests %d, want %d", n, wantReqs)
			}
		})
	}
}

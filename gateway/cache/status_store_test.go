package cache

import (
	"bytes"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
)

// TestOnlyOKIsStored: an origin answer other than 200 is never stored,
// however cacheable its header fields say it is (long max-age, public,
// immutable, a sha256 ETag): the next request goes upstream again and gets
// the origin's new answer.
func TestOnlyOKIsStored(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusGone, http.StatusNonAuthoritativeInfo,
		http.StatusMovedPermanently, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			body := pattern(8<<10, 5)
			o.set("/bundle", object{body: body, cacheControl: "public, max-age=31536000, immutable"})
			var bad atomic.Bool
			bad.Store(true)
			o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
				if bad.Load() {
					msg := []byte("not the object")
					w.Header().Set("Location", "/elsewhere")
					w.Header().Set("Content-Length", fmt.Sprint(len(msg)))
					w.Header().Set("ETag", etagOf(msg))
					w.WriteHeader(status)
					w.Write(msg)
					return
				}
				w.WriteHeader(http.StatusOK)
				w.Write(obj.body)
			}
			c := testCache(t, t.TempDir(), o, nil)
			p := proxy(t, c, o)
			cl := client(t)
			cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			r := mustGet(t, cl, p.URL+"/bundle")
			if r.status != status {
				t.Fatalf("first answer %d, want the origin's %d", r.status, status)
			}
			c.bg.Wait()
			c.mu.Lock()
			n := len(c.entries)
			c.mu.Unlock()
			if n != 0 {
				t.Errorf("%d entries stored after a %d", n, status)
			}
			if _, ok := c.LookupHit("/bundle", true, func(string) bool { return false }); ok {
				t.Errorf("the fast path has a hit after a %d", status)
			}
			bad.Store(false)
			r = mustGet(t, cl, p.URL+"/bundle")
			if r.status != http.StatusOK || !bytes.Equal(r.body, body) || r.cache != "MISS" {
				t.Errorf("after the %d: status %d, cache %q, %d bytes; want a MISS of the 200", status, r.status, r.cache, len(r.body))
			}
			if n := o.reqs.Load(); n != 2 {
				t.Errorf("origin got %d requests, want 2", n)
			}
		})
	}
}

package cache

import (
	"bytes"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
)

// TestStatusStorePolicy: which origin answers other than 200 are stored
// (issue 17: the statuses RFC 9110 calls cacheable, with explicit
// freshness), and which never are, however cacheable their header fields
// say they are (long max-age, public, immutable, a sha256 ETag): a 5xx,
// and anything but a 200 for the export coherence keys (the index and the
// Concelier manifest, bundle and signature, unversioned or pinned).
// Stored answers come back as HITs with their own status; the others send
// the next request upstream, which then gets the origin's 200.
func TestStatusStorePolicy(t *testing.T) {
	const unversioned = "/concelier/exports/mirror/primary/bundle.json"
	for _, tc := range []struct {
		path   string
		status int
		stored bool
	}{
		{"/bundle", http.StatusNonAuthoritativeInfo, true},
		{"/bundle", http.StatusMovedPermanently, true},
		{"/bundle", http.StatusNotFound, true},
		{"/bundle", http.StatusGone, true},
		{"/bundle", http.StatusPartialContent, false},
		{"/bundle", http.StatusInternalServerError, false},
		{"/bundle", http.StatusBadGateway, false},
		{"/bundle", http.StatusServiceUnavailable, false},
		{concelierIndex, http.StatusNotFound, false},
		{concelierIndex, http.StatusMovedPermanently, false},
		{unversioned, http.StatusNotFound, false},
		{"/concelier/exports/20261130T100000Z/mirror/primary/bundle.json", http.StatusGone, false},
	} {
		t.Run(fmt.Sprint(tc.path, " ", tc.status), func(t *testing.T) {
			clk := newClock()
			o := newOrigin(t, clk)
			body := pattern(8<<10, 5)
			o.set(tc.path, object{body: body, cacheControl: "public, max-age=31536000, immutable"})
			var bad atomic.Bool
			bad.Store(true)
			o.hook = func(w http.ResponseWriter, r *http.Request, obj object) {
				if bad.Load() {
					msg := []byte("not the object")
					w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
					w.Header().Set("Location", "/elsewhere")
					w.Header().Set("Content-Length", fmt.Sprint(len(msg)))
					w.Header().Set("ETag", etagOf(msg))
					w.WriteHeader(tc.status)
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
			r := mustGet(t, cl, p.URL+tc.path)
			if r.status != tc.status {
				t.Fatalf("first answer %d, want the origin's %d", r.status, tc.status)
			}
			c.bg.Wait()
			c.mu.Lock()
			n := len(c.entries)
			c.mu.Unlock()
			h, fastHit := c.LookupHit(tc.path, true, func(string) bool { return false })
			if fastHit {
				h.Release(0)
			}
			bad.Store(false)
			r = mustGet(t, cl, p.URL+tc.path)
			if tc.stored {
				if n != 1 {
					t.Errorf("%d entries stored after a cacheable %d, want 1", n, tc.status)
				}
				if r.status != tc.status || r.cache != "HIT" || string(r.body) != "not the object" {
					t.Errorf("after the %d: status %d, cache %q; want a HIT of the stored %d", tc.status, r.status, r.cache, tc.status)
				}
				if n := o.reqs.Load(); n != 1 {
					t.Errorf("origin got %d requests, want 1", n)
				}
				return
			}
			if n != 0 {
				t.Errorf("%d entries stored after a %d", n, tc.status)
			}
			if fastHit {
				t.Errorf("the fast path has a hit after a %d", tc.status)
			}
			if r.status != http.StatusOK || !bytes.Equal(r.body, body) || r.cache == "HIT" {
				t.Errorf("after the %d: status %d, cache %q, %d bytes; want the origin's 200", tc.status, r.status, r.cache, len(r.body))
			}
			if n := o.reqs.Load(); n < 2 {
				t.Errorf("origin got %d requests, want 2 or more", n)
			}
		})
	}
}

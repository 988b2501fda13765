package cache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// benchLookup primes a cache with the index and one unversioned manifest
// (both in the memory tier) from an origin that answers every path, and
// returns it.
func benchLookup(b *testing.B) *Cache {
	body := pattern(4<<10, 1)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("ETag", etagOf(body))
		w.Header().Set("X-Stella-Export-Id", "20261130T100000Z")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	b.Cleanup(o.Close)
	c, err := New(Config{Dir: b.TempDir(), MaxSize: 1 << 30, MaxObjectSize: 1 << 30},
		&http.Transport{ResponseHeaderTimeout: 10 * time.Second}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for range 2 { // the second read promotes to the memory tier
		for _, p := range []string{"/concelier/exports/index.json", "/concelier/exports/mirror/primary/manifest.json"} {
			req, _ := http.NewRequest(http.MethodGet, o.URL+p, nil)
			resp, err := c.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			c.bg.Wait()
		}
	}
	return c
}

func benchLookupHit(b *testing.B, key string) {
	c := benchLookup(b)
	no := func(string) bool { return false }
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			h, ok := c.LookupHit(key, true, no)
			if !ok || h.Body == nil {
				b.Error("no memory-tier hit")
				return
			}
			h.Release(int64(len(h.Body)))
		}
	})
}

// BenchmarkLookupHit: the fast hit path for the index (a key stored under
// its own path).
func BenchmarkLookupHit(b *testing.B) { benchLookupHit(b, "/concelier/exports/index.json") }

// BenchmarkLookupHitUnversioned: the fast hit path for an unversioned
// manifest (answered through the generation's pinned entry).
func BenchmarkLookupHitUnversioned(b *testing.B) {
	benchLookupHit(b, "/concelier/exports/mirror/primary/manifest.json")
}

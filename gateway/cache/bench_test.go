package cache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// benchCache stores one object of size bytes and returns a cache and the
// request URL.
func benchCache(b *testing.B, size int) (*Cache, string) {
	body := pattern(size, 1)
	etag := etagOf(body)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", immutableCC)
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(body)
	}))
	b.Cleanup(o.Close)
	c, err := New(Config{Dir: b.TempDir(), MaxSize: 1 << 30, MaxObjectSize: 1 << 30},
		&http.Transport{ResponseHeaderTimeout: 10 * time.Second}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	u := o.URL + "/concelier/exports/index.json"
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.bg.Wait()
	return c, u
}

func benchHits(b *testing.B, size int) {
	c, u := benchCache(b, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 32<<10)
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		for pb.Next() {
			resp, err := c.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			if resp.Header.Get(Header) != "HIT" {
				b.Errorf("status %q", resp.Header.Get(Header))
			}
			n, _ := io.CopyBuffer(io.Discard, resp.Body, buf)
			resp.Body.Close()
			if n != int64(size) {
				b.Errorf("read %d bytes", n)
			}
		}
	})
}

// BenchmarkHit: a small object (index.json size) from the memory tier.
func BenchmarkHit(b *testing.B) { benchHits(b, 4<<10) }

// BenchmarkHitLarge: a 64 MiB bundle from the disk tier.
func BenchmarkHitLarge(b *testing.B) { benchHits(b, 64<<20) }

package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/gateway/cache"
)

// TestServeHitFastUnversioned: both engines' fast hit paths answer an
// unversioned manifest from the export generation's pinned entry with the
// CDN guidance, and fasthttp's allocates nothing doing so.
func TestServeHitFastUnversioned(t *testing.T) {
	const id = "20261130T100000Z"
	index := []byte(`{"exportId":"` + id + `"}`)
	manifest := []byte(`{"exportId":"` + id + `","domainId":"primary"}`)
	objects := map[string]struct {
		body []byte
		cc   string
	}{
		"/concelier/exports/index.json":                              {index, "public, max-age=60"},
		"/concelier/exports/" + id + "/mirror/primary/manifest.json": {manifest, "public, max-age=31536000, immutable"},
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
		rw.Header().Set("X-Stella-Export-Id", id)
		rw.Header().Set("Content-Length", strconv.Itoa(len(o.body)))
		rw.Write(o.body)
	}))
	t.Cleanup(origin.Close)
	up := &http.Transport{}
	t.Cleanup(up.CloseIdleConnections)
	c, err := cache.New(cache.Config{Dir: t.TempDir(), MaxSize: 64 << 20, MaxObjectSize: 64 << 20}, up, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	const key = "/concelier/exports/mirror/primary/manifest.json"
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
		if h, ok := c.LookupHit(key, true, func(string) bool { return false }); ok && h.Body != nil {
			h.Release(0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the unversioned manifest never became a memory-tier hit")
		}
	}

	rec := httptest.NewRecorder()
	if !c.ServeHit(rec, httptest.NewRequest(http.MethodGet, key, nil), key) {
		t.Fatal("ServeHit: no hit")
	}
	fc := &fasthttp.RequestCtx{}
	fc.Request.Header.SetMethod(http.MethodGet)
	fc.Request.SetRequestURI(key)
	if !serveHitFast(c, fc, key, func(int64, bool) {}) {
		t.Fatal("serveHitFast: no hit")
	}
	for name, want := range map[string]string{"Cache-Control": cache.UnversionedCacheControl,
		"Cdn-Cache-Control": "public, max-age=60", "Cache-Tag": id, "Surrogate-Key": id} {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("ServeHit: %s = %q, want %q", name, got, want)
		}
		if got := string(fc.Response.Header.Peek(name)); got != want {
			t.Errorf("serveHitFast: %s = %q, want %q", name, got, want)
		}
	}
	if rec.Body.String() != string(manifest) || string(fc.Response.Body()) != string(manifest) {
		t.Errorf("bodies %q and %q, want the pinned manifest", rec.Body.String(), fc.Response.Body())
	}

	done := func(int64, bool) {}
	allocs := testing.AllocsPerRun(1000, func() {
		fc.Request.Reset()
		fc.Response.Reset()
		fc.Request.Header.SetMethod(http.MethodGet)
		fc.Request.SetRequestURI(key)
		if !serveHitFast(c, fc, key, done) {
			t.Fatal("not a memory-tier hit")
		}
	})
	if allocs != 0 {
		t.Fatalf("an unversioned memory-tier hit allocates %.1f times, want 0", allocs)
	}
}

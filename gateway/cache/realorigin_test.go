package cache

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export/fixture"
	originpkg "github.com/stella-ops/stella-mirror/origin"
)

// TestWithRealOrigin puts the cache in front of the real origin serving a
// real, signed fixture export: MISS then HIT, the origin's sha256 ETags
// verified and stored, a 304 revalidation of the index, the index served
// STALE and the files (stored under their export-pinned paths) still HIT
// once the origin is gone.
func TestWithRealOrigin(t *testing.T) {
	root := t.TempDir()
	res, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 256 << 10, VEXSize: 4 << 10, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := originpkg.DefaultConfig()
	cfg.Concelier.Mirror.Enabled = true
	cfg.Concelier.Mirror.ExportRoot = root
	o, err := originpkg.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	srv := httptest.NewServer(o.Handler())
	t.Cleanup(srv.Close)
	target, _ := url.Parse(srv.URL)

	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c, err := New(Config{Dir: t.TempDir(), MaxSize: 64 << 20}, &http.Transport{ResponseHeaderTimeout: 10 * time.Second},
		Options{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	gw := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:      func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:    c,
		ErrorHandler: c.ErrorHandler,
	})
	t.Cleanup(gw.Close)
	cl := &http.Client{Timeout: 30 * time.Second}
	fetch := func(path string) (string, []byte, http.Header) {
		t.Helper()
		resp, err := cl.Get(gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		return string(StatusOf(resp.Header)), b, resp.Header
	}
	exportDir := filepath.Join(root, res.ExportID, "mirror")
	// The index first: a file asked for first would make the cache fetch
	// the index to learn the export generation (coherence.go).
	files := []struct{ path, file string }{
		{"/concelier/exports/index.json", filepath.Join(exportDir, "index.json")},
		{"/concelier/exports/mirror/primary/manifest.json", filepath.Join(exportDir, "primary", "manifest.json")},
		{"/concelier/exports/mirror/primary/bundle.json", filepath.Join(exportDir, "primary", "bundle.json")},
		{"/concelier/exports/mirror/primary/bundle.json.jws", filepath.Join(exportDir, "primary", "bundle.json.jws")},
	}
	for _, pf := range files {
		path, file := pf.path, pf.file
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, wantStatus := range []string{"MISS", "HIT"} {
			status, body, h := fetch(path)
			if status != wantStatus || !bytes.Equal(body, want) {
				t.Errorf("%s #%d: %s, %d bytes (want %s, %d bytes)", path, i, status, len(body), wantStatus, len(want))
			}
			if h.Get("X-Stella-Export-Id") != res.ExportID {
				t.Errorf("%s: X-Stella-Export-Id %q", path, h.Get("X-Stella-Export-Id"))
			}
			c.bg.Wait() // the fill is committed
		}
	}
	if n, f := testutilGauge(c.m.storedObjects), testutilCounter(c.m.fillFailures); n != 4 || f != 0 {
		t.Errorf("%v objects stored, %v fills failed; want 4 and 0 (every sha256 ETag verified)", n, f)
	}
	advance(61 * time.Second)
	if status, _, _ := fetch("/concelier/exports/index.json"); status != "REVALIDATED" {
		t.Errorf("index after 61 s: %s, want REVALIDATED (the origin's 304)", status)
	}
	if status, _, _ := fetch("/concelier/exports/mirror/primary/bundle.json"); status != "HIT" {
		t.Errorf("immutable bundle after 61 s: %s, want HIT", status)
	}
	srv.Close()
	advance(time.Hour)
	if status, _, _ := fetch("/concelier/exports/index.json"); status != "STALE" {
		t.Errorf("index with the origin down: %s, want STALE", status)
	}
	// The bundle is answered from its export-pinned copy (immutable for a
	// year) of the generation the stored index names: still fresh.
	if status, _, _ := fetch("/concelier/exports/mirror/primary/bundle.json"); status != "HIT" {
		t.Errorf("bundle with the origin down: %s, want HIT", status)
	}
}

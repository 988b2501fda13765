package gateway

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
)

// TestCDNGuidanceEverywhere: an unversioned manifest, bundle or signature
// carries "CDN-Cache-Control: public, max-age=<GATEWAY__CDNMAXAGE>" and its
// export id as Cache-Tag and Surrogate-Key on every path a gateway answers
// it by — with the cache (fill and hit) and without (the fasthttp native
// forwarder and net/http's proxy), on both engines — while the index and
// the pinned URLs keep the origin's headers. Before, a gateway without a
// cache passed the origin's headers unchanged.
func TestCDNGuidanceEverywhere(t *testing.T) {
	root := sharedExport(t)
	id, err := os.Readlink(filepath.Join(root, export.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	forEngines(t, func(t *testing.T, engine string) {
		for _, tc := range []struct {
			name     string
			cached   bool
			noNative bool
		}{{"no cache, native", false, false}, {"no cache, net/http", false, true}, {"cache", true, false}} {
			t.Run(tc.name, func(t *testing.T) {
				cacheDir := t.TempDir()
				h := newHarness(t, harnessOpts{engine: engine, noNative: tc.noNative, edit: func(c *Config) {
					c.Gateway.CDNMaxAge = 42e9
					if tc.cached {
						withCache(cacheDir, "")(c)
					}
				}})
				for _, name := range []string{export.ManifestName, export.BundleName, export.BundleSignatureName} {
					p := "/concelier/exports/mirror/primary/" + name
					for i := range 2 { // with the cache: a fill, then a hit
						r := h.get(hostPrimary, p, alice)
						if r.err != nil || r.status != 200 {
							t.Fatalf("GET %s: %d %v", p, r.status, r.err)
						}
						for k, want := range map[string]string{"Cdn-Cache-Control": "public, max-age=42", "Cache-Tag": id, "Surrogate-Key": id,
							"Cache-Control": "public, max-age=300, immutable"} {
							if got := r.header.Get(k); got != want {
								t.Errorf("GET %s (%d): %s %q, want %q", p, i, k, got, want)
							}
						}
					}
				}
				for _, p := range []string{export.IndexURL, export.PinnedFileURL(id, "primary", export.BundleName)} {
					r := h.get(hostPrimary, p, alice)
					if r.status != 200 || r.header.Get("Cdn-Cache-Control") != "" || r.header.Get("Cache-Tag") != "" {
						t.Errorf("GET %s: status %d, CDN-Cache-Control %q, Cache-Tag %q; want 200 and none",
							p, r.status, r.header.Get("Cdn-Cache-Control"), r.header.Get("Cache-Tag"))
					}
				}
			})
		}
	})
}

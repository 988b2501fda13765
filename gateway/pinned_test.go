package gateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
)

// TestPinnedPaths: through the gateway (real origin, fixture export), a
// site reaches the pinned index and its own domain's pinned files — 200
// with the bytes on disk, the immutable Cache-Control and the export id —
// while another site's domain, traversal spellings of the id and reserved,
// hidden or overlong ids are 404 without the origin being asked. With and
// without the cache.
func TestPinnedPaths(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", cached), func(t *testing.T) { testPinnedPaths(t, cached) })
	}
}

func testPinnedPaths(t *testing.T, cached bool) {
	cacheDir := t.TempDir()
	h := newHarness(t, harnessOpts{edit: func(c *Config) {
		if cached {
			withCache(cacheDir, "")(c)
		}
	}})
	root := sharedExport(t)
	id, err := os.Readlink(filepath.Join(root, export.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	onDisk := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, id, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, tc := range []struct{ path, rel string }{
		{export.PinnedIndexURL(id), export.IndexPath},
		{export.PinnedFileURL(id, "primary", export.ManifestName), export.ManifestPath("primary")},
		{export.PinnedFileURL(id, "primary", export.BundleName), export.BundlePath("primary")},
		{export.PinnedFileURL(id, "primary", export.BundleSignatureName), export.BundleSignaturePath("primary")},
	} {
		for i := range 2 { // the second one is a HIT with the cache
			r := h.get(hostPrimary, tc.path, alice)
			if r.err != nil || r.status != 200 {
				t.Fatalf("GET %s (%d): status %d, %v: %s", tc.path, i, r.status, r.err, r.body)
			}
			if r.body != onDisk(tc.rel) {
				t.Fatalf("GET %s (%d): not the bytes of %s/%s", tc.path, i, id, tc.rel)
			}
			if cc := r.header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
				t.Errorf("GET %s: Cache-Control %q", tc.path, cc)
			}
			if got := r.header.Get("X-Stella-Export-Id"); got != id {
				t.Errorf("GET %s: X-Stella-Export-Id %q, want %s", tc.path, got, id)
			}
		}
	}

	long := strings.Repeat("a", 129)
	for _, target := range []string{
		export.PinnedFileURL(id, "community", export.BundleName),
		export.PinnedFileURL(id, "community", export.ManifestName),
		export.PinnedFileURL(id, "community", export.BundleSignatureName),
		"/concelier/exports/" + id + "/mirror/%63ommunity/bundle.json",
		"/concelier/exports/" + id + "/mirror/primary/../community/bundle.json",
		"/concelier/exports/" + id + "%2Fmirror%2Fcommunity/bundle.json",
		"/concelier/exports/../mirror/community/bundle.json",
		"/concelier/exports/%2e%2e/index.json",
		"/concelier/exports/..%2f" + id + "/index.json",
		"/concelier/exports/.staging/index.json",
		"/concelier/exports/mirror/index.json",
		"/concelier/exports/index.json/mirror/primary/bundle.json",
		"/concelier/exports/latest/index.json",
		"/concelier/exports/" + long + "/index.json",
		"/concelier/exports//" + id + "/index.json",
		"/concelier/exports/" + id + "/index.json/",
	} {
		code, out := h.raw(hostPrimary, "GET "+target+" HTTP/1.1\r\nHost: "+hostPrimary+"\r\nAuthorization: "+alice["Authorization"]+"\r\nConnection: close\r\n\r\n")
		if code != 404 {
			t.Errorf("GET %s: status %d, want 404\n%s", target, code, out)
		}
	}
	for _, p := range h.upstream.paths() {
		if strings.Contains(p, "community") || strings.Contains(p, "..") || strings.Contains(p, ".staging") || strings.Contains(p, long) {
			t.Fatalf("origin was asked for %s", p)
		}
	}
	// The other site reaches its own domain's pinned bundle and the index.
	carol := map[string]string{"Authorization": basic("carol", "carol-pw")}
	if r := h.get(hostCommunity, export.PinnedFileURL(id, "community", export.BundleName), carol); r.status != 200 || r.body != onDisk(export.BundlePath("community")) {
		t.Fatalf("community's pinned bundle on its own site: %d", r.status)
	}
	if r := h.get(hostCommunity, export.PinnedIndexURL(id), carol); r.status != 200 {
		t.Fatalf("the pinned index on the community site: %d", r.status)
	}
	// An id the origin does not hold is the origin's 404.
	if r := h.get(hostPrimary, export.PinnedIndexURL("e9-unknown"), alice); r.status != 404 || !strings.Contains(r.body, "e9-unknown") {
		t.Fatalf("unknown export through the gateway: %d %s", r.status, r.body)
	}
}

// TestPinnedBudgets: a pinned index spends the site's index budget and a
// pinned file its download budget, shared with the unversioned twins.
func TestPinnedBudgets(t *testing.T) {
	h := newHarness(t, harnessOpts{edit: func(c *Config) {
		c.Gateway.Sites[0].MaxIndexRequestsPerHour = 2
		c.Gateway.Sites[0].MaxDownloadRequestsPerHour = 2
	}})
	id, err := os.Readlink(filepath.Join(sharedExport(t), export.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	for i, s := range []struct {
		path   string
		status int
	}{
		{indexPath, 200}, {export.PinnedIndexURL(id), 200}, {export.PinnedIndexURL(id), 429}, {indexPath, 429},
		{primaryBundle, 200}, {export.PinnedFileURL(id, "primary", export.BundleName), 200},
		{export.PinnedFileURL(id, "primary", export.ManifestName), 429}, {primaryBundle, 429},
	} {
		if r := h.get(hostPrimary, s.path, alice); r.status != s.status {
			t.Fatalf("step %d %s: status %d, want %d", i, s.path, r.status, s.status)
		}
	}
	m := h.metrics()
	for _, want := range []string{
		`stella_mirror_gateway_budget_rejections_total{budget="index",site="mirror-primary.localhost"} 2`,
		`stella_mirror_gateway_budget_rejections_total{budget="download",site="mirror-primary.localhost"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

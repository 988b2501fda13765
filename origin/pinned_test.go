package origin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/origin/authority/authoritytest"
)

const cachePinned = "public, max-age=31536000, immutable"

// pinnedGet fetches a pinned path and checks the headers every pinned 200
// carries: the immutable Cache-Control, the export id, a strong ETag,
// Last-Modified and the Content-Type of the file.
func pinnedGet(t *testing.T, h *harness, id, path string) response {
	t.Helper()
	r := h.get(t, path)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, r.status, r.body)
	}
	wantCT := "application/json"
	if strings.HasSuffix(path, ".jws") {
		wantCT = "application/jose"
	}
	for k, want := range map[string]string{"Cache-Control": cachePinned, "X-Stella-Export-Id": id, "Content-Type": wantCT} {
		if got := r.header.Get(k); got != want {
			t.Errorf("GET %s: %s %q, want %q", path, k, got, want)
		}
	}
	if et := r.header.Get("Etag"); !strings.HasPrefix(et, `"`) || len(et) != 66 {
		t.Errorf("GET %s: ETag %q, want a strong sha256 validator", path, et)
	}
	if r.header.Get("Last-Modified") == "" {
		t.Errorf("GET %s: no Last-Modified", path)
	}
	return r
}

// TestPinnedBytesMatchTheIndex: two signed fixture exports; for each, the
// pinned index is that export's index, every pinned manifest and bundle
// has the digest (and size) its pinned index declares, the manifest names
// the same bundle digest, and the pinned JWS verifies over the pinned
// bundle — whichever export latest names. After latest moves to the second
// export, the first one's pinned files still answer 200 with its bytes and
// the immutable header, while the unversioned URLs serve the second export
// with their runbook headers unchanged.
func TestPinnedBytesMatchTheIndex(t *testing.T) {
	root := t.TempDir()
	var keys []jws.PublicKey
	var ids []string
	for seed := uint64(1); seed <= 2; seed++ {
		res, err := fixture.Write(root, fixture.Options{Seed: seed, BundleSize: 48 << 10, VEXSize: 4 << 10})
		if err != nil {
			t.Fatal(err)
		}
		pub, err := jws.ParsePublicKeyPEM(res.PublicKeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, jws.PublicKey{KeyID: res.KeyID, Key: pub})
		ids = append(ids, res.ExportID)
	}
	if ids[0] == ids[1] {
		t.Fatalf("both fixtures are export %s", ids[0])
	}
	pointLatest(t, root, ids[0])
	// smallFileMax 1 KiB: bundles are served from disk (sendfile path),
	// indexes and signatures from memory; both paths are pinned.
	h := newHarness(t, testConfig(root), options{smallFileMax: 1 << 10})

	check := func(t *testing.T, id string) {
		t.Helper()
		ixResp := pinnedGet(t, h, id, export.PinnedIndexURL(id))
		onDisk, err := os.ReadFile(filepath.Join(root, id, filepath.FromSlash(export.IndexPath)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ixResp.body, onDisk) {
			t.Fatalf("pinned index of %s differs from %s/%s", id, id, export.IndexPath)
		}
		ix, err := export.ParseIndex(ixResp.body)
		if err != nil {
			t.Fatal(err)
		}
		if ix.ExportID != id || len(ix.Domains) == 0 {
			t.Fatalf("pinned index of %s names export %s with %d domains", id, ix.ExportID, len(ix.Domains))
		}
		for _, d := range ix.Domains {
			mf := pinnedGet(t, h, id, export.PinnedFileURL(id, d.DomainID, export.ManifestName))
			if got := export.Digest(mf.body); got != d.Manifest.Digest || int64(len(mf.body)) != d.Manifest.SizeBytes {
				t.Errorf("%s/%s manifest: %s (%d bytes), index declares %s (%d)", id, d.DomainID, got, len(mf.body), d.Manifest.Digest, d.Manifest.SizeBytes)
			}
			m, err := export.ParseManifest(mf.body)
			if err != nil {
				t.Fatal(err)
			}
			b := pinnedGet(t, h, id, export.PinnedFileURL(id, d.DomainID, export.BundleName))
			if got := export.Digest(b.body); got != d.Bundle.Digest || got != m.Bundle.Digest || int64(len(b.body)) != d.Bundle.SizeBytes {
				t.Errorf("%s/%s bundle: %s, index declares %s, manifest %s", id, d.DomainID, got, d.Bundle.Digest, m.Bundle.Digest)
			}
			sig := pinnedGet(t, h, id, export.PinnedFileURL(id, d.DomainID, export.BundleSignatureName))
			if _, err := jws.Verify(sig.body, bytes.NewReader(b.body), keys); err != nil {
				t.Errorf("%s/%s: the pinned JWS does not verify over the pinned bundle: %v", id, d.DomainID, err)
			}
		}
	}
	for _, id := range ids {
		check(t, id)
	}
	prevBundle := pinnedGet(t, h, ids[0], export.PinnedFileURL(ids[0], "primary", export.BundleName)).body

	pointLatest(t, root, ids[1])
	if got := h.get(t, export.IndexURL).header.Get("X-Stella-Export-Id"); got != ids[1] {
		t.Fatalf("unversioned index serves %s after the switch, want %s", got, ids[1])
	}
	// The previous export, by its pinned URLs, still answers with its bytes.
	if got := pinnedGet(t, h, ids[0], export.PinnedFileURL(ids[0], "primary", export.BundleName)).body; !bytes.Equal(got, prevBundle) {
		t.Fatal("the previous export's pinned bundle changed after the switch")
	}
	for _, id := range ids {
		check(t, id)
	}
	// The unversioned twins keep the runbook's headers.
	for path, cc := range map[string]string{
		export.IndexURL: "public, max-age=60",
		"/concelier/exports/mirror/primary/manifest.json":   "public, max-age=300, immutable",
		"/concelier/exports/mirror/primary/bundle.json":     "public, max-age=300, immutable",
		"/concelier/exports/mirror/primary/bundle.json.jws": "public, max-age=300, immutable",
	} {
		r := h.get(t, path)
		if r.status != http.StatusOK || r.header.Get("Cache-Control") != cc || r.header.Get("X-Stella-Export-Id") != ids[1] {
			t.Errorf("GET %s: %d, Cache-Control %q, export %q; want 200, %q, %s", path, r.status,
				r.header.Get("Cache-Control"), r.header.Get("X-Stella-Export-Id"), cc, ids[1])
		}
	}
}

// pinnedError decodes a pinned 404 and checks it names the id.
func pinnedErrorBody(t *testing.T, r response) errorBody {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("error headers %v", r.header)
	}
	return b
}

// TestPinnedRefusals: an id that names no export held here — unknown,
// pruned, incomplete, hidden or staging, symlinked, reserved, invalid,
// traversal in any spelling, too long — answers 404 export_not_found (or
// 404 from the router), never a byte from outside the export, and the JSON
// names the id, sanitized and bounded.
func TestPinnedRefusals(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "exports")
	e1 := writeExport(t, root, "e1", treeOpts{})
	writeExport(t, root, "e2", treeOpts{})
	pointLatest(t, root, "e1")
	// A complete export under a hidden and a staging name, a symlinked
	// export, an incomplete one, and planted secrets where traversal would
	// lead.
	writeExport(t, root, ".hidden", treeOpts{})
	writeExport(t, filepath.Join(root, export.StagingDir), "e3", treeOpts{})
	writeExport(t, filepath.Join(root, export.StagingDir), "index.json", treeOpts{})
	if err := os.Symlink("e2", filepath.Join(root, "alias")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "partial", "mirror", "primary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "partial", "mirror", "primary", "bundle.json"), []byte(secretMarker), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := []byte(secretMarker + "\n")
	for _, p := range []string{
		filepath.Join(base, "index.json"),
		filepath.Join(base, "mirror", "primary", "bundle.json"),
		filepath.Join(root, "index.json"),
		filepath.Join(root, "mirror", "primary", "bundle.json"),
		filepath.Join(e1.dir, "index.json"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, secret, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	clock := newFakeClock()
	h := newHarness(t, testConfig(root), options{now: clock.Now})
	addr := strings.TrimPrefix(h.public.URL, "http://")
	long := strings.Repeat("a", 129)

	tests := []struct {
		target string
		id     string // the exportId the JSON must name; "" when the router refuses
	}{
		{"/concelier/exports/e9/index.json", "e9"},
		{"/concelier/exports/e9/mirror/primary/bundle.json", "e9"},
		{"/concelier/exports/partial/index.json", "partial"},
		{"/concelier/exports/partial/mirror/primary/bundle.json", "partial"},
		{"/concelier/exports/alias/index.json", "alias"},
		{"/concelier/exports/.hidden/index.json", ".hidden"},
		{"/concelier/exports/.staging/index.json", ".staging"},
		{"/concelier/exports/.staging/mirror/primary/bundle.json", ".staging"},
		{"/concelier/exports/latest/index.json", "latest"},
		{"/concelier/exports/mirror/index.json", "mirror"},
		{"/concelier/exports/mirror/mirror/primary/bundle.json", "mirror"},
		{"/concelier/exports/index.json/index.json", "index.json"},
		{"/concelier/exports/index.json/mirror/primary/bundle.json", "index.json"},
		{"/concelier/exports/../index.json", ".."},
		{"/concelier/exports/./index.json", "."},
		{"/concelier/exports/../mirror/primary/bundle.json", ".."},
		{"/concelier/exports/%2e%2e/index.json", "%2e%2e"},
		{"/concelier/exports/%2E%2E/mirror/primary/bundle.json", "%2E%2E"},
		{"/concelier/exports/%2e/index.json", "%2e"},
		{"/concelier/exports/..%2f..%2f/index.json", "..%2f..%2f"},
		{"/concelier/exports/.staging%2fe3/index.json", ".staging%2fe3"},
		{"/concelier/exports/.staging%2Fe3/mirror/primary/bundle.json", ".staging%2Fe3"},
		{"/concelier/exports/e1%2F..%2F..%2F/index.json", "e1%2F..%2F..%2F"},
		{"/concelier/exports/%252e%252e/index.json", "%252e%252e"},
		{"/concelier/exports/..\\..\\/index.json", "..%5C..%5C"},
		{"/concelier/exports/e1%00/index.json", "e1%00"},
		{"/concelier/exports/" + long + "/index.json", strings.Repeat("a", maxShownID) + "…"},
		{"/concelier/exports/<script>/index.json", "%3Cscript%3E"},
		// Paths the router itself refuses (404 without an id).
		{"/concelier/exports//index.json", ""},
		{"/concelier/exports/e1/mirror/../../../index.json", ""},
		{"/concelier/exports/e1/mirror/primary/../../index.json", ""},
		{"/concelier/exports/e1/mirror/%2e%2e/bundle.json", ""},
		{"/concelier/exports/e1/mirror/primary%2f..%2f..%2f../bundle.json", ""},
		{"/concelier/exports/e1/mirror/primary/secret.json", ""},
		{"/concelier/exports/e1/excititor/primary/index.json", ""},
		{"/concelier/exports/e1/mirror/index.json", ""},
		{"/concelier/exports/e1", ""},
		{"/concelier/exports/e1/", ""},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			r := rawGet(t, addr, tc.target)
			if r.status != http.StatusNotFound && r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 404: %s", r.status, r.body)
			}
			if bytes.Contains(r.body, []byte(secretMarker)) {
				t.Fatalf("served a planted file: %s", r.body)
			}
			if r.status == http.StatusBadRequest || tc.id == "" {
				return
			}
			b := pinnedErrorBody(t, r)
			if b.Error != "export_not_found" || b.ExportID != tc.id || !strings.Contains(b.Message, tc.id) {
				t.Fatalf("body %s: want export_not_found naming %q", r.body, tc.id)
			}
		})
	}

	t.Run("pruned", func(t *testing.T) {
		pinnedGet(t, h, "e2", "/concelier/exports/e2/mirror/primary/bundle.json")
		if err := os.RemoveAll(filepath.Join(root, "e2")); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * revalidateAfter) // the cached export is re-checked
		r := h.get(t, "/concelier/exports/e2/mirror/primary/bundle.json")
		if r.status != http.StatusNotFound {
			t.Fatalf("pruned export: status %d, want 404: %s", r.status, r.body)
		}
		if b := pinnedErrorBody(t, r); b.Error != "export_not_found" || b.ExportID != "e2" {
			t.Fatalf("pruned export: %s", r.body)
		}
		// The active export is untouched.
		pinnedGet(t, h, "e1", "/concelier/exports/e1/mirror/primary/bundle.json")
	})

	t.Run("unknown ids do not evict", func(t *testing.T) {
		pinnedGet(t, h, "e1", "/concelier/exports/e1/index.json")
		for i := range 3 * maxCachedExports {
			h.get(t, "/concelier/exports/nope-"+string(rune('a'+i))+"/index.json")
		}
		p := h.o.products[0]
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, st := range p.cached {
			if strings.HasPrefix(st.id, "nope-") {
				t.Fatalf("unknown export %s entered the cache", st.id)
			}
		}
	})
}

// TestPinnedHTTPSemantics: HEAD, Range and conditional requests on pinned
// paths, for a file served from memory and one served from disk.
func TestPinnedHTTPSemantics(t *testing.T) {
	for _, small := range []int64{0, 1} {
		t.Run(map[int64]string{0: "from memory", 1: "from disk"}[small], func(t *testing.T) {
			root := t.TempDir()
			te := writeExport(t, root, "e1", treeOpts{pad: 4096})
			writeExport(t, root, "e2", treeOpts{})
			pointLatest(t, root, "e2")
			h := newHarness(t, testConfig(root), options{smallFileMax: small})
			for _, rel := range []string{export.BundlePath("primary"), export.BundleSignaturePath("primary")} {
				path := "/concelier/exports/e1/" + rel
				want := te.files[rel]
				full := pinnedGet(t, h, "e1", path)
				if !bytes.Equal(full.body, want) {
					t.Fatalf("GET %s: not the file's bytes", path)
				}
				etag := full.header.Get("Etag")

				head := do(t, h.public.Client(), http.MethodHead, h.public.URL+path, nil)
				if head.status != http.StatusOK || len(head.body) != 0 || head.header.Get("Content-Length") != full.header.Get("Content-Length") ||
					head.header.Get("Cache-Control") != cachePinned || head.header.Get("X-Stella-Export-Id") != "e1" {
					t.Errorf("HEAD %s: %d, %d body bytes, headers %v", path, head.status, len(head.body), head.header)
				}
				rg := do(t, h.public.Client(), http.MethodGet, h.public.URL+path, map[string]string{"Range": "bytes=5-14"})
				if rg.status != http.StatusPartialContent || !bytes.Equal(rg.body, want[5:15]) ||
					rg.header.Get("Content-Range") != "bytes 5-14/"+full.header.Get("Content-Length") || rg.header.Get("Cache-Control") != cachePinned {
					t.Errorf("Range %s: %d %q, headers %v", path, rg.status, rg.body, rg.header)
				}
				nm := do(t, h.public.Client(), http.MethodGet, h.public.URL+path, map[string]string{"If-None-Match": etag})
				if nm.status != http.StatusNotModified || len(nm.body) != 0 || nm.header.Get("Etag") != etag {
					t.Errorf("If-None-Match %s: %d, headers %v", path, nm.status, nm.header)
				}
				ims := do(t, h.public.Client(), http.MethodGet, h.public.URL+path, map[string]string{"If-Modified-Since": full.header.Get("Last-Modified")})
				if ims.status != http.StatusNotModified {
					t.Errorf("If-Modified-Since %s: %d", path, ims.status)
				}
				stale := do(t, h.public.Client(), http.MethodGet, h.public.URL+path, map[string]string{"If-Match": `"other"`})
				if stale.status != http.StatusPreconditionFailed {
					t.Errorf("If-Match other %s: %d", path, stale.status)
				}
			}
			post := do(t, h.public.Client(), http.MethodPost, h.public.URL+"/concelier/exports/e1/index.json", nil)
			if post.status != http.StatusMethodNotAllowed || post.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("POST pinned index: %d, Allow %q", post.status, post.header.Get("Allow"))
			}
		})
	}
}

// TestPinnedAccess: the origin's auth and budgets apply to a pinned path
// exactly as to its unversioned twin: the domain's REQUIREAUTHENTICATION,
// Bearer challenges, bypass networks, and one budget shared by the twins.
// An unknown id is not revealed before authentication.
func TestPinnedAccess(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	writeExport(t, root, "e2", treeOpts{})
	pointLatest(t, root, "e2")
	iss := authoritytest.NewIssuer(t)
	clock := newFakeClock()
	cfg := authConfig(root, iss)
	yes := true
	cfg.Concelier.Mirror.RequireAuthentication = false
	cfg.Concelier.Mirror.MaxIndexRequestsPerHour = 2
	cfg.Concelier.Mirror.Domains = []DomainConfig{
		{ID: "primary", MaxDownloadRequestsPerHour: 2},
		{ID: "community", RequireAuthentication: &yes},
	}
	h := newHarness(t, cfg, options{now: clock.Now})
	alice := bearer(iss.Sign(t, iss.Token(clock.Now(), "alice", testAudience, ScopeConcelier)))
	noScope := bearer(iss.Sign(t, iss.Token(clock.Now(), "carol", testAudience, "other.scope")))

	steps := []struct {
		name, path string
		hdr        map[string]string
		status     int
	}{
		{"protected domain, no token", "/concelier/exports/e1/mirror/community/manifest.json", nil, http.StatusUnauthorized},
		{"protected domain, unknown id, no token", "/concelier/exports/e9/mirror/community/manifest.json", nil, http.StatusUnauthorized},
		{"protected domain, no scope", "/concelier/exports/e1/mirror/community/bundle.json", noScope, http.StatusForbidden},
		{"protected domain, token", "/concelier/exports/e1/mirror/community/bundle.json", alice, http.StatusOK},
		{"protected domain, token, unknown id", "/concelier/exports/e9/mirror/community/bundle.json", alice, http.StatusNotFound},
		{"unconfigured domain", "/concelier/exports/e1/mirror/other/bundle.json", nil, http.StatusNotFound},
		// One index budget of 2 for the unversioned and pinned indexes.
		{"index", export.IndexURL, nil, http.StatusOK},
		{"pinned index", "/concelier/exports/e1/index.json", nil, http.StatusOK},
		{"pinned index over budget", "/concelier/exports/e2/index.json", nil, http.StatusTooManyRequests},
		{"index over budget", export.IndexURL, nil, http.StatusTooManyRequests},
		// One download budget of 2 for primary's files, pinned or not.
		{"bundle", "/concelier/exports/mirror/primary/bundle.json", nil, http.StatusOK},
		{"pinned bundle", "/concelier/exports/e1/mirror/primary/bundle.json", nil, http.StatusOK},
		{"pinned manifest over budget", "/concelier/exports/e1/mirror/primary/manifest.json", nil, http.StatusTooManyRequests},
		{"manifest over budget", "/concelier/exports/mirror/primary/manifest.json", nil, http.StatusTooManyRequests},
	}
	for _, s := range steps {
		r := do(t, h.public.Client(), http.MethodGet, h.public.URL+s.path, s.hdr)
		if r.status != s.status {
			t.Fatalf("%s: status %d, want %d: %s", s.name, r.status, s.status, r.body)
		}
		switch s.status {
		case http.StatusUnauthorized:
			if w := r.header.Get("Www-Authenticate"); !strings.HasPrefix(w, "Bearer ") {
				t.Errorf("%s: WWW-Authenticate %q", s.name, w)
			}
			if bytes.Contains(r.body, []byte("e9")) {
				t.Errorf("%s: the challenge reveals the export lookup: %s", s.name, r.body)
			}
		case http.StatusTooManyRequests:
			if r.header.Get("Retry-After") == "" {
				t.Errorf("%s: no Retry-After", s.name)
			}
		}
	}
	clock.Advance(2 * time.Hour)
	if r := h.get(t, "/concelier/exports/e1/index.json"); r.status != http.StatusOK {
		t.Fatalf("after the budget period: %d", r.status)
	}
}

// TestShownID: what an error may quote of a refused id.
func TestShownID(t *testing.T) {
	for in, want := range map[string]string{
		"e1":                            "e1",
		"%2e%2e":                        "%2e%2e",
		"<script>\"x\"":                 "?script??x?",
		"a/b\\c\x00d\n":                 "a?b?c?d?",
		"é":                             "??",
		strings.Repeat("z", 200):        strings.Repeat("z", maxShownID) + "…",
		strings.Repeat("z", maxShownID): strings.Repeat("z", maxShownID),
	} {
		if got := shownID(in); got != want {
			t.Errorf("shownID(%q) = %q, want %q", in, got, want)
		}
	}
}

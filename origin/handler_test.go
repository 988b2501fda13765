package origin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
)

// endpointCase is one served path and the file behind it.
type endpointCase struct {
	name, path, file, contentType, cacheControl string
}

func endpointCases(domain string) []endpointCase {
	const short, immutable = "public, max-age=60", "public, max-age=300, immutable"
	return []endpointCase{
		{"concelier index", "/concelier/exports/index.json", export.IndexPath, "application/json", short},
		{"manifest", "/concelier/exports/mirror/" + domain + "/manifest.json", export.ManifestPath(domain), "application/json", immutable},
		{"bundle", "/concelier/exports/mirror/" + domain + "/bundle.json", export.BundlePath(domain), "application/json", immutable},
		{"bundle signature", "/concelier/exports/mirror/" + domain + "/bundle.json.jws", export.BundleSignaturePath(domain), "application/jose", immutable},
		{"excititor index", "/excititor/mirror/" + domain + "/index", export.ExcititorIndexPath(domain), "application/json", short},
		{"openvex export", "/excititor/mirror/" + domain + "/export/" + keyOpenVEX, export.ExcititorExportPath(domain, keyOpenVEX), "application/json", immutable},
		{"jsonl export", "/excititor/mirror/" + domain + "/export/" + keyJSONL, export.ExcititorExportPath(domain, keyJSONL), "application/x-ndjson", immutable},
		{"export signature", "/excititor/mirror/" + domain + "/export/" + keyOpenVEX + "/signature", export.ExcititorSignaturePath(domain, keyOpenVEX), "application/jose", immutable},
	}
}

// TestEndpoints checks every endpoint's status, headers, body, HEAD,
// conditional requests and ranges, with files served from memory and (with
// a tiny small-file limit) from disk.
func TestEndpoints(t *testing.T) {
	for _, mode := range []struct {
		name     string
		smallMax int64
	}{{"from memory", 0}, {"from disk", 16}} {
		t.Run(mode.name, func(t *testing.T) {
			root := t.TempDir()
			te := writeExport(t, root, "20260102T030405Z", treeOpts{pad: 2000})
			pointLatest(t, root, te.id)
			h := newHarness(t, testConfig(root), options{smallFileMax: mode.smallMax})
			c := h.public.Client()
			for _, tc := range endpointCases("community") {
				t.Run(tc.name, func(t *testing.T) {
					want := te.files[tc.file]
					fi, err := os.Stat(filepath.Join(te.dir, filepath.FromSlash(tc.file)))
					if err != nil {
						t.Fatal(err)
					}
					sum := sha256.Sum256(want)
					wantETag := `"` + hex.EncodeToString(sum[:]) + `"`
					wantLM := fi.ModTime().UTC().Format(http.TimeFormat)
					url := h.public.URL + tc.path

					get := do(t, c, http.MethodGet, url, nil)
					if get.status != http.StatusOK {
						t.Fatalf("GET status %d, body %s", get.status, get.body)
					}
					if string(get.body) != string(want) {
						t.Fatalf("GET body differs from %s (%d vs %d bytes)", tc.file, len(get.body), len(want))
					}
					for k, v := range map[string]string{
						"Cache-Control":          tc.cacheControl,
						"Content-Type":           tc.contentType,
						"Etag":                   wantETag,
						"Last-Modified":          wantLM,
						"X-Content-Type-Options": "nosniff",
						"X-Stella-Export-Id":     te.id,
						"Content-Length":         fmt.Sprint(len(want)),
						"Accept-Ranges":          "bytes",
					} {
						if got := get.header.Get(k); got != v {
							t.Errorf("GET %s = %q, want %q", k, got, v)
						}
					}

					head := do(t, c, http.MethodHead, url, nil)
					if head.status != http.StatusOK || len(head.body) != 0 {
						t.Errorf("HEAD status %d with %d body bytes, want 200 and none", head.status, len(head.body))
					}
					for _, k := range []string{"Cache-Control", "Content-Type", "Etag", "Last-Modified", "Content-Length", "X-Stella-Export-Id"} {
						if head.header.Get(k) != get.header.Get(k) {
							t.Errorf("HEAD %s = %q, GET had %q", k, head.header.Get(k), get.header.Get(k))
						}
					}

					inm := do(t, c, http.MethodGet, url, map[string]string{"If-None-Match": wantETag})
					if inm.status != http.StatusNotModified || len(inm.body) != 0 {
						t.Errorf("If-None-Match: status %d, %d body bytes; want 304 and none", inm.status, len(inm.body))
					}
					if inm.header.Get("Etag") != wantETag {
						t.Errorf("304 ETag = %q, want %q", inm.header.Get("Etag"), wantETag)
					}
					if other := do(t, c, http.MethodGet, url, map[string]string{"If-None-Match": `"other"`}); other.status != http.StatusOK {
						t.Errorf("If-None-Match with another ETag: status %d, want 200", other.status)
					}
					ims := do(t, c, http.MethodGet, url, map[string]string{"If-Modified-Since": fi.ModTime().Add(time.Hour).UTC().Format(http.TimeFormat)})
					if ims.status != http.StatusNotModified {
						t.Errorf("If-Modified-Since: status %d, want 304", ims.status)
					}

					rng := do(t, c, http.MethodGet, url, map[string]string{"Range": "bytes=2-9"})
					if rng.status != http.StatusPartialContent {
						t.Fatalf("Range: status %d, want 206", rng.status)
					}
					if got, wantCR := rng.header.Get("Content-Range"), fmt.Sprintf("bytes 2-9/%d", len(want)); got != wantCR {
						t.Errorf("Content-Range = %q, want %q", got, wantCR)
					}
					if string(rng.body) != string(want[2:10]) {
						t.Errorf("Range body = %q, want %q", rng.body, want[2:10])
					}

					ifr := do(t, c, http.MethodGet, url, map[string]string{"Range": "bytes=0-3", "If-Range": wantETag})
					if ifr.status != http.StatusPartialContent || string(ifr.body) != string(want[:4]) {
						t.Errorf("If-Range matching: status %d body %q, want 206 %q", ifr.status, ifr.body, want[:4])
					}
					stale := do(t, c, http.MethodGet, url, map[string]string{"Range": "bytes=0-3", "If-Range": `"stale"`})
					if stale.status != http.StatusOK || len(stale.body) != len(want) {
						t.Errorf("If-Range stale: status %d with %d bytes, want 200 with the whole file", stale.status, len(stale.body))
					}

					im := do(t, c, http.MethodGet, url, map[string]string{"If-Match": `"other"`})
					if im.status != http.StatusPreconditionFailed {
						t.Errorf("If-Match another ETag: status %d, want 412", im.status)
					}
				})
			}
		})
	}
}

// TestMethodNotAllowed: anything but GET and HEAD is 405 with Allow.
func TestMethodNotAllowed(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	h := newHarness(t, testConfig(root), options{})
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch} {
		for _, path := range []string{"/concelier/exports/index.json", "/concelier/exports/mirror/primary/bundle.json", "/excititor/mirror/primary/index", "/health/ready"} {
			t.Run(method+" "+path, func(t *testing.T) {
				r := do(t, h.public.Client(), method, h.public.URL+path, nil)
				if r.status != http.StatusMethodNotAllowed {
					t.Fatalf("status %d, want 405", r.status)
				}
				if got := r.header.Get("Allow"); got != "GET, HEAD" {
					t.Errorf("Allow = %q, want %q", got, "GET, HEAD")
				}
				if code := errorCode(t, r); code != "method_not_allowed" {
					t.Errorf("error = %q", code)
				}
			})
		}
	}
}

// TestErrors covers clear, logged answers for requests that cannot be
// served, and that none of them panics.
func TestErrors(t *testing.T) {
	type setup func(t *testing.T, root string, te *testExport, cfg *Config)
	cases := []struct {
		name     string
		setup    setup
		path     string
		status   int
		code     string
		logMsg   string
		logLevel string
		logHas   string
	}{
		{name: "unknown domain", path: "/concelier/exports/mirror/nosuch/manifest.json",
			status: 404, code: "not_found", logMsg: "not found", logLevel: "INFO", logHas: "not in export"},
		{name: "unknown excititor domain", path: "/excititor/mirror/nosuch/index",
			status: 404, code: "not_found", logMsg: "not found", logLevel: "INFO", logHas: "not in export"},
		{name: "invalid domain id", path: "/concelier/exports/mirror/Primary/manifest.json",
			status: 404, code: "not_found", logMsg: "not found", logLevel: "INFO", logHas: "invalid domain id"},
		{name: "unconfigured domain", path: "/concelier/exports/mirror/community/bundle.json",
			setup: func(_ *testing.T, _ string, _ *testExport, cfg *Config) {
				cfg.Concelier.Mirror.Domains = []DomainConfig{{ID: "primary"}}
			},
			status: 404, code: "not_found", logMsg: "not found", logLevel: "INFO", logHas: "is not configured"},
		{name: "unconfigured excititor domain", path: "/excititor/mirror/community/export/" + keyOpenVEX,
			setup: func(_ *testing.T, _ string, _ *testExport, cfg *Config) {
				cfg.Excititor.Mirror.Domains = []DomainConfig{{ID: "primary"}}
			},
			status: 404, code: "not_found", logMsg: "not found", logLevel: "INFO", logHas: "is not configured"},
		{name: "missing file", path: "/concelier/exports/mirror/primary/bundle.json.jws",
			setup: func(t *testing.T, _ string, te *testExport, _ *Config) {
				if err := os.Remove(filepath.Join(te.dir, filepath.FromSlash(export.BundleSignaturePath("primary")))); err != nil {
					t.Fatal(err)
				}
			},
			status: 404, code: "not_found", logMsg: "not found", logLevel: "INFO", logHas: "listed but missing"},
		{name: "unknown export key", path: "/excititor/mirror/primary/export/nosuch.json",
			status: 404, code: "not_found", logMsg: "not found", logLevel: "INFO", logHas: "is not in domain"},
		{name: "invalid export key", path: "/excititor/mirror/primary/export/UPPER.json",
			status: 404, code: "not_found", logMsg: "not found", logLevel: "INFO", logHas: "invalid export key"},
		{name: "unknown path", path: "/concelier/exports/other.json",
			status: 404, code: "not_found", logMsg: "request", logLevel: "INFO", logHas: "unmatched"},
		{name: "malformed concelier index", path: "/concelier/exports/mirror/primary/manifest.json",
			setup: func(t *testing.T, _ string, te *testExport, _ *Config) {
				overwrite(t, te, export.IndexPath, []byte(`{"schemaVersion":1,`))
			},
			status: 503, code: "export_unavailable", logMsg: "export unavailable", logLevel: "ERROR", logHas: "parsing mirror index"},
		{name: "invalid concelier index", path: "/concelier/exports/index.json",
			setup: func(t *testing.T, _ string, te *testExport, _ *Config) {
				overwrite(t, te, export.IndexPath, []byte(`{"schemaVersion":7,"exportId":"e1","domains":[]}`))
			},
			status: 503, code: "export_unavailable", logMsg: "export unavailable", logLevel: "ERROR", logHas: "invalid mirror index"},
		{name: "malformed excititor index", path: "/excititor/mirror/primary/export/" + keyOpenVEX,
			setup: func(t *testing.T, _ string, te *testExport, _ *Config) {
				overwrite(t, te, export.ExcititorIndexPath("primary"), []byte(`[]`))
			},
			status: 503, code: "export_unavailable", logMsg: "export unavailable", logLevel: "ERROR", logHas: "parsing excititor index"},
		// A domain's index that names another domain (community's copied
		// over primary's): primary's paths would otherwise serve
		// community's exports under primary's name, past the gateway's
		// per-domain policy.
		{name: "excititor index of another domain", path: "/excititor/mirror/primary/index",
			setup: func(t *testing.T, _ string, te *testExport, _ *Config) {
				overwrite(t, te, export.ExcititorIndexPath("primary"), te.files[export.ExcititorIndexPath("community")])
			},
			status: 503, code: "export_unavailable", logMsg: "export unavailable", logLevel: "ERROR", logHas: `names domain "community"`},
		{name: "tampered bundle", path: "/concelier/exports/mirror/primary/bundle.json",
			setup: func(t *testing.T, _ string, te *testExport, _ *Config) {
				b := append([]byte(nil), te.files[export.BundlePath("primary")]...)
				b[len(b)-3] ^= 1
				overwrite(t, te, export.BundlePath("primary"), b)
			},
			status: 503, code: "export_unavailable", logMsg: "export unavailable", logLevel: "ERROR", logHas: "the index declares"},
		{name: "truncated export", path: "/excititor/mirror/primary/export/" + keyJSONL,
			setup: func(t *testing.T, _ string, te *testExport, _ *Config) {
				b := te.files[export.ExcititorExportPath("primary", keyJSONL)]
				overwrite(t, te, export.ExcititorExportPath("primary", keyJSONL), b[:len(b)/2])
			},
			status: 503, code: "export_unavailable", logMsg: "export unavailable", logLevel: "ERROR", logHas: "the index declares"},
		{name: "pinned export missing", path: "/concelier/exports/index.json",
			setup: func(_ *testing.T, _ string, _ *testExport, cfg *Config) {
				cfg.Concelier.Mirror.ActiveExportID = "gone"
			},
			status: 503, code: "export_unavailable", logMsg: "export unavailable", logLevel: "ERROR", logHas: "does not exist"},
		{name: "disabled product", path: "/excititor/mirror/primary/index",
			setup: func(_ *testing.T, _ string, _ *testExport, cfg *Config) {
				cfg.Excititor.Mirror.Enabled = false
			},
			status: 404, code: "not_found", logMsg: "not found", logLevel: "INFO", logHas: "not enabled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			te := writeExport(t, root, "e1", treeOpts{})
			cfg := testConfig(root)
			if tc.setup != nil {
				tc.setup(t, root, te, &cfg)
			}
			h := newHarness(t, cfg, options{})
			r := h.get(t, tc.path)
			h.settle(t)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tc.status, r.body)
			}
			if code := errorCode(t, r); code != tc.code {
				t.Errorf("error = %q, want %q", code, tc.code)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("error Cache-Control = %q, want no-store", cc)
			}
			var found bool
			for _, rec := range h.logs.lines(t, tc.logMsg) {
				if rec["level"] == tc.logLevel && strings.Contains(fmt.Sprint(rec), tc.logHas) {
					found = true
				}
			}
			if !found {
				t.Errorf("no %s log line %q mentioning %q in:\n%s", tc.logLevel, tc.logMsg, tc.logHas, h.logs.String())
			}
		})
	}
}

// overwrite replaces a file of a test export in place.
func overwrite(t *testing.T, te *testExport, rel string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(te.dir, filepath.FromSlash(rel)), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFileChangedAfterVerification: a large file replaced after its first
// verification is not streamed unverified.
func TestFileChangedAfterVerification(t *testing.T) {
	root := t.TempDir()
	te := writeExport(t, root, "e1", treeOpts{pad: 4096})
	h := newHarness(t, testConfig(root), options{smallFileMax: 16})
	path := "/concelier/exports/mirror/primary/bundle.json"
	if r := h.get(t, path); r.status != http.StatusOK {
		t.Fatalf("first GET: %d", r.status)
	}
	b := append([]byte(nil), te.files[export.BundlePath("primary")]...)
	b[len(b)-3] ^= 1
	tmp := filepath.Join(te.dir, "tampered.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(te.dir, filepath.FromSlash(export.BundlePath("primary")))); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the first notices the change, the second re-verifies
		r := h.get(t, path)
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("GET %d after replacement: status %d, want 503", i, r.status)
		}
		if strings.Contains(string(r.body), "CVE-2026") {
			t.Fatalf("tampered bundle bytes were served")
		}
	}
}

// TestRequireAuthenticationFailsClosed: wherever REQUIREAUTHENTICATION
// applies the origin answers 401 with a Bearer challenge, whatever the
// request carries; elsewhere it serves.
func TestRequireAuthenticationFailsClosed(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name    string
		global  bool
		domains []DomainConfig
		want    map[string]int
	}{
		{name: "global", global: true, want: map[string]int{
			"/concelier/exports/index.json":                    401,
			"/concelier/exports/mirror/primary/manifest.json":  401,
			"/excititor/mirror/primary/index":                  401,
			"/excititor/mirror/community/export/" + keyOpenVEX: 401,
			"/health/ready": 200,
			"/concelier/exports/mirror/community/bundle.json.jws": 401,
		}},
		{name: "domain override off", global: true,
			domains: []DomainConfig{{ID: "primary", RequireAuthentication: &no}, {ID: "community"}},
			want: map[string]int{
				"/concelier/exports/index.json":                   401,
				"/concelier/exports/mirror/primary/manifest.json": 200,
				"/concelier/exports/mirror/community/bundle.json": 401,
			}},
		{name: "domain override on", global: false,
			domains: []DomainConfig{{ID: "primary", RequireAuthentication: &yes}, {ID: "community"}},
			want: map[string]int{
				"/concelier/exports/index.json":                   200,
				"/concelier/exports/mirror/primary/manifest.json": 401,
				"/concelier/exports/mirror/community/bundle.json": 200,
				"/excititor/mirror/community/index":               200,
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeExport(t, root, "e1", treeOpts{})
			cfg := testConfig(root)
			for _, m := range []*MirrorConfig{&cfg.Concelier.Mirror, &cfg.Excititor.Mirror} {
				m.RequireAuthentication = tc.global
				m.Domains = tc.domains
			}
			h := newHarness(t, cfg, options{})
			if len(h.logs.lines(t, "configuration")) == 0 {
				t.Errorf("no start-up warning that no client can authenticate:\n%s", h.logs.String())
			}
			for path, want := range tc.want {
				r := do(t, h.public.Client(), http.MethodGet, h.public.URL+path, map[string]string{"Authorization": "Bearer abc.def.ghi"})
				if r.status != want {
					t.Errorf("GET %s: status %d, want %d", path, r.status, want)
					continue
				}
				if want != 401 {
					continue
				}
				// Authority is not enabled: the token cannot be accepted.
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer realm="stella-mirror", error="invalid_token"`) {
					t.Errorf("GET %s: WWW-Authenticate = %q", path, got)
				}
				if r.header.Get("X-Stella-Export-Id") != "" {
					t.Errorf("GET %s: a 401 names the export", path)
				}
				if code := errorCode(t, r); code != "invalid_token" {
					t.Errorf("GET %s: error %q", path, code)
				}
			}
			h.settle(t)
			if strings.Contains(h.logs.String(), "abc.def.ghi") {
				t.Errorf("the Authorization header reached the log")
			}
		})
	}
}

// denyDomain is a custom Authorizer: the seam still works.
type denyDomain struct{ domain string }

func (d denyDomain) Authorize(_ *http.Request, a Access) (string, *Denial) {
	if a.Domain != d.domain {
		return "custom", nil
	}
	return "custom", &Denial{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"30"}}, Code: "rate_limited", Message: "budget exceeded"}
}

func TestCustomAuthorizer(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	cfg := testConfig(root)
	cfg.Authorizer = denyDomain{"community"}
	h := newHarness(t, cfg, options{})
	r := h.get(t, "/concelier/exports/mirror/community/bundle.json")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "30" || errorCode(t, r) != "rate_limited" {
		t.Errorf("denied domain: status %d Retry-After %q body %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if r := h.get(t, "/concelier/exports/mirror/primary/bundle.json"); r.status != http.StatusOK {
		t.Errorf("allowed domain: status %d", r.status)
	}
}

// TestAccessLog: one JSON line per request with the agreed fields.
func TestAccessLog(t *testing.T) {
	root := t.TempDir()
	te := writeExport(t, root, "e1", treeOpts{})
	h := newHarness(t, testConfig(root), options{})
	r := do(t, h.public.Client(), http.MethodGet, h.public.URL+"/concelier/exports/mirror/primary/manifest.json",
		map[string]string{"User-Agent": "test-agent/1.0", "Authorization": "Bearer secret-token-value"})
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	h.settle(t)
	var line map[string]any
	for _, rec := range h.logs.lines(t, "request") {
		if rec["endpoint"] == "manifest" {
			if line != nil {
				t.Fatalf("two access lines for one request")
			}
			line = rec
		}
	}
	if line == nil {
		t.Fatalf("no access log line:\n%s", h.logs.String())
	}
	want := map[string]any{
		"method": "GET", "path": "/concelier/exports/mirror/primary/manifest.json", "status": float64(200),
		"bytes": float64(len(te.files[export.ManifestPath("primary")])), "export_id": "e1",
		"product": "concelier", "user_agent": "test-agent/1.0",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("access log %s = %v, want %v", k, line[k], v)
		}
	}
	if _, ok := line["duration_ms"].(float64); !ok {
		t.Errorf("access log duration_ms = %v, want a number", line["duration_ms"])
	}
	if remote, _ := line["remote"].(string); !strings.HasPrefix(remote, "127.0.0.1:") {
		t.Errorf("access log remote = %q", remote)
	}
	if strings.Contains(h.logs.String(), "secret-token-value") {
		t.Errorf("the Authorization header reached the log")
	}
}

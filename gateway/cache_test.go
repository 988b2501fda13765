package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/gateway/cache"
)

// withCache turns the cache on in a harness configuration.
func withCache(dir string, adminToken string) func(*Config) {
	return func(c *Config) {
		c.Gateway.Cache.Dir = filepath.Join(dir, "cache")
		if adminToken != "" {
			f := filepath.Join(dir, "admin-token")
			if err := os.WriteFile(f, []byte(adminToken+"\n"), 0o600); err != nil {
				panic(err)
			}
			c.Gateway.AdminTokenFile = f
		}
	}
}

func countPath(paths []string, p string) int {
	n := 0
	for _, q := range paths {
		if q == p {
			n++
		}
	}
	return n
}

// accessLines parses the harness's access log.
func accessLines(t *testing.T, h *harness) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := readLines(h.accessLog())
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line is not JSON: %v\n%s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// TestCacheStatusEverywhere: MISS then HIT in X-Cache-Status, in the access
// log's cache_status and in the requests_total label; the origin is asked
// once.
func TestCacheStatusEverywhere(t *testing.T) {
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), "")})
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	var bodies []string
	for i, want := range []string{"MISS", "HIT", "HIT"} {
		r := h.get(hostPrimary, indexPath, alice)
		if r.err != nil || r.status != 200 {
			t.Fatalf("request %d: %d %v", i, r.status, r.err)
		}
		if got := r.header.Get("X-Cache-Status"); got != want {
			t.Fatalf("request %d: X-Cache-Status %q, want %q", i, got, want)
		}
		bodies = append(bodies, r.body)
	}
	if bodies[0] == "" || bodies[1] != bodies[0] || bodies[2] != bodies[0] {
		t.Fatal("a HIT served other bytes than the MISS")
	}
	if n := countPath(h.upstream.paths(), indexPath); n != 1 {
		t.Fatalf("origin saw index.json %d times, want 1", n)
	}
	var statuses []string
	for _, l := range accessLines(t, h) {
		if l["path"] == indexPath {
			statuses = append(statuses, l["cache_status"].(string))
		}
	}
	if strings.Join(statuses, " ") != "MISS HIT HIT" {
		t.Fatalf("access log cache_status = %v, want MISS HIT HIT", statuses)
	}
	m := h.metrics()
	for _, want := range []string{
		`stella_mirror_gateway_requests_total{cache_status="MISS",code="200",site="mirror-primary.localhost"} 1`,
		`stella_mirror_gateway_requests_total{cache_status="HIT",code="200",site="mirror-primary.localhost"} 2`,
		`stella_mirror_cache_requests_total{cache_status="HIT"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestCacheAuthBeforeCache: a cached object is never served to a request
// that fails auth or policy; those answers carry no X-Cache-Status and no
// cached bytes.
func TestCacheAuthBeforeCache(t *testing.T) {
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), "")})
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	carol := map[string]string{"Authorization": basic("carol", "carol-pw")}
	for _, r := range []resp{
		h.get(hostPrimary, primaryBundle, alice), h.get(hostPrimary, primaryBundle, alice),
		h.get(hostCommunity, commBundle, carol),
	} {
		if r.status != 200 || r.header.Get("X-Cache-Status") == "" {
			t.Fatalf("warming the cache: %d %q %v", r.status, r.header.Get("X-Cache-Status"), r.err)
		}
	}
	cached := h.get(hostPrimary, primaryBundle, alice)
	if cached.header.Get("X-Cache-Status") != "HIT" || len(cached.body) < 1024 {
		t.Fatalf("bundle not cached: %q, %d bytes", cached.header.Get("X-Cache-Status"), len(cached.body))
	}
	before := len(h.upstream.paths())
	tests := []struct {
		name   string
		host   string
		path   string
		hdr    map[string]string
		status int
	}{
		{"no credentials", hostPrimary, primaryBundle, nil, 401},
		{"wrong password", hostPrimary, primaryBundle, map[string]string{"Authorization": basic("alice", "wrong")}, 401},
		{"bearer instead of basic", hostPrimary, primaryBundle, map[string]string{"Authorization": "Bearer x"}, 401},
		{"other site's user", hostCommunity, commBundle, alice, 401},
		{"other site's cached bundle", hostPrimary, commBundle, alice, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.get(tt.host, tt.path, tt.hdr)
			if r.err != nil || r.status != tt.status {
				t.Fatalf("got %d %v, want %d", r.status, r.err, tt.status)
			}
			if v := r.header.Get("X-Cache-Status"); v != "" {
				t.Errorf("X-Cache-Status %q on a refused request", v)
			}
			if len(r.body) > 200 || strings.Contains(r.body, cached.body[:64]) {
				t.Errorf("refused request got %d bytes of body: %.80q", len(r.body), r.body)
			}
		})
	}
	if after := len(h.upstream.paths()); after != before {
		t.Fatalf("refused requests reached the origin (%d → %d)", before, after)
	}
}

// TestCachePurgeAdmin: the purge endpoint requires the admin bearer token.
func TestCachePurgeAdmin(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), token)})
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	h.get(hostPrimary, indexPath, alice)
	if r := h.get(hostPrimary, indexPath, alice); r.header.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("not cached: %q", r.header.Get("X-Cache-Status"))
	}
	purge := func(auth string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+h.admin+"/admin/cache/purge?path="+indexPath, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		if res.StatusCode == 401 && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("401 without a Bearer challenge: %q", res.Header.Get("WWW-Authenticate"))
		}
		return res.StatusCode, string(body)
	}
	for _, tt := range []struct{ name, auth string }{
		{"no token", ""},
		{"wrong token", "Bearer admin-token-0123456789abcdeX"},
		{"token as basic", basic("admin", token)},
		{"prefix of the token", "Bearer " + token[:20]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := purge(tt.auth); code != 401 || strings.Contains(body, token) {
				t.Fatalf("got %d %q, want 401", code, body)
			}
		})
	}
	if r := h.get(hostPrimary, indexPath, alice); r.header.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("a refused purge purged: %q", r.header.Get("X-Cache-Status"))
	}
	if code, body := purge("Bearer " + token); code != 200 || !strings.Contains(body, `"purged":1`) {
		t.Fatalf("purge with the token: %d %s", code, body)
	}
	if r := h.get(hostPrimary, indexPath, alice); r.header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("after purge: X-Cache-Status %q, want MISS", r.header.Get("X-Cache-Status"))
	}
}

// TestCachePurgeNeedsTokenFile: without GATEWAY__ADMINTOKENFILE there is no
// purge endpoint at all.
func TestCachePurgeNeedsTokenFile(t *testing.T) {
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), "")})
	res, err := http.Post("http://"+h.admin+"/admin/cache/purge?all=true", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", res.StatusCode)
	}
}

// TestCacheOffNoStatus: without GATEWAY__CACHE__DIR every request goes to
// the origin and carries no X-Cache-Status.
func TestCacheOffNoStatus(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	for range 2 {
		if r := h.get(hostPrimary, indexPath, alice); r.status != 200 || r.header.Get("X-Cache-Status") != "" {
			t.Fatalf("%d %q", r.status, r.header.Get("X-Cache-Status"))
		}
	}
	if n := countPath(h.upstream.paths(), indexPath); n != 2 {
		t.Fatalf("origin saw %d requests, want 2", n)
	}
}

// TestCacheOriginDownStatus: a failed fill answers 502 with
// X-Cache-Status, and the access log records it.
func TestCacheOriginDownStatus(t *testing.T) {
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), "")})
	h.origin.Close()
	r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")})
	if r.status != http.StatusBadGateway || r.header.Get("X-Cache-Status") != string(cache.StatusMiss) {
		t.Fatalf("got %d %q, want 502 MISS", r.status, r.header.Get("X-Cache-Status"))
	}
	lines := accessLines(t, h)
	if len(lines) == 0 || lines[len(lines)-1]["cache_status"] != "MISS" || lines[len(lines)-1]["status"] != float64(502) {
		t.Fatalf("access log: %v", lines)
	}
}

// TestAccessLogFields: one JSON line per request with every field.
func TestAccessLogFields(t *testing.T) {
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), "")})
	h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")})
	lines := accessLines(t, h)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	l := lines[0]
	for _, k := range []string{"time", "level", "msg", "site", "user", "client", "method", "path", "status", "bytes",
		"duration_ms", "upstream_ms", "cache_status", "aborted"} {
		if _, ok := l[k]; !ok {
			t.Errorf("field %s missing: %v", k, l)
		}
	}
	if l["msg"] != "request" || l["site"] != hostPrimary || l["user"] != "alice" || l["client"] != "127.0.0.1" ||
		l["method"] != "GET" || l["status"] != float64(200) || l["aborted"] != false || l["bytes"].(float64) <= 0 {
		t.Fatalf("fields: %v", l)
	}
}

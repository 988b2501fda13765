package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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

// accessLines parses the harness's access log once it has at least n lines.
func accessLines(t *testing.T, h *harness, n int) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := readLines(h.waitAccess(n))
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
	for _, l := range accessLines(t, h, 3) {
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
	// {"purged":1}, or 0 when the fill's commit (fsync, rename) had not
	// landed yet: the purge then keeps that fill from being stored.
	if code, body := purge("Bearer " + token); code != 200 || !strings.Contains(body, `"purged":`) {
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
	lines := accessLines(t, h, 1)
	if len(lines) == 0 || lines[len(lines)-1]["cache_status"] != "MISS" || lines[len(lines)-1]["status"] != float64(502) {
		t.Fatalf("access log: %v", lines)
	}
}

// TestAccessLogFields: one JSON line per request with every field.
func TestAccessLogFields(t *testing.T) {
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), "")})
	h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")})
	lines := accessLines(t, h, 1)
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

// TestCacheFastHitMatchesProxy: a hit answered by the fast path
// (cache.ServeHit) carries the same fields and bytes as one answered
// through the proxy, and requests the fast path declines (Range,
// conditional) are still answered from the cache.
func TestCacheFastHitMatchesProxy(t *testing.T) {
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), "")})
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	miss := h.get(hostPrimary, indexPath, alice)
	viaProxy := h.get(hostPrimary, indexPath, alice) // from disk, promoted to memory
	fast := h.get(hostPrimary, indexPath, alice)     // from the memory tier
	if miss.header.Get("X-Cache-Status") != "MISS" || viaProxy.header.Get("X-Cache-Status") != "HIT" || fast.header.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("statuses %q %q %q", miss.header.Get("X-Cache-Status"), viaProxy.header.Get("X-Cache-Status"), fast.header.Get("X-Cache-Status"))
	}
	if fast.body != miss.body || viaProxy.body != miss.body {
		t.Fatal("bodies differ")
	}
	for k := range viaProxy.header {
		if k == "Date" || k == "Age" {
			continue
		}
		if got, want := fast.header.Values(k), viaProxy.header.Values(k); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: fast path %q, proxy %q", k, got, want)
		}
	}
	if len(fast.header) != len(viaProxy.header) {
		t.Errorf("fast path header %v, proxy %v", fast.header, viaProxy.header)
	}
	tests := []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"range", map[string]string{"Range": "bytes=0-9"}, http.StatusPartialContent},
		{"if-none-match", map[string]string{"If-None-Match": fast.header.Get("ETag")}, http.StatusNotModified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{"Authorization": alice["Authorization"]}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			r := h.get(hostPrimary, indexPath, hdr)
			if r.status != tt.status || r.header.Get("X-Cache-Status") != "HIT" {
				t.Fatalf("got %d %q, want %d HIT", r.status, r.header.Get("X-Cache-Status"), tt.status)
			}
		})
	}
	if n := countPath(h.upstream.paths(), indexPath); n != 1 {
		t.Fatalf("origin saw index.json %d times, want 1", n)
	}
}

// TestCacheStreamsFillThroughGateway: while the origin is still sending a
// body, the client that started the fill (MISS) and one that joined it
// (HIT) both already have the headers and the first chunk; once the origin
// finishes, both get every byte, and the origin was asked once.
func TestCacheStreamsFillThroughGateway(t *testing.T) {
	const path = "/concelier/exports/mirror/primary/bundle.json"
	first := strings.Repeat("a", 1<<10) // less than net/http's 4 KiB write buffer
	rest := strings.Repeat("b", 64<<10)
	release := make(chan struct{})
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), ""),
		upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				w.WriteHeader(http.StatusOK) // health checks
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=300, immutable")
			w.Header().Set("Content-Length", strconv.Itoa(len(first)+len(rest)))
			io.WriteString(w, first)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, rest)
		})})
	alice := basic("alice", "alice-pw")
	type result struct {
		status string
		body   string
		err    error
	}
	start := func() (chan result, chan struct{}) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+hostPrimary+path, nil)
		req.Header.Set("Authorization", alice)
		got := make(chan struct{})
		out := make(chan result, 1)
		go func() {
			res, err := h.client().Do(req)
			if err != nil {
				close(got)
				out <- result{err: err}
				return
			}
			defer res.Body.Close()
			buf := make([]byte, len(first))
			_, err = io.ReadFull(res.Body, buf)
			close(got)
			if err != nil {
				out <- result{err: err}
				return
			}
			more, err := io.ReadAll(res.Body)
			out <- result{status: res.Header.Get("X-Cache-Status"), body: string(buf) + string(more), err: err}
		}()
		return out, got
	}
	missOut, missGot := start()
	select {
	case <-missGot:
	case <-time.After(20 * time.Second):
		t.Fatal("the first client did not get the first chunk while the fill ran")
	}
	joinOut, joinGot := start()
	select {
	case <-joinGot:
	case <-time.After(20 * time.Second):
		t.Fatal("the joining client did not get the first chunk while the fill ran")
	}
	close(release)
	miss, join := <-missOut, <-joinOut
	for _, r := range []result{miss, join} {
		if r.err != nil || r.body != first+rest {
			t.Fatalf("error %v, %d bytes", r.err, len(r.body))
		}
	}
	if miss.status != "MISS" || join.status != "HIT" {
		t.Fatalf("statuses %q %q, want MISS HIT", miss.status, join.status)
	}
	if n := countPath(h.upstream.paths(), path); n != 1 {
		t.Fatalf("origin asked %d times, want 1", n)
	}
}

// TestCacheFillCancelledWhenClientGone: through the whole gateway, a
// client that starts a large MISS, reads a little and disconnects ends the
// fill: the origin sees its request context cancelled, the abandonment is
// in stella_mirror_cache_fills_abandoned_total (not in the fill failures),
// and nothing is stored.
func TestCacheFillCancelledWhenClientGone(t *testing.T) {
	const path = "/concelier/exports/mirror/primary/bundle.json"
	const size = 256 << 20 // never sent whole: the fill is cancelled long before
	chunk := []byte(strings.Repeat("x", 64<<10))
	clientGone := make(chan struct{})
	cancelled := make(chan struct{}, 1)
	cacheDir := t.TempDir()
	h := newHarness(t, harnessOpts{edit: withCache(cacheDir, ""),
		upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				w.WriteHeader(http.StatusOK) // health checks
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=300, immutable")
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.Write(chunk)
			w.(http.Flusher).Flush()
			select { // the client has its first bytes; it leaves now
			case <-clientGone:
			case <-r.Context().Done():
			}
			for sent := len(chunk); sent < size; sent += len(chunk) {
				if _, err := w.Write(chunk); err != nil || r.Context().Err() != nil {
					break
				}
			}
			if r.Context().Err() != nil {
				cancelled <- struct{}{}
			}
		})})
	req, _ := http.NewRequest(http.MethodGet, "https://"+hostPrimary+path, nil)
	req.Header.Set("Authorization", basic("alice", "alice-pw"))
	cl := h.client()
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Body, make([]byte, len(chunk))); err != nil || res.Header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("first bytes: %v, %q", err, res.Header.Get("X-Cache-Status"))
	}
	res.Body.Close() // not read to the end: the connection is closed
	cl.CloseIdleConnections()
	close(clientGone)
	select {
	case <-cancelled:
	case <-time.After(60 * time.Second):
		t.Fatal("the origin's request was not cancelled after the only client went away")
	}
	deadline := time.Now().Add(30 * time.Second)
	want := "stella_mirror_cache_fills_abandoned_total 1"
	for !strings.Contains(h.metrics(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %s", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := h.metrics(); !strings.Contains(m, "stella_mirror_cache_fill_failures_total 0") ||
		!strings.Contains(m, "stella_mirror_cache_stored_objects 0") {
		t.Fatalf("an abandoned fill counted as a failure, or stored:\n%s", grepLines(m, "stella_mirror_cache_"))
	}
}

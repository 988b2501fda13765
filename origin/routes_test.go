package origin

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/origin/authority/authoritytest"
)

// TestRequestsAnsweredOnceEach: a table of requests through the one route
// table, with the built-in access control: each gets the right status and
// headers, exactly one access log line naming its product, endpoint and
// client (none for health probes), exactly one count in stella_mirror_origin_requests_total, and at
// most one authentication outcome (a denial is not counted twice, and a
// route that fails before authorization is not counted at all).
func TestRequestsAnsweredOnceEach(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	pointLatest(t, root, "e1")
	iss := authoritytest.NewIssuer(t)
	clock := newFakeClock()
	cfg := authConfig(root, iss)
	yes := true
	cfg.Concelier.Mirror.RequireAuthentication = false
	cfg.Concelier.Mirror.Domains = []DomainConfig{{ID: "primary"}, {ID: "community", RequireAuthentication: &yes}}
	cfg.Excititor.Authority.BypassNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	h := newHarness(t, cfg, options{now: clock.Now})
	alice := bearer(iss.Sign(t, iss.Token(clock.Now(), "alice", testAudience, ScopeConcelier+" "+ScopeExcititor)))
	noScope := bearer(iss.Sign(t, iss.Token(clock.Now(), "carol", testAudience, "other.scope")))
	etag := h.get(t, "/concelier/exports/mirror/primary/manifest.json").header.Get("Etag")
	if etag == "" {
		t.Fatal("manifest has no ETag")
	}
	const (
		concelier, excititor, none = "concelier", "excititor", productNone
		anon, ok                   = "", http.StatusOK
	)
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		product, endpoint  string
		client             string // "" for none; "ip" for the peer's address (ip:127.0.0.1)
		auth               bool   // an authentication outcome is counted
	}{
		{"index", "GET", "/concelier/exports/index.json", nil, ok, concelier, "index", "ip", true},
		{"index, head", "HEAD", "/concelier/exports/index.json", nil, ok, concelier, "index", "ip", true},
		{"index with a token", "GET", "/concelier/exports/index.json", alice, ok, concelier, "index", "sub:alice", true},
		{"manifest", "GET", "/concelier/exports/mirror/primary/manifest.json", nil, ok, concelier, "manifest", "ip", true},
		{"bundle", "GET", "/concelier/exports/mirror/primary/bundle.json", nil, ok, concelier, "bundle", "ip", true},
		{"bundle signature", "GET", "/concelier/exports/mirror/primary/bundle.json.jws", nil, ok, concelier, "bundle_signature", "ip", true},
		{"protected domain, no token", "GET", "/concelier/exports/mirror/community/manifest.json", nil, http.StatusUnauthorized, concelier, "manifest", "ip", true},
		{"protected domain, token", "GET", "/concelier/exports/mirror/community/manifest.json", alice, ok, concelier, "manifest", "sub:alice", true},
		{"protected domain, no scope", "GET", "/concelier/exports/mirror/community/manifest.json", noScope, http.StatusForbidden, concelier, "manifest", "sub:carol", true},
		{"protected domain, garbage token", "GET", "/concelier/exports/mirror/community/manifest.json", map[string]string{"Authorization": "Bearer x.y.z"}, http.StatusUnauthorized, concelier, "manifest", "ip", true},
		{"unknown domain", "GET", "/concelier/exports/mirror/nope/manifest.json", nil, http.StatusNotFound, concelier, "manifest", "ip", true},
		{"invalid domain", "GET", "/concelier/exports/mirror/Bad_Domain!/manifest.json", nil, http.StatusNotFound, concelier, "manifest", anon, false},
		{"encoded traversal", "GET", "/concelier/exports/mirror/%2e%2e/manifest.json", nil, http.StatusNotFound, concelier, "manifest", anon, false},
		{"dot segments", "GET", "/concelier/exports/mirror/primary/../community/manifest.json", nil, http.StatusNotFound, none, "unmatched", anon, false},
		{"unknown file", "GET", "/concelier/exports/mirror/primary/other.json", nil, http.StatusNotFound, none, "unmatched", anon, false},
		{"conditional", "GET", "/concelier/exports/mirror/primary/manifest.json", map[string]string{"If-None-Match": etag}, http.StatusNotModified, concelier, "manifest", "ip", true},
		{"range", "GET", "/concelier/exports/mirror/primary/manifest.json", map[string]string{"Range": "bytes=0-9"}, http.StatusPartialContent, concelier, "manifest", "ip", true},
		{"if-range without range", "GET", "/concelier/exports/mirror/primary/manifest.json", map[string]string{"If-Range": `"x"`}, ok, concelier, "manifest", "ip", true},
		{"excititor index, bypass network", "GET", "/excititor/mirror/primary/index", map[string]string{ForwardedUserHeader: "gw-user"}, ok, excititor, "excititor_index", "user:gw-user", true},
		{"excititor export", "GET", "/excititor/mirror/primary/export/" + keyOpenVEX, nil, ok, excititor, "excititor_export", "ip", true},
		{"excititor signature", "GET", "/excititor/mirror/primary/export/" + keyOpenVEX + "/signature", nil, ok, excititor, "excititor_signature", "ip", true},
		{"excititor unknown key", "GET", "/excititor/mirror/primary/export/nope-1.json", nil, http.StatusNotFound, excititor, "excititor_export", "ip", true},
		{"excititor bad key", "GET", "/excititor/mirror/primary/export/..%2fx", nil, http.StatusNotFound, excititor, "excititor_export", anon, false},
		{"pinned index", "GET", "/concelier/exports/e1/index.json", nil, ok, concelier, "pinned_index", "ip", true},
		{"pinned manifest", "HEAD", "/concelier/exports/e1/mirror/primary/manifest.json", nil, ok, concelier, "pinned_manifest", "ip", true},
		{"pinned bundle", "GET", "/concelier/exports/e1/mirror/primary/bundle.json", nil, ok, concelier, "pinned_bundle", "ip", true},
		{"pinned signature", "GET", "/concelier/exports/e1/mirror/primary/bundle.json.jws", nil, ok, concelier, "pinned_bundle_signature", "ip", true},
		{"pinned protected domain, no token", "GET", "/concelier/exports/e1/mirror/community/manifest.json", nil, http.StatusUnauthorized, concelier, "pinned_manifest", "ip", true},
		{"pinned protected domain, token", "GET", "/concelier/exports/e1/mirror/community/bundle.json", alice, ok, concelier, "pinned_bundle", "sub:alice", true},
		{"pinned range", "GET", "/concelier/exports/e1/mirror/primary/manifest.json", map[string]string{"Range": "bytes=0-9"}, http.StatusPartialContent, concelier, "pinned_manifest", "ip", true},
		{"pinned unknown id", "GET", "/concelier/exports/e9/index.json", nil, http.StatusNotFound, concelier, "pinned_index", "ip", true},
		{"pinned invalid id", "GET", "/concelier/exports/%2e%2e/mirror/primary/bundle.json", nil, http.StatusNotFound, concelier, "pinned_bundle", anon, false},
		{"pinned reserved id", "GET", "/concelier/exports/mirror/index.json", nil, http.StatusNotFound, concelier, "pinned_index", anon, false},
		{"health on the public listener", "GET", "/health/live", nil, ok, none, "health_live", anon, false},
		{"metrics not on the public listener", "GET", "/metrics", nil, http.StatusNotFound, none, "unmatched", anon, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.settle(t)
			lines := len(h.logs.lines(t, "request"))
			reqs, auths := metricSum(t, h.reg, "stella_mirror_origin_requests_total"), metricSum(t, h.reg, "stella_mirror_origin_auth_total")
			series := counterWith(t, h.reg, "stella_mirror_origin_requests_total",
				map[string]string{"product": tc.product, "endpoint": tc.endpoint, "code": fmt.Sprint(tc.status)})

			r := do(t, h.public.Client(), tc.method, h.public.URL+tc.path, tc.hdr)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			switch {
			case tc.status == http.StatusOK && tc.product != none:
				for _, k := range []string{"Etag", "Last-Modified", "Content-Type", "Content-Length", "Cache-Control", "X-Stella-Export-Id", "Accept-Ranges"} {
					if r.header.Get(k) == "" {
						t.Errorf("no %s: %v", k, r.header)
					}
				}
				if id := r.header.Get("X-Stella-Export-Id"); id != "e1" {
					t.Errorf("X-Stella-Export-Id %q, want e1", id)
				}
				if tc.method == http.MethodGet && r.header.Get("Content-Length") != fmt.Sprint(len(r.body)) {
					t.Errorf("Content-Length %s, body %d bytes", r.header.Get("Content-Length"), len(r.body))
				}
			case tc.status == http.StatusUnauthorized:
				if w := r.header.Get("Www-Authenticate"); !strings.HasPrefix(w, "Bearer ") {
					t.Errorf("WWW-Authenticate %q, want Bearer …", w)
				}
			case tc.status >= 400:
				errorCode(t, r)
			}

			h.settle(t)
			all := h.logs.lines(t, "request")
			wantLines := 1
			if tc.endpoint == "health_live" {
				wantLines = 0 // probes log at debug, below the access log
			}
			if len(all) != lines+wantLines {
				t.Fatalf("%d access log lines for one request, want %d", len(all)-lines, wantLines)
			}
			if wantLines == 1 {
				checkLine(t, all[len(all)-1], tc.product, tc.endpoint, tc.path, tc.client, tc.status)
			}
			if d := metricSum(t, h.reg, "stella_mirror_origin_requests_total") - reqs; d != 1 {
				t.Errorf("requests_total grew by %v, want 1", d)
			}
			if d := counterWith(t, h.reg, "stella_mirror_origin_requests_total",
				map[string]string{"product": tc.product, "endpoint": tc.endpoint, "code": fmt.Sprint(tc.status)}) - series; d != 1 {
				t.Errorf("requests_total{product=%s,endpoint=%s,code=%d} grew by %v, want 1", tc.product, tc.endpoint, tc.status, d)
			}
			want := 0.0
			if tc.auth {
				want = 1
			}
			if d := metricSum(t, h.reg, "stella_mirror_origin_auth_total") - auths; d != want {
				t.Errorf("auth_total grew by %v, want %v", d, want)
			}
		})
	}
}

// checkLine checks an access log line of the request table.
func checkLine(t *testing.T, line map[string]any, product, endpoint, path, wantClient string, status int) {
	t.Helper()
	if line["product"] != product || line["endpoint"] != endpoint || line["status"] != float64(status) || line["path"] != path {
		t.Errorf("log line %v, want product %s endpoint %s status %d path %s", line, product, endpoint, status, path)
	}
	client, _ := line["client"].(string)
	switch wantClient {
	case "":
		if client != "" {
			t.Errorf("log client %q, want none", client)
		}
	case "ip":
		if client != "ip:127.0.0.1" {
			t.Errorf("log client %q, want the peer's address", client)
		}
	default:
		if client != wantClient {
			t.Errorf("log client %q, want %q", client, wantClient)
		}
	}
}

// metricSum adds up every series of the counter family name in reg.
func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return counterWith(t, reg, name, nil)
}

// counterWith adds up the series of the counter family name in reg whose
// labels include every pair of labels.
func counterWith(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

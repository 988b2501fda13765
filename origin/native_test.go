package origin

import (
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/origin/authority/authoritytest"
)

// TestNativeMatchesHandler: the same requests to an origin with the Native
// hook and to one without (every request through the net/http handler)
// get the same answers and the same access log lines, for what Native
// answers itself, what it declines untouched (conditionals, ranges, bad
// paths) and what it declines after a denial.
func TestNativeMatchesHandler(t *testing.T) {
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
	with := newHarnessNative(t, cfg, options{now: clock.Now}, true)
	without := newHarnessNative(t, cfg, options{now: clock.Now}, false)
	alice := bearer(iss.Sign(t, iss.Token(clock.Now(), "alice", testAudience, ScopeConcelier+" "+ScopeExcititor)))
	noScope := bearer(iss.Sign(t, iss.Token(clock.Now(), "carol", testAudience, "other.scope")))
	var etag string
	for _, h := range []*harness{with, without} { // the same requests on both: the metrics are compared
		etag = do(t, h.public.Client(), http.MethodGet, h.public.URL+"/concelier/exports/mirror/primary/manifest.json", nil).header.Get("Etag")
	}
	tests := []struct {
		name, method, path string
		hdr                map[string]string
	}{
		{"index", "GET", "/concelier/exports/index.json", nil},
		{"index, head", "HEAD", "/concelier/exports/index.json", nil},
		{"index with a token", "GET", "/concelier/exports/index.json", alice},
		{"manifest", "GET", "/concelier/exports/mirror/primary/manifest.json", nil},
		{"bundle", "GET", "/concelier/exports/mirror/primary/bundle.json", nil},
		{"bundle signature", "GET", "/concelier/exports/mirror/primary/bundle.json.jws", nil},
		{"protected domain, no token", "GET", "/concelier/exports/mirror/community/manifest.json", nil},
		{"protected domain, token", "GET", "/concelier/exports/mirror/community/manifest.json", alice},
		{"protected domain, no scope", "GET", "/concelier/exports/mirror/community/manifest.json", noScope},
		{"protected domain, garbage token", "GET", "/concelier/exports/mirror/community/manifest.json", map[string]string{"Authorization": "Bearer x.y.z"}},
		{"unknown domain", "GET", "/concelier/exports/mirror/nope/manifest.json", nil},
		{"invalid domain", "GET", "/concelier/exports/mirror/Bad_Domain!/manifest.json", nil},
		{"encoded traversal", "GET", "/concelier/exports/mirror/%2e%2e/manifest.json", nil},
		{"dot segments", "GET", "/concelier/exports/mirror/primary/../community/manifest.json", nil},
		{"unknown file", "GET", "/concelier/exports/mirror/primary/other.json", nil},
		{"conditional", "GET", "/concelier/exports/mirror/primary/manifest.json", map[string]string{"If-None-Match": etag}},
		{"range", "GET", "/concelier/exports/mirror/primary/manifest.json", map[string]string{"Range": "bytes=0-9"}},
		{"if-range without range", "GET", "/concelier/exports/mirror/primary/manifest.json", map[string]string{"If-Range": `"x"`}},
		{"excititor index, bypass network", "GET", "/excititor/mirror/primary/index", map[string]string{ForwardedUserHeader: "gw-user"}},
		{"excititor export", "GET", "/excititor/mirror/primary/export/" + keyOpenVEX, nil},
		{"excititor signature", "GET", "/excititor/mirror/primary/export/" + keyOpenVEX + "/signature", nil},
		{"excititor unknown key", "GET", "/excititor/mirror/primary/export/nope-1.json", nil},
		{"excititor bad key", "GET", "/excititor/mirror/primary/export/..%2fx", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, with.public.Client(), tc.method, with.public.URL+tc.path, tc.hdr)
			b := do(t, without.public.Client(), tc.method, without.public.URL+tc.path, tc.hdr)
			a.header.Del("Date")
			b.header.Del("Date")
			if !reflect.DeepEqual(a, b) {
				t.Errorf("answers differ\nnative:   %d %v %q\nnet/http: %d %v %q", a.status, a.header, a.body, b.status, b.header, b.body)
			}
			with.settle(t)
			without.settle(t)
			la, lb := with.logs.lines(t, "request"), without.logs.lines(t, "request")
			if len(la) == 0 || len(la) != len(lb) {
				t.Fatalf("%d and %d access log lines", len(la), len(lb))
			}
			x, y := la[len(la)-1], lb[len(lb)-1]
			for _, k := range []string{"time", "duration_ms", "remote"} {
				delete(x, k)
				delete(y, k)
			}
			if !reflect.DeepEqual(x, y) {
				t.Errorf("log lines differ\nnative:   %v\nnet/http: %v", x, y)
			}
		})
	}
	// Both origins counted the same requests the same way.
	for _, name := range []string{"stella_mirror_origin_requests_total", "stella_mirror_origin_auth_total"} {
		if a, b := metricText(t, with.reg, name), metricText(t, without.reg, name); a != b || a == "" {
			t.Errorf("%s differs:\nnative:   %s\nnet/http: %s", name, a, b)
		}
	}
}

// metricText renders the series of one metric family of reg, sorted.
func metricText(t *testing.T, reg *prometheus.Registry, name string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var b strings.Builder
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&b, "%s=%s,", l.GetName(), l.GetValue())
			}
			fmt.Fprintf(&b, " %v", m.GetCounter().GetValue())
			out = append(out, b.String())
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

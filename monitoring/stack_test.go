package monitoring

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stella-ops/stella-mirror/demo"
	"github.com/stella-ops/stella-mirror/internal/statuspage"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/localsrc"
	"github.com/stella-ops/stella-mirror/origin"
)

// notExported are names the rules use that no stella-mirror binary
// exports, with the reason.
var notExported = map[string]string{
	"up": "written by Prometheus for every scrape target",
}

// kubernetesOnly are names the rules use that only the Kubernetes path
// exports (an origin with ORIGIN__SYNCMETRICSEXPORT=true), with the
// reason; a host with node_exporter does without them.
var kubernetesOnly = map[string]string{
	"stella_mirror_origin_sync_textfile_up": "the origin serves the sync's textfile only with ORIGIN__SYNCMETRICSEXPORT=true",
}

// stack is the demo (the real origin and gateway, as `make run` starts
// them) plus a real sync run and an origin serving its result.
type stack struct {
	demo        demo.State
	client      *http.Client // TLS client of the gateway's sites
	syncFile    string       // the sync run's textfile
	syncOrigin  string       // admin URL of an origin over the sync's dest, with the textfile, exporting it
	syncedID    string
	gatewayAddr string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan demo.State, 1)
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(ctx, demo.Options{Dir: filepath.Join(dir, "demo"),
			OriginListen: "127.0.0.1:0", OriginAdminListen: "127.0.0.1:0",
			GatewayListen: "127.0.0.1:0", GatewayAdminListen: "127.0.0.1:0",
			BundleSize: 64 << 10, Ready: func(st demo.State) { ready <- st }})
	}()
	s := &stack{}
	select {
	case s.demo = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("demo did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	})
	caPEM, err := os.ReadFile(s.demo.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	u, _ := url.Parse(s.demo.Sites[s.demo.Domains[0]])
	s.gatewayAddr = "127.0.0.1:" + u.Port()
	s.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, s.gatewayAddr)
		}}}

	// A real sync run from the demo's export root (a local source),
	// verified with the demo's key, and its textfile.
	dest := filepath.Join(dir, "synced")
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := localsrc.New(s.demo.ExportRoots["concelier"])
	if err != nil {
		t.Fatal(err)
	}
	keys, err := mirrorsync.KeySource([]string{s.demo.PublicKey}, "", nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, runErr := mirrorsync.Run(context.Background(), mirrorsync.Options{Root: dest, Source: src, Keys: keys})
	if runErr != nil {
		t.Fatalf("sync: %v", runErr)
	}
	s.syncedID = res.ExportID
	st, err := mirrorsync.ReadState(dest)
	if err != nil {
		t.Fatal(err)
	}
	s.syncFile = filepath.Join(dir, "stella-mirror-sync.prom")
	if err := mirrorsync.WriteMetrics(s.syncFile, res, runErr, st); err != nil {
		t.Fatal(err)
	}
	// An origin over what the sync published, reading its textfile.
	cfg := origin.DefaultConfig()
	cfg.Concelier.Mirror.Enabled = true
	cfg.Concelier.Mirror.ExportRoot = dest
	cfg.Origin.SyncMetricsTextfile = s.syncFile
	cfg.Origin.SyncMetricsExport = true // as the Helm chart sets it
	o, err := origin.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(o.AdminHandler())
	t.Cleanup(srv.Close)
	s.syncOrigin = srv.URL
	return s
}

// get fetches url (through the gateway for site URLs) and returns the
// status and body.
func (s *stack) get(t *testing.T, rawURL string, user *demo.User) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != nil {
		req.SetBasicAuth(user.User, user.Password)
	}
	c := s.client
	if strings.HasPrefix(rawURL, "http:") {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, body
}

// traffic sends the requests a working mirror sees: index and manifest
// (twice: MISS, then HIT) with credentials, and one without.
func (s *stack) traffic(t *testing.T) {
	t.Helper()
	for _, d := range s.demo.Domains {
		u := s.demo.Users[d]
		site := s.demo.Sites[d]
		for _, p := range []string{"/concelier/exports/index.json", "/concelier/exports/mirror/" + d + "/manifest.json", "/concelier/exports/mirror/" + d + "/manifest.json"} {
			if code, body := s.get(t, site+p, &u); code != http.StatusOK {
				t.Fatalf("GET %s%s: %d %s", site, p, code, body)
			}
		}
		if code, _ := s.get(t, site+"/concelier/exports/index.json", nil); code != http.StatusUnauthorized {
			t.Fatalf("GET without credentials: %d, want 401", code)
		}
	}
}

// exportedNames parses a Prometheus text exposition and returns the
// series names it holds (histograms and summaries as _bucket, _sum,
// _count; the family name too).
func exportedNames(t *testing.T, what string, data []byte) map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	out := map[string]bool{}
	for name, mf := range mfs {
		if len(mf.Metric) == 0 {
			continue
		}
		out[name] = true
		switch mf.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case "SUMMARY":
			out[name+"_sum"], out[name+"_count"] = true, true
		}
	}
	return out
}

// usedNames returns every metric name the rules and the dashboard use,
// with where.
func usedNames(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	for _, r := range loadRules(t) {
		names, err := metricNames(r.Expr)
		if err != nil {
			t.Fatalf("rule %s: %v", r.Alert, err)
		}
		for _, n := range names {
			used[n] = append(used[n], "alert "+r.Alert)
		}
	}
	for _, e := range dashboardExprs(t) {
		names, err := metricNames(e)
		if err != nil {
			t.Fatalf("dashboard: %v", err)
		}
		for _, n := range names {
			used[n] = append(used[n], "dashboard")
		}
	}
	return used
}

// TestAgainstTheRealStack starts the demo's origin and gateway, runs a
// real sync, and checks what monitoring relies on: every metric name of
// the rules and the dashboard is exported (removing one from the code
// fails here), and the status pages show the exports, the sync run, the
// cache and the certificates, in JSON and rendered by Chromium.
func TestAgainstTheRealStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the demo stack")
	}
	s := startStack(t)
	s.traffic(t)

	scrape := func(t *testing.T, targets map[string]string, exported map[string]bool) {
		t.Helper()
		for what, u := range targets {
			code, body := s.get(t, u, nil)
			if code != http.StatusOK {
				t.Fatalf("%s /metrics: %d", what, code)
			}
			for n := range exportedNames(t, what, body) {
				exported[n] = true
			}
		}
	}
	// checkUsed fails for every name the rules or the dashboard use that
	// is not in exported nor excused by one of the maps.
	checkUsed := func(t *testing.T, exported map[string]bool, excused ...map[string]string) {
		t.Helper()
		used := usedNames(t)
		if len(used) < 30 {
			t.Fatalf("only %d metric names used; parsing went wrong", len(used))
		}
		var missing []string
		for n, where := range used {
			if exported[n] || slices.ContainsFunc(excused, func(m map[string]string) bool { return m[n] != "" }) {
				continue
			}
			slices.Sort(where)
			missing = append(missing, fmt.Sprintf("%s (used by %s)", n, strings.Join(slices.Compact(where), ", ")))
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			t.Errorf("metric names used but not exported:\n  %s", strings.Join(missing, "\n  "))
		}
	}

	t.Run("every metric the rules and dashboard use is exported", func(t *testing.T) {
		// A host: the origin and the gateway scraped, the sync's textfile
		// exported by node_exporter's textfile collector.
		exported := map[string]bool{}
		scrape(t, map[string]string{"origin": s.demo.OriginAdmin + "/metrics", "gateway": s.demo.GatewayAdmin + "/metrics"}, exported)
		data, err := os.ReadFile(s.syncFile)
		if err != nil {
			t.Fatal(err)
		}
		for n := range exportedNames(t, "sync textfile", data) {
			exported[n] = true
		}
		checkUsed(t, exported, notExported, kubernetesOnly)
	})

	t.Run("every metric the rules and dashboard use is exported without node_exporter", func(t *testing.T) {
		// Kubernetes: no node_exporter; the origin with
		// ORIGIN__SYNCMETRICSEXPORT=true serves the sync's metrics.
		exported := map[string]bool{}
		scrape(t, map[string]string{"origin": s.demo.OriginAdmin + "/metrics", "gateway": s.demo.GatewayAdmin + "/metrics",
			"origin exporting the sync textfile": s.syncOrigin + "/metrics"}, exported)
		checkUsed(t, exported, notExported)
		// The sync's families, all of them, from the origin.
		data, err := os.ReadFile(s.syncFile)
		if err != nil {
			t.Fatal(err)
		}
		_, body := s.get(t, s.syncOrigin+"/metrics", nil)
		fromOrigin := exportedNames(t, "origin", body)
		for n := range exportedNames(t, "sync textfile", data) {
			if !fromOrigin[n] {
				t.Errorf("the origin does not serve the textfile's %s", n)
			}
		}
		if !strings.Contains(string(body), "\nstella_mirror_origin_sync_textfile_up 1\n") {
			t.Errorf("the origin's /metrics lacks stella_mirror_origin_sync_textfile_up 1")
		}
	})

	t.Run("gateway status.json", func(t *testing.T) {
		st := s.statusJSON(t, s.demo.GatewayAdmin+"/status.json")
		if st.Component != "gateway" || st.Version == "" || st.UptimeSeconds < 0 || len(st.Problems) > 0 {
			t.Errorf("component %q version %q uptime %v problems %q", st.Component, st.Version, st.UptimeSeconds, st.Problems)
		}
		checkProducts(t, st, s.demo.ExportID, s.demo.Domains)
		gw := st.Gateway
		if gw == nil || gw.Cache == nil {
			t.Fatalf("no gateway or cache part: %+v", gw)
		}
		if len(gw.Generations) != 1 || gw.Generations[0].ExportID != s.demo.ExportID {
			t.Errorf("generations %+v, want concelier %s", gw.Generations, s.demo.ExportID)
		}
		// Per domain: index (MISS), manifest MISS, manifest HIT.
		if c := gw.Cache; c.Requests < int64(3*len(s.demo.Domains)) || c.Hits < 1 || c.StoredBytes <= 0 || c.MaxBytes <= c.StoredBytes || c.HitRatio <= 0 || c.HitRatio >= 1 {
			t.Errorf("cache %+v", c)
		}
		if len(gw.Sites) != len(s.demo.Domains) {
			t.Fatalf("sites %+v", gw.Sites)
		}
		for _, site := range gw.Sites {
			if site.Certificate != "file" || site.NotAfter.IsZero() || site.DaysLeft < 1 || site.BudgetRejectionsLastHour != 0 {
				t.Errorf("site %+v", site)
			}
		}
	})

	t.Run("origin status.json with the sync run", func(t *testing.T) {
		st := s.statusJSON(t, s.syncOrigin+"/status.json")
		if st.Component != "origin" || st.Gateway != nil || len(st.Problems) > 0 {
			t.Errorf("component %q gateway %+v problems %q", st.Component, st.Gateway, st.Problems)
		}
		checkProducts(t, st, s.syncedID, s.demo.Domains)
		if st.Sync == nil || st.Sync.LastResult != mirrorsync.ResultPublished || st.Sync.LastSuccess.IsZero() || st.Sync.UpstreamGeneratedAt.IsZero() {
			t.Errorf("sync %+v, want a published run", st.Sync)
		}
	})

	t.Run("status page in headless Chromium", func(t *testing.T) {
		shot, dom := renderInChromium(t, s.demo.GatewayAdmin+"/status")
		checkScreenshot(t, shot)
		for _, want := range []string{s.demo.ExportID, "Active exports", "Sites, certificates and budgets", "mirror-" + s.demo.Domains[0] + ".localhost"} {
			if !strings.Contains(dom, want) {
				t.Errorf("rendered DOM lacks %q", want)
			}
		}
		if strings.Contains(strings.ToLower(dom), "<script") {
			t.Error("the status page holds a script")
		}
	})

	t.Run("origin status page in headless Chromium", func(t *testing.T) {
		shot, dom := renderInChromium(t, s.syncOrigin+"/status")
		checkScreenshot(t, shot)
		for _, want := range []string{s.syncedID, "published"} {
			if !strings.Contains(dom, want) {
				t.Errorf("rendered DOM lacks %q", want)
			}
		}
	})
}

func (s *stack) statusJSON(t *testing.T, u string) statuspage.Status {
	t.Helper()
	code, body := s.get(t, u, nil)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, code, body)
	}
	var st statuspage.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("%s: %v\n%s", u, err, body)
	}
	return st
}

// checkProducts: concelier serves exportID with every domain, each with a
// generatedAt and a non-negative age.
func checkProducts(t *testing.T, st statuspage.Status, exportID string, domains []string) {
	t.Helper()
	var found bool
	for _, p := range st.Products {
		if p.Name != "concelier" {
			continue
		}
		found = true
		if p.ExportID != exportID || p.Error != "" {
			t.Errorf("concelier: export %q error %q, want %s", p.ExportID, p.Error, exportID)
		}
		var ids []string
		for _, d := range p.Domains {
			ids = append(ids, d.ID)
			if d.GeneratedAt.IsZero() || d.AgeSeconds < 0 {
				t.Errorf("domain %+v", d)
			}
		}
		want := slices.Clone(domains)
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Errorf("concelier domains %q, want %q", ids, want)
		}
	}
	if !found {
		t.Errorf("no concelier product in %+v", st.Products)
	}
}

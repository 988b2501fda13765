package origin

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stella-ops/stella-mirror/internal/buildinfo"
)

// TestHealthAndMetricsListeners: /health on both listeners, /metrics only
// on the admin one, the export routes only on the public one.
func TestHealthAndMetricsListeners(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	h := newHarness(t, testConfig(root), options{})
	c := h.public.Client()
	for name, base := range map[string]string{"public": h.public.URL, "admin": h.admin.URL} {
		t.Run(name, func(t *testing.T) {
			live := do(t, c, http.MethodGet, base+"/health/live", nil)
			if live.status != 200 || strings.TrimSpace(string(live.body)) != `{"status":"live"}` {
				t.Errorf("/health/live: %d %s", live.status, live.body)
			}
			ready := do(t, c, http.MethodGet, base+"/health/ready", nil)
			if ready.status != 200 || strings.TrimSpace(string(ready.body)) != `{"status":"ready"}` {
				t.Errorf("/health/ready: %d %s", ready.status, ready.body)
			}
			if ct := ready.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("/health/ready Content-Type %q", ct)
			}
		})
	}
	if r := do(t, c, http.MethodGet, h.public.URL+"/metrics", nil); r.status != http.StatusNotFound || strings.Contains(string(r.body), "stella_mirror") {
		t.Errorf("public /metrics: status %d, want 404 without metrics", r.status)
	}
	if r := do(t, c, http.MethodGet, h.admin.URL+"/concelier/exports/index.json", nil); r.status != http.StatusNotFound {
		t.Errorf("admin /concelier/exports/index.json: status %d, want 404 (exports are the public listener's)", r.status)
	}
	// Generate a request of each kind, then scrape.
	h.get(t, "/concelier/exports/index.json")
	h.get(t, "/concelier/exports/mirror/nosuch/manifest.json")
	h.settle(t)
	m := do(t, c, http.MethodGet, h.admin.URL+"/metrics", nil)
	if m.status != http.StatusOK {
		t.Fatalf("admin /metrics: status %d", m.status)
	}
	for _, want := range []string{
		`stella_mirror_origin_requests_total{code="200",endpoint="index",product="concelier"} 1`,
		`stella_mirror_origin_requests_total{code="404",endpoint="manifest",product="concelier"} 1`,
		`stella_mirror_origin_response_bytes_total{endpoint="index",product="concelier"}`,
		`stella_mirror_origin_request_duration_seconds_count{endpoint="index",product="concelier"} 1`,
		`stella_mirror_origin_active_export_info{export_id="e1",product="concelier"} 1`,
		`stella_mirror_origin_active_export_info{export_id="e1",product="excititor"} 1`,
		`stella_mirror_build_info{goversion="` + runtime.Version() + `",version="` + buildinfo.Version() + `"} 1`,
	} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("admin /metrics lacks %s", want)
		}
	}
}

// TestResponseBytesCounted: the bytes counter sees bodies written through
// the sendfile path (ReadFrom) as well as Write.
func TestResponseBytesCounted(t *testing.T) {
	root := t.TempDir()
	te := writeExport(t, root, "e1", treeOpts{pad: 4096})
	h := newHarness(t, testConfig(root), options{smallFileMax: 16})
	r := h.get(t, "/concelier/exports/mirror/primary/bundle.json")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	h.settle(t)
	want := float64(len(te.files["mirror/primary/bundle.json"]))
	var m dto.Metric
	if err := h.o.metrics.bytes.WithLabelValues("concelier", "bundle").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != want {
		t.Errorf("response_bytes_total = %v, want %v", got, want)
	}
}

// TestMetricsRegistration: a second origin on the same registry is an
// error, build info registered by another component is not.
func TestMetricsRegistration(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	if _, err := newMetrics(reg); err == nil {
		t.Errorf("registering the origin metrics twice succeeded")
	}
	other := prometheus.NewRegistry()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stella_mirror_build_info", Help: "Build information of the running binary (value 1)."}, []string{"version", "goversion"})
	other.MustRegister(build)
	o, err := New(testConfig(root), slog.New(slog.DiscardHandler), other)
	if err != nil {
		t.Fatalf("New with build info already registered: %v", err)
	}
	defer o.Close()
	rec := httptest.NewRecorder()
	o.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "stella_mirror_origin_active_export_info") {
		t.Errorf("admin /metrics: %d", rec.Code)
	}
}

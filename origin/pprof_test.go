package origin

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/config"
)

// TestAdminPprofSwitch: /debug/pprof/ is on the admin listener only with
// ORIGIN__ADMINPPROF=true; off by default, and never on the public one.
func TestAdminPprofSwitch(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	for _, on := range []bool{false, true} {
		cfg := testConfig(root)
		if on {
			if err := config.Load(&cfg, "", []string{"ORIGIN__ADMINPPROF=true"}); err != nil {
				t.Fatal(err)
			}
		}
		if cfg.Origin.AdminPprof != on {
			t.Fatalf("ORIGIN__ADMINPPROF: AdminPprof = %v, want %v", cfg.Origin.AdminPprof, on)
		}
		o, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		rec := httptest.NewRecorder()
		o.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/goroutine?debug=1", nil))
		if rec.Code != want {
			t.Errorf("pprof %v: admin /debug/pprof/goroutine = %d, want %d", on, rec.Code, want)
		}
		rec = httptest.NewRecorder()
		o.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("pprof %v: admin /metrics = %d", on, rec.Code)
		}
		rec = httptest.NewRecorder()
		o.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		if rec.Code == http.StatusOK {
			t.Errorf("pprof %v: the public handler serves /debug/pprof/", on)
		}
		o.Close()
	}
}

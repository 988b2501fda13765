package gateway

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/config"
)

// TestAdminPprofSwitch: /debug/pprof/ is served on the gateway's admin
// listener only with GATEWAY__ADMINPPROF=true (off by default).
func TestAdminPprofSwitch(t *testing.T) {
	for _, on := range []bool{false, true} {
		cfg := DefaultConfig()
		cfg.Gateway.Origin = "http://127.0.0.1:1"
		cfg.Gateway.Sites = []SiteConfig{{Name: "primary", Hosts: []string{"mirror.example.org"}, Domains: []string{"primary"},
			ACME: true, Anonymous: true}}
		cfg.Gateway.ACME = ACMESettings{DirectoryURL: "https://127.0.0.1:1/dir", Storage: t.TempDir(), HTTPPort: 80}
		if on {
			if err := config.Load(&cfg, "", []string{"GATEWAY__ADMINPPROF=true"}); err != nil {
				t.Fatal(err)
			}
		}
		if cfg.Gateway.AdminPprof != on {
			t.Fatalf("GATEWAY__ADMINPPROF: AdminPprof = %v, want %v", cfg.Gateway.AdminPprof, on)
		}
		g, err := New(cfg, Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		for path, code := range map[string]int{"/debug/pprof/goroutine?debug=1": want, "/health/live": 200, "/metrics": 200} {
			rec := httptest.NewRecorder()
			g.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != code {
				t.Errorf("pprof %v: admin %s = %d, want %d", on, path, rec.Code, code)
			}
		}
		g.Close()
	}
}

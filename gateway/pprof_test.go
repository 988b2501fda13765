package gateway

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

// TestAdminPprofBehindAdminToken: with GATEWAY__ADMINTOKENFILE set, the
// profiles are behind the admin bearer token as the purge endpoint is
// (401 with a Bearer challenge without it or with a wrong one); /metrics
// and the health endpoints stay open for scrapers and probes.
func TestAdminPprofBehindAdminToken(t *testing.T) {
	const token = "pprof-admin-token-0123456789"
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Gateway.Origin = "http://127.0.0.1:1"
	cfg.Gateway.Sites = []SiteConfig{{Name: "primary", Hosts: []string{"mirror.example.org"}, Domains: []string{"primary"},
		ACME: true, Anonymous: true}}
	cfg.Gateway.ACME = ACMESettings{DirectoryURL: "https://127.0.0.1:1/dir", Storage: t.TempDir(), HTTPPort: 80}
	cfg.Gateway.AdminPprof = true
	cfg.Gateway.AdminTokenFile = tokenFile
	g, err := New(cfg, Options{Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.AdminHandler()
	for _, tc := range []struct {
		name, path, auth string
		want             int
	}{
		{"no token", "/debug/pprof/goroutine?debug=1", "", http.StatusUnauthorized},
		{"index, no token", "/debug/pprof/", "", http.StatusUnauthorized},
		{"cmdline, no token", "/debug/pprof/cmdline", "", http.StatusUnauthorized},
		{"wrong token", "/debug/pprof/goroutine?debug=1", "Bearer not-the-admin-token-000000", http.StatusUnauthorized},
		{"basic instead of bearer", "/debug/pprof/goroutine?debug=1", "Basic " + token, http.StatusUnauthorized},
		{"admin token", "/debug/pprof/goroutine?debug=1", "Bearer " + token, http.StatusOK},
		{"metrics stay open", "/metrics", "", http.StatusOK},
		{"health stays open", "/health/live", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("%s: %d, want %d", tc.path, rec.Code, tc.want)
			}
			if tc.want == http.StatusUnauthorized && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("401 without a Bearer challenge: %q", rec.Header().Get("WWW-Authenticate"))
			}
			if tc.want == http.StatusOK && strings.HasPrefix(tc.path, "/debug/") && !strings.Contains(rec.Body.String(), "goroutine") {
				t.Errorf("profile body %.80q", rec.Body.String())
			}
		})
	}
}

package gateway

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/statuspage"
	"github.com/stella-ops/stella-mirror/internal/syncbuf"
)

// TestStatusPageCountsBudgetRejections: the admin /status.json shows each
// site's certificate with days left and the budget 429s of the last hour
// (per site), the cache's generation, and the origin's products from
// GATEWAY__ORIGINSTATUSURL; an origin status that fails is a problem
// listed on the page.
func TestStatusPageCountsBudgetRejections(t *testing.T) {
	originStatus := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status.json" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(statuspage.Status{Component: "origin",
			Products: []statuspage.Product{{Name: "concelier", ExportID: "20261207T1200Z"}},
			Sync:     &statuspage.Sync{LastResult: "published"}})
	}))
	defer originStatus.Close()
	h := newHarness(t, harnessOpts{edit: func(c *Config) {
		c.Gateway.Sites[0].MaxIndexRequestsPerHour = 1
		c.Gateway.OriginStatusURL = originStatus.URL + "/status.json"
		withCache(t.TempDir(), "")(c)
	}})
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	for i, want := range []int{200, 429, 429} {
		if r := h.get(hostPrimary, indexPath, alice); r.status != want {
			t.Fatalf("request %d: %d, want %d", i, r.status, want)
		}
	}
	st := statusJSON(t, "http://"+h.admin+"/status.json")
	if st.Component != "gateway" || len(st.Problems) != 0 || len(st.Products) != 1 || st.Products[0].ExportID != "20261207T1200Z" || st.Sync == nil || st.Sync.LastResult != "published" {
		t.Fatalf("status %+v", st)
	}
	if !st.Gateway.OriginStatus {
		t.Error("gateway.originStatus false with GATEWAY__ORIGINSTATUSURL set")
	}
	got := map[string]int64{}
	for _, s := range st.Gateway.Sites {
		got[s.Name] = s.BudgetRejectionsLastHour
		if s.DaysLeft < 1 || s.NotAfter.IsZero() || s.Certificate != "file" {
			t.Errorf("site %+v: want a file certificate with days left", s)
		}
	}
	if got[hostPrimary] != 2 || got[hostCommunity] != 0 {
		t.Errorf("budget rejections in the last hour %v, want 2 for %s and 0 for %s", got, hostPrimary, hostCommunity)
	}
	if g := st.Gateway.Generations; len(g) != 1 || g[0].Product != "concelier" || g[0].ExportID == "" {
		t.Errorf("generations %+v", g)
	}
	if !strings.Contains(h.metrics(), `stella_mirror_gateway_export_generation_info{export_id="`+st.Gateway.Generations[0].ExportID+`",product="concelier"} 1`) {
		t.Error("metrics lack the export generation info")
	}

	originStatus.Close()
	st = statusJSON(t, "http://"+h.admin+"/status.json")
	if len(st.Problems) != 1 || !strings.Contains(st.Problems[0], originStatus.URL) || len(st.Gateway.Sites) != 2 {
		t.Errorf("origin status down: problems %q, sites %d", st.Problems, len(st.Gateway.Sites))
	}
}

func statusJSON(t *testing.T, u string) statuspage.Status {
	t.Helper()
	res, err := (&http.Client{}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var st statuspage.Status
	if res.StatusCode != 200 {
		t.Fatalf("%s: %d", u, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestACMEResultLogsAndCounts: a failed ACME order is an error log line
// naming the site and the CA's error, and counts in
// stella_mirror_gateway_acme_orders_total{result="failure"}.
func TestACMEResultLogsAndCounts(t *testing.T) {
	var logs syncbuf.Buffer
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Gateway.Origin = "http://127.0.0.1:1"
	cfg.Gateway.ACME = ACMESettings{DirectoryURL: "https://127.0.0.1:1/dir", Storage: t.TempDir(), HTTPPort: 80}
	cfg.Gateway.Sites = []SiteConfig{{Name: "primary", Hosts: []string{"mirror.example.org"}, Domains: []string{"primary"}, ACME: true, Anonymous: true}}
	g, err := New(cfg, Options{Registerer: reg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	g.acmeResult("mirror.example.org", true, errors.New("urn:ietf:params:acme:error:rateLimited: too many certificates"))
	g.acmeResult("mirror.example.org", false, nil)
	for _, want := range []string{
		`"level":"ERROR","msg":"ACME certificate order failed","site":"primary","host":"mirror.example.org","kind":"renew","error":"urn:ietf:params:acme:error:rateLimited: too many certificates"`,
		`"level":"INFO","msg":"ACME certificate order succeeded","site":"primary","host":"mirror.example.org","kind":"obtain"`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	rec := httptest.NewRecorder()
	g.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`stella_mirror_gateway_acme_orders_total{kind="renew",result="failure",site="primary"} 1`,
		`stella_mirror_gateway_acme_orders_total{kind="obtain",result="success",site="primary"} 1`,
		`stella_mirror_gateway_acme_orders_total{kind="obtain",result="failure",site="primary"} 0`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

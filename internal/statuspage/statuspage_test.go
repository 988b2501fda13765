package statuspage

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWindowCountsTheLastHour(t *testing.T) {
	var w Window
	t0 := time.Date(2026, 12, 7, 10, 0, 30, 0, time.UTC)
	for i := range 90 { // one event a minute for 90 minutes
		w.Add("primary", t0.Add(time.Duration(i)*time.Minute))
	}
	w.Add("community", t0)
	now := t0.Add(89 * time.Minute)
	for _, tc := range []struct {
		name string
		key  string
		at   time.Time
		want int64
	}{
		{"the last 60 minutes", "primary", now, 60},
		{"an hour later nothing", "primary", now.Add(61 * time.Minute), 0},
		{"half an hour later", "primary", now.Add(30 * time.Minute), 30},
		{"another key", "community", t0.Add(59 * time.Minute), 1},
		{"another key, an hour on", "community", t0.Add(60 * time.Minute), 0},
		{"unknown key", "nope", now, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.LastHour(tc.key, tc.at); got != tc.want {
				t.Errorf("LastHour = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestReadSyncTextfileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		return p
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.prom"), "nope.prom"},
		{"garbage", write("bad.prom", "this is { not a textfile\n"), "bad.prom"},
		{"no sync metrics", write("other.prom", "node_load1 0.5\n"), "no stella_mirror_sync_ metrics"},
		{"too large", write("big.prom", strings.Repeat("# comment line\n", MaxTextfile/15+10)), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadSyncTextfile(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
	s, err := ReadSyncTextfile(write("ok.prom", `stella_mirror_sync_last_success_timestamp_seconds 1.7e+09
stella_mirror_sync_export_generated_timestamp_seconds 1.69e+09
stella_mirror_sync_last_result{result="unchanged"} 1
stella_mirror_sync_last_result{result="failed"} 0
`))
	if err != nil || s.LastResult != "unchanged" || s.LastSuccess.Unix() != 1700000000 || s.UpstreamGeneratedAt.Unix() != 1690000000 {
		t.Errorf("ReadSyncTextfile = %+v, %v", s, err)
	}
}

func TestHandler(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	h := Handler(func(context.Context) Status {
		return Status{Component: "gateway", Version: "v1", Now: now, StartedAt: now.Add(-time.Hour),
			Products: []Product{{Name: "concelier", ExportID: "20261207T1100Z", Domains: []Domain{{ID: "primary", GeneratedAt: now.Add(-20 * time.Minute)}}},
				{Name: "excititor", Error: "no active export"}},
			Gateway: &Gateway{Sites: []Site{{Name: "primary", Certificate: "file", NotAfter: now.Add(10 * 24 * time.Hour)}},
				Cache: &Cache{Requests: 4, Hits: 3}}}
	})
	for _, tc := range []struct {
		method, path string
		code         int
		ctype        string
		want         []string
	}{
		{"GET", "/status", 200, "text/html; charset=utf-8", []string{"20261207T1100Z", "20m 0s", `class="warn">20m`, "no active export", "75.0 %", `class="warn">10<`, "up 1h 0m"}},
		{"GET", "/status.json", 200, "application/json", []string{`"exportId": "20261207T1100Z"`, `"ageSeconds": 1200`, `"daysLeft": 10`, `"hitRatio": 0.75`, `"uptimeSeconds": 3600`}},
		{"POST", "/status", 405, "", nil},
		{"GET", "/status.html", 404, "", nil},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.Code != tc.code {
				t.Fatalf("code %d, want %d", rec.Code, tc.code)
			}
			if tc.ctype != "" && rec.Header().Get("Content-Type") != tc.ctype {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tc.ctype)
			}
			for _, w := range tc.want {
				if !strings.Contains(rec.Body.String(), w) {
					t.Errorf("body lacks %q:\n%s", w, rec.Body)
				}
			}
			if tc.code == 200 && rec.Header().Get("Cache-Control") != "no-store" {
				t.Error("no Cache-Control: no-store")
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	if b := rec.Body.String(); strings.Contains(b, "<script") || strings.Contains(b, "http://") || strings.Contains(b, "https://") || strings.Contains(b, "src=") {
		t.Error("the page loads or runs something external")
	}
	_ = http.StatusOK
}

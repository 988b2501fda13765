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

// TestSyncTextfileOutOfRangeStamps: a textfile whose timestamps are NaN,
// ±Inf or beyond year 9999 (a garbled or hand-edited file) must not break
// the page: such a stamp counts as unknown, and /status.json still encodes
// (time.Time's MarshalJSON refuses years outside 0–9999, which answered
// every /status.json with a 500).
func TestSyncTextfileOutOfRangeStamps(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"NaN", "+Inf", "-Inf", "1e300", "1e15", "9.3e18"} {
		t.Run(v, func(t *testing.T) {
			p := filepath.Join(dir, "sync.prom")
			data := "stella_mirror_sync_last_attempt_timestamp_seconds " + v + "\n" +
				"stella_mirror_sync_last_success_timestamp_seconds " + v + "\n" +
				"stella_mirror_sync_export_generated_timestamp_seconds 1.69e+09\n" +
				"stella_mirror_sync_last_result{result=\"published\"} 1\n"
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := ReadSyncTextfile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !s.LastAttempt.IsZero() || !s.LastSuccess.IsZero() {
				t.Errorf("stamps %v / %v from %s, want unknown (zero)", s.LastAttempt, s.LastSuccess, v)
			}
			if s.UpstreamGeneratedAt.Unix() != 1690000000 || s.LastResult != "published" {
				t.Errorf("the valid fields were lost: %+v", s)
			}
			now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
			h := Handler(func(context.Context) Status {
				return Status{Component: "origin", Now: now, StartedAt: now, Sync: s}
			})
			for _, path := range []string{"/status.json", "/status"} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				if rec.Code != 200 {
					t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
				}
			}
		})
	}
}

// TestHandlerEscapesEveryString: export ids, domain and site names, host
// names, certificate sources, errors, problems and the sync textfile path
// are shown as text, never as markup (a crafted export directory name or
// Host must not inject into the operator's page).
func TestHandlerEscapesEveryString(t *testing.T) {
	const evil = `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	h := Handler(func(context.Context) Status {
		return Status{Component: "gateway", Version: evil, Now: now, StartedAt: now,
			Problems: []string{evil},
			Products: []Product{{Name: evil, ExportID: evil, Domains: []Domain{{ID: evil, GeneratedAt: now}}},
				{Name: "excititor", Error: evil}},
			Sync: &Sync{Textfile: evil, LastResult: evil, LastAttempt: now},
			Gateway: &Gateway{Generations: []Generation{{Product: evil, ExportID: evil}},
				Sites: []Site{{Name: evil, Hosts: []string{evil}, Domains: []string{evil}, Certificate: evil, NotAfter: now}},
				Cache: &Cache{}}}
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	b := rec.Body.String()
	if rec.Code != 200 || strings.Contains(b, "<script") || strings.Contains(b, "<img") {
		t.Fatalf("code %d; markup from a string reached the page:\n%s", rec.Code, b)
	}
	if n := strings.Count(b, "&lt;script&gt;alert(1)&lt;/script&gt;"); n < 14 {
		t.Errorf("the escaped string appears %d times, want one per field (14):\n%s", n, b)
	}
}

// TestSyncHintNamesWhatIsMissing: without a sync run on the page, the hint
// names the setting that is missing: on a gateway that reads the origin's
// status, the origin's textfile (not GATEWAY__ORIGINSTATUSURL, which is
// set: the demo's page said to set it).
func TestSyncHintNamesWhatIsMissing(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		st         Status
		want, lack string
	}{
		{"origin", Status{Component: "origin"}, "ORIGIN__SYNCMETRICSTEXTFILE", "GATEWAY__ORIGINSTATUSURL"},
		{"gateway reading the origin", Status{Component: "gateway", Gateway: &Gateway{OriginStatus: true}}, "ORIGIN__SYNCMETRICSTEXTFILE", "GATEWAY__ORIGINSTATUSURL"},
		{"gateway alone", Status{Component: "gateway", Gateway: &Gateway{}}, "GATEWAY__ORIGINSTATUSURL", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st
			st.Now, st.StartedAt = now, now
			h := Handler(func(context.Context) Status { return st })
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
			b := rec.Body.String()
			if !strings.Contains(b, tc.want) || tc.lack != "" && strings.Contains(b, tc.lack) {
				t.Errorf("page: want %q, not %q:\n%s", tc.want, tc.lack, b)
			}
		})
	}
}

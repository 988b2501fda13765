package origin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/statuspage"
)

// TestActiveExportGeneratedPerDomain: /metrics reports the generatedAt of
// the active export per product and domain (the export-freshness alert
// compares it with the sync's upstream newest).
func TestActiveExportGeneratedPerDomain(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	h := newHarness(t, testConfig(root), options{})
	h.get(t, "/concelier/exports/index.json")
	h.get(t, "/excititor/mirror/primary/index")
	h.settle(t)
	m := do(t, &http.Client{}, http.MethodGet, h.admin.URL+"/metrics", nil)
	ts := fmt.Sprintf("%g", float64(testTime.Unix()))
	for _, want := range []string{
		`stella_mirror_origin_active_export_generated_timestamp_seconds{domain="primary",product="concelier"} ` + ts,
		`stella_mirror_origin_active_export_generated_timestamp_seconds{domain="primary",product="excititor"} ` + ts,
	} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("admin /metrics lacks %s:\n%s", want, grepLines(string(m.body), "generated_timestamp"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestStatusPage: the admin listener's /status.json names each product's
// export and domains with their age, and the sync run from the textfile;
// a missing textfile is a problem named on the page, not an error; /status
// is HTML without script; the public listener has neither.
func TestStatusPage(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	textfile := filepath.Join(t.TempDir(), "sync.prom")
	os.WriteFile(textfile, []byte(`# TYPE stella_mirror_sync_last_attempt_timestamp_seconds gauge
stella_mirror_sync_last_attempt_timestamp_seconds 1.7672e+09
# TYPE stella_mirror_sync_last_result gauge
stella_mirror_sync_last_result{result="failed"} 1
stella_mirror_sync_last_result{result="published"} 0
`), 0o644)
	cfg := testConfig(root)
	cfg.Origin.SyncMetricsTextfile = textfile
	clock := newFakeClock()
	clock.now = testTime.Add(90 * time.Minute)
	h := newHarness(t, cfg, options{now: clock.Now})

	var st statuspage.Status
	res := do(t, &http.Client{}, http.MethodGet, h.admin.URL+"/status.json", nil)
	if res.status != 200 {
		t.Fatalf("status.json: %d", res.status)
	}
	if err := json.Unmarshal(res.body, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Products) != 2 || st.Products[0].ExportID != "e1" || st.Products[1].ExportID != "e1" {
		t.Fatalf("products %+v", st.Products)
	}
	for _, p := range st.Products {
		if len(p.Domains) == 0 {
			t.Errorf("%s: no domains", p.Name)
		}
		for _, d := range p.Domains {
			if d.AgeSeconds != 5400 {
				t.Errorf("%s/%s: age %v, want 5400", p.Name, d.ID, d.AgeSeconds)
			}
		}
	}
	if st.Sync == nil || st.Sync.LastResult != "failed" || st.Sync.LastAttempt.Unix() != 1767200000 {
		t.Errorf("sync %+v", st.Sync)
	}

	html := do(t, &http.Client{}, http.MethodGet, h.admin.URL+"/status", nil)
	if html.status != 200 || !strings.Contains(string(html.body), "<code class=\"export-id\">e1</code>") || strings.Contains(string(html.body), "<script") {
		t.Errorf("/status: %d\n%s", html.status, html.body)
	}
	if pub := do(t, &http.Client{}, http.MethodGet, h.public.URL+"/status.json", nil); pub.status != http.StatusNotFound {
		t.Errorf("public /status.json: %d, want 404", pub.status)
	}

	os.Remove(textfile)
	res = do(t, &http.Client{}, http.MethodGet, h.admin.URL+"/status.json", nil)
	st = statuspage.Status{}
	json.Unmarshal(res.body, &st)
	if res.status != 200 || st.Sync != nil || len(st.Problems) != 1 || !strings.Contains(st.Problems[0], textfile) {
		t.Errorf("without the textfile: %d sync %+v problems %q", res.status, st.Sync, st.Problems)
	}
}

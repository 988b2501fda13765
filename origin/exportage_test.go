package origin

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestActiveExportAge: /metrics reports how old the served export is
// (now − generatedAt), for an alert on a lagging sync.
func TestActiveExportAge(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	clock := newFakeClock()
	clock.now = testTime.Add(20 * time.Minute)
	h := newHarness(t, testConfig(root), options{now: clock.Now})
	h.get(t, "/concelier/exports/index.json")
	h.get(t, "/excititor/mirror/primary/index")
	h.settle(t)
	m := do(t, &http.Client{}, http.MethodGet, h.admin.URL+"/metrics", nil)
	for _, want := range []string{
		`stella_mirror_origin_active_export_age_seconds{product="concelier"} 1200`,
		`stella_mirror_origin_active_export_age_seconds{product="excititor"} 1200`,
	} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("admin /metrics lacks %s", want)
		}
	}
}

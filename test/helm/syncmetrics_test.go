package helm

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// TestOriginServesTheSyncMetrics runs the origin with the chart's rendered
// environment (CronJob mode: the sync's textfile on the exports volume) and
// scrapes its admin /metrics as the ServiceMonitor does: before the first
// sync run it reports stella_mirror_origin_sync_textfile_up 0 and no sync
// series; once a run's textfile is at the path the rendered sync
// environment writes (SYNC__METRICSTEXTFILE), the origin serves its
// stella_mirror_sync_* series, which the shipped sync alerts need.
func TestOriginServesTheSyncMetrics(t *testing.T) {
	bin := chartBinary(t)
	m := Render(t, nil, nil)
	p := newPodFS(t, bin, m)
	syncFile := p.env(t, m, "sync-env")["SYNC__METRICSTEXTFILE"]
	if syncFile == "" {
		t.Fatal("the rendered sync environment sets no SYNC__METRICSTEXTFILE")
	}
	env := copyMap(p.env(t, m, "origin-env"))
	admin := freeLoopbackPort(t)
	env["ORIGIN__LISTEN"] = fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	env["ORIGIN__ADMINLISTEN"] = fmt.Sprintf("127.0.0.1:%d", admin)
	logs := p.start(t, env, "origin")
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", admin)

	client := &http.Client{Timeout: 2 * time.Second}
	scrape := func() (string, error) {
		resp, err := client.Get(metricsURL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s", resp.Status)
		}
		return string(body), err
	}
	// waitFor polls /metrics (bounded) until it holds every line of want.
	waitFor := func(what string, want ...string) string {
		t.Helper()
		var body string
		ok, detail := pollUntil(20*time.Second, func() (bool, string) {
			var err error
			if body, err = scrape(); err != nil {
				return false, err.Error()
			}
			for _, w := range want {
				if !strings.Contains(body, "\n"+w+"\n") {
					return false, "no line " + w
				}
			}
			return true, ""
		})
		if !ok {
			t.Fatalf("%s: %s\n/metrics:\n%s\nlogs:\n%s", what, detail, body, logs.String())
		}
		return body
	}

	body := waitFor("before the first sync run", "stella_mirror_origin_sync_textfile_up 0")
	if strings.Contains(body, "\nstella_mirror_sync_") {
		t.Errorf("sync series served without a textfile:\n%s", body)
	}
	if !strings.Contains(logs.String(), "sync metrics not served") {
		t.Errorf("the missing textfile is not logged:\n%s", logs.String())
	}

	started := time.Now().Add(-time.Minute).Truncate(time.Second)
	res := &mirrorsync.Result{ExportID: "e1", Published: true, Started: started, Duration: 2 * time.Second, GeneratedAt: started}
	if err := mirrorsync.WriteMetrics(p.host(syncFile), res, nil, mirrorsync.State{ExportID: "e1", GeneratedAt: started, LastPublish: started}); err != nil {
		t.Fatal(err)
	}
	waitFor("after a sync run wrote its textfile",
		"stella_mirror_origin_sync_textfile_up 1",
		`stella_mirror_sync_last_result{result="published"} 1`,
		// The text format writes floats as strconv's 'g' (1.796684966e+09).
		"stella_mirror_sync_last_attempt_timestamp_seconds "+strconv.FormatFloat(float64(started.Unix()), 'g', -1, 64),
	)
}

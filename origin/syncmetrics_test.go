package origin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stella-ops/stella-mirror/internal/statuspage"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// syncRun writes the textfile of a sync run that started at started with
// the real writer (mirrorsync.WriteMetrics: temporary file and rename, as
// the sync does): published when runErr is nil.
func syncRun(t *testing.T, path string, started time.Time, runErr error) {
	t.Helper()
	res := &mirrorsync.Result{ExportID: "e1", GeneratedAt: started.Add(-time.Hour), Published: runErr == nil,
		Started: started, Duration: 3 * time.Second, BytesDownloaded: 4096, FilesDownloaded: 4}
	st := mirrorsync.State{ExportID: "e1", GeneratedAt: started.Add(-time.Hour), LastPublish: started.Add(-time.Minute)}
	if err := mirrorsync.WriteMetrics(path, res, runErr, st); err != nil {
		t.Fatal(err)
	}
}

// syncExportHarness is an origin over a test export with
// ORIGIN__SYNCMETRICSEXPORT on (unless off), reading the textfile at path.
func syncExportHarness(t *testing.T, path string, on bool, opts options) *harness {
	t.Helper()
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	cfg := testConfig(root)
	cfg.Origin.SyncMetricsTextfile = path
	cfg.Origin.SyncMetricsExport = on
	return newHarness(t, cfg, opts)
}

// scrape GETs the admin listener's /metrics and parses it.
func scrape(t *testing.T, h *harness) map[string]*dto.MetricFamily {
	t.Helper()
	r := do(t, h.admin.Client(), http.MethodGet, h.admin.URL+"/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("admin /metrics: %d %s", r.status, r.body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(r.body)))
	if err != nil {
		t.Fatalf("admin /metrics does not parse: %v\n%s", err, r.body)
	}
	// The origin's own metrics are served whatever the textfile holds.
	for _, own := range []string{"stella_mirror_build_info", "stella_mirror_origin_active_export_info"} {
		if mfs[own] == nil {
			t.Errorf("admin /metrics lacks the origin's own %s", own)
		}
	}
	return mfs
}

// textfileUp is stella_mirror_origin_sync_textfile_up, or -1 when absent.
func textfileUp(t *testing.T, mfs map[string]*dto.MetricFamily) float64 {
	t.Helper()
	mf := mfs[syncTextfileUpName]
	if mf == nil {
		return -1
	}
	if mf.GetType() != dto.MetricType_GAUGE || len(mf.Metric) != 1 {
		t.Fatalf("%s: type %v, %d series; want one gauge", syncTextfileUpName, mf.GetType(), len(mf.Metric))
	}
	return mf.Metric[0].GetGauge().GetValue()
}

// syncFamilies lists the stella_mirror_sync_ families served.
func syncFamilies(mfs map[string]*dto.MetricFamily) []string {
	var out []string
	for name := range mfs {
		if strings.HasPrefix(name, "stella_mirror_sync_") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// lastResult is the result label whose stella_mirror_sync_last_result is 1.
func lastResult(mfs map[string]*dto.MetricFamily) []string {
	var out []string
	if mf := mfs["stella_mirror_sync_last_result"]; mf != nil {
		for _, m := range mf.Metric {
			if m.GetGauge().GetValue() == 1 {
				for _, l := range m.Label {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	return out
}

// gaugeOf is the value of the single series of a gauge family (or of an
// untyped one), NaN-free: -1 when absent.
func gaugeOf(mfs map[string]*dto.MetricFamily, name string) float64 {
	mf := mfs[name]
	if mf == nil || len(mf.Metric) != 1 {
		return -1
	}
	if g := mf.Metric[0].GetGauge(); g != nil {
		return g.GetValue()
	}
	return mf.Metric[0].GetUntyped().GetValue()
}

// TestSyncMetricsExport scrapes the real admin handler with
// ORIGIN__SYNCMETRICSEXPORT on, over textfiles good and bad.
func TestSyncMetricsExport(t *testing.T) {
	started := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	good := func(t *testing.T, path string) []byte {
		syncRun(t, path, started, nil)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	write := func(t *testing.T, path string, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// pad appends comment lines to data until it is exactly n bytes.
	pad := func(data []byte, n int) []byte {
		const line = "# padding to the size bound of the textfile reader\n"
		for len(data)+len(line) <= n {
			data = append(data, line...)
		}
		if rest := n - len(data); rest > 0 {
			data = append(data, "#"+strings.Repeat(" ", rest-2)+"\n"...)
		}
		return data
	}
	cases := []struct {
		name    string
		setup   func(t *testing.T, path string)
		up      float64
		warn    string   // substring of the "sync metrics not served" line's error; "" none
		foreign []string // the ignored names the "not the sync's" warning lists
	}{
		{name: "good file", setup: func(t *testing.T, path string) { good(t, path) }, up: 1},
		{name: "missing file", setup: func(*testing.T, string) {}, up: 0, warn: "does not exist"},
		{name: "a directory", setup: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, up: 0, warn: "is a directory"},
		{name: "malformed", setup: func(t *testing.T, path string) {
			write(t, path, append(good(t, path), "stella_mirror_sync_last_result{result=\"failed\" 1\n"...))
		}, up: 0, warn: "sync textfile " /* the parser's message follows */},
		{name: "duplicate series", setup: func(t *testing.T, path string) {
			write(t, path, []byte("stella_mirror_sync_last_duration_seconds 1\nstella_mirror_sync_last_duration_seconds 2\n"))
		}, up: 0, warn: "collected before with the same name and label values"},
		{name: "exactly the size bound", setup: func(t *testing.T, path string) {
			write(t, path, pad(good(t, path), statuspage.MaxTextfile))
		}, up: 1},
		{name: "one byte over the size bound", setup: func(t *testing.T, path string) {
			write(t, path, pad(good(t, path), statuspage.MaxTextfile+1))
		}, up: 0, warn: fmt.Sprintf("larger than %d bytes", statuspage.MaxTextfile)},
		{name: "foreign families", setup: func(t *testing.T, path string) {
			write(t, path, append(good(t, path), "node_load1 3\n# TYPE stella_mirror_origin_requests_total counter\nstella_mirror_origin_requests_total 5\n"...))
		}, up: 1, foreign: []string{"node_load1", "stella_mirror_origin_requests_total"}},
		{name: "timestamps", setup: func(t *testing.T, path string) {
			write(t, path, append(good(t, path), "stella_mirror_sync_extra_seconds 7 1700000000000\n"...))
		}, up: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".stella-mirror-sync.prom")
			tc.setup(t, path)
			h := syncExportHarness(t, path, true, options{})
			mfs := scrape(t, h)
			mfs2 := scrape(t, h) // a second scrape: same answer, no second log line
			if up, up2 := textfileUp(t, mfs), textfileUp(t, mfs2); up != tc.up || up2 != tc.up {
				t.Errorf("%s = %v then %v, want %v", syncTextfileUpName, up, up2, tc.up)
			}
			got := syncFamilies(mfs)
			if tc.up == 0 {
				if len(got) > 0 {
					t.Errorf("sync families served from a file that cannot be: %q", got)
				}
			} else {
				want, err := statuspage.ReadTextfile(path)
				if err != nil {
					t.Fatal(err)
				}
				if wantNames := syncFamilies(want); !slices.Equal(got, wantNames) || len(got) < 10 {
					t.Errorf("sync families served %q, want the file's %q", got, wantNames)
				}
				if r := lastResult(mfs); !slices.Equal(r, []string{mirrorsync.ResultPublished}) {
					t.Errorf("last_result = 1 for %q, want published", r)
				}
				if v := gaugeOf(mfs, "stella_mirror_sync_last_attempt_timestamp_seconds"); v != float64(started.Unix()) {
					t.Errorf("last_attempt_timestamp_seconds %v, want %d", v, started.Unix())
				}
				for name, mf := range mfs {
					for _, m := range mf.Metric {
						if m.TimestampMs != nil {
							t.Errorf("%s served with the timestamp %d; timestamps are dropped", name, m.GetTimestampMs())
						}
					}
				}
			}
			for _, f := range tc.foreign {
				if f == "stella_mirror_origin_requests_total" {
					// The origin's own counter, with its labels, not the file's 5.
					for _, m := range mfs[f].GetMetric() {
						if len(m.Label) == 0 {
							t.Errorf("the file's unlabelled %s is served", f)
						}
					}
				} else if mfs[f] != nil {
					t.Errorf("foreign family %s served", f)
				}
			}
			warns := h.logs.lines(t, "sync metrics not served")
			if tc.warn == "" && len(warns) > 0 {
				t.Errorf("unexpected warnings %v", warns)
			}
			if tc.warn != "" {
				if len(warns) != 1 {
					t.Fatalf("%d \"sync metrics not served\" lines after two scrapes, want 1: %v", len(warns), warns)
				}
				if e, _ := warns[0]["error"].(string); !strings.Contains(e, tc.warn) || warns[0]["level"] != "WARN" || warns[0]["textfile"] != path {
					t.Errorf("warning %v, want level WARN, textfile %s and an error containing %q", warns[0], path, tc.warn)
				}
			}
			ignored := h.logs.lines(t, "sync textfile holds metrics that are not the sync's; they are not served (logged once)")
			switch {
			case len(tc.foreign) == 0 && len(ignored) > 0:
				t.Errorf("unexpected %v", ignored)
			case len(tc.foreign) > 0 && len(ignored) != 1:
				t.Errorf("%d \"not the sync's\" lines after two scrapes, want 1", len(ignored))
			case len(tc.foreign) > 0 && fmt.Sprint(ignored[0]["ignored"]) != fmt.Sprint(tc.foreign):
				t.Errorf("ignored %v, want %v", ignored[0]["ignored"], tc.foreign)
			}
		})
	}
}

// TestSyncMetricsExportOff: with ORIGIN__SYNCMETRICSEXPORT off (the
// default) the textfile only feeds the status page: a host whose
// node_exporter exports the file does not get the series twice.
func TestSyncMetricsExportOff(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sync.prom")
	syncRun(t, path, time.Now(), nil)
	if DefaultConfig().Origin.SyncMetricsExport {
		t.Fatal("ORIGIN__SYNCMETRICSEXPORT is on by default")
	}
	h := syncExportHarness(t, path, false, options{})
	mfs := scrape(t, h)
	if got := syncFamilies(mfs); len(got) > 0 || mfs[syncTextfileUpName] != nil {
		t.Errorf("served %q and %s=%v with the export off", got, syncTextfileUpName, textfileUp(t, mfs))
	}
}

// TestSyncMetricsExportFollowsTheFile: each scrape reads the file again:
// a new run's textfile (renamed over the old one) is served at the next
// scrape, a removed file stops the series (the up gauge says 0) and a
// restored one brings them back, logged once each way.
func TestSyncMetricsExportFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sync.prom")
	t1 := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	syncRun(t, path, t1, nil)
	h := syncExportHarness(t, path, true, options{})
	steps := []struct {
		name    string
		change  func()
		up      float64
		result  []string
		attempt time.Time
	}{
		{"first run published", func() {}, 1, []string{mirrorsync.ResultPublished}, t1},
		{"second run failed", func() { syncRun(t, path, t1.Add(5*time.Minute), errors.New("upstream unreachable")) },
			1, []string{mirrorsync.ResultFailed}, t1.Add(5 * time.Minute)},
		{"file removed", func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, 0, nil, time.Time{}},
		{"third run published", func() { syncRun(t, path, t1.Add(10*time.Minute), nil) },
			1, []string{mirrorsync.ResultPublished}, t1.Add(10 * time.Minute)},
	}
	for _, s := range steps {
		s.change()
		mfs := scrape(t, h)
		if up := textfileUp(t, mfs); up != s.up {
			t.Errorf("%s: up %v, want %v", s.name, up, s.up)
		}
		if r := lastResult(mfs); !slices.Equal(r, s.result) {
			t.Errorf("%s: last_result = 1 for %q, want %q", s.name, r, s.result)
		}
		want := -1.0
		if !s.attempt.IsZero() {
			want = float64(s.attempt.Unix())
		}
		if v := gaugeOf(mfs, "stella_mirror_sync_last_attempt_timestamp_seconds"); v != want {
			t.Errorf("%s: last_attempt_timestamp_seconds %v, want %v", s.name, v, want)
		}
	}
	if n := len(h.logs.lines(t, "sync metrics not served")); n != 1 {
		t.Errorf("%d \"not served\" lines, want 1 (the removal)", n)
	}
	if n := len(h.logs.lines(t, "sync textfile served again")); n != 1 {
		t.Errorf("%d \"served again\" lines, want 1", n)
	}
}

// TestSyncMetricsExportConcurrentRenames: scrapes racing a writer that
// replaces the file by rename, as the sync does, always see one whole
// file (up 1, exactly one result at 1, a consistent attempt time).
func TestSyncMetricsExportConcurrentRenames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sync.prom")
	t0 := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC)
	syncRun(t, path, t0, nil)
	h := syncExportHarness(t, path, true, options{})
	const runs = 40
	var wg sync.WaitGroup
	defer wg.Wait() // also when a check fails: the writer finishes before t.TempDir goes
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= runs; i++ {
			var err error
			if i%2 == 1 {
				err = errors.New("upstream unreachable")
			}
			res := &mirrorsync.Result{Started: t0.Add(time.Duration(i) * time.Minute), Duration: time.Second, Published: err == nil}
			if werr := mirrorsync.WriteMetrics(path, res, err, mirrorsync.State{}); werr != nil {
				t.Error(werr)
				return
			}
		}
	}()
	for i := 0; i < runs; i++ {
		mfs := scrape(t, h)
		if up := textfileUp(t, mfs); up != 1 {
			t.Fatalf("scrape %d: up %v while the file is replaced by rename", i, up)
		}
		r := lastResult(mfs)
		attempt := gaugeOf(mfs, "stella_mirror_sync_last_attempt_timestamp_seconds")
		minute := int((attempt - float64(t0.Unix())) / 60)
		want := mirrorsync.ResultPublished
		if minute%2 == 1 {
			want = mirrorsync.ResultFailed
		}
		if !slices.Equal(r, []string{want}) || minute < 0 || minute > runs {
			t.Fatalf("scrape %d: last_result %q with the attempt of run %d (want %s): a torn file", i, r, minute, want)
		}
	}
}

// TestSyncMetricsExportLogRateLimit: a problem that lasts is logged once
// per syncLogEvery, however often Prometheus scrapes.
func TestSyncMetricsExportLogRateLimit(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "sync.prom")
	h := syncExportHarness(t, path, true, options{now: clock.Now})
	count := func() int { return len(h.logs.lines(t, "sync metrics not served")) }
	for i := 0; i < 5; i++ {
		scrape(t, h)
		clock.Advance(syncLogEvery / 10)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d lines for 5 scrapes within %v, want 1", n, syncLogEvery)
	}
	// A different problem within the period is not logged either.
	if err := os.WriteFile(path, []byte("not { a metric\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	scrape(t, h)
	if n := count(); n != 1 {
		t.Fatalf("%d lines after a second problem within the period, want 1", n)
	}
	clock.Advance(syncLogEvery)
	scrape(t, h)
	scrape(t, h)
	if n := count(); n != 2 {
		t.Fatalf("%d lines after %v more, want 2", n, syncLogEvery)
	}
}

// BenchmarkSyncMetricsGather is the cost the export adds to a scrape:
// reading and parsing a real sync textfile (about 3 KiB).
func BenchmarkSyncMetricsGather(b *testing.B) {
	path := filepath.Join(b.TempDir(), "sync.prom")
	res := &mirrorsync.Result{Started: time.Now(), Duration: time.Second, Published: true}
	if err := mirrorsync.WriteMetrics(path, res, nil, mirrorsync.State{GeneratedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	g := &syncGatherer{path: path, logger: slog.New(slog.DiscardHandler), now: time.Now}
	b.ReportAllocs()
	for b.Loop() {
		mfs, err := g.Gather()
		if err != nil || len(mfs) < 10 {
			b.Fatalf("%d families, %v", len(mfs), err)
		}
	}
}

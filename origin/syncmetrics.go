package origin

import (
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stella-ops/stella-mirror/internal/statuspage"
)

// syncFamilyPrefix is the prefix of the metric families the origin serves
// from the sync's textfile (ORIGIN__SYNCMETRICSEXPORT); the file's other
// families are ignored.
const syncFamilyPrefix = "stella_mirror_sync_"

// syncTextfileUpName is the gauge that says whether the last scrape read
// and parsed the sync's textfile.
const syncTextfileUpName = "stella_mirror_origin_sync_textfile_up"

// syncLogEvery is how often an unchanged textfile problem is logged again.
const syncLogEvery = 10 * time.Minute

// maxForeignNamesLogged bounds the names listed by the "ignored" warning.
const maxForeignNamesLogged = 10

// syncGatherer serves the sync's textfile on the admin /metrics
// (ORIGIN__SYNCMETRICSEXPORT): at each scrape it reads the file with
// statuspage.ReadTextfile (bounded to statuspage.MaxTextfile bytes),
// keeps the stella_mirror_sync_* families without their timestamps, and
// adds stella_mirror_origin_sync_textfile_up (1 read and parsed, 0
// missing, unreadable, oversized or malformed; then no sync family is
// served). The origin's own registry is gathered beside it
// (prometheus.Gatherers), so a broken file never hides the origin's
// metrics.
type syncGatherer struct {
	path   string
	logger *slog.Logger
	now    func() time.Time

	mu            sync.Mutex
	lastLogged    time.Time // when a problem was last logged
	logged        bool      // a problem was logged since the file was last fine
	foreignLogged bool      // the "ignored families" warning was logged
}

// Gather implements prometheus.Gatherer. It never returns an error: a file
// it cannot serve is reported by the up gauge and a rate-limited log line.
func (g *syncGatherer) Gather() ([]*dto.MetricFamily, error) {
	fams, problem := g.read()
	g.report(problem)
	up := 1.0
	if problem != "" {
		up, fams = 0, nil
	}
	return append(fams, &dto.MetricFamily{
		Name: new(syncTextfileUpName),
		Help: new("1 when the origin read and parsed the sync's textfile (ORIGIN__SYNCMETRICSTEXTFILE) at this scrape and serves its stella_mirror_sync_* metrics; 0 when it is missing, unreadable, larger than 1 MiB or malformed."),
		Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{
			Gauge: &dto.Gauge{Value: new(up)},
		}},
	}), nil
}

// read returns the file's sync families, or a problem ("" when none).
func (g *syncGatherer) read() ([]*dto.MetricFamily, string) {
	mfs, err := statuspage.ReadTextfile(g.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "sync textfile " + g.path + " does not exist"
	}
	if err != nil {
		return nil, err.Error()
	}
	var fams []*dto.MetricFamily
	var foreign []string
	for name, mf := range mfs {
		if !strings.HasPrefix(name, syncFamilyPrefix) {
			foreign = append(foreign, name)
			continue
		}
		for _, m := range mf.Metric {
			// Served at scrape time like every other sample: a client
			// timestamp would pin the sample to when the file was written
			// (Prometheus rejects out-of-order and too old samples).
			m.TimestampMs = nil
		}
		fams = append(fams, mf)
	}
	if len(foreign) > 0 {
		g.warnForeign(foreign)
	}
	// The checks promhttp would apply at exposition (duplicate series,
	// label names, help and type consistency), here, so that a file that
	// fails them counts as malformed instead of being half served.
	checked, err := prometheus.Gatherers{prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		return fams, nil
	})}.Gather()
	if err != nil {
		return nil, "sync textfile " + g.path + ": " + err.Error()
	}
	return checked, ""
}

// warnForeign logs once, at warn, that families outside
// stella_mirror_sync_* were ignored.
func (g *syncGatherer) warnForeign(names []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.foreignLogged {
		return
	}
	g.foreignLogged = true
	slices.Sort(names)
	if len(names) > maxForeignNamesLogged {
		names = append(names[:maxForeignNamesLogged:maxForeignNamesLogged], "…")
	}
	g.logger.Warn("sync textfile holds metrics that are not the sync's; they are not served (logged once)",
		"textfile", g.path, "ignored", names)
}

// report logs a problem at most once every syncLogEvery (the first at
// once), and the recovery from a logged problem once.
func (g *syncGatherer) report(problem string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	switch {
	case problem == "":
		if g.logged {
			g.logger.Info("sync textfile served again", "textfile", g.path)
			g.logged = false
		}
	case g.lastLogged.IsZero() || now.Sub(g.lastLogged) >= syncLogEvery:
		g.logger.Warn("sync metrics not served", "textfile", g.path, "error", problem,
			"next_log_after", syncLogEvery.String())
		g.lastLogged, g.logged = now, true
	}
}

package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stella-ops/stella-mirror/internal/buildinfo"
	"github.com/stella-ops/stella-mirror/internal/statuspage"
)

// Label values the gateway's per-site counters are created with at start
// (value 0), so that rate() and increase() see their first event and
// alert rules have a series to evaluate.
var (
	upstreamErrorReasons = []string{"connect", "timeout", "token", "body", "other"}
	authFailureReasons   = []string{"missing", "malformed", "scheme", "credentials"}
	budgetNames          = []string{"index", "download"}
	reloadKinds          = []string{"certificate", "htpasswd"}
	results              = []string{"success", "failure"}
	acmeKinds            = []string{"obtain", "renew"}
)

// originStatusTimeout bounds the fetch of the origin's /status.json.
const originStatusTimeout = 3 * time.Second

// monitor holds what the status page and the monitoring metrics need
// beyond the gateway's request metrics.
type monitor struct {
	now        func() time.Time
	started    time.Time
	rejections statuspage.Window // budget 429s by site
	acme       *prometheus.CounterVec
	origin     *http.Client // fetches GATEWAY__ORIGINSTATUSURL
}

// newMonitor registers stella_mirror_gateway_acme_orders_total,
// stella_mirror_gateway_export_generation_info and, with the cache on,
// stella_mirror_cache_max_size_bytes.
func newMonitor(g *Gateway, reg prometheus.Registerer, now func() time.Time) (*monitor, error) {
	mon := &monitor{now: now, started: now(),
		origin: &http.Client{Timeout: originStatusTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		acme: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "stella_mirror", Subsystem: "gateway", Name: "acme_orders_total",
			Help: "ACME certificate orders through certmagic, by site, kind (obtain: a first certificate, renew) and result (success, failure); 0 for sites with certificate files."},
			[]string{"site", "kind", "result"}),
	}
	cs := []prometheus.Collector{mon.acme, &generationInfo{g: g}}
	if g.cfg.CacheEnabled() {
		max := g.cfg.Cache
		max.SetDefaults()
		mx := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "stella_mirror", Subsystem: "cache", Name: "max_size_bytes",
			Help: "The disk tier's size bound (GATEWAY__CACHE__MAXSIZE); compare with stella_mirror_cache_stored_bytes."})
		mx.Set(float64(max.MaxSize))
		cs = append(cs, mx)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return mon, nil
}

// initSite creates a site's counters at 0 (see upstreamErrorReasons).
func (m *metrics) initSite(mon *monitor, name string) {
	for _, r := range upstreamErrorReasons {
		m.upstreamErrs.WithLabelValues(name, r)
	}
	for _, r := range authFailureReasons {
		m.authFailures.WithLabelValues(name, r)
	}
	m.throttled.WithLabelValues(name)
	for _, b := range budgetNames {
		m.budget.WithLabelValues(name, b)
	}
	for _, k := range reloadKinds {
		for _, r := range results {
			m.reloads.WithLabelValues(name, k, r)
		}
	}
	for _, k := range acmeKinds {
		for _, r := range results {
			mon.acme.WithLabelValues(name, k, r)
		}
	}
}

// acmeResult logs and counts one ACME order for host (tlsconf.ACMEOptions.OnResult).
func (g *Gateway) acmeResult(host string, renewal bool, err error) {
	name := host
	if st := g.sites[host]; st != nil {
		name = st.name
	}
	kind := "obtain"
	if renewal {
		kind = "renew"
	}
	g.mon.acme.WithLabelValues(name, kind, result(err)).Inc()
	if err != nil {
		g.logger.Error("ACME certificate order failed", "site", name, "host", host, "kind", kind, "error", err.Error())
		return
	}
	g.logger.Info("ACME certificate order succeeded", "site", name, "host", host, "kind", kind)
	g.refreshACMEExpiry()
}

// generationDesc describes stella_mirror_gateway_export_generation_info.
var generationDesc = prometheus.NewDesc("stella_mirror_gateway_export_generation_info",
	"The export generation the cache answers a product's unversioned requests from (value 1); absent while none is known or the cache is off.",
	[]string{"product", "export_id"}, nil)

// generationInfo collects the cache's current generation at scrape time.
type generationInfo struct{ g *Gateway }

func (c *generationInfo) Describe(ch chan<- *prometheus.Desc) { ch <- generationDesc }

func (c *generationInfo) Collect(ch chan<- prometheus.Metric) {
	if c.g.cache == nil {
		return
	}
	if id := c.g.cache.Generation(); id != "" {
		ch <- prometheus.MustNewConstMetric(generationDesc, prometheus.GaugeValue, 1, "concelier", id)
	}
}

// Status returns the gateway's status page: its sites, certificates,
// budgets and cache, plus the active exports and the last sync run from
// the origin's /status.json when GATEWAY__ORIGINSTATUSURL is set.
func (g *Gateway) Status(ctx context.Context) statuspage.Status {
	g.refreshACMEExpiry()
	now := g.mon.now().UTC()
	st := statuspage.Status{Component: "gateway", Version: buildinfo.Version(), Now: now, StartedAt: g.mon.started.UTC(),
		Products: []statuspage.Product{}}
	if u := g.cfg.OriginStatusURL; u != "" {
		o, err := g.originStatus(ctx, u)
		if err != nil {
			st.Problems = append(st.Problems, err.Error())
		} else {
			st.Products, st.Sync = o.Products, o.Sync
			st.Problems = append(st.Problems, o.Problems...)
		}
	}
	values := g.gatheredValues()
	gw := &statuspage.Gateway{Sites: []statuspage.Site{}, OriginStatus: g.cfg.OriginStatusURL != ""}
	if g.cache != nil {
		if id := g.cache.Generation(); id != "" {
			gw.Generations = append(gw.Generations, statuspage.Generation{Product: "concelier", ExportID: id})
		}
		max := g.cfg.Cache
		max.SetDefaults()
		c := &statuspage.Cache{MaxBytes: int64(max.MaxSize),
			StoredBytes:   int64(values.get("stella_mirror_cache_stored_bytes", nil)),
			StoredObjects: int64(values.get("stella_mirror_cache_stored_objects", nil))}
		for status, v := range values.byLabel("stella_mirror_cache_requests_total", "cache_status") {
			c.Requests += int64(v)
			switch status {
			case "HIT":
				c.Hits += int64(v)
			case "STALE", "UPDATING":
				c.Stale += int64(v)
			}
		}
		gw.Cache = c
	}
	expiry := values.byLabel("stella_mirror_gateway_certificate_expiry_timestamp_seconds", "site")
	for _, s := range g.list {
		ss := statuspage.Site{Name: s.name, Hosts: s.cfg.Hosts, Domains: s.cfg.Domains, Certificate: "file",
			BudgetRejectionsLastHour: g.mon.rejections.LastHour(s.name, now)}
		if s.cfg.ACME {
			ss.Certificate = "acme"
		}
		if v, ok := expiry[s.name]; ok && v > 0 {
			ss.NotAfter = time.Unix(int64(v), 0).UTC()
		}
		gw.Sites = append(gw.Sites, ss)
	}
	st.Gateway = gw
	return st
}

// originStatus fetches and decodes the origin's /status.json.
func (g *Gateway) originStatus(ctx context.Context, u string) (*statuspage.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY__ORIGINSTATUSURL %s: %w", u, err)
	}
	resp, err := g.mon.origin.Do(req)
	if err != nil {
		return nil, fmt.Errorf("origin status %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("origin status %s: HTTP %d", u, resp.StatusCode)
	}
	var o statuspage.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&o); err != nil {
		return nil, fmt.Errorf("origin status %s: %w", u, err)
	}
	return &o, nil
}

// gathered holds the metric families of one Gather, by name.
type gathered map[string]*dto.MetricFamily

func (g *Gateway) gatheredValues() gathered {
	out := gathered{}
	if g.gatherer == nil {
		return out
	}
	mfs, _ := g.gatherer.Gather() // a partial answer is still worth showing
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

// get returns the first series of name (whose labels match, when given).
func (g gathered) get(name string, labels map[string]string) float64 {
	mf := g[name]
	if mf == nil {
		return 0
	}
	for _, m := range mf.Metric {
		if slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { v, ok := labels[l.GetName()]; return ok && v != l.GetValue() }) {
			continue
		}
		return value(m)
	}
	return 0
}

// byLabel sums the series of name by the value of label.
func (g gathered) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	mf := g[name]
	if mf == nil {
		return out
	}
	for _, m := range mf.Metric {
		for _, l := range m.Label {
			if l.GetName() == label {
				out[l.GetValue()] += value(m)
			}
		}
	}
	return out
}

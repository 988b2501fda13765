package origin

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/buildinfo"
	"github.com/stella-ops/stella-mirror/internal/httprec"
)

// Label values of the product label for requests that belong to no product
// (health, metrics, unmatched paths).
const productNone = "none"

// endpoint identifies a route for metrics and logs.
type endpoint int

const (
	epIndex endpoint = iota
	epManifest
	epBundle
	epBundleSignature
	epExcititorIndex
	epExcititorExport
	epExcititorSignature
	epPinnedIndex
	epPinnedManifest
	epPinnedBundle
	epPinnedBundleSignature
	epLive
	epReady
	epMetrics
	epUnmatched
	numEndpoints
)

// endpointNames are the endpoint label values, indexed by endpoint.
var endpointNames = [numEndpoints]string{
	epIndex:                 "index",
	epManifest:              "manifest",
	epBundle:                "bundle",
	epBundleSignature:       "bundle_signature",
	epExcititorIndex:        "excititor_index",
	epExcititorExport:       "excititor_export",
	epExcititorSignature:    "excititor_signature",
	epPinnedIndex:           "pinned_index",
	epPinnedManifest:        "pinned_manifest",
	epPinnedBundle:          "pinned_bundle",
	epPinnedBundleSignature: "pinned_bundle_signature",
	epLive:                  "health_live",
	epReady:                 "health_ready",
	epMetrics:               "metrics",
	epUnmatched:             "unmatched",
}

func (e endpoint) String() string { return endpointNames[e] }

// twin is the unversioned endpoint an export-pinned endpoint serves the
// files of (and whose authorization and budget it shares); every other
// endpoint is its own twin.
func (e endpoint) twin() endpoint {
	switch e {
	case epPinnedIndex:
		return epIndex
	case epPinnedManifest:
		return epManifest
	case epPinnedBundle:
		return epBundle
	case epPinnedBundleSignature:
		return epBundleSignature
	}
	return e
}

// pinned reports whether e is an export-pinned endpoint.
func (e endpoint) pinned() bool { return e.twin() != e }

// metrics holds the origin's collectors.
type metrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	active   *prometheus.GaugeVec
}

// newMetrics creates the origin's collectors and registers them with reg,
// plus stella_mirror_build_info (shared with other components: an already
// registered build-info collector is fine).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "stella_mirror", Subsystem: "origin", Name: "requests_total",
			Help: "Requests answered by the origin, by product, endpoint and HTTP status code.",
		}, []string{"product", "endpoint", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "stella_mirror", Subsystem: "origin", Name: "response_bytes_total",
			Help: "Response body bytes written by the origin, by product and endpoint.",
		}, []string{"product", "endpoint"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "stella_mirror", Subsystem: "origin", Name: "request_duration_seconds",
			Help:    "Time from the start of a request to the end of its response, by product and endpoint.",
			Buckets: httprec.DurationBuckets,
		}, []string{"product", "endpoint"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "stella_mirror", Subsystem: "origin", Name: "active_export_info",
			Help: "The export each product currently serves (value 1); absent while none is available.",
		}, []string{"product", "export_id"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.duration, m.active} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	if err := buildinfo.Register(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// commonCodes are the status codes whose counters are cached per endpoint;
// any other code is looked up by label (slower, still correct).
var commonCodes = [...]int{200, 206, 304, 400, 401, 403, 404, 405, 412, 416, 429, 500, 503}

// endpointMetrics are the collectors of one product and endpoint with
// their label values curried, so the hot path does no label hashing or
// formatting.
type endpointMetrics struct {
	product, endpoint string
	requests          *prometheus.CounterVec
	bytes             prometheus.Counter
	duration          prometheus.Observer
	codes             [len(commonCodes)]atomic.Pointer[prometheus.Counter]
}

func (m *metrics) forEndpoint(product string, ep endpoint) *endpointMetrics {
	return &endpointMetrics{
		product:  product,
		endpoint: ep.String(),
		requests: m.requests,
		bytes:    m.bytes.WithLabelValues(product, ep.String()),
		duration: m.duration.WithLabelValues(product, ep.String()),
	}
}

// observe records one finished request.
func (e *endpointMetrics) observe(code int, n int64, d time.Duration) {
	e.counter(code).Inc()
	if n > 0 {
		e.bytes.Add(float64(n))
	}
	e.duration.Observe(d.Seconds())
}

func (e *endpointMetrics) counter(code int) prometheus.Counter {
	for i, c := range commonCodes {
		if c != code {
			continue
		}
		if p := e.codes[i].Load(); p != nil {
			return *p
		}
		ctr := e.requests.WithLabelValues(e.product, e.endpoint, strconv.Itoa(code))
		e.codes[i].Store(&ctr)
		return ctr
	}
	return e.requests.WithLabelValues(e.product, e.endpoint, strconv.Itoa(code))
}

// exportAgeDesc describes stella_mirror_origin_active_export_age_seconds.
var exportAgeDesc = prometheus.NewDesc("stella_mirror_origin_active_export_age_seconds",
	"Seconds since the generatedAt of the export each product serves (absent while none is available); alert when sync lags.",
	[]string{"product"}, nil)

// exportAge reports the active export's age at scrape time.
type exportAge struct{ products *[2]*product }

func (e *exportAge) Describe(ch chan<- *prometheus.Desc) {
	ch <- exportAgeDesc
	ch <- exportGeneratedDesc
}

func (e *exportAge) Collect(ch chan<- prometheus.Metric) {
	for _, p := range e.products {
		if p == nil {
			continue
		}
		if st := p.shown.Load(); st != nil && !st.generatedAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(exportAgeDesc, prometheus.GaugeValue, p.now().Sub(st.generatedAt).Seconds(), p.name)
		}
		if st := p.shown.Load(); st != nil && st.tryAcquire() {
			for _, d := range st.domainTimes(p) {
				if !d.generatedAt.IsZero() {
					ch <- prometheus.MustNewConstMetric(exportGeneratedDesc, prometheus.GaugeValue, float64(d.generatedAt.UnixNano())/1e9, p.name, d.id)
				}
			}
			st.release()
		}
	}
}

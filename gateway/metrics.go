package gateway

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/gateway/cache"
	"github.com/stella-ops/stella-mirror/internal/buildinfo"
	"github.com/stella-ops/stella-mirror/internal/httprec"
)

// metrics holds the gateway's collectors (stella_mirror_gateway_…).
type metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	upstream     *prometheus.HistogramVec
	upstreamErrs *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	throttled    *prometheus.CounterVec
	authChecks   *prometheus.CounterVec
	collapsed    *prometheus.CounterVec
	budget       *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	certExpiry   *prometheus.GaugeVec
	unknownSNI   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	ns, sub := "stella_mirror", "gateway"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Requests answered by the gateway, by site, HTTP status code (site \"unknown\": no such host) and cache_status (X-Cache-Status: HIT, MISS, EXPIRED, STALE, UPDATING, REVALIDATED, BYPASS; empty when the cache is off or the gateway answered itself: 401, 404, 429)."}, []string{"site", "code", "cache_status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help: "Time from the start of a request to the end of its response, by site.", Buckets: httprec.DurationBuckets}, []string{"site"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "upstream_duration_seconds",
			Help: "Time until the origin's response headers arrived, by site.", Buckets: httprec.DurationBuckets}, []string{"site"}),
		upstreamErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "upstream_errors_total",
			Help: "Failed exchanges with the origin, by site and reason (connect, timeout, token, body, other)."}, []string{"site", "reason"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "auth_failures_total",
			Help: "Requests refused with 401, by site and reason (missing, malformed, scheme, credentials)."}, []string{"site", "reason"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "auth_throttled_total",
			Help: "Requests with Basic credentials refused with 429 before any password check because their client address failed too often (GATEWAY__AUTHTHROTTLE), by site."}, []string{"site"}),
		authChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "auth_bcrypt_checks_total",
			Help: "bcrypt comparisons run (credentials not in the verified-credential cache; unknown users included), by site."}, []string{"site"}),
		collapsed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "auth_collapsed_checks_total",
			Help: "Password checks answered by an identical check (same user and password) already in progress, without a bcrypt comparison of their own, by site."}, []string{"site"}),
		budget: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "budget_rejections_total",
			Help: "Requests refused with 429, by site and budget (index, download)."}, []string{"site", "budget"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reloads_total",
			Help: "Reloads of certificates, htpasswd files and the origin peer token file, by site (empty for the peer token), kind (certificate, htpasswd, peer_token) and result (success, failure)."}, []string{"site", "kind", "result"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the certificate in service, Unix seconds, by site."}, []string{"site"}),
		unknownSNI: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tls_unknown_server_name_total",
			Help: "TLS handshakes refused because no site has a certificate for the SNI name sent (or none was sent); the client gets an internal_error alert. The name is logged at debug level."}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.upstream, m.upstreamErrs, m.authFailures, m.throttled, m.authChecks, m.collapsed, m.budget, m.reloads, m.certExpiry, m.unknownSNI} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	if err := buildinfo.Register(reg); err != nil {
		return nil, err
	}
	return m, nil
}

// siteMetrics are one site's collectors with labels curried, so the hot
// path does no label hashing for the common cases.
type siteMetrics struct {
	name     string
	m        *metrics
	duration prometheus.Observer
	upstream prometheus.Observer
	codes    sync.Map // codeStatus → prometheus.Counter
}

func (m *metrics) forSite(name string) *siteMetrics {
	return &siteMetrics{name: name, m: m,
		duration: m.duration.WithLabelValues(name), upstream: m.upstream.WithLabelValues(name)}
}

// codeStatus keys the requests counters of a site.
type codeStatus struct {
	code   int
	status cache.Status
}

func (s *siteMetrics) observe(code int, cs cache.Status, d, upstream time.Duration) {
	k := codeStatus{code, cs}
	c, ok := s.codes.Load(k)
	if !ok {
		c, _ = s.codes.LoadOrStore(k, s.m.requests.WithLabelValues(s.name, strconv.Itoa(code), string(cs)))
	}
	c.(prometheus.Counter).Inc()
	s.duration.Observe(d.Seconds())
	if upstream > 0 {
		s.upstream.Observe(upstream.Seconds())
	}
}

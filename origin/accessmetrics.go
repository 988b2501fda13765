package origin

import "github.com/prometheus/client_golang/prometheus"

// accessMetrics are the collectors of the built-in access control.
type accessMetrics struct {
	outcomes  *prometheus.CounterVec
	rejection *prometheus.CounterVec
	refreshes *prometheus.CounterVec
}

func newAccessMetrics(reg prometheus.Registerer) (*accessMetrics, error) {
	m := &accessMetrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "stella_mirror", Subsystem: "origin", Name: "auth_total",
			Help: "Authentication outcomes of export requests by product, domain (_shared for the Concelier index) and outcome " +
				"(token, bypass, anonymous, anonymous_fallback, missing, invalid, insufficient_scope, unavailable, peer_token_invalid).",
		}, []string{"product", "domain", "outcome"}),
		rejection: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "stella_mirror", Subsystem: "origin", Name: "budget_rejections_total",
			Help: "Requests answered 429 because the client's hourly budget was spent, by product, domain and budget (index or download).",
		}, []string{"product", "domain", "budget"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "stella_mirror", Subsystem: "origin", Name: "authority_key_fetches_total",
			Help: "Fetches of Authority's signing keys (discovery + JWKS) by product and result (success or failure).",
		}, []string{"product", "result"}),
	}
	for _, c := range []prometheus.Collector{m.outcomes, m.rejection, m.refreshes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *accessMetrics) auth(pa *productAccess, domain, outcome string) {
	m.outcomes.WithLabelValues(pa.name, pa.labels.label(domain), outcome).Inc()
}

func (m *accessMetrics) rejected(pa *productAccess, domain, budget string) {
	m.rejection.WithLabelValues(pa.name, pa.labels.label(domain), budget).Inc()
}

func (m *accessMetrics) refresh(product string, err error) {
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.refreshes.WithLabelValues(product, result).Inc()
}

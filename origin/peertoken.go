package origin

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/stella-ops/stella-mirror/internal/peertoken"
)

// PeerTokenHeader carries the gateway's peer token (ORIGIN__PEERTOKENFILE).
const PeerTokenHeader = peertoken.Header

// outcomePeerTokenInvalid: a bypass-network peer sent a wrong (or more
// than one) peer token: 401.
const outcomePeerTokenInvalid = "peer_token_invalid"

// Refused peer tokens are logged in a burst of peerLogBurst lines, then
// one per peerLogEvery; the next line written counts those left out.
const (
	peerLogEvery = time.Second
	peerLogBurst = 10
)

// peerAuth is the peer token check of the built-in access control: the
// tokens of ORIGIN__PEERTOKENFILE, swapped whole on a successful reload.
type peerAuth struct {
	path   string
	set    atomic.Pointer[peertoken.Set]
	logger *slog.Logger
	now    func() time.Time

	reloads *prometheus.CounterVec
	tokens  prometheus.Gauge

	logMu      sync.Mutex
	logLim     *rate.Limiter
	suppressed int64

	denial *Denial
}

// peerCheck is what a request's peer token header says.
type peerCheck int

const (
	peerAbsent  peerCheck = iota // no header: not a bypass peer
	peerValid                    // one header holding a configured token
	peerInvalid                  // a wrong token, or several headers
)

// newPeerAuth reads the token file; an invalid file is an error naming
// ORIGIN__PEERTOKENFILE, the file and the line.
func newPeerAuth(path string, logger *slog.Logger, reg prometheus.Registerer, now func() time.Time) (*peerAuth, error) {
	p := &peerAuth{path: path, logger: logger, now: now,
		logLim: rate.NewLimiter(rate.Every(peerLogEvery), peerLogBurst),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "stella_mirror", Subsystem: "origin", Name: "peer_token_reloads_total",
			Help: "Reloads of ORIGIN__PEERTOKENFILE (on change or SIGHUP) by result (success, or failure: the tokens in service stay).",
		}, []string{"result"}),
		tokens: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "stella_mirror", Subsystem: "origin", Name: "peer_tokens",
			Help: "Peer tokens accepted now (ORIGIN__PEERTOKENFILE); 2 while a rotation accepts the old and the new one.",
		}),
		denial: &Denial{Status: http.StatusUnauthorized,
			Header: http.Header{"Www-Authenticate": {`Bearer realm="` + Realm +
				`", error="invalid_token", error_description="the peer token (` + PeerTokenHeader + `) is not valid"`}},
			Code:    "invalid_peer_token",
			Message: "the peer token (" + PeerTokenHeader + ") is not valid"},
	}
	toks, err := peertoken.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyPeerTokenFile, err)
	}
	for _, c := range []prometheus.Collector{p.reloads, p.tokens} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering access metrics: %w", err)
		}
	}
	p.store(toks)
	logger.Info("peer tokens loaded", "file", path, "tokens", len(toks))
	return p, nil
}

func (p *peerAuth) store(toks []string) {
	p.set.Store(peertoken.NewSet(toks))
	p.tokens.Set(float64(len(toks)))
}

// reload re-reads the token file. An unreadable or invalid file keeps the
// tokens in service; the failure is logged, counted and returned.
func (p *peerAuth) reload() error {
	toks, err := peertoken.ReadFile(p.path)
	if err != nil {
		p.reloads.WithLabelValues("failure").Inc()
		p.logger.Error("peer token file not reloaded; the tokens in service stay", "file", p.path, "error", err.Error())
		return fmt.Errorf("%s: %w", KeyPeerTokenFile, err)
	}
	p.store(toks)
	p.reloads.WithLabelValues("success").Inc()
	p.logger.Info("peer tokens reloaded", "file", p.path, "tokens", len(toks))
	return nil
}

// check compares the request's peer token with every configured one.
func (p *peerAuth) check(h http.Header) peerCheck {
	v := h[PeerTokenHeader]
	switch len(v) {
	case 0:
		return peerAbsent
	case 1:
		if p.set.Load().Match(v[0]) {
			return peerValid
		}
	}
	return peerInvalid
}

// refused logs a refused peer token (rate-limited), never its value.
func (p *peerAuth) refused(product, peer string, values int) {
	p.logMu.Lock()
	ok := p.logLim.AllowN(p.now(), 1)
	n := p.suppressed
	if ok {
		p.suppressed = 0
	} else {
		p.suppressed++
	}
	p.logMu.Unlock()
	if !ok {
		return
	}
	reason := "wrong token"
	if values > 1 {
		reason = "several tokens"
	}
	p.logger.Warn("peer token refused", "product", product, "peer", peer, "reason", reason, "suppressed", n)
}

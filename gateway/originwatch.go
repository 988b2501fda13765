package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/gateway/cache"
)

// staleMaxKeys bounds the objects remembered as served STALE during one
// stale-serving period (each is logged once; beyond the bound they are
// counted, not logged).
const staleMaxKeys = 4096

// originWatch follows whether the origin answers, from the exchanges the
// gateway has with it (cache fills and the readiness probe through its
// RoundTrip; requests of sites without the cache through the proxy's
// upstream errors and the upstream time of their answers), and which stored objects are being served STALE. It writes one
// log line per change (rate-limited like the login lines; when the limit
// hides the line of the latest change, the current state is written once
// the limit allows, so the log's last word on each is true):
//
//   - "origin unreachable" (reason: connect, timeout, other) when an
//     exchange fails after the last one succeeded;
//   - "origin reachable again" with down_duration_s when one succeeds
//     after a failure;
//   - "serving stale" the first time an object (site, export generation,
//     path) is answered STALE;
//   - "stale serving ended" with the objects served stale and the
//     duration, when the origin is reachable again or answers a fill.
//
// Metrics: stella_mirror_gateway_origin_up (1/0),
// origin_unreachable_total{reason}, stale_objects_total{site}.
type originWatch struct {
	base   http.RoundTripper
	logger *slog.Logger
	now    func() time.Time
	gen    func() string // the cache's export generation ("" without a cache)
	lim    *logLimiter
	// after runs f once d has passed (time.AfterFunc; tests replace it):
	// the flush of a suppressed state line.
	after func(d time.Duration, f func())

	up          prometheus.Gauge
	unreachable *prometheus.CounterVec
	staleObjs   *prometheus.CounterVec

	mu         sync.Mutex
	down       bool
	downSince  time.Time
	upAt       time.Time // wall clock (time.Now, as outcome.start) of the last recovery
	stale      map[string]struct{}
	staleSince time.Time
	staleCount int64 // objects served stale in this period, beyond the map too

	// State lines (origin up/down, stale serving started/ended) the
	// limiter suppressed: the latest per topic waits in pending and is
	// written by a flush once the limiter allows, unless the log's last
	// line of that topic (written) already says the same.
	logMu   sync.Mutex
	pending map[string]stateLine
	written map[string]string
	armed   bool
}

// stateLine is a log line about a state (of a topic: "origin", "stale").
type stateLine struct {
	level slog.Level
	msg   string
	args  []any
}

func newOriginWatch(base http.RoundTripper, logger *slog.Logger, reg prometheus.Registerer, now func() time.Time) (*originWatch, error) {
	ns, sub := "stella_mirror", "gateway"
	w := &originWatch{base: base, logger: logger, now: now, lim: newLogLimiter(now), gen: func() string { return "" },
		up: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "origin_up",
			Help: "1 while the last exchange with the origin got an answer (any status), 0 after one failed (connect, timeout, other)."}),
		unreachable: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "origin_unreachable_total",
			Help: "Changes of the origin from reachable to unreachable, by reason of the first failed exchange (connect, timeout, other)."}, []string{"reason"}),
		staleObjs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "stale_objects_total",
			Help: "Objects (export generation and path) served STALE for the first time in a stale-serving period, by site."}, []string{"site"}),
		stale:   make(map[string]struct{}),
		pending: make(map[string]stateLine),
		written: make(map[string]string),
		after:   func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}
	w.up.Set(1)
	for _, c := range []prometheus.Collector{w.up, w.unreachable, w.staleObjs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// RoundTrip passes r to the origin and notes whether it answered. A
// request its own client gave up on says nothing about the origin.
func (w *originWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := w.base.RoundTrip(r)
	switch {
	case err == nil:
		w.reachable()
	case r.Context().Err() != nil && !errors.Is(r.Context().Err(), context.DeadlineExceeded):
	default:
		w.failed(err)
	}
	return res, err
}

// failReason is the kind of a failed exchange: connect, timeout or other.
func failReason(err error) string {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "connect"
	}
	return "other"
}

func (w *originWatch) failed(err error) { w.failedReason(failReason(err), err.Error()) }

// failedReason notes a failed exchange of the given kind (msg: the
// error, if known).
func (w *originWatch) failedReason(reason, msg string) {
	w.mu.Lock()
	if w.down {
		w.mu.Unlock()
		return
	}
	w.down, w.downSince = true, w.now()
	w.mu.Unlock()
	w.up.Set(0)
	w.unreachable.WithLabelValues(reason).Inc()
	w.logState("origin", slog.LevelWarn, "origin unreachable", "reason", reason, "error", msg)
}

func (w *originWatch) reachable() {
	w.mu.Lock()
	if !w.down {
		w.mu.Unlock()
		return
	}
	w.down = false
	w.upAt = time.Now()
	d := w.now().Sub(w.downSince)
	w.mu.Unlock()
	w.up.Set(1)
	w.logState("origin", slog.LevelInfo, "origin reachable again", "down_duration_s", d.Seconds())
	w.endStale("origin reachable again")
}

// served notes one answered request: a STALE answer starts or continues a
// stale-serving period; an answer filled from the origin ends one.
func (w *originWatch) served(o outcome) {
	if w == nil || o.st == nil {
		return
	}
	if o.cache == "" && o.upstream > 0 && o.status != http.StatusBadGateway && o.status != http.StatusGatewayTimeout {
		// A site without the cache: the origin's response headers
		// arrived. (With the cache, RoundTrip saw the exchange.)
		w.reachable()
	}
	switch o.cache {
	case cache.StatusStale:
	case cache.StatusMiss, cache.StatusExpired, cache.StatusRevalidated:
		if o.status < 500 {
			w.endStale("origin answered a fill")
		}
		return
	default:
		return
	}
	gen := w.gen()
	key := o.st.name + "\x00" + gen + "\x00" + o.path
	w.mu.Lock()
	if _, seen := w.stale[key]; seen {
		w.mu.Unlock()
		return
	}
	if !w.down && o.start.Before(w.upAt) {
		// Served before the origin came back, accounted after: it
		// belongs to the period that ended.
		w.mu.Unlock()
		return
	}
	if len(w.stale) == 0 && w.staleCount == 0 {
		w.staleSince = w.now()
	}
	w.staleCount++
	logIt := len(w.stale) < staleMaxKeys
	if logIt {
		w.stale[key] = struct{}{}
	}
	w.mu.Unlock()
	w.staleObjs.WithLabelValues(o.st.name).Inc()
	if !logIt {
		return
	}
	w.logState("stale", slog.LevelWarn, "serving stale", "site", o.st.name, "path", o.path, "export_id", gen)
}

func (w *originWatch) endStale(why string) {
	w.mu.Lock()
	n := w.staleCount
	if n == 0 {
		w.mu.Unlock()
		return
	}
	d := w.now().Sub(w.staleSince)
	w.stale = make(map[string]struct{})
	w.staleCount = 0
	w.mu.Unlock()
	w.logState("stale", slog.LevelInfo, "stale serving ended", "objects", n, "duration_s", d.Seconds(), "cause", why)
}

// logState writes a state line of topic if the limiter allows; else it
// keeps it as the topic's pending line and schedules a flush, so the log
// never ends on a state that is no longer true.
func (w *originWatch) logState(topic string, level slog.Level, msg string, args ...any) {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	if ok, n := w.lim.allow(); ok {
		delete(w.pending, topic)
		w.written[topic] = msg
		w.logger.Log(context.Background(), level, msg, append(args, "suppressed", n)...)
		return
	}
	w.pending[topic] = stateLine{level, msg, args}
	w.armFlush()
}

// armFlush schedules one flush (logMu held).
func (w *originWatch) armFlush() {
	if !w.armed {
		w.armed = true
		w.after(authLogEvery, w.flush)
	}
}

// flush writes each topic's pending line whose message differs from the
// topic's last written line, as the limiter allows; what it cannot write
// yet waits for the next flush.
func (w *originWatch) flush() {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	w.armed = false
	for _, topic := range []string{"origin", "stale"} {
		l, ok := w.pending[topic]
		if !ok {
			continue
		}
		if w.written[topic] == l.msg {
			delete(w.pending, topic)
			continue
		}
		allowed, n := w.lim.allow()
		if !allowed {
			w.armFlush()
			return
		}
		delete(w.pending, topic)
		w.written[topic] = l.msg
		w.logger.Log(context.Background(), l.level, l.msg, append(l.args, "suppressed", n)...)
	}
}

// Package connguard is what stands between a server and its listening
// socket: accept errors are retried with net/http's backoff instead of
// ending the server, connections beyond a total or per-address cap are
// closed as soon as they are accepted, and every accepted connection gets
// a write-progress deadline (Conn).
//
// Both server engines (internal/fastserve and net/http's http.Server)
// accept through a Listener, below TLS, so the same limits hold for
// HTTP/1.1 and HTTP/2, with and without TLS.
package connguard

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits are a Listener's caps. Zero values mean no cap (and, for
// WriteProgressTimeout, no progress deadline).
type Limits struct {
	// MaxConns caps the connections open at once through the Listener.
	MaxConns int
	// MaxConnsPerIP caps them per client address.
	MaxConnsPerIP int
	// WriteProgressTimeout is how long a write may go without the peer
	// accepting a single byte before it fails (Conn).
	WriteProgressTimeout time.Duration
}

// Metrics are the counters a Listener keeps; build them with NewMetrics.
// A nil *Metrics counts nothing.
type Metrics struct {
	AcceptErrors  prometheus.Counter
	Rejected      *prometheus.CounterVec // label reason: max_conns, max_conns_per_ip
	WriteTimeouts *prometheus.CounterVec // label scope: connection, stream
	Open          prometheus.Gauge
	// StreamsRefused counts HTTP/2 streams answered 503 at once because
	// the caps were reached (Guard.Streams); label reason as Rejected.
	StreamsRefused *prometheus.CounterVec
}

// NewMetrics registers the connection metrics under namespace_subsystem_
// with reg (nil: the metrics are kept but not registered).
func NewMetrics(reg prometheus.Registerer, namespace, subsystem string) (*Metrics, error) {
	m := &Metrics{
		AcceptErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "accept_errors_total",
			Help: "Errors accepting a connection (e.g. EMFILE: out of file descriptors); the listener backs off (5 ms doubling to 1 s) and retries."}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "connections_rejected_total",
			Help: "Connections closed as soon as accepted, by reason (max_conns: the total cap; max_conns_per_ip: the cap per client address)."}, []string{"reason"}),
		WriteTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "write_timeouts_total",
			Help: "Connections (scope connection) and HTTP/2 streams (scope stream) ended because the client accepted no byte within the write-progress timeout."}, []string{"scope"}),
		Open: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: "connections_open",
			Help: "Client connections open (accepted and not yet closed)."}),
		StreamsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: "streams_refused_total",
			Help: "HTTP/2 requests answered 503 without a body because the connection caps were reached: a stream in flight takes a place under them like a connection (reason max_conns or max_conns_per_ip)."}, []string{"reason"}),
	}
	for _, r := range []string{"max_conns", "max_conns_per_ip"} {
		m.Rejected.WithLabelValues(r)
		m.StreamsRefused.WithLabelValues(r)
	}
	for _, p := range []string{"connection", "stream"} {
		m.WriteTimeouts.WithLabelValues(p)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.AcceptErrors, m.Rejected, m.WriteTimeouts, m.Open, m.StreamsRefused} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// WriteTimeout counts one write-progress timeout of scope (connection,
// stream).
func (m *Metrics) WriteTimeout(scope string) {
	if m != nil {
		m.WriteTimeouts.WithLabelValues(scope).Inc()
	}
}

// Backoff bounds of Accept's retries: net/http's.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// logEvery is the least time between two log lines of the same kind.
const logEvery = 10 * time.Second

// Guard holds the caps and counters shared by the listeners it guards
// (Listen): MaxConns counts the connections of all of them. Create it
// with New.
type Guard struct {
	limits  Limits
	logger  *slog.Logger
	metrics *Metrics

	open  atomic.Int64
	mu    sync.Mutex
	perIP map[netip.Addr]int

	lastAcceptLog, lastRejectLog, lastStreamLog atomic.Int64 // unix nanoseconds
}

// New returns a Guard with limits; logger and metrics may be nil.
func New(limits Limits, logger *slog.Logger, metrics *Metrics) *Guard {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{limits: limits, logger: logger, metrics: metrics, perIP: make(map[netip.Addr]int)}
}

// Metrics is g's metrics (nil if none).
func (g *Guard) Metrics() *Metrics { return g.metrics }

// Limits is g's limits.
func (g *Guard) Limits() Limits { return g.limits }

// Open is the number of places taken under g's caps: connections accepted
// through g's listeners and not yet closed, and HTTP/2 streams in flight
// (Streams).
func (g *Guard) Open() int { return int(g.open.Load()) }

// Listen returns ln guarded by g; name labels its log lines.
func (g *Guard) Listen(ln net.Listener, name string) *Listener {
	return &Listener{Listener: ln, g: g, name: name, done: make(chan struct{})}
}

// Listener is a net.Listener guarded by a Guard.
type Listener struct {
	net.Listener
	g    *Guard
	name string

	done      chan struct{}
	closeOnce sync.Once
}

// NewListener returns ln guarded by a Guard of its own.
func NewListener(ln net.Listener, name string, limits Limits, logger *slog.Logger, metrics *Metrics) *Listener {
	return New(limits, logger, metrics).Listen(ln, name)
}

// Accept returns the next connection within the caps, as a *Conn. It
// returns an error only once the listener is closed (net.ErrClosed); any
// other accept error (EMFILE, ENFILE, ECONNABORTED, …) is counted, logged
// at most every 10 s, and retried after a pause of 5 ms doubling to 1 s,
// as net/http's server does for temporary errors.
func (l *Listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.done:
				return nil, net.ErrClosed
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			if l.g.metrics != nil {
				l.g.metrics.AcceptErrors.Inc()
			}
			if delay == 0 {
				delay = minBackoff
			} else {
				delay = min(2*delay, maxBackoff)
			}
			if due(&l.g.lastAcceptLog) {
				l.g.logger.Error("accept failed; retrying", "endpoint", l.name, "error", err.Error(), "retry_in", delay.String(),
					"emfile", errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE))
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.done:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		if gc, ok := l.g.admit(c, l.name); ok {
			return gc, nil
		}
	}
}

// admit wraps c, or closes it when a cap is reached.
func (l *Guard) admit(c net.Conn, name string) (*Conn, bool) {
	var ip netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap()
	}
	if reason := l.take(ip); reason != "" {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // nothing to say: a reset frees the socket at once
		}
		c.Close()
		if l.metrics != nil {
			l.metrics.Rejected.WithLabelValues(reason).Inc()
		}
		if due(&l.lastRejectLog) {
			l.logger.Warn("connection refused: limit reached (further refusals counted in connections_rejected_total, logged every 10s)",
				"endpoint", name, "reason", reason, "client", ip.String(),
				"max_conns", l.limits.MaxConns, "max_conns_per_ip", l.limits.MaxConnsPerIP)
		}
		return nil, false
	}
	if l.metrics != nil {
		l.metrics.Open.Inc()
	}
	return newConn(c, l, ip), true
}

// take takes a place for ip under the caps, or returns the cap that is
// reached (max_conns, max_conns_per_ip) and takes nothing.
func (l *Guard) take(ip netip.Addr) (reason string) {
	if n := l.open.Add(1); l.limits.MaxConns > 0 && n > int64(l.limits.MaxConns) {
		reason = "max_conns"
	} else if l.limits.MaxConnsPerIP > 0 {
		l.mu.Lock()
		if l.perIP[ip] >= l.limits.MaxConnsPerIP {
			reason = "max_conns_per_ip"
		} else {
			l.perIP[ip]++
		}
		l.mu.Unlock()
	}
	if reason != "" {
		l.open.Add(-1)
	}
	return reason
}

// give gives back a place take took.
func (l *Guard) give(ip netip.Addr) {
	l.open.Add(-1)
	if l.limits.MaxConnsPerIP > 0 {
		l.mu.Lock()
		if n := l.perIP[ip] - 1; n > 0 {
			l.perIP[ip] = n
		} else {
			delete(l.perIP, ip)
		}
		l.mu.Unlock()
	}
}

// release gives back c's place.
func (l *Guard) release(ip netip.Addr) {
	if l.metrics != nil {
		l.metrics.Open.Dec()
	}
	l.give(ip)
}

// Streams wraps h so that every HTTP/2 request in flight takes a place
// under g's caps (MaxConns, MaxConnsPerIP) as a connection does, for as
// long as its handler runs. An HTTP/1.1 connection carries one request at
// a time, so its place covers what the request holds (an upstream
// connection, an open cache file); an HTTP/2 connection carries up to
// MaxConcurrentStreams at once, and without this one connection per
// address could hold 128 such descriptors, and the per-address cap
// 256 × 128 — far past RLIMIT_NOFILE. A stream beyond the caps is answered
// 503 with Retry-After and no body (a HEADERS frame, which no
// flow-control window holds back), counted in streams_refused_total and
// logged at most every 10 s. HTTP/1.x requests pass through unchanged.
func (g *Guard) Streams(h http.Handler) http.Handler {
	if g.limits.MaxConns <= 0 && g.limits.MaxConnsPerIP <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			h.ServeHTTP(w, r)
			return
		}
		var ip netip.Addr
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			ip = ap.Addr().Unmap()
		}
		if reason := g.take(ip); reason != "" {
			if g.metrics != nil {
				g.metrics.StreamsRefused.WithLabelValues(reason).Inc()
			}
			if due(&g.lastStreamLog) {
				g.logger.Warn("HTTP/2 stream refused: limit reached (further refusals counted in streams_refused_total, logged every 10s)",
					"reason", reason, "client", ip.String(),
					"max_conns", g.limits.MaxConns, "max_conns_per_ip", g.limits.MaxConnsPerIP)
			}
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Length", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		defer g.give(ip)
		h.ServeHTTP(w, r)
	})
}

// due reports whether a rate-limited log line may be written now.
func due(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(logEvery) && last.CompareAndSwap(prev, now)
}

// Close closes the listener; a waiting Accept returns net.ErrClosed.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

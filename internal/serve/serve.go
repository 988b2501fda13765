// Package serve starts and stops HTTP servers one way for every component:
// timeouts on every phase, listeners bound before serving (so callers learn
// the real address of ":0"), connections accepted through a
// connguard.Guard (accept errors retried with backoff, caps on
// connections, a write-progress deadline on every connection and HTTP/2
// stream), the engine chosen by Limits.Engine, and a graceful Shutdown
// with a deadline when the context ends. A server that stops without
// being asked to is an error (Group.Err), never a clean exit.
//
// It is not a router or middleware collection; handlers come from the
// component packages.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/internal/connguard"
	"github.com/stella-ops/stella-mirror/internal/fastserve"
)

// Timeouts applied to every server built by New. Header reads are short so
// slow-loris clients cannot hold connections; WriteTimeout is zero because
// large bundles stream for as long as the client keeps reading (the
// write-progress deadline bounds stalled clients instead).
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	IdleTimeout       = 120 * time.Second
	// ShutdownTimeout is how long in-flight requests get to finish.
	ShutdownTimeout = 15 * time.Second
	// MaxHeaderBytes bounds request headers.
	MaxHeaderBytes = 64 << 10
)

// Defaults of Limits.
const (
	DefaultWriteProgressTimeout = 30 * time.Second
	DefaultMaxConnsPerIP        = 256
	DefaultMaxConcurrentStreams = 128
	// fdHeadroom is what DefaultMaxConns leaves of RLIMIT_NOFILE besides
	// one descriptor per connection for its upstream or file.
	fdHeadroom = 64
)

// Engines.
const (
	// EngineFast serves HTTP/1.1 on fastserve (fasthttp, with the Native
	// hooks) and HTTP/2 on net/http's HTTP/2 server.
	EngineFast = "fast"
	// EngineStd serves everything on net/http's http.Server alone.
	EngineStd = "std"
)

// Limits configure every server Start builds. Zero values take the
// defaults beside them.
type Limits struct {
	// Engine is EngineFast or EngineStd. Default: fast.
	Engine string
	// ReadHeaderTimeout bounds the TLS handshake and reading a request's
	// headers. Default: ReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Default: IdleTimeout.
	IdleTimeout time.Duration
	// WriteProgressTimeout: a connection (or HTTP/2 stream) whose client
	// accepts no byte for this long is closed (reset); an HTTP/1.x
	// connection must take connguard.MinProgress bytes per period.
	// Default: 30s.
	WriteProgressTimeout time.Duration
	// MaxConns caps the connections open at once over all endpoints.
	// Default: DefaultMaxConns(); negative: no cap.
	MaxConns int
	// MaxConnsPerIP caps them per client address, at most half of
	// MaxConns (a larger value is lowered to that). Default: 256;
	// negative: no cap.
	MaxConnsPerIP int
	// MaxConcurrentStreams caps the concurrent streams of an HTTP/2
	// connection. Default: 128.
	MaxConcurrentStreams int
}

// DefaultMaxConns is the connection cap below the process's open-file
// limit (RLIMIT_NOFILE, soft): half of what is left after 64 descriptors
// for files and listeners, since a connection may hold a second one (an
// upstream connection or a cache file) — so accept never meets EMFILE in
// steady state. At least 16.
func DefaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || rl.Cur > 1<<24 {
		return 1 << 14
	}
	return max(16, (int(rl.Cur)-fdHeadroom)/2)
}

// withDefaults fills in l's zero values.
func (l Limits) withDefaults() Limits {
	if l.Engine == "" {
		l.Engine = EngineFast
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = ReadHeaderTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = IdleTimeout
	}
	if l.WriteProgressTimeout <= 0 {
		l.WriteProgressTimeout = DefaultWriteProgressTimeout
	}
	switch {
	case l.MaxConns == 0:
		l.MaxConns = DefaultMaxConns()
	case l.MaxConns < 0:
		l.MaxConns = 0
	}
	switch {
	case l.MaxConnsPerIP == 0:
		l.MaxConnsPerIP = DefaultMaxConnsPerIP
	case l.MaxConnsPerIP < 0:
		l.MaxConnsPerIP = 0
	}
	// One address never takes more than half the places: a per-address
	// cap at or above the total would let a single client lock every
	// other one out (with 256 descriptors the total is 96, under the
	// default per-address cap of 256).
	if l.MaxConns > 0 && l.MaxConnsPerIP > l.MaxConns/2 {
		l.MaxConnsPerIP = max(1, l.MaxConns/2)
	}
	if l.MaxConcurrentStreams <= 0 {
		l.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	return l
}

// Endpoint is one listener and the handler it serves.
type Endpoint struct {
	// Name appears in log lines, e.g. "origin" or "admin".
	Name string
	// Listener is already bound (see Listen).
	Listener net.Listener
	// Handler serves the requests.
	Handler http.Handler
	// Fast serves HTTP/1.1 on fastserve's engine instead of net/http's
	// (public listeners with many small responses) when the engine is
	// EngineFast; admin and health listeners leave it false.
	Fast bool
	// Native, for a Fast endpoint on EngineFast, is offered each HTTP/1.1
	// request first (fastserve.Config.Native).
	Native func(*fasthttp.RequestCtx) bool
	// TLS, if set, terminates TLS on the listener (HTTP/1.1 and HTTP/2).
	TLS *tls.Config
	// Private marks an admin or health listener (loopback or a private
	// network): its connections are not counted against the caps, so
	// that clients of the public listeners cannot lock the operator out.
	Private bool
	// Ready marks an endpoint whose Handler serves ReadyPath: while the
	// group drains (Group.Drain) that path answers 503 before Handler
	// sees it.
	Ready bool
}

// Options are what Start takes besides the endpoints.
type Options struct {
	// Logger receives the servers' logs. Default: discard.
	Logger *slog.Logger
	// Limits apply to every endpoint.
	Limits Limits
	// Registerer receives the connection metrics
	// (<namespace>_<subsystem>_accept_errors_total,
	// …_connections_rejected_total, …_write_timeouts_total,
	// …_connections_open). Default: none.
	Registerer prometheus.Registerer
	// Namespace and Subsystem name the metrics, e.g. "stella_mirror" and
	// "gateway".
	Namespace, Subsystem string
	// ShutdownTimeout is how long Run gives in-flight requests. Default:
	// ShutdownTimeout.
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long RunWith keeps serving, draining
	// (Group.Drain), after ctx ends and before its Shutdown. Default: 0
	// (shut down at once).
	ShutdownDelay time.Duration
}

// Server is what Start runs: an *http.Server or a *fastserve.Server.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// Group is the servers of one Start.
type Group struct {
	logger   *slog.Logger
	guard    *connguard.Guard
	names    []string
	servers  []Server
	errc     chan error
	stopping atomic.Bool
	draining atomic.Bool
}

// Start builds a server for every endpoint, as Options.Limits say, and
// serves them on goroutines of their own. The connection caps are shared
// by all the endpoints.
func Start(o Options, endpoints ...Endpoint) (*Group, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	lim := o.Limits.withDefaults()
	if lim.Engine != EngineFast && lim.Engine != EngineStd {
		return nil, fmt.Errorf("unknown server engine %q (want %s or %s)", lim.Engine, EngineFast, EngineStd)
	}
	var m *connguard.Metrics
	if o.Registerer != nil {
		var err error
		if m, err = connguard.NewMetrics(o.Registerer, o.Namespace, o.Subsystem); err != nil {
			return nil, fmt.Errorf("registering connection metrics: %w", err)
		}
	}
	guard := connguard.New(connguard.Limits{MaxConns: lim.MaxConns, MaxConnsPerIP: lim.MaxConnsPerIP,
		WriteProgressTimeout: lim.WriteProgressTimeout}, o.Logger, m)
	private := connguard.New(connguard.Limits{WriteProgressTimeout: lim.WriteProgressTimeout}, o.Logger, m)
	g := &Group{logger: o.Logger, guard: guard, errc: make(chan error, len(endpoints))}
	for _, ep := range endpoints {
		epGuard := guard
		if ep.Private {
			epGuard = private
		}
		gl := epGuard.Listen(ep.Listener, ep.Name)
		ep.Handler = g.drainHandler(ep.Handler, ep.Ready)
		srv, serveFn := build(ep, lim, o.Logger, epGuard, g.draining.Load)
		g.names = append(g.names, ep.Name)
		g.servers = append(g.servers, srv)
		o.Logger.Info("listening", "endpoint", ep.Name, "addr", ep.Listener.Addr().String(), "engine", engineOf(ep, lim))
		go func() {
			err := serveFn(gl)
			if g.stopping.Load() {
				return
			}
			if err == nil || errors.Is(err, http.ErrServerClosed) {
				err = errors.New("stopped without being asked to")
			}
			err = fmt.Errorf("%s server on %s: %w", ep.Name, ep.Listener.Addr(), err)
			o.Logger.Error("server stopped", "endpoint", ep.Name, "error", err.Error())
			g.errc <- err
		}()
	}
	return g, nil
}

func engineOf(ep Endpoint, lim Limits) string {
	if ep.Fast && lim.Engine == EngineFast {
		return EngineFast
	}
	return EngineStd
}

// build returns ep's server and the call that serves it on a listener.
// closeConns reports whether HTTP/1.1 responses must close their
// connection (the group drains); fastserve asks it after a Native hook
// answered, which the handler wrapper never sees.
func build(ep Endpoint, lim Limits, logger *slog.Logger, guard *connguard.Guard, closeConns func() bool) (Server, func(net.Listener) error) {
	hs := newHTTPServer(ep.Handler, logger, lim, guard)
	if engineOf(ep, lim) == EngineFast {
		fs := fastserve.New(fastserve.Config{
			Handler:              ep.Handler,
			Native:               ep.Native,
			Logger:               logger,
			TLS:                  ep.TLS,
			ReadHeaderTimeout:    lim.ReadHeaderTimeout,
			IdleTimeout:          lim.IdleTimeout,
			MaxHeaderBytes:       hs.MaxHeaderBytes,
			WriteProgressTimeout: lim.WriteProgressTimeout,
			HTTP2:                hs,
			CloseConnections:     closeConns,
		})
		return fs, fs.Serve
	}
	if ep.TLS == nil {
		return hs, hs.Serve
	}
	hs.TLSConfig = ep.TLS
	return hs, func(ln net.Listener) error { return hs.ServeTLS(ln, "", "") }
}

// newHTTPServer is the http.Server both engines use for HTTP/2 (and the
// std engine for everything): the package's timeouts, lim's, and each
// HTTP/2 stream under connguard.StreamDeadline and taking a place under
// guard's caps while it runs (Guard.Streams).
func newHTTPServer(h http.Handler, logger *slog.Logger, lim Limits, guard *connguard.Guard) *http.Server {
	hs := NewServer(guard.Streams(connguard.StreamDeadline(h, lim.WriteProgressTimeout, guard.Metrics())), logger)
	hs.ReadHeaderTimeout = lim.ReadHeaderTimeout
	hs.IdleTimeout = lim.IdleTimeout
	hs.HTTP2 = &http.HTTP2Config{
		MaxConcurrentStreams:      lim.MaxConcurrentStreams,
		MaxReadFrameSize:          16 << 10, // the protocol's default: one frame buffer per connection
		MaxDecoderHeaderTableSize: 4 << 10,
		MaxEncoderHeaderTableSize: 4 << 10,
		// A connection whose client accepts nothing for this long is
		// closed; a stream stalled on its own window is reset by
		// StreamDeadline.
		WriteByteTimeout: lim.WriteProgressTimeout,
		// A connection that sends nothing for this long is pinged, and
		// closed when the ping is not answered in time.
		SendPingTimeout: lim.WriteProgressTimeout,
		PingTimeout:     lim.WriteProgressTimeout,
	}
	return hs
}

// Err receives an error for every server that stopped without Shutdown
// (it never receives after Shutdown began).
func (g *Group) Err() <-chan error { return g.errc }

// Guard is the connection guard of the group's public listeners.
func (g *Group) Guard() *connguard.Guard { return g.guard }

// Shutdown stops every server gracefully: in-flight requests get until
// ctx ends, then the servers are closed.
func (g *Group) Shutdown(ctx context.Context) error {
	g.stopping.Store(true)
	var errs []error
	for i, srv := range g.servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutting down %s: %w", g.names[i], err))
			srv.Close()
		}
	}
	return errors.Join(errs...)
}

// NewFast returns a fastserve.Server with the package's timeouts; with
// tlsCfg it terminates TLS itself and serves HTTP/2 as well.
func NewFast(h http.Handler, logger *slog.Logger, tlsCfg *tls.Config) *fastserve.Server {
	return FastFrom(NewServer(h, logger), logger, tlsCfg, nil)
}

// FastFrom returns a fastserve.Server with hs's handler and limits
// (ReadHeaderTimeout, IdleTimeout, MaxHeaderBytes); hs serves its HTTP/2
// connections. native, if not nil, is offered HTTP/1.1 requests first
// (fastserve.Config.Native). Start builds its servers itself; this is for
// tests that need one server.
func FastFrom(hs *http.Server, logger *slog.Logger, tlsCfg *tls.Config, native func(*fasthttp.RequestCtx) bool) *fastserve.Server {
	return fastserve.New(fastserve.Config{
		Handler:              hs.Handler,
		Native:               native,
		Logger:               logger,
		TLS:                  tlsCfg,
		ReadHeaderTimeout:    hs.ReadHeaderTimeout,
		IdleTimeout:          hs.IdleTimeout,
		MaxHeaderBytes:       hs.MaxHeaderBytes,
		WriteProgressTimeout: DefaultWriteProgressTimeout,
		HTTP2:                hs,
	})
}

// Listen binds a TCP listener on addr, naming addr in the error.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	return ln, nil
}

// NewServer returns an http.Server with the package's timeouts and an error
// log routed to logger.
func NewServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Run serves every endpoint with the default Limits but no cap per client
// address (an origin's clients are a few gateways, each with many
// connections) until ctx is done or one of them stops, then shuts all of
// them down gracefully (ShutdownTimeout) and returns why it stopped: nil
// after ctx ended and a clean shutdown. RunWith with
// Options.ShutdownDelay drains first (Group.Drain).
func Run(ctx context.Context, logger *slog.Logger, endpoints ...Endpoint) error {
	return RunWith(ctx, Options{Logger: logger, Limits: Limits{MaxConnsPerIP: -1}}, endpoints...)
}

// RunWith is Run with Options.
func RunWith(ctx context.Context, o Options, endpoints ...Endpoint) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	g, err := Start(o, endpoints...)
	if err != nil {
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
		runErr = g.Drain(o.ShutdownDelay)
	case runErr = <-g.Err():
	}
	timeout := o.ShutdownTimeout
	if timeout <= 0 {
		timeout = ShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = g.Shutdown(sctx)
	o.Logger.Info("stopped")
	return errors.Join(runErr, err)
}

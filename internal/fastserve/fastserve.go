// Package fastserve serves an http.Handler's HTTP/1.1 traffic on fasthttp's
// connection engine, and hands TLS connections that negotiated HTTP/2 to
// net/http's own HTTP/2 server (h2.go), so one handler serves both.
//
// Why: net/http's HTTP/1.1 server starts a background read on the
// connection for every request (a goroutine, a read that returns EAGAIN,
// three deadline changes and a wake-up to abort it), which costs small
// responses (index.json, a memory-tier cache hit, a proxied manifest) a
// third of their throughput against nginx. fasthttp reads, parses and
// writes on one goroutine per connection. The handlers stay net/http
// handlers: each request is converted (url.ParseRequestURI, canonical
// header keys, the same Host and header validation as net/http) and runs on
// its own goroutine; a response that fits in memory is handed back whole,
// a larger or flushed one streams through a pipe, and a file copied with
// io.Copy keeps sendfile.
//
// Connections are accepted through a connguard.Listener (Serve wraps any
// other listener in one): accept errors are retried with backoff, and
// every write has a write-progress deadline (connguard.Conn), under TLS
// too.
//
// What differs from net/http, by design: a request's context is cancelled
// when a write to the client fails, or, while no answer has started, when
// the connection is seen closed (watched after 20 ms, not from the first
// moment); pipelined requests are answered in order without a background
// read; an HTTP/1.0 request is answered with an
// HTTP/1.1 status line, and "Expect: 100-continue" gets its 100 even when
// no body follows; there is no Server header; and some requests net/http
// would serve are refused, the safe way: both Content-Length and
// Transfer-Encoding (400), a repeated Content-Length, a chunked body on
// HTTP/1.0, malformed chunks, trailers naming framing or credential
// headers, "GET *". differential_test.go sends the same 142 raw requests to
// both servers and checks every other aspect matches: what the handler
// sees (path, host, headers in order, body, trailers) and what the client
// gets (status, headers, framing, body, connection reuse).
package fastserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/stella-ops/stella-mirror/internal/connguard"
	"github.com/valyala/fasthttp"
)

// Config is what a Server needs. Zero durations mean no limit.
type Config struct {
	// Handler serves every request. Required.
	Handler http.Handler
	// Logger receives connection-level errors at debug level and handler
	// panics at error level. Default: discard.
	Logger *slog.Logger
	// TLS, if set, makes Serve terminate TLS on the raw listener it is
	// given: connections that negotiate "h2" are served by HTTP2, the rest
	// with fasthttp.
	TLS *tls.Config
	// ReadHeaderTimeout bounds the TLS handshake and reading one request.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header block (larger: 431).
	// Default: 64 KiB.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request body (larger: 413). Default: 1 MiB.
	MaxBodyBytes int
	// HTTP2 serves the TLS connections that negotiated "h2" (its Handler
	// serves their requests, its HTTP2, IdleTimeout and MaxHeaderBytes
	// bound them); handlers of HTTP/1.1 requests find it under
	// http.ServerContextKey in their request's context, as under net/http.
	// Default: an http.Server with Handler and the timeouts above.
	HTTP2 *http.Server
	// WriteProgressTimeout is the connguard.Limits.WriteProgressTimeout of
	// a listener that Serve wraps itself (a connguard.Listener keeps its
	// own).
	WriteProgressTimeout time.Duration
	// Native, if set, is offered every HTTP/1.1 request first, on the
	// connection's goroutine: it answers in fc and returns true, or
	// returns false without having touched fc, and Handler serves the
	// request as usual. It is for a hot path that must not pay for
	// net/http's types; Plain tells it which requests are simple enough
	// to take.
	Native func(fc *fasthttp.RequestCtx) bool
	// CloseConnections, if set, is asked after each HTTP/1.1 response
	// (Native's or Handler's) is set: true adds "Connection: close" to it
	// and closes the connection after it (a server draining before its
	// shutdown). Default: nil (keep-alive as the client asks).
	CloseConnections func() bool
}

// Defaults of Config.
const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxBodyBytes   = 1 << 20
)

// Server is an HTTP/1.1 (and, with TLS, HTTP/2) server. Create it with New.
type Server struct {
	cfg    Config
	logger *slog.Logger
	fast   *fasthttp.Server
	h2     *http.Server // serves the "h2" connections
	base   context.Context
	stop   context.CancelFunc
	jobs   chan job // idle workers receive here
	// reqBase is the parent of every request's context: not derived from
	// base (every request would register with one parent under its lock;
	// like net/http, Shutdown does not cancel requests, it waits for them).
	reqBase context.Context

	mu        sync.Mutex
	listeners []net.Listener
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s := &Server{cfg: cfg, logger: cfg.Logger, jobs: make(chan job)}
	// Handlers find http.ServerContextKey in their requests' context, as
	// under net/http: httputil.ReverseProxy relies on it to abort a
	// response whose upstream body failed (panic(http.ErrAbortHandler))
	// instead of ending it as if it were complete.
	hs := cfg.HTTP2
	if hs == nil {
		hs = &http.Server{Handler: cfg.Handler, ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			IdleTimeout: cfg.IdleTimeout, MaxHeaderBytes: cfg.MaxHeaderBytes,
			ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)}
	}
	s.h2 = hs
	s.reqBase = context.WithValue(context.Background(), http.ServerContextKey, hs)
	s.base, s.stop = context.WithCancel(context.Background())
	s.fast = &fasthttp.Server{
		Handler:      s.serve,
		ErrorHandler: s.parseError,
		Logger:       fastLogger{cfg.Logger},
		// The read buffer bounds the request line and headers: a request
		// whose header block does not fit gets 431 (see parseError).
		ReadBufferSize:               cfg.MaxHeaderBytes + 1024,
		ReadTimeout:                  cfg.ReadHeaderTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		MaxRequestBodySize:           cfg.MaxBodyBytes,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true, // see date.go
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
	}
	return s
}

// Serve accepts connections on ln until Shutdown or Close; with Config.TLS
// ln is a plain TCP listener and Serve does the handshakes. ln is used as
// a connguard.Listener (wrapped in one unless it is one): it never fails
// by itself. Serve returns http.ErrServerClosed after Shutdown or Close,
// and an error if it stopped for any other reason.
func (s *Server) Serve(ln net.Listener) error {
	gl, ok := ln.(*connguard.Listener)
	if !ok {
		gl = connguard.NewListener(ln, "fastserve", connguard.Limits{WriteProgressTimeout: s.cfg.WriteProgressTimeout}, s.logger, nil)
	}
	s.mu.Lock()
	if s.base.Err() != nil {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners = append(s.listeners, gl)
	s.mu.Unlock()
	if s.cfg.TLS == nil {
		return s.closedErr(s.fast.Serve(gl))
	}
	h1 := newConnListener(gl)
	h2 := newH2Listener(gl.Addr())
	s.mu.Lock()
	s.listeners = append(s.listeners, h1, h2)
	s.mu.Unlock()
	go s.serveH2(h2)
	accepted := make(chan error, 1)
	go func() { accepted <- s.acceptTLS(gl, h1, h2) }()
	err := s.closedErr(s.fast.Serve(h1))
	if aerr := <-accepted; err == http.ErrServerClosed && aerr != nil {
		err = aerr
	}
	return err
}

// closedErr is http.ErrServerClosed when the server was stopped, err
// otherwise (an error of its own when fasthttp returned without one).
func (s *Server) closedErr(err error) error {
	if s.base.Err() != nil {
		return http.ErrServerClosed
	}
	if err == nil || errors.Is(err, net.ErrClosed) {
		return errors.New("fastserve: the listener closed while the server was not stopped")
	}
	return err
}

// acceptTLS accepts raw connections, shakes hands on a goroutine each, and
// routes them by the negotiated protocol. It returns when ln is closed:
// nil after Shutdown or Close, an error otherwise.
func (s *Server) acceptTLS(ln net.Listener, h1 *connListener, h2 *h2Listener) error {
	defer h1.Close()
	defer h2.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.base.Err() != nil {
				return nil
			}
			return fmt.Errorf("accepting TLS connections: %w", err)
		}
		go s.handshake(c, h1, h2)
	}
}

func (s *Server) handshake(raw net.Conn, h1 *connListener, h2 *h2Listener) {
	tc := tls.Server(raw, s.cfg.TLS)
	if d := s.cfg.ReadHeaderTimeout; d > 0 {
		tc.SetDeadline(time.Now().Add(d))
	}
	if err := tc.HandshakeContext(s.base); err != nil {
		s.logger.Debug("TLS handshake failed", "remote", raw.RemoteAddr().String(), "error", err.Error())
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		if !h2.deliver(tc) {
			tc.Close()
		}
		return
	}
	if !h1.deliver(&tlsConn{Conn: tc, state: tc.ConnectionState()}) {
		tc.Close()
	}
}

// tlsConn gives a TLS connection the io.ReaderFrom a TCP connection has, so
// that a streamed body reaches the client write by write: fasthttp's
// buffered writer, once empty (the headers are flushed first), hands the
// whole copy to ReadFrom, which writes each piece as the handler produces
// it (what http.Flusher promises) instead of holding it in a 4 KiB buffer.
//
// It also keeps the connection state, which every request on the
// connection shares (as net/http does).
type tlsConn struct {
	*tls.Conn
	state tls.ConnectionState
}

func (c *tlsConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if s, ok := lr.R.(*stream); ok {
			n, err := s.writeTo(c.Conn, lr.N)
			lr.N -= n
			return n, err
		}
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	return io.CopyBuffer(c.Conn, r, *bp) // *tls.Conn has no ReadFrom: no recursion
}

// 16 KiB: one TLS record per write, and half the memory of net/http's
// 32 KiB copy buffers for each of a thousand concurrent downloads.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends
// and closes idle connections, like http.Server.Shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	s.stop() // from here on a closed listener is no error
	// net/http sends GOAWAY on every HTTP/2 connection and waits for
	// their streams.
	if err := s.h2.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	// fasthttp closes the listeners it serves (for TLS, the connection
	// listener closes the raw one), then waits for in-flight requests.
	if err := s.fast.ShutdownWithContext(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
		errs = append(errs, err)
	}
	s.closeListeners()
	return errors.Join(errs...)
}

// Close stops accepting and ends every handshake; connections still
// serving are left to finish their current response.
func (s *Server) Close() error {
	s.stop()
	s.closeListeners()
	return s.h2.Close()
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		ln.Close()
	}
}

// parseError answers requests fasthttp could not read.
func (s *Server) parseError(ctx *fasthttp.RequestCtx, err error) {
	status := http.StatusBadRequest
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		status = http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status = http.StatusRequestEntityTooLarge
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			status = http.StatusRequestTimeout
		}
	}
	s.logger.Debug("unreadable request", "remote", ctx.RemoteAddr().String(), "status", status, "error", err.Error())
	plainError(ctx, status)
	setDate(ctx)
}

// plainError writes net/http's style of bare error answer and closes the
// connection.
func plainError(ctx *fasthttp.RequestCtx, status int) {
	ctx.Response.Reset()
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(fmt.Sprintf("%d %s", status, http.StatusText(status)))
	ctx.SetConnectionClose()
}

// fastLogger routes fasthttp's own messages to the debug level.
type fastLogger struct{ l *slog.Logger }

func (f fastLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...), "component", "http1")
}

// connListener is a net.Listener fed with connections that are already
// accepted (and shaken hands with) from raw.
type connListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	raw   net.Listener // closed with this listener
}

func newConnListener(raw net.Listener) *connListener {
	return &connListener{conns: make(chan net.Conn), done: make(chan struct{}), raw: raw}
}

// deliver hands c to Accept; false when the listener is closed.
func (l *connListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.raw.Close()
	})
	return nil
}

func (l *connListener) Addr() net.Addr { return l.raw.Addr() }

// Package serve starts and stops HTTP servers one way for every component:
// timeouts on every phase, listeners bound before serving (so callers learn
// the real address of ":0"), and a graceful Shutdown with a deadline when the
// context ends.
//
// It is not a router or middleware collection; handlers come from the
// component packages.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/valyala/fasthttp"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/stella-ops/stella-mirror/internal/fastserve"
)

// Timeouts applied to every server built by New. Header reads are short so
// slow-loris clients cannot hold connections; WriteTimeout is zero because
// large bundles stream for as long as the client keeps reading (the per-write
// deadline below bounds stalled clients instead).
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	IdleTimeout       = 120 * time.Second
	// ShutdownTimeout is how long in-flight requests get to finish.
	ShutdownTimeout = 15 * time.Second
	// MaxHeaderBytes bounds request headers.
	MaxHeaderBytes = 64 << 10
)

// Endpoint is one listener and the handler it serves.
type Endpoint struct {
	// Name appears in log lines, e.g. "origin" or "admin".
	Name string
	// Listener is already bound (see Listen).
	Listener net.Listener
	// Handler serves the requests.
	Handler http.Handler
	// Fast serves HTTP/1.1 on fastserve's engine instead of net/http's
	// (public listeners with many small responses); admin and health
	// listeners leave it false.
	Fast bool
	// Native, for a Fast endpoint, is offered each HTTP/1.1 request first
	// (fastserve.Config.Native).
	Native func(*fasthttp.RequestCtx) bool
}

// Server is what Run starts: an *http.Server or a *fastserve.Server.
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// NewFast returns a fastserve.Server with the package's timeouts; with
// tlsCfg it terminates TLS itself and serves HTTP/2 as well.
func NewFast(h http.Handler, logger *slog.Logger, tlsCfg *tls.Config) *fastserve.Server {
	return FastFrom(NewServer(h, logger), logger, tlsCfg, nil)
}

// FastFrom returns a fastserve.Server with hs's handler and limits
// (ReadHeaderTimeout, IdleTimeout, MaxHeaderBytes), so a component that
// changed them on hs gets the same on both engines; hs configures the
// HTTP/2 server (and is given to fastserve for that: it never serves).
// native, if not nil, is offered HTTP/1.1 requests first
// (fastserve.Config.Native).
func FastFrom(hs *http.Server, logger *slog.Logger, tlsCfg *tls.Config, native func(*fasthttp.RequestCtx) bool) *fastserve.Server {
	return fastserve.New(fastserve.Config{
		Handler:           hs.Handler,
		Native:            native,
		Logger:            logger,
		TLS:               tlsCfg,
		ReadHeaderTimeout: hs.ReadHeaderTimeout,
		IdleTimeout:       hs.IdleTimeout,
		MaxHeaderBytes:    hs.MaxHeaderBytes,
		HTTP2:             hs,
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

// Run serves every endpoint until ctx is done or one of them fails, then shuts
// all of them down gracefully (ShutdownTimeout) and returns the first serve
// error, or nil after a clean stop.
func Run(ctx context.Context, logger *slog.Logger, endpoints ...Endpoint) error {
	servers := make([]Server, len(endpoints))
	errc := make(chan error, len(endpoints))
	for i, ep := range endpoints {
		var srv Server = NewServer(ep.Handler, logger)
		if ep.Fast {
			srv = FastFrom(NewServer(ep.Handler, logger), logger, nil, ep.Native)
		}
		servers[i] = srv
		logger.Info("listening", "endpoint", ep.Name, "addr", ep.Listener.Addr().String())
		go func(ep Endpoint) {
			if err := srv.Serve(ep.Listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server on %s: %w", ep.Name, ep.Listener.Addr(), err)
				return
			}
			errc <- nil
		}(ep)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	var errs []error
	for i, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("shutting down %s: %w", endpoints[i].Name, err))
		}
	}
	logger.Info("stopped")
	return errors.Join(append([]error{runErr}, errs...)...)
}

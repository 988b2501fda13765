package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/stella-ops/stella-mirror/internal/buildinfo"
	"github.com/stella-ops/stella-mirror/internal/filewatch"
	"github.com/stella-ops/stella-mirror/internal/serve"
)

// Listeners are the bound listeners Serve uses; nil HTTP means no
// plain-HTTP listener.
type Listeners struct {
	HTTPS, HTTP, Admin net.Listener
}

// Listen binds the configured listeners.
func Listen(s Settings) (Listeners, error) {
	var l Listeners
	var err error
	if l.HTTPS, err = serve.Listen(s.Listen); err != nil {
		return l, err
	}
	if l.Admin, err = serve.Listen(s.AdminListen); err != nil {
		l.HTTPS.Close()
		return l, err
	}
	if s.HTTPListen != "" {
		if l.HTTP, err = serve.Listen(s.HTTPListen); err != nil {
			l.HTTPS.Close()
			l.Admin.Close()
			return l, err
		}
	}
	return l, nil
}

// Run validates cfg, builds the gateway, binds its listeners and serves
// until ctx ends (see Serve).
func Run(ctx context.Context, cfg Config, o Options) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger.Info("starting gateway", "version", buildinfo.Version(), "sites", len(cfg.Gateway.Sites))
	g, err := New(cfg, o)
	if err != nil {
		return err
	}
	l, err := Listen(cfg.Gateway)
	if err != nil {
		return err
	}
	return g.Serve(ctx, l, nil)
}

// Serve serves the listeners until ctx ends: it obtains ACME certificates,
// watches the certificate and htpasswd files (and reloads on SIGHUP), then
// shuts down gracefully, giving in-flight downloads ShutdownTimeout to
// finish, and closes the gateway (Close). ready, if set, is called once
// every listener serves.
func (g *Gateway) Serve(ctx context.Context, l Listeners, ready func()) error {
	defer g.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	closeAll := func() {
		for _, ln := range []net.Listener{l.HTTPS, l.HTTP, l.Admin} {
			if ln != nil {
				ln.Close()
			}
		}
	}
	type endpoint struct {
		name string
		ln   net.Listener
		h    http.Handler
		tls  *tls.Config
	}
	_, httpsPort, _ := net.SplitHostPort(l.HTTPS.Addr().String())
	eps := []endpoint{
		{"gateway", l.HTTPS, g.Handler(), g.TLSConfig()},
		{"gateway-admin", l.Admin, g.AdminHandler(), nil},
	}
	if l.HTTP != nil {
		eps = append(eps, endpoint{"gateway-http", l.HTTP, g.RedirectHandler(httpsPort), nil})
	}
	servers := make([]serve.Server, len(eps))
	errc := make(chan error, len(eps))
	for i, ep := range eps {
		ln := ep.ln
		hs := serve.NewServer(ep.h, g.logger)
		hs.ReadHeaderTimeout = g.cfg.ReadHeaderTimeout
		hs.IdleTimeout = g.cfg.IdleTimeout
		var srv serve.Server = hs
		if ep.tls != nil {
			// The HTTPS listener: fastserve (HTTP/1.1 and HTTP/2).
			native := g.Native
			if g.noNative {
				native = nil
			}
			srv = serve.FastFrom(hs, g.logger, ep.tls, native)
		}
		servers[i] = srv
		g.logger.Info("listening", "endpoint", ep.name, "addr", ep.ln.Addr().String())
		go func(name string, ln net.Listener) {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server on %s: %w", name, ln.Addr(), err)
				return
			}
			errc <- nil
		}(ep.name, ln)
	}
	// ACME needs the HTTP listener serving (HTTP-01) before it asks the CA.
	if err := g.StartACME(ctx); err != nil {
		g.logger.Error("ACME", "error", err.Error())
		cancel()
		g.shutdown(servers)
		closeAll()
		return err
	}
	if err := filewatch.Watch(ctx, g.WatchedFiles(), g.logger, g.ReloadFile); err != nil {
		g.logger.Warn("file watching unavailable; reload with SIGHUP", "error", err.Error())
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if ready != nil {
		ready()
	}
	var runErr error
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			g.logger.Info("SIGHUP: reloading certificates and htpasswd files")
			if err := g.Reload(); err != nil {
				g.logger.Error("reload incomplete; the failed files keep their last good version", "error", err.Error())
			}
		case runErr = <-errc:
			done = true
		}
	}
	err := g.shutdown(servers)
	g.logger.Info("stopped")
	return errors.Join(runErr, err)
}

func (g *Gateway) shutdown(servers []serve.Server) error {
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("shutting down: %w (after %s)", err, g.cfg.ShutdownTimeout))
			srv.Close()
		}
	}
	return errors.Join(errs...)
}

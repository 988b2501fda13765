package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/stella-ops/stella-mirror/internal/buildinfo"
	"github.com/stella-ops/stella-mirror/internal/filewatch"
	"github.com/stella-ops/stella-mirror/internal/sdnotify"
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
// drains for ShutdownDelay (serve.Group.Drain: still serving, not ready,
// Connection: close), shuts down gracefully, giving in-flight downloads
// ShutdownTimeout to finish, and closes the gateway (Close). ready, if set, is called once
// every listener serves.
func (g *Gateway) Serve(ctx context.Context, l Listeners, ready func()) error {
	defer g.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, httpsPort, _ := net.SplitHostPort(l.HTTPS.Addr().String())
	native := g.Native
	if g.noNative {
		native = nil
	}
	eps := []serve.Endpoint{
		{Name: "gateway", Listener: l.HTTPS, Handler: g.Handler(), TLS: g.TLSConfig(), Fast: true, Native: native},
		{Name: "gateway-admin", Listener: l.Admin, Handler: g.AdminHandler(), Private: true, Ready: true},
	}
	if l.HTTP != nil {
		eps = append(eps, serve.Endpoint{Name: "gateway-http", Listener: l.HTTP, Handler: g.RedirectHandler(httpsPort)})
	}
	sc := g.cfg.Server
	servers, err := serve.Start(serve.Options{
		Logger: g.logger,
		Limits: serve.Limits{
			Engine:               sc.Engine,
			ReadHeaderTimeout:    g.cfg.ReadHeaderTimeout,
			IdleTimeout:          g.cfg.IdleTimeout,
			WriteProgressTimeout: sc.WriteProgressTimeout,
			MaxConns:             sc.MaxConns,
			MaxConnsPerIP:        sc.MaxConnsPerIP,
			MaxConcurrentStreams: sc.MaxConcurrentStreams,
		},
		Registerer: g.reg, Namespace: "stella_mirror", Subsystem: "gateway",
	}, eps...)
	if err != nil {
		for _, ep := range eps {
			ep.Listener.Close()
		}
		return err
	}
	// ACME needs the HTTP listener serving (HTTP-01) before it asks the CA.
	if err := g.StartACME(ctx); err != nil {
		g.logger.Error("ACME", "error", err.Error())
		cancel()
		g.shutdown(servers)
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
	// Under systemd (Type=notify): every listener serves.
	g.notify(sdnotify.Ready)
	var runErr error
	stopped := false // asked to stop (ctx), not a server failing
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done, stopped = true, true
		case <-hup:
			g.logger.Info("SIGHUP: reloading certificates and htpasswd files")
			g.notify(sdnotify.Reloading())
			if err := g.Reload(); err != nil {
				g.logger.Error("reload incomplete; the failed files keep their last good version", "error", err.Error())
			}
			g.notify(sdnotify.Ready)
		case runErr = <-servers.Err():
			done = true
		}
	}
	g.notify(sdnotify.Stopping)
	if stopped {
		// Keep serving while load balancers notice (GATEWAY__SHUTDOWNDELAY).
		runErr = servers.Drain(g.cfg.ShutdownDelay)
	}
	err = g.shutdown(servers)
	g.logger.Info("stopped")
	return errors.Join(runErr, err)
}

// notify tells systemd the service state when it runs the gateway as a
// Type=notify service ($NOTIFY_SOCKET); a failure is logged, not fatal.
func (g *Gateway) notify(state string) {
	if _, err := sdnotify.Notify(state); err != nil {
		g.logger.Warn("sd_notify", "state", strings.ReplaceAll(state, "\n", " "), "error", err.Error())
	}
}

func (g *Gateway) shutdown(servers *serve.Group) error {
	sctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	if err := servers.Shutdown(sctx); err != nil {
		return fmt.Errorf("%w (after %s)", err, g.cfg.ShutdownTimeout)
	}
	return nil
}

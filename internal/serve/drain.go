package serve

import (
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// MaxShutdownDelay bounds a drain delay (GATEWAY__SHUTDOWNDELAY,
// ORIGIN__SHUTDOWNDELAY): a longer one is a mistake, not a drain.
const MaxShutdownDelay = 5 * time.Minute

// ReadyPath is the readiness endpoint every component serves; while a
// group drains it answers 503 on the endpoints whose Endpoint.Ready is set.
const ReadyPath = "/health/ready"

// drainingBody is what ReadyPath answers while the group drains.
var drainingBody = []byte(`{"status":"not_ready","reason":"shutting down"}` + "\n")

// Draining reports whether the group is in its drain delay (Drain).
func (g *Group) Draining() bool { return g.draining.Load() }

// Drain keeps every listener accepting and serving for delay before the
// caller's Shutdown, so that load balancers, kube-proxy and ingress
// controllers that route to this process stop doing so before its ports
// close (they learn of a terminating pod or a draining host seconds after
// the signal). Meanwhile Draining reports true: ReadyPath answers 503
// {"status":"not_ready","reason":"shutting down"} on the endpoints marked
// Ready (/health/live is untouched: liveness must not kill a draining
// process), and every HTTP/1.x response carries "Connection: close", on
// both engines and the Native hooks, so that keep-alive clients reconnect
// (elsewhere). HTTP/2 connections get their GOAWAY at Shutdown.
//
// Drain returns when delay has passed, at once when delay <= 0, early
// when a SIGTERM or SIGINT arrives during it (an operator's second
// Ctrl-C: the first one started the shutdown), or when a server stops
// by itself: its error is returned then (Err does not receive it). Only
// signals that arrive once Drain has begun count: one that comes between
// the first signal and the call is absorbed by the caller's
// signal.NotifyContext, and the delay runs in full.
func (g *Group) Drain(delay time.Duration) error {
	if delay <= 0 {
		return nil
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	g.draining.Store(true)
	g.logger.Info("draining: still serving for "+delay.String()+" before shutdown", "delay", delay.String())
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		g.logger.Info("drain over; shutting down")
	case s := <-sig:
		g.logger.Info("draining ended early by a second signal; shutting down", "signal", s.String())
	case err := <-g.errc:
		g.logger.Warn("draining ended early: a server stopped; shutting down")
		return err
	}
	return nil
}

// drainHandler wraps h for a group: while it drains, HTTP/1.x responses
// carry Connection: close (net/http then closes the connection after the
// response, fastserve's adapter too) and, when ready is set, ReadyPath
// answers 503.
func (g *Group) drainHandler(h http.Handler, ready bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.draining.Load() {
			h.ServeHTTP(w, r)
			return
		}
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		if ready && r.URL.Path == ReadyPath && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			hd := w.Header()
			hd.Set("Content-Type", "application/json")
			hd.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusServiceUnavailable)
			if r.Method == http.MethodGet {
				w.Write(drainingBody)
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}

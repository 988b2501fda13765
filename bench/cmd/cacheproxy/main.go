// Command cacheproxy is the HTTP caching conformance harness: a generic
// caching reverse proxy built from exactly the code the gateway runs — the
// same cache (gateway/cache), proxy (gateway/proxy), server engine
// (internal/serve, fasthttp by default) and fast hit paths (gateway/fasthit
// on fasthttp, cache.ServeHit on net/http) — with the gateway's admission
// (sites, TLS, auth, method and path policy, budgets) replaced by
// pass-through, so that the public suite http-tests/cache-tests can be run
// against it:
//
//	go run ./bench/cmd/cacheproxy --listen 127.0.0.1:8002 --upstream http://127.0.0.1:8000
//
// Every method and path is forwarded. Where the gateway is stricter on
// purpose, the harness takes the RFC 9111 choice (cache.RFCOptions, client
// Cache-Control honoured, proxy.Options.Transparent). It is for testing
// only and never a gateway mode: nothing in the gateway's configuration
// reaches it. See docs/cache.md, "HTTP caching conformance".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/gateway/cache"
	"github.com/stella-ops/stella-mirror/gateway/fasthit"
	"github.com/stella-ops/stella-mirror/gateway/proxy"
	"github.com/stella-ops/stella-mirror/internal/fastserve"
	"github.com/stella-ops/stella-mirror/internal/serve"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("cacheproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8002", "address to listen on (host:port)")
	upstream := fs.String("upstream", "", "origin base URL, e.g. http://127.0.0.1:8000 (required)")
	dir := fs.String("dir", "", "cache directory (default: a temporary directory, removed at exit)")
	engine := fs.String("engine", serve.EngineFast, "server engine: fast (the gateway's default) or std (net/http)")
	verbose := fs.Bool("v", false, "log the cache's warnings to stderr")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: cacheproxy --listen 127.0.0.1:PORT --upstream http://127.0.0.1:ORIGIN [--dir DIR] [--engine fast|std]")
		fmt.Fprintln(stderr, "A caching reverse proxy made of the gateway's cache, proxy and server engine, admission removed;")
		fmt.Fprintln(stderr, "for the HTTP caching conformance suite only (docs/cache.md). Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := start(ctx, *listen, *upstream, *dir, *engine, *verbose, stderr, nil); err != nil {
		fmt.Fprintf(stderr, "cacheproxy: %v\n", err)
		return 1
	}
	return 0
}

// start serves until ctx ends; ready, if set, gets the listening address.
func start(ctx context.Context, listen, upstream, dir, engine string, verbose bool, stderr io.Writer, ready func(addr string)) error {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("--upstream %q: want an absolute http(s) URL", upstream)
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Errorf("--upstream %q: the origin URL must have no path (the cache key is the request's path)", upstream)
	}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "cacheproxy-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	logger := slog.New(slog.DiscardHandler)
	if verbose {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	transport, err := proxy.NewTransport(proxy.Options{})
	if err != nil {
		return err
	}
	bodies := &http.Transport{ResponseHeaderTimeout: time.Minute, IdleConnTimeout: time.Minute}
	upstreamRT := withBodies{plain: transport, bodies: bodies}
	opts := cache.RFCOptions()
	opts.Logger = logger
	c, err := cache.New(cache.Config{Dir: dir, MaxSize: 1 << 30, UpstreamTimeout: time.Minute, HonourClientNoCache: true}, upstreamRT, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	px, err := proxy.New(proxy.Options{Origin: u, Transport: c, Transparent: true, Logger: logger,
		ErrorHeader: func(h http.Header, err error) { h[cache.Header] = []string{string(cache.StatusOfError(err))} }})
	if err != nil {
		return err
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.ServeHit(w, r, cache.Key(r.URL)) {
			return
		}
		px.ServeHTTP(w, r)
	})
	native := func(fc *fasthttp.RequestCtx) bool {
		u, ok := fastserve.Plain(fc)
		if !ok {
			return false
		}
		return fasthit.Serve(c, fc, cache.Key(u), func(int64, bool) {})
	}
	ln, err := serve.Listen(listen)
	if err != nil {
		return err
	}
	group, err := serve.Start(serve.Options{Logger: logger, Limits: serve.Limits{Engine: engine}},
		serve.Endpoint{Name: "cacheproxy", Listener: ln, Handler: handler, Fast: true, Native: native})
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(stderr, "cacheproxy: listening on http://%s, upstream %s, cache in %s, engine %s\n", ln.Addr(), u, dir, engine)
	if ready != nil {
		ready(ln.Addr().String())
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-group.Err():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(runErr, group.Shutdown(sctx))
}

// withBodies sends requests with a body (the suite's PUT and POST, which
// the gateway refuses before its cache) through net/http's transport, as
// the gateway's own proxy.Transport forwards no request bodies; every
// other request takes the gateway's transport.
type withBodies struct {
	plain, bodies http.RoundTripper
}

func (t withBodies) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		return t.bodies.RoundTrip(r)
	}
	return t.plain.RoundTrip(r)
}

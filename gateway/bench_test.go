package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/devcert"
)

// BenchmarkPassThrough measures the gateway's own cost per proxied request
// (TLS, site lookup, policy, proxy, access log) in front of a static
// upstream; run with -benchmem to watch allocations.
func BenchmarkPassThrough(b *testing.B) { benchmarkIndex(b, false) }

// BenchmarkCacheHit is the same request answered from the cache's memory
// tier (X-Cache-Status: HIT): the hit path without the origin.
func BenchmarkCacheHit(b *testing.B) { benchmarkIndex(b, true) }

func benchmarkIndex(b *testing.B, withCache bool) {
	body := make([]byte, 2300)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Content-Length", "2300") // as the origin sends index.json
		w.Write(body)
	}))
	defer up.Close()
	dir := b.TempDir()
	ca, _ := devcert.NewCA("b", 0)
	leaf, _ := ca.Issue(devcert.LeafOptions{Names: []string{"localhost"}})
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	leaf.WriteFiles(cf, kf)
	cfg := DefaultConfig()
	cfg.Gateway.Listen, cfg.Gateway.HTTPListen, cfg.Gateway.AdminListen = "127.0.0.1:0", "", "127.0.0.1:0"
	cfg.Gateway.Origin = up.URL
	cfg.Gateway.Sites = []SiteConfig{{Hosts: []string{"localhost"}, Domains: []string{"primary"}, CertFile: cf, KeyFile: kf, Anonymous: true}}
	if withCache {
		cfg.Gateway.Cache.Dir = filepath.Join(dir, "cache")
	}
	access := accesslog.New(io.Discard, accesslog.Options{})
	defer access.Close()
	g, err := New(cfg, Options{AccessLog: access})
	if err != nil {
		b.Fatal(err)
	}
	l, err := Listen(cfg.Gateway)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() { done <- g.Serve(ctx, l, func() { close(ready) }) }()
	<-ready
	defer func() { cancel(); <-done }()
	addr := l.HTTPS.Addr().String()
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
		TLSNextProto:    map[string]func(string, *tls.Conn) http.RoundTripper{},
		DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, addr)
		},
	}}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := client.Get("https://localhost/concelier/exports/index.json")
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || (withCache && res.Header.Get("X-Cache-Status") == "") {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
}

// discardWriter is a ResponseWriter that keeps nothing: the handler's own
// cost without net/http's response writing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkHandlerCacheHit is the gateway handler alone (site lookup,
// policy, fast cache hit, access log line, metrics) for a memory-tier hit,
// without TLS, sockets or net/http: what the gateway itself adds per hit.
func BenchmarkHandlerCacheHit(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("Content-Length", "2300")
		w.Write(make([]byte, 2300))
	}))
	defer up.Close()
	dir := b.TempDir()
	ca, _ := devcert.NewCA("b", 0)
	leaf, _ := ca.Issue(devcert.LeafOptions{Names: []string{"localhost"}})
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	leaf.WriteFiles(cf, kf)
	cfg := DefaultConfig()
	cfg.Gateway.Listen, cfg.Gateway.HTTPListen, cfg.Gateway.AdminListen = "127.0.0.1:0", "", "127.0.0.1:0"
	cfg.Gateway.Origin = up.URL
	cfg.Gateway.Cache.Dir = filepath.Join(dir, "cache")
	cfg.Gateway.Sites = []SiteConfig{{Hosts: []string{"localhost"}, Domains: []string{"primary"}, CertFile: cf, KeyFile: kf, Anonymous: true}}
	access := accesslog.New(io.Discard, accesslog.Options{})
	defer access.Close()
	g, err := New(cfg, Options{AccessLog: access})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Close()
	h := g.Handler()
	req := httptest.NewRequest(http.MethodGet, "https://localhost/concelier/exports/index.json", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	h.ServeHTTP(&discardWriter{h: http.Header{}}, req) // MISS: the fill
	g.cache.Close()                                    // waits for its commit (hits need no upstream)
	h.ServeHTTP(&discardWriter{h: http.Header{}}, req) // HIT from disk, promoted to memory
	if w := (&discardWriter{h: http.Header{}}); !g.cache.ServeHit(w, req, "/concelier/exports/index.json") {
		b.Fatal("not a memory-tier hit")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.ServeHTTP(&discardWriter{h: http.Header{}}, req)
	}
}

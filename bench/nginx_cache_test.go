//go:build unix

package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRenderNginxCacheGolden(t *testing.T) {
	for _, tt := range []struct {
		name, golden string
		cert, key    string
	}{
		{"plain", "nginx-cache.conf.golden", "", ""},
		{"tls", "nginx-cache-tls.conf.golden", "/tmp/bench/gateway/cert.pem", "/tmp/bench/gateway/key.pem"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			renderNginxCacheGolden(t, tt.golden, tt.cert, tt.key)
		})
	}
}

func renderNginxCacheGolden(t *testing.T, golden, cert, key string) {
	got, err := RenderNginxCache(NginxCacheConfig{Prefix: "/tmp/bench/nginx-cache/", Listen: "127.0.0.1:8082",
		Upstream: "127.0.0.1:8080", MaxSize: "2g", User: "root", CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, golden, got)
}

func TestNginxCacheConfigValidate(t *testing.T) {
	ok := NginxCacheConfig{Prefix: "/p", Listen: "127.0.0.1:1", Upstream: "127.0.0.1:2"}
	tests := []struct {
		name string
		mod  func(*NginxCacheConfig)
		want string
	}{
		{"relative prefix", func(c *NginxCacheConfig) { c.Prefix = "p" }, `prefix "p" is not absolute`},
		{"public listen", func(c *NginxCacheConfig) { c.Listen = "0.0.0.0:80" }, `listen "0.0.0.0:80" is not a loopback address`},
		{"remote upstream", func(c *NginxCacheConfig) { c.Upstream = "10.0.0.1:80" }, `upstream "10.0.0.1:80" is not a loopback address`},
		{"max size", func(c *NginxCacheConfig) { c.MaxSize = "1 g;" }, `max size "1 g;"`},
		{"injection", func(c *NginxCacheConfig) { c.Prefix = `/p"; evil` }, "nginx would misread"},
		{"cert without key", func(c *NginxCacheConfig) { c.CertFile = "/c.pem" }, "set both cert file and key file"},
		{"relative cert", func(c *NginxCacheConfig) { c.CertFile, c.KeyFile = "c.pem", "/k.pem" }, `"c.pem" is not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			_, err := RenderNginxCache(c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := RenderNginxCache(ok); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestNginxCacheAnchor runs the anchor for real in front of a counting
// origin: MISS, then HIT, one upstream fetch, nginx's X-Cache-Status.
func TestNginxCacheAnchor(t *testing.T) {
	bin := nginxBinary(t)
	var fetches atomic.Int64
	body := strings.Repeat("b", 200_000)
	origin := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Cache-Control", ImmutableCacheControl)
		w.Header().Set("ETag", `"e1"`)
		io.WriteString(w, body)
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go origin.Serve(ln)
	t.Cleanup(func() { origin.Close() })

	prefix := filepath.Join(t.TempDir(), "nginx")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	addr, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	cfg := NginxCacheConfig{Prefix: prefix, Listen: addr, Upstream: ln.Addr().String(), MaxSize: "64m", WorkerProcesses: "1"}
	if os.Geteuid() == 0 {
		cfg.User = "root"
	}
	conf, err := RenderNginxCache(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(prefix, NginxConfName), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	p, out, client := startNginx(t, bin, prefix)
	base := "http://" + addr
	if err := WaitReady(context.Background(), client, base+"/ready", p, 20*time.Millisecond, 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	fetches.Store(0)
	var statuses []string
	for range 2 {
		resp, err := client.Get(base + "/concelier/exports/mirror/primary/bundle.json")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != body {
			t.Fatalf("body: %v, %d bytes", err, len(b))
		}
		statuses = append(statuses, resp.Header.Get("X-Cache-Status"))
	}
	if statuses[0] != "MISS" || statuses[1] != "HIT" {
		t.Errorf("X-Cache-Status %v, want [MISS HIT]", statuses)
	}
	if n := fetches.Load(); n != 1 {
		t.Errorf("origin fetched %d times, want 1", n)
	}
}

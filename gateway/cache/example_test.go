package cache_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/gateway/cache"
)

// The cache is the Transport of the gateway's reverse proxy; auth and
// policy run in the handlers in front of the proxy.
func Example() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300, immutable")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"domains":["primary"]}`)
	}))
	defer origin.Close()
	target, _ := url.Parse(origin.URL)

	dir, _ := os.MkdirTemp("", "cache-example-")
	defer os.RemoveAll(dir)
	c, err := cache.New(cache.Config{Dir: dir, MaxSize: 1 << 30},
		http.DefaultTransport, cache.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	proxy := &httputil.ReverseProxy{
		Rewrite:      func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:    c,              // the one line that adds the cache
		ErrorHandler: c.ErrorHandler, // errors carry X-Cache-Status too
	}
	gateway := httptest.NewServer(proxy) // behind auth and policy in the real gateway
	defer gateway.Close()

	for range 2 {
		resp, err := http.Get(gateway.URL + "/concelier/exports/mirror/primary/manifest.json")
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, cache.StatusOf(resp.Header), string(body))
	}
	// Output:
	// 200 MISS {"domains":["primary"]}
	// 200 HIT {"domains":["primary"]}
}

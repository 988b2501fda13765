package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/devcert"
)

var engines = []string{EngineFast, EngineStd}

// testServer is one Start with a TLS endpoint on 127.0.0.1.
type testServer struct {
	addr string
	g    *Group
	reg  *prometheus.Registry
	pool *x509.CertPool
	// tlsConfig is the endpoint's TLS configuration.
	tlsConfig *tls.Config
}

// startTLS serves h over TLS (h2 and http/1.1) with lim on a loopback port.
func startTLS(t *testing.T, lim Limits, h http.Handler) *testServer {
	t.Helper()
	ca, err := devcert.NewCA("serve test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	s := startEndpoint(t, lim, Endpoint{Handler: h, TLS: cfg, Fast: true}, ca.Pool())
	s.tlsConfig = cfg
	return s
}

func startEndpoint(t *testing.T, lim Limits, ep Endpoint, pool *x509.CertPool) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep.Name, ep.Listener = "test", ln
	reg := prometheus.NewRegistry()
	g, err := Start(Options{Limits: lim, Registerer: reg, Namespace: "test", Subsystem: "srv"}, ep)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
		select {
		case err := <-g.Err():
			t.Errorf("a server stopped by itself: %v", err)
		default:
		}
	})
	return &testServer{addr: ln.Addr().String(), g: g, reg: reg, pool: pool}
}

// counter reads a counter of the test registry (name without the test_srv_ prefix).
func (s *testServer) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "test_srv_"+name {
			continue
		}
		var sum float64
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						ok = true
					}
				}
				if !ok {
					continue metrics
				}
			}
			if m.Counter != nil {
				sum += m.GetCounter().GetValue()
			} else if m.Gauge != nil {
				sum += m.GetGauge().GetValue()
			}
		}
		return sum
	}
	return 0
}

// waitFor polls cond every 10 ms until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, 10*time.Second, what, cond)
}

// waitForWithin polls cond every 10 ms until it holds or d passes.
func waitForWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// httpClient speaks HTTP/1.1 (h2 false) or HTTP/2 to s.
func (s *testServer) httpClient(t *testing.T, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: "localhost"}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func (s *testServer) url(path string) string {
	return "https://" + strings.Replace(s.addr, "127.0.0.1", "localhost", 1) + path
}

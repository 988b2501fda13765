package origin

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/origin/authority/authoritytest"
)

// BenchmarkIndexBearer is BenchmarkIndex with a required, valid bearer
// token from a real issuer: after the first request the verified token
// comes from the cache, so the difference to BenchmarkIndex is the cost of
// access control per request.
func BenchmarkIndexBearer(b *testing.B) {
	root := b.TempDir()
	writeExport(b, root, "e1", treeOpts{})
	pointLatest(b, root, "e1")
	iss := authoritytest.NewIssuer(b)
	cfg := authConfig(root, iss)
	cfg.AccessLog = accesslog.New(io.Discard, accesslog.Options{})
	defer cfg.AccessLog.Close()
	o, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	h := o.Handler()
	req := httptest.NewRequest(http.MethodGet, "/concelier/exports/index.json", nil)
	req.Header.Set("Authorization", "Bearer "+iss.Sign(b, iss.Token(time.Now(), "bench-client", testAudience, ScopeConcelier)))
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	if w.h.Get("X-Stella-Export-Id") != "e1" {
		b.Fatalf("not served from e1: %v", w.h)
	}
}

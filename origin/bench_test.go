package origin

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/accesslog"
)

// discardWriter is a minimal ResponseWriter so the benchmark measures the
// origin, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkIndex measures the hot path: GET /concelier/exports/index.json
// served from memory, with the access log and metrics on.
func BenchmarkIndex(b *testing.B) {
	root := b.TempDir()
	writeExport(b, root, "e1", treeOpts{})
	pointLatest(b, root, "e1")
	cfg := testConfig(root)
	cfg.AccessLog = accesslog.New(io.Discard, accesslog.Options{})
	defer cfg.AccessLog.Close()
	o, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	h := o.Handler()
	req := httptest.NewRequest(http.MethodGet, "/concelier/exports/index.json", nil)
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

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
	req := httptest.NewRequest(http.MethodGet, "/concelier/exports/index.json", nil)
	benchServeE1(b, testConfig(root), req)
}

// benchServeE1 is the loop of the index benchmarks: an origin on cfg with
// the access log (to io.Discard), logging (discarded) and metrics on
// serves req b.N times, and must have answered from export e1.
func benchServeE1(b *testing.B, cfg Config, req *http.Request) {
	b.Helper()
	cfg.AccessLog = accesslog.New(io.Discard, accesslog.Options{})
	defer cfg.AccessLog.Close()
	o, err := New(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	h := o.Handler()
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

// BenchmarkPinnedIndex measures GET /concelier/exports/{id}/index.json for
// the active export (the lock-free fast path it shares with the
// unversioned index) and for the previous one (the cache under its mutex).
func BenchmarkPinnedIndex(b *testing.B) {
	for _, active := range []string{"e1", "e2"} {
		name := "active"
		if active != "e1" {
			name = "previous"
		}
		b.Run(name, func(b *testing.B) {
			root := b.TempDir()
			writeExport(b, root, "e1", treeOpts{})
			writeExport(b, root, "e2", treeOpts{})
			pointLatest(b, root, active)
			req := httptest.NewRequest(http.MethodGet, "/concelier/exports/e1/index.json", nil)
			benchServeE1(b, testConfig(root), req)
		})
	}
}

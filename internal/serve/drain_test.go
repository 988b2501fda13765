package serve

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDrainHandler: the wrapper passes requests through untouched until
// the group drains; then HTTP/1.x responses carry Connection: close, and
// ReadyPath answers 503 "shutting down" only on a Ready endpoint (GET and
// HEAD), other paths and methods still reaching the handler.
func TestDrainHandler(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Inner", "1")
		w.Write([]byte("inner"))
	})
	g := &Group{}
	for _, tc := range []struct {
		name             string
		draining, ready  bool
		method, path     string
		proto            int
		status           int
		inner, connClose bool
	}{
		{"not draining", false, true, "GET", ReadyPath, 1, 200, true, false},
		{"ready path", true, true, "GET", ReadyPath, 1, 503, false, true},
		{"ready path HEAD", true, true, "HEAD", ReadyPath, 1, 503, false, true},
		{"ready path POST", true, true, "POST", ReadyPath, 1, 200, true, true},
		{"not a Ready endpoint", true, false, "GET", ReadyPath, 1, 200, true, true},
		{"other path", true, true, "GET", "/health/live", 1, 200, true, true},
		{"HTTP/2", true, false, "GET", "/x", 2, 200, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.draining.Store(tc.draining)
			r := httptest.NewRequest(tc.method, tc.path, nil)
			r.ProtoMajor = tc.proto
			w := httptest.NewRecorder()
			g.drainHandler(inner, tc.ready).ServeHTTP(w, r)
			if w.Code != tc.status || (w.Header().Get("X-Inner") == "1") != tc.inner ||
				(w.Header().Get("Connection") == "close") != tc.connClose {
				t.Fatalf("status %d, inner %q, Connection %q; want %d, inner %v, close %v",
					w.Code, w.Header().Get("X-Inner"), w.Header().Get("Connection"), tc.status, tc.inner, tc.connClose)
			}
			if tc.status == 503 && tc.method == "GET" && !strings.Contains(w.Body.String(), `{"status":"not_ready","reason":"shutting down"}`) {
				t.Errorf("body %q", w.Body.String())
			}
		})
	}
}

package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// TestTruncatedUpstreamNotCached: an origin that sends no digest ETag and
// cuts a body short of its Content-Length. Through the gateway, on the
// native (fast) path and on the net/http path, for a body kept in the
// memory tier and one only on disk: the client sees an error, and the
// following requests get the whole body (a MISS, then a HIT), never the
// short one.
func TestTruncatedUpstreamNotCached(t *testing.T) {
	for _, mode := range []struct {
		name     string
		engine   string
		noNative bool
	}{{"fast path", "", false}, {"net/http", "", true}, {"std engine", "std", false}} {
		for _, size := range []int{16 << 10, 512 << 10} {
			t.Run(fmt.Sprintf("%s/%dKiB", mode.name, size>>10), func(t *testing.T) {
				body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
				var short atomic.Bool
				short.Store(true)
				upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.Header().Set("ETag", `"v1"`)
					w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusOK)
					if short.Load() {
						w.Write(body[:len(body)/2])
						return // net/http closes the connection: a short body
					}
					w.Write(body)
				})
				h := newHarness(t, harnessOpts{engine: mode.engine, noNative: mode.noNative, upstream: upstream,
					edit: withCache(t.TempDir(), "")})
				auth := map[string]string{"Authorization": basic("alice", "alice-pw")}
				if r := h.get(hostPrimary, primaryBundle, auth); r.err == nil {
					t.Fatalf("client read a complete response (%d, %d bytes, %s) of a truncated body",
						r.status, len(r.body), r.header.Get("X-Cache-Status"))
				}
				short.Store(false)
				// A request that arrives while the failed flight is being
				// removed may join it and be aborted too (an error, never a
				// short 200): at most a few such, then a MISS fetches again.
				var r resp
				for attempt := 0; attempt < 5; attempt++ {
					if r = h.get(hostPrimary, primaryBundle, auth); r.err == nil {
						break
					}
					t.Logf("attempt %d: aborted (%v): joined the failed fill", attempt, r.err)
				}
				for _, want := range []string{"MISS", "HIT", "HIT"} {
					if want == "HIT" {
						r = h.get(hostPrimary, primaryBundle, auth)
					}
					if r.err != nil || r.status != 200 || r.body != string(body) {
						t.Fatalf("after the truncated fill: status %d, %d bytes of %d, err %v", r.status, len(r.body), len(body), r.err)
					}
					if got := r.header.Get("X-Cache-Status"); got != want {
						t.Errorf("X-Cache-Status %q, want %q", got, want)
					}
				}
			})
		}
	}
}

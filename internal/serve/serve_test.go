package serve

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUnexpectedStopIsAnError (F1): when a listener closes while no
// shutdown was asked for, Run returns an error naming the endpoint (the
// process then exits non-zero) instead of nil, on both engines, with and
// without TLS.
func TestUnexpectedStopIsAnError(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, engine := range engines {
		for _, withTLS := range []bool{false, true} {
			name := engine + map[bool]string{false: "/plain", true: "/tls"}[withTLS]
			t.Run(name, func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				ep := Endpoint{Name: "public", Listener: ln, Handler: h, Fast: true}
				if withTLS {
					ep.TLS = startTLS(t, Limits{}, h).tlsConfig
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- RunWith(ctx, Options{Limits: Limits{Engine: engine}}, ep) }()
				// Serving: a request is answered.
				waitFor(t, "the endpoint serves", func() bool {
					c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
					if err != nil {
						return false
					}
					c.Close()
					return true
				})
				ln.Close() // behind the server's back
				select {
				case err := <-done:
					if err == nil || !strings.Contains(err.Error(), "public server on") {
						t.Fatalf("Run returned %v, want an error naming the endpoint", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Run did not return after its listener closed")
				}
			})
		}
	}
}

// TestRunCleanStop: after ctx ends Run shuts down and returns nil.
func TestRunCleanStop(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- RunWith(ctx, Options{Limits: Limits{Engine: engine}},
					Endpoint{Name: "public", Listener: ln, Handler: http.NotFoundHandler(), Fast: true})
			}()
			waitFor(t, "the endpoint answers", func() bool {
				res, err := http.Get("http://" + ln.Addr().String() + "/")
				if err != nil {
					return false
				}
				res.Body.Close()
				return res.StatusCode == http.StatusNotFound
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
		})
	}
}

// TestUnknownEngine: Start names the bad engine.
func TestUnknownEngine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Start(Options{Limits: Limits{Engine: "turbo"}}, Endpoint{Name: "x", Listener: ln, Handler: http.NotFoundHandler()})
	if err == nil || !strings.Contains(err.Error(), `"turbo"`) {
		t.Fatalf("Start with engine turbo: %v", err)
	}
}

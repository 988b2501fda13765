package gateway

import (
	"fmt"
	"io"
	"net/http"
	"testing"
)

// TestAuthEveryMethod: HEAD is authenticated exactly like GET, on both
// server engines, over HTTP/1.1 and HTTP/2, with and without the cache
// (with it, a HIT is ready for every path, so a request let through would
// be answered from it). Each refused request reaches no upstream and
// carries the challenge; each accepted one is answered.
func TestAuthEveryMethod(t *testing.T) {
	forEngines(t, func(t *testing.T, engine string) {
		for _, cached := range []bool{false, true} {
			t.Run(fmt.Sprintf("cache=%v", cached), func(t *testing.T) {
				cacheDir := t.TempDir()
				ho := harnessOpts{engine: engine, edit: func(c *Config) {
					c.Gateway.AuthThrottle.MaxFailures = 0 // many wrong passwords on purpose
					if cached {
						withCache(cacheDir, "")(c)
					}
				}}
				h := newHarness(t, ho)
				alice := basic("alice", "alice-pw")
				paths := []string{indexPath, primaryBundle, "/excititor/mirror/primary/index"}
				if cached {
					for _, p := range paths {
						if r := h.get(hostPrimary, p, map[string]string{"Authorization": alice}); r.status != 200 {
							t.Fatalf("warming %s: %d %v", p, r.status, r.err)
						}
					}
				}
				clients := map[string]*http.Client{"HTTP/1.1": h.client(), "HTTP/2": h.h2client()}
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					for proto, c := range clients {
						for _, p := range paths {
							for _, tc := range []struct {
								name, auth string
								status     int
							}{
								{"no credentials", "", 401},
								{"wrong password", basic("alice", "nope"), 401},
								{"user of another site", basic("carol", "carol-pw"), 401},
								{"empty basic", "Basic ", 401},
								{"right", alice, 200},
							} {
								before := len(h.upstream.paths())
								req, _ := http.NewRequest(method, "https://"+hostPrimary+p, nil)
								if tc.auth != "" {
									req.Header.Set("Authorization", tc.auth)
								}
								res, err := c.Do(req)
								if err != nil {
									t.Fatal(err)
								}
								io.Copy(io.Discard, res.Body)
								res.Body.Close()
								if res.StatusCode != tc.status {
									t.Errorf("%s %s %s %s: status %d, want %d", method, proto, p, tc.name, res.StatusCode, tc.status)
								}
								if tc.status == 401 {
									if res.Header.Get("WWW-Authenticate") == "" {
										t.Errorf("%s %s %s %s: no WWW-Authenticate", method, proto, p, tc.name)
									}
									if n := len(h.upstream.paths()); n != before {
										t.Errorf("%s %s %s %s: an unauthenticated request reached the upstream", method, proto, p, tc.name)
									}
								}
							}
						}
					}
				}
			})
		}
	})
}

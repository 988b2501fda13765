package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// h2client is the harness client over HTTP/2.
func (h *harness) h2client() *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: h.ca.Pool()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, h.addr)
		},
		ForceAttemptHTTP2: true,
	}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// TestNativeMatchesHandler: every kind of answer the gateway gives (from
// the origin, and each refusal) is the same on the native path, over
// HTTP/1.1 and over HTTP/2, as from the net/http handler of a gateway
// without the native paths, and so is its access log line.
func TestNativeMatchesHandler(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", cached), func(t *testing.T) { testNativeMatchesHandler(t, cached) })
	}
}

// testNativeMatchesHandler: with the cache, each request is made once
// first on each gateway (a MISS, or a refusal), so that all paths then
// answer a HIT.
func testNativeMatchesHandler(t *testing.T, cached bool) {
	var ho, hoStd harnessOpts
	if cached {
		ho.edit = withCache(t.TempDir(), "")
		hoStd.edit = withCache(t.TempDir(), "")
	}
	hoStd.noNative = true
	h, std := newHarness(t, ho), newHarness(t, hoStd)
	alice := basic("alice", "alice-pw")
	tests := []struct {
		name, method, host, path, auth string
		status                         int
	}{
		{"index", "GET", hostPrimary, indexPath, alice, 200},
		{"bundle", "GET", hostPrimary, primaryBundle, alice, 200},
		{"head", "HEAD", hostPrimary, primaryBundle, alice, 200},
		{"no credentials", "GET", hostPrimary, indexPath, "", 401},
		{"wrong password", "GET", hostPrimary, indexPath, basic("alice", "nope"), 401},
		{"wrong scheme", "GET", hostPrimary, indexPath, "Bearer x", 401},
		{"user of another site", "GET", hostCommunity, indexPath, alice, 401},
		{"another domain's path", "GET", hostPrimary, commBundle, alice, 404},
		{"encoded traversal", "GET", hostPrimary, "/concelier/exports/mirror/primary/%2e%2e/community/bundle.json", alice, 404},
		{"unknown path", "GET", hostPrimary, "/nope", alice, 404},
		{"query string", "GET", hostPrimary, indexPath + "?x=1", alice, 200},
	}
	keep := []string{"Content-Type", "Cache-Control", "Etag", "Last-Modified", "Www-Authenticate", "Allow",
		"Strict-Transport-Security", "X-Content-Type-Options", "Accept-Ranges", "X-Stella-Export-Id", "Set-Cookie",
		"X-Cache-Status", "Content-Length"}
	type answer struct {
		Status int
		Header http.Header
		Body   string
	}
	do := func(c *http.Client, method, host, path, auth string, wantProto int) answer {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+host+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if res.ProtoMajor != wantProto {
			t.Fatalf("answered over HTTP/%d, want HTTP/%d", res.ProtoMajor, wantProto)
		}
		a := answer{Status: res.StatusCode, Header: http.Header{}, Body: string(b)}
		for _, k := range keep {
			if v, ok := res.Header[k]; ok {
				a.Header[k] = v
			}
		}
		return a
	}
	h1, h2, std2 := h.client(), h.h2client(), std.h2client()
	lines, stdLines := 0, 0
	strip := func(m map[string]any) map[string]any {
		for _, k := range []string{"time", "duration_ms", "upstream_ms"} {
			delete(m, k)
		}
		return m
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Each request's log line is awaited before the next request: a
			// handler on the net/http path logs when it returns, which may be
			// just after its client has the whole answer.
			if cached {
				do(h1, "GET", tc.host, tc.path, tc.auth, 1)
				lines++
				h.waitAccess(lines)
				do(std2, "GET", tc.host, tc.path, tc.auth, 2)
				stdLines++
				std.waitAccess(stdLines)
			}
			slow := do(std2, tc.method, tc.host, tc.path, tc.auth, 2)
			stdLines++
			want := strip(accessLines(t, std, stdLines)[stdLines-1])
			for _, p := range []struct {
				name  string
				c     *http.Client
				proto int
			}{{"HTTP/1.1", h1, 1}, {"HTTP/2", h2, 2}} {
				fast := do(p.c, tc.method, tc.host, tc.path, tc.auth, p.proto)
				lines++
				if fast.Status != tc.status {
					t.Errorf("%s: status %d, want %d", p.name, fast.Status, tc.status)
				}
				if !reflect.DeepEqual(fast, slow) {
					t.Errorf("%s: answers differ\nnative:   %+v\nnet/http: %+v", p.name, fast, slow)
				}
				if got := strip(accessLines(t, h, lines)[lines-1]); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: access log lines differ\nnet/http: %v\nnative:   %v", p.name, want, got)
				}
				if got := fast.Header.Get("X-Cache-Status"); cached && tc.status == 200 && got != "HIT" {
					t.Errorf("%s: X-Cache-Status %q, want HIT", p.name, got)
				}
			}
		})
	}
}

// TestNativeMatchesHandlerOriginFailure: an origin that drops the
// connection is a 502 with the same body, the same log line and one
// upstream error per request on the native path (HTTP/1.1 and HTTP/2)
// and from the net/http handler.
func TestNativeMatchesHandlerOriginFailure(t *testing.T) {
	drop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})
	h := newHarness(t, harnessOpts{upstream: drop})
	std := newHarness(t, harnessOpts{upstream: drop, noNative: true})
	alice := basic("alice", "alice-pw")
	var answers []string
	for _, c := range []struct {
		h     *harness
		c     *http.Client
		proto int
	}{{std, std.h2client(), 2}, {h, h.client(), 1}, {h, h.h2client(), 2}} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+hostPrimary+indexPath, nil)
		req.Header.Set("Authorization", alice)
		res, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadGateway || res.ProtoMajor != c.proto {
			t.Fatalf("HTTP/%d: status %d, want 502 over HTTP/%d", res.ProtoMajor, res.StatusCode, c.proto)
		}
		answers = append(answers, res.Header.Get("Content-Type")+" "+res.Header.Get("Cache-Control")+" "+
			res.Header.Get("Strict-Transport-Security")+" "+string(b))
	}
	if answers[0] != answers[1] || answers[0] != answers[2] {
		t.Errorf("answers differ\nnet/http:        %s\nnative HTTP/1.1: %s\nnative HTTP/2:   %s", answers[0], answers[1], answers[2])
	}
	lines := append(accessLines(t, std, 1), accessLines(t, h, 2)...)
	for _, m := range lines {
		for _, k := range []string{"time", "duration_ms", "upstream_ms"} {
			delete(m, k)
		}
	}
	if !reflect.DeepEqual(lines[0], lines[1]) || !reflect.DeepEqual(lines[0], lines[2]) {
		t.Errorf("access log lines differ\nnet/http: %v\nnative:   %v\nnative:   %v", lines[0], lines[1], lines[2])
	}
	for _, c := range []struct {
		h *harness
		n int
	}{{std, 1}, {h, 2}} {
		want := fmt.Sprintf(`stella_mirror_gateway_upstream_errors_total{reason="other",site="mirror-primary.localhost"} %d`, c.n)
		if m := c.h.metrics(); !strings.Contains(m, want) {
			t.Errorf("upstream errors not counted once per request (want %d):\n%s", c.n, grepLines(m, "upstream_errors"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

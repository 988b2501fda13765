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

// h2client is the harness client over HTTP/2: its requests take the
// gateway's net/http handler (Handler), where the HTTP/1.1 client's plain
// requests take the native path (Native).
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
// the origin, and each refusal) is the same on the native HTTP/1.1 path as
// on the net/http path (HTTP/2), and so is its access log line.
func TestNativeMatchesHandler(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", cached), func(t *testing.T) { testNativeMatchesHandler(t, cached) })
	}
}

// testNativeMatchesHandler: with the cache, each request is made once
// first (a MISS, or a refusal), so that both paths then answer a HIT.
func testNativeMatchesHandler(t *testing.T, cached bool) {
	var ho harnessOpts
	if cached {
		ho.edit = withCache(t.TempDir(), "")
	}
	h := newHarness(t, ho)
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
		"X-Cache-Status"}
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
	h1, h2 := h.client(), h.h2client()
	lines := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Each request's log line is awaited before the next request: a
			// handler on the net/http path logs when it returns, which may be
			// just after its client has the whole answer.
			if cached {
				do(h1, "GET", tc.host, tc.path, tc.auth, 1)
				lines++
				h.waitAccess(lines)
			}
			slow := do(h2, tc.method, tc.host, tc.path, tc.auth, 2)
			h.waitAccess(lines + 1)
			fast := do(h1, tc.method, tc.host, tc.path, tc.auth, 1)
			if fast.Status != tc.status {
				t.Errorf("status %d, want %d", fast.Status, tc.status)
			}
			if !reflect.DeepEqual(fast, slow) {
				t.Errorf("answers differ\nnative:   %+v\nnet/http: %+v", fast, slow)
			}
			lines += 2
			all := accessLines(t, h, lines)
			a, b := all[lines-2], all[lines-1]
			for _, m := range []map[string]any{a, b} {
				for _, k := range []string{"time", "duration_ms", "upstream_ms"} {
					delete(m, k)
				}
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("access log lines differ\nnet/http: %v\nnative:   %v", a, b)
			}
			if got := fast.Header.Get("X-Cache-Status"); cached && tc.status == 200 && got != "HIT" {
				t.Errorf("X-Cache-Status %q, want HIT", got)
			}
		})
	}
}

// TestNativeMatchesHandlerOriginFailure: an origin that drops the
// connection is a 502 with the same body, the same log line and one
// upstream error per request on both paths.
func TestNativeMatchesHandlerOriginFailure(t *testing.T) {
	h := newHarness(t, harnessOpts{upstream: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})})
	alice := basic("alice", "alice-pw")
	var answers []string
	for i, c := range []*http.Client{h.h2client(), h.client()} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+hostPrimary+indexPath, nil)
		req.Header.Set("Authorization", alice)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadGateway || res.ProtoMajor != 2-i {
			t.Fatalf("HTTP/%d: status %d, want 502", res.ProtoMajor, res.StatusCode)
		}
		answers = append(answers, res.Header.Get("Content-Type")+" "+res.Header.Get("Cache-Control")+" "+
			res.Header.Get("Strict-Transport-Security")+" "+string(b))
	}
	if answers[0] != answers[1] {
		t.Errorf("answers differ\nnet/http: %s\nnative:   %s", answers[0], answers[1])
	}
	lines := accessLines(t, h, 2)
	for _, m := range lines {
		for _, k := range []string{"time", "duration_ms", "upstream_ms"} {
			delete(m, k)
		}
	}
	if !reflect.DeepEqual(lines[0], lines[1]) {
		t.Errorf("access log lines differ\nnet/http: %v\nnative:   %v", lines[0], lines[1])
	}
	if m := h.metrics(); !strings.Contains(m, `stella_mirror_gateway_upstream_errors_total{reason="other",site="mirror-primary.localhost"} 2`) {
		t.Errorf("upstream errors not counted once per request:\n%s", grepLines(m, "upstream_errors"))
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

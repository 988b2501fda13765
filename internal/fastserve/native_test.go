package fastserve

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/internal/connguard"
)

type markKey struct{}

// startNative serves with both a Native hook and a Handler; the hook takes
// the requests Plain accepts whose path starts with /native/ (and panics
// on /native/panic), and records every path it was offered.
func startNative(t *testing.T) (addr string, offered func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{
		ReadHeaderTimeout: 2 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "handler "+r.URL.Path)
			if v, ok := r.Context().Value(markKey{}).(string); ok {
				io.WriteString(w, " marked "+v)
			}
		}),
		Native: func(fc *fasthttp.RequestCtx) bool {
			mu.Lock()
			seen = append(seen, string(fc.Path()))
			mu.Unlock()
			u, ok := Plain(fc)
			if !ok || !strings.HasPrefix(u.Path, "/native/") {
				return false
			}
			switch u.Path {
			case "/native/panic":
				panic("boom")
			case "/native/mark":
				WithContextValue(fc, markKey{}, "by the hook")
				return false
			case "/native/conn":
				// Plain TCP connections come guarded (write-progress
				// deadline) with raw reads and writes (rawsock) below,
				// and their TCP connection stays reachable for sendfile.
				gc := fc.Conn().(*connguard.Conn)
				fc.SetBodyString(fmt.Sprintf("%T %T %v", gc, gc.Conn, gc.TCP() != nil))
				return true
			}
			fc.SetBodyString("native " + u.EscapedPath())
			return true
		},
	})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// TestNativeHook: the hook answers what it takes, declines the rest to the
// Handler untouched, and a panic in it ends that connection only.
func TestNativeHook(t *testing.T) {
	addr, offered := startNative(t)
	tests := []struct {
		name, req, want string
	}{
		{"taken", "GET /native/a%2Fb HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "native /native/a%2Fb"},
		{"declined", "GET /other HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "handler /other"},
		{"not plain: a body", "GET /native/a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi", "handler /native/a"},
		{"not plain: POST", "POST /native/a HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", "handler /native/a"},
		{"not plain: HTTP/1.0", "GET /native/a HTTP/1.0\r\nHost: a\r\n\r\n", "handler /native/a"},
		{"not plain: absolute target", "GET http://a/native/a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "handler /native/a"},
		{"not plain: Expect", "GET /native/a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n", "handler /native/a"},
		{"declined with a context value", "GET /native/mark HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "handler /native/mark marked by the hook"},
		{"the value is for one request", "GET /native/mark HTTP/1.1\r\nHost: a\r\n\r\nGET /other HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "handler /other"},
		{"panic", "GET /native/panic HTTP/1.1\r\nHost: a\r\n\r\n", ""},
		{"after the panic", "GET /native/b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "native /native/b"},
		{"raw connection", "GET /native/conn HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", rawConnWant},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := raw(t, addr, tc.req)
			if tc.want == "" {
				if out != "" {
					t.Fatalf("answer %q, want the connection closed without one", out)
				}
				return
			}
			if !strings.Contains(out, "HTTP/1.1 200 ") || !strings.HasSuffix(out, "\r\n\r\n"+tc.want) {
				t.Fatalf("answer %q, want 200 with body %q", out, tc.want)
			}
		})
	}
	if n := len(offered()); n != len(tests)+1 { // one case sends two requests
		t.Errorf("the hook was offered %d requests, want %d", n, len(tests)+1)
	}
}

// TestNativeHookNotOfferedBadRequests: malformed and smuggling requests
// are refused as without a hook: fasthttp refuses some before any handler,
// and the hook declines the rest (Plain), which the adapter then refuses.
func TestNativeHookNotOfferedBadRequests(t *testing.T) {
	addr, offered := startNative(t)
	for _, req := range []string{
		"GET /native/a HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /native/a HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n",
	} {
		if out := raw(t, addr, req); !strings.HasPrefix(out, "HTTP/1.1 4") {
			t.Errorf("answer %q, want a 4xx", firstLine(out))
		}
	}
	// Requests the hook declines get the adapter's checks.
	for _, req := range []string{
		"GET /native/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /native/a HTTP/1.1\r\n\r\n",
	} {
		if out := raw(t, addr, req); !strings.HasPrefix(out, "HTTP/1.1 400") {
			t.Errorf("answer %q, want 400", firstLine(out))
		}
	}
	for _, p := range offered() {
		if p == "/native/a" {
			continue // offered, and declined (Plain said no)
		}
		t.Errorf("the hook was offered %q", p)
	}
}

// rawConnWant is what /native/conn answers: on Linux the connection is
// rawsock's, elsewhere net's own.
var rawConnWant = func() string {
	if runtime.GOOS == "linux" {
		return "*connguard.Conn *rawsock.conn true"
	}
	return "*connguard.Conn *net.TCPConn true"
}()

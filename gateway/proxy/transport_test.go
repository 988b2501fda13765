package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The helpers of this file are prefixed "tr" so as not to collide with
// those of the package's other test files.

// trBound is the upper bound on anything that should happen promptly; it
// only limits how long a failing test takes.
const trBound = 5 * time.Second

// trOrigin is an httptest server counting the connections it accepts and
// reporting each one it closes.
type trOrigin struct {
	*httptest.Server
	newConns atomic.Int32
	closed   chan struct{} // one value per connection closed (or hijacked)
}

func trStartOrigin(t *testing.T, useTLS bool, h http.HandlerFunc) *trOrigin {
	t.Helper()
	o := &trOrigin{closed: make(chan struct{}, 1024)}
	o.Server = httptest.NewUnstartedServer(h)
	o.Config.ErrorLog = log.New(io.Discard, "", 0)
	o.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			o.newConns.Add(1)
		case http.StateClosed, http.StateHijacked:
			o.closed <- struct{}{}
		}
	}
	if useTLS {
		o.StartTLS()
	} else {
		o.Start()
	}
	// Handlers that block also wait for t.Context(), which ends before
	// the cleanups run, so Close does not wait for them.
	t.Cleanup(o.Close)
	return o
}

// waitClosed waits until the origin has closed n more connections.
func (o *trOrigin) waitClosed(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-o.closed:
		case <-time.After(trBound):
			t.Fatalf("the origin saw %d of %d expected connection closes", i, n)
		}
	}
}

// trRaw is a hand-written origin on a loopback listener: serve runs for
// each accepted connection (n counts from 1), which is closed when serve
// returns and at the end of the test.
type trRaw struct {
	addr     string
	accepted atomic.Int32
}

// trAssertNoIdle fails t when tr keeps an idle connection: every test
// that ends in an error, a timeout or an early close must leave none.
func trAssertNoIdle(t *testing.T, tr *Transport) {
	t.Helper()
	if n := trIdle(tr); n != 0 {
		t.Errorf("%d idle connections, want 0", n)
	}
}

func trStartRaw(t *testing.T, serve func(n int, c net.Conn, br *bufio.Reader)) *trRaw {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &trRaw{addr: ln.Addr().String()}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		conns   []net.Conn
		closing bool
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(s.accepted.Add(1))
			mu.Lock()
			if closing {
				mu.Unlock()
				c.Close()
				return
			}
			conns = append(conns, c)
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(n, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closing = true
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *trRaw) url(path string) string { return "http://" + s.addr + path }

// trReadRequest reads one request (and its body) from br.
func trReadRequest(br *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return req, err
}

// trAnswer writes a 200 with body and a Content-Length.
func trAnswer(c net.Conn, body string) error {
	_, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	return err
}

// trKeepAnswering answers every request on the connection with body.
func trKeepAnswering(c net.Conn, br *bufio.Reader, body string) {
	for {
		if _, err := trReadRequest(br); err != nil {
			return
		}
		if trAnswer(c, body) != nil {
			return
		}
	}
}

// trReset closes c with an RST rather than a FIN.
func trReset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// trTransport is NewTransport(o) whose idle connections are closed at the
// end of the test.
func trTransport(t *testing.T, o Options) *Transport {
	t.Helper()
	tr, err := NewTransport(o)
	if err != nil {
		t.Fatalf("NewTransport: %v", err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// trIdle is the number of kept-alive connections of tr.
func trIdle(tr *Transport) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, l := range tr.idle {
		n += len(l)
	}
	return n
}

func trRequest(t *testing.T, ctx context.Context, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// trRoundTrip sends req, failing the test on an error.
func trRoundTrip(t *testing.T, tr *Transport, req *http.Request) *http.Response {
	t.Helper()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip %s %s: %v", req.Method, req.URL, err)
	}
	return resp
}

// trFetch GETs url, reads the body to its end, closes it and returns the
// status and body.
func trFetch(t *testing.T, tr *Transport, url string) (int, string) {
	t.Helper()
	resp := trRoundTrip(t, tr, trRequest(t, t.Context(), http.MethodGet, url))
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatalf("GET %s: closing the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// trWithin runs f and fails the test if it has not returned within d.
func trWithin(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

func trAssertTimeout(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("error %v (%T) is not a net.Error with Timeout() true", err, err)
	}
}

// 1. Response framing: status, headers and body of each kind of response,
// all on one connection (which also proves the connection stays in step
// after bodiless responses).
func TestTransportResponses(t *testing.T) {
	o := trStartOrigin(t, false, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Case", strings.TrimPrefix(r.URL.Path, "/"))
		switch r.URL.Path {
		case "/length", "/head":
			h.Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		case "/chunked":
			h.Set("Trailer", "X-Sum")
			io.WriteString(w, "hello ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "chunked world")
			h.Set("X-Sum", "42")
		case "/notmodified":
			h.Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		case "/empty":
			h.Set("Content-Length", "0")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/notfound":
			h.Set("Content-Length", "9")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "not found")
		}
	})
	tr := trTransport(t, Options{})
	const anyLength = -2
	tests := []struct {
		name, method, path string
		status             int
		body               string
		contentLength      int64
		chunked            bool
		header, trailer    http.Header
	}{
		{name: "Content-Length", method: "GET", path: "/length", status: 200, body: "hello world", contentLength: 11},
		{name: "chunked with trailer", method: "GET", path: "/chunked", status: 200, body: "hello chunked world", contentLength: -1, chunked: true, trailer: http.Header{"X-Sum": {"42"}}},
		{name: "HEAD", method: "HEAD", path: "/head", status: 200, body: "", contentLength: 11},
		{name: "304", method: "GET", path: "/notmodified", status: 304, body: "", contentLength: anyLength, header: http.Header{"Etag": {`"v1"`}}},
		{name: "zero-length", method: "GET", path: "/empty", status: 200, body: "", contentLength: 0},
		{name: "204", method: "GET", path: "/nocontent", status: 204, body: "", contentLength: anyLength},
		{name: "404 with body", method: "GET", path: "/notfound", status: 404, body: "not found", contentLength: 9},
		{name: "Content-Length after the others", method: "GET", path: "/length", status: 200, body: "hello world", contentLength: 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := trRequest(t, t.Context(), tt.method, o.URL+tt.path)
			resp := trRoundTrip(t, tr, req)
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if resp.Request != req {
				t.Errorf("resp.Request is not the request sent")
			}
			if resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
				t.Errorf("proto %s, want HTTP/1.1", resp.Proto)
			}
			if got, want := resp.Header.Get("X-Case"), strings.TrimPrefix(tt.path, "/"); got != want {
				t.Errorf("X-Case %q, want %q", got, want)
			}
			for k, v := range tt.header {
				if got := resp.Header.Values(k); fmt.Sprint(got) != fmt.Sprint(v) {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.contentLength != anyLength && resp.ContentLength != tt.contentLength {
				t.Errorf("ContentLength %d, want %d", resp.ContentLength, tt.contentLength)
			}
			if isChunked := len(resp.TransferEncoding) == 1 && resp.TransferEncoding[0] == "chunked"; isChunked != tt.chunked {
				t.Errorf("TransferEncoding %q, chunked want %v", resp.TransferEncoding, tt.chunked)
			}
			if resp.Body == nil {
				t.Fatal("nil Body")
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if string(b) != tt.body {
				t.Errorf("body %q, want %q", b, tt.body)
			}
			for k, v := range tt.trailer {
				if got := resp.Trailer.Values(k); fmt.Sprint(got) != fmt.Sprint(v) {
					t.Errorf("trailer %s = %q, want %q", k, got, v)
				}
			}
			if err := resp.Body.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if n := trIdle(tr); n != 1 {
				t.Errorf("%d idle connections after the body was read and closed, want 1", n)
			}
		})
	}
	if n := o.newConns.Load(); n != 1 {
		t.Errorf("the origin saw %d connections, want 1 (every response should leave the connection reusable)", n)
	}
}

// 2. Bodies read to their end and closed give their connection back.
func TestTransportReusesConnection(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB: more than one buffer
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
	}{
		{"Content-Length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			io.WriteString(w, big)
		}, big},
		{"chunked", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, big[:100])
			w.(http.Flusher).Flush()
			io.WriteString(w, big[100:])
		}, big},
		{"empty", func(w http.ResponseWriter, r *http.Request) {}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := trStartOrigin(t, false, tt.handler)
			tr := trTransport(t, Options{})
			for i := 0; i < 10; i++ {
				status, body := trFetch(t, tr, o.URL+"/"+strconv.Itoa(i))
				if status != 200 || body != tt.want {
					t.Fatalf("request %d: status %d, body of %d bytes (want 200, %d bytes)", i, status, len(body), len(tt.want))
				}
			}
			if n := o.newConns.Load(); n != 1 {
				t.Errorf("10 sequential requests used %d connections, want 1", n)
			}
			if n := trIdle(tr); n != 1 {
				t.Errorf("%d idle connections, want 1", n)
			}
		})
	}
}

// 3. A body closed before its end closes the connection, at once, without
// reading the rest.
func TestTransportEarlyCloseDiscardsConnection(t *testing.T) {
	const size = 1 << 20
	tests := []struct {
		name  string
		stall bool // the origin stops after the first 64 KiB until the client leaves
	}{
		{"origin stalls after the first chunk", true},
		{"origin sends the whole body", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientGone := make(chan struct{}, 1)
			o := trStartOrigin(t, false, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/big" {
					io.WriteString(w, "small")
					return
				}
				w.Header().Set("Content-Length", strconv.Itoa(size))
				chunk := bytes.Repeat([]byte{'x'}, 64<<10)
				w.Write(chunk)
				w.(http.Flusher).Flush()
				if tt.stall {
					select {
					case <-r.Context().Done(): // the client closed the connection
						clientGone <- struct{}{}
					case <-t.Context().Done():
					}
					return
				}
				for i := 1; i < size/len(chunk); i++ {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
			tr := trTransport(t, Options{})
			resp := trRoundTrip(t, tr, trRequest(t, t.Context(), "GET", o.URL+"/big"))
			if resp.ContentLength != size {
				t.Fatalf("ContentLength %d, want %d", resp.ContentLength, size)
			}
			buf := make([]byte, 10)
			if _, err := io.ReadFull(resp.Body, buf); err != nil {
				t.Fatalf("reading 10 bytes: %v", err)
			}
			var closeErr error
			trWithin(t, 2*time.Second, "Close of a partly read body", func() { closeErr = resp.Body.Close() })
			if closeErr != nil {
				t.Errorf("Close: %v", closeErr)
			}
			if n := trIdle(tr); n != 0 {
				t.Errorf("%d idle connections after an early Close, want 0", n)
			}
			if _, err := resp.Body.Read(buf); err == nil {
				t.Errorf("Read after Close succeeded")
			}
			if err := resp.Body.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			// The origin sees the connection closed.
			o.waitClosed(t, 1)
			if tt.stall {
				select {
				case <-clientGone:
				case <-time.After(trBound):
					t.Fatal("the origin's handler did not see the client leave")
				}
			}
			status, body := trFetch(t, tr, o.URL+"/small")
			if status != 200 || body != "small" {
				t.Fatalf("next request: %d %q", status, body)
			}
			if n := o.newConns.Load(); n != 2 {
				t.Errorf("the origin saw %d connections, want 2 (the early-closed one must not be reused)", n)
			}
		})
	}
}

// 4. A kept-alive connection the origin closed while idle: the next request
// is retried on a new connection.
func TestTransportRetriesConnectionClosedWhileIdle(t *testing.T) {
	tests := []struct {
		name string
		// after answering the first request on the first connection; it
		// sends to closed once the connection is closed, or never.
		after         func(c net.Conn, br *bufio.Reader, closed chan<- struct{})
		waitForClosed bool
	}{
		{"FIN while idle", func(c net.Conn, br *bufio.Reader, closed chan<- struct{}) {
			c.Close()
			closed <- struct{}{}
		}, true},
		{"RST while idle", func(c net.Conn, br *bufio.Reader, closed chan<- struct{}) {
			trReset(c)
			closed <- struct{}{}
		}, true},
		{"closed after reading the next request", func(c net.Conn, br *bufio.Reader, closed chan<- struct{}) {
			trReadRequest(br)
			c.Close()
		}, false},
		{"reset after reading the next request", func(c net.Conn, br *bufio.Reader, closed chan<- struct{}) {
			trReadRequest(br)
			trReset(c)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			closed := make(chan struct{}, 1)
			s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
				if n > 1 {
					trKeepAnswering(c, br, "c"+strconv.Itoa(n))
					return
				}
				if _, err := trReadRequest(br); err != nil {
					return
				}
				trAnswer(c, "c1")
				tt.after(c, br, closed)
			})
			tr := trTransport(t, Options{})
			if status, body := trFetch(t, tr, s.url("/1")); status != 200 || body != "c1" {
				t.Fatalf("first request: %d %q", status, body)
			}
			if n := trIdle(tr); n != 1 {
				t.Fatalf("%d idle connections after the first request, want 1", n)
			}
			if tt.waitForClosed {
				select {
				case <-closed:
				case <-time.After(trBound):
					t.Fatal("the origin did not close the connection")
				}
			}
			status, body := trFetch(t, tr, s.url("/2"))
			if status != 200 || body != "c2" {
				t.Fatalf("second request: %d %q, want 200 \"c2\" (from a second connection)", status, body)
			}
			if n := s.accepted.Load(); n != 2 {
				t.Errorf("the origin accepted %d connections, want 2", n)
			}
		})
	}
}

// The retry happens once only, on a connection that was reused, and not
// after a timeout or once the origin started answering.
func TestTransportRetryLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// second serves the second request on the first connection;
		// later connections get "again" if a retry reaches them.
		second        func(c net.Conn, br *bufio.Reader)
		retryAlsoDies bool // the second connection dies as the first did
		wantAccepted  int32
		wantTimeout   bool
	}{
		{name: "retried once only", second: func(c net.Conn, br *bufio.Reader) {
			trReadRequest(br)
			c.Close()
		}, retryAlsoDies: true, wantAccepted: 2},
		{name: "no retry after a header timeout", second: func(c net.Conn, br *bufio.Reader) {
			trReadRequest(br)
			io.Copy(io.Discard, c)
		}, wantAccepted: 1, wantTimeout: true},
		{name: "no retry once the response started", second: func(c net.Conn, br *bufio.Reader) {
			trReadRequest(br)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Le")
			c.Close()
		}, wantAccepted: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
				switch {
				case n == 1:
					if _, err := trReadRequest(br); err != nil {
						return
					}
					trAnswer(c, "c1")
					tt.second(c, br)
				case n == 2 && tt.retryAlsoDies:
					trReadRequest(br)
					c.Close()
				default:
					trKeepAnswering(c, br, "again")
				}
			})
			tr := trTransport(t, Options{HeaderTimeout: 300 * time.Millisecond, BodyIdleTimeout: 300 * time.Millisecond})
			if status, body := trFetch(t, tr, s.url("/1")); status != 200 || body != "c1" {
				t.Fatalf("first request: %d %q", status, body)
			}
			var (
				resp *http.Response
				err  error
			)
			trWithin(t, trBound, "RoundTrip", func() {
				resp, err = tr.RoundTrip(trRequest(t, t.Context(), "GET", s.url("/2")))
			})
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Fatalf("second request succeeded (%d %q), want an error", resp.StatusCode, b)
			}
			if tt.wantTimeout {
				trAssertTimeout(t, err)
			}
			if n := s.accepted.Load(); n != tt.wantAccepted {
				t.Errorf("the origin accepted %d connections, want %d", n, tt.wantAccepted)
			}
			if n := trIdle(tr); n != 0 {
				t.Errorf("%d idle connections after a failed exchange, want 0", n)
			}
		})
	}
}

// Several kept-alive connections the origin closed while idle (an origin
// restart): the retry must not land on another dead pooled connection.
func TestTransportRetryAfterOriginClosedAllIdleConnections(t *testing.T) {
	closeAll := make(chan struct{})
	closed := make(chan struct{}, 2)
	s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
		if n > 2 {
			trKeepAnswering(c, br, "c"+strconv.Itoa(n))
			return
		}
		if _, err := trReadRequest(br); err != nil {
			return
		}
		trAnswer(c, "c"+strconv.Itoa(n))
		select {
		case <-closeAll:
		case <-t.Context().Done():
			return
		}
		c.Close()
		closed <- struct{}{}
	})
	tr := trTransport(t, Options{})
	// Two responses open at once: two connections.
	a := trRoundTrip(t, tr, trRequest(t, t.Context(), "GET", s.url("/a")))
	b := trRoundTrip(t, tr, trRequest(t, t.Context(), "GET", s.url("/b")))
	for _, resp := range []*http.Response{a, b} {
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := trIdle(tr); n != 2 {
		t.Fatalf("%d idle connections, want 2", n)
	}
	close(closeAll)
	for i := 0; i < 2; i++ {
		select {
		case <-closed:
		case <-time.After(trBound):
			t.Fatal("the origin did not close its connections")
		}
	}
	resp, err := tr.RoundTrip(trRequest(t, t.Context(), "GET", s.url("/c")))
	if err != nil {
		t.Fatalf("BUG: after the origin closed its 2 idle connections, RoundTrip failed: %v\n"+
			"(the retry took the other dead pooled connection instead of dialing a new one; %d connections accepted)",
			err, s.accepted.Load())
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "c3" {
		t.Fatalf("body %q, %v; want \"c3\"", body, err)
	}
}

// An origin that answers an idle connection (a "408 Request Timeout" before
// closing it, as some servers do): that stale answer must not be taken for
// the response to the next request (net/http discards it).
func TestTransportUnsolicitedResponseOnIdleConnection(t *testing.T) {
	closed := make(chan struct{}, 1)
	s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
		if n > 1 {
			trKeepAnswering(c, br, "c"+strconv.Itoa(n))
			return
		}
		if _, err := trReadRequest(br); err != nil {
			return
		}
		trAnswer(c, "c1")
		io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		c.Close()
		closed <- struct{}{}
	})
	tr := trTransport(t, Options{})
	if status, body := trFetch(t, tr, s.url("/1")); status != 200 || body != "c1" {
		t.Fatalf("first request: %d %q", status, body)
	}
	select {
	case <-closed:
	case <-time.After(trBound):
		t.Fatal("the origin did not close the connection")
	}
	status, body := trFetch(t, tr, s.url("/2"))
	if status != 200 || body != "c2" {
		t.Fatalf("BUG: second request got %d %q, want 200 \"c2\": the 408 the origin sent on the idle "+
			"connection was returned as the response to a request it never saw", status, body)
	}
}

// 5. An origin that accepts and never answers: a timeout error.
func TestTransportHeaderTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
		io.Copy(io.Discard, c) // reads the request, never answers
	})
	tr := trTransport(t, Options{HeaderTimeout: timeout, BodyIdleTimeout: 10 * time.Second})
	start := time.Now()
	var err error
	trWithin(t, trBound, "RoundTrip to a silent origin", func() {
		var resp *http.Response
		resp, err = tr.RoundTrip(trRequest(t, t.Context(), "GET", s.url("/")))
		if resp != nil {
			resp.Body.Close()
		}
	})
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("RoundTrip succeeded")
	}
	trAssertTimeout(t, err)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("header timeout reported as a context error: %v", err)
	}
	if elapsed < timeout-50*time.Millisecond {
		t.Errorf("timed out after %v, before HeaderTimeout %v", elapsed, timeout)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("the origin accepted %d connections, want 1 (no retry after a timeout)", n)
	}
	trAssertNoIdle(t, tr)
}

// 6. An origin that stalls mid-body: the body read fails with a timeout.
func TestTransportBodyIdleTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := trReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		io.Copy(io.Discard, c) // then stalls
	})
	tr := trTransport(t, Options{HeaderTimeout: 10 * time.Second, BodyIdleTimeout: timeout})
	resp := trRoundTrip(t, tr, trRequest(t, t.Context(), "GET", s.url("/")))
	start := time.Now()
	var (
		data []byte
		err  error
	)
	trWithin(t, trBound, "reading a stalled body", func() { data, err = io.ReadAll(resp.Body) })
	elapsed := time.Since(start)
	resp.Body.Close()
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading a stalled body: %v, want a timeout", err)
	}
	trAssertTimeout(t, err)
	if string(data) != "0123456789" {
		t.Errorf("read %q before the timeout, want %q", data, "0123456789")
	}
	if elapsed < timeout-50*time.Millisecond {
		t.Errorf("timed out after %v, before BodyIdleTimeout %v", elapsed, timeout)
	}
	if n := trIdle(tr); n != 0 {
		t.Errorf("%d idle connections after a body timeout, want 0", n)
	}
}

// BodyIdleTimeout bounds each read, not the body: a slow but steady origin
// is read to the end, and HeaderTimeout does not apply to the body.
func TestTransportBodyIdleTimeoutIsPerRead(t *testing.T) {
	t.Parallel()
	const (
		timeout = 300 * time.Millisecond
		every   = 50 * time.Millisecond
		chunks  = 12 // 600 ms in all: twice each timeout
	)
	s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := trReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		tick := time.NewTicker(every) // paces the origin; no synchronisation
		defer tick.Stop()
		for i := 0; i < chunks; i++ {
			select {
			case <-tick.C:
			case <-t.Context().Done():
				return
			}
			if _, err := fmt.Fprintf(c, "1\r\n%c\r\n", 'a'+i); err != nil {
				return
			}
		}
		io.WriteString(c, "0\r\n\r\n")
		io.Copy(io.Discard, c)
	})
	tr := trTransport(t, Options{HeaderTimeout: timeout, BodyIdleTimeout: timeout})
	start := time.Now()
	status, body := trFetch(t, tr, s.url("/"))
	if elapsed := time.Since(start); elapsed < chunks*every-every {
		t.Fatalf("the body took %v, the test wants it longer than the timeouts", elapsed)
	}
	if status != 200 || body != "abcdefghijkl" {
		t.Errorf("got %d %q, want 200 \"abcdefghijkl\"", status, body)
	}
}

// 7. An origin that breaks the connection mid-body: reading fails rather
// than ending cleanly.
func TestTransportBodyInterrupted(t *testing.T) {
	tests := []struct {
		name, head string
		reset      bool
	}{
		{"Content-Length, FIN", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", false},
		{"Content-Length, RST", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", true},
		{"chunked, FIN", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n", false},
		{"chunked, RST", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n", true},
		{"chunked, FIN inside a chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n14\r\n0123456789", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cut := make(chan struct{})
			s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
				if _, err := trReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, tt.head)
				select {
				case <-cut: // the client has the headers
				case <-t.Context().Done():
					return
				}
				if tt.reset {
					trReset(c)
				} else {
					c.Close()
				}
			})
			tr := trTransport(t, Options{HeaderTimeout: trBound, BodyIdleTimeout: trBound})
			resp := trRoundTrip(t, tr, trRequest(t, t.Context(), "GET", s.url("/")))
			close(cut)
			var (
				data []byte
				err  error
			)
			trWithin(t, trBound, "reading a broken body", func() { data, err = io.ReadAll(resp.Body) })
			resp.Body.Close()
			if err == nil {
				t.Fatalf("io.ReadAll of a truncated body succeeded with %q", data)
			}
			if errors.Is(err, io.EOF) {
				t.Errorf("error %v is io.EOF", err)
			}
			if isTimeout(err) {
				t.Errorf("error %v is a timeout", err)
			}
			if !strings.HasPrefix("0123456789", string(data)) || (!tt.reset && string(data) != "0123456789") {
				t.Errorf("read %q before the error, want %q", data, "0123456789")
			}
			if n := trIdle(tr); n != 0 {
				t.Errorf("%d idle connections after a broken body, want 0", n)
			}
		})
	}
}

// A body that runs to the connection's close (no framing) is complete at
// EOF; the connection is not reused.
func TestTransportBodyUntilClose(t *testing.T) {
	s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := trReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil close "+strconv.Itoa(n))
	})
	tr := trTransport(t, Options{})
	for i := 1; i <= 2; i++ {
		status, body := trFetch(t, tr, s.url("/"))
		if want := "until close " + strconv.Itoa(i); status != 200 || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, status, body, want)
		}
		if n := trIdle(tr); n != 0 {
			t.Fatalf("%d idle connections after a body delimited by close, want 0", n)
		}
	}
}

// trHookConn lets a test watch, and act on, what the transport does to a
// connection (white box: it is slipped under a persistConn's countingConn).
// The hooks run on the goroutine making the call.
type trHookConn struct {
	net.Conn
	afterWrite        func()
	afterSetDeadline  func(time.Time)
	afterSetReadDline func(time.Time)
}

func (c *trHookConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.afterWrite != nil {
		c.afterWrite()
	}
	return n, err
}

func (c *trHookConn) SetDeadline(d time.Time) error {
	err := c.Conn.SetDeadline(d)
	if c.afterSetDeadline != nil {
		c.afterSetDeadline(d)
	}
	return err
}

func (c *trHookConn) SetReadDeadline(d time.Time) error {
	err := c.Conn.SetReadDeadline(d)
	if c.afterSetReadDline != nil {
		c.afterSetReadDline(d)
	}
	return err
}

// trHookIdle slips h under the one idle connection of tr.
func trHookIdle(t *testing.T, tr *Transport, h *trHookConn) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var pcs []*persistConn
	for _, l := range tr.idle {
		pcs = append(pcs, l...)
	}
	if len(pcs) != 1 {
		t.Fatalf("%d idle connections, want 1", len(pcs))
	}
	h.Conn = pcs[0].conn.Conn
	pcs[0].conn.Conn = h
}

// trOnPastDeadline returns a hook for SetDeadline and a channel closed once
// a deadline in the past is set (what a cancelled request context does).
func trOnPastDeadline() (func(time.Time), <-chan struct{}) {
	past := make(chan struct{})
	var once sync.Once
	return func(d time.Time) {
		if !d.IsZero() && d.Before(time.Now()) {
			once.Do(func() { close(past) })
		}
	}, past
}

// trSilentSecond is an origin whose connections answer their first request
// ("first") and never the second, which they report to got.
func trSilentSecond(t *testing.T, got chan<- struct{}) *trRaw {
	return trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := trReadRequest(br); err != nil {
			return
		}
		trAnswer(c, "first")
		if _, err := trReadRequest(br); err != nil {
			return
		}
		got <- struct{}{}
		io.Copy(io.Discard, c) // never answers
	})
}

// 8. Cancelling the request context while the transport waits for the
// response headers ends RoundTrip at once. The cancellation is sent once
// the origin has the request and the transport has set its header
// deadline (observed through a hook on the reused connection), so that it
// cannot fall in the window TestTransportCancelRightAfterTheRequestIsWritten
// is about.
func TestTransportContextCancelAwaitingHeaders(t *testing.T) {
	t.Parallel()
	got := make(chan struct{}, 1)
	s := trSilentSecond(t, got)
	tr := trTransport(t, Options{HeaderTimeout: 20 * time.Second, BodyIdleTimeout: 20 * time.Second})
	if status, body := trFetch(t, tr, s.url("/1")); status != 200 || body != "first" {
		t.Fatalf("first request: %d %q", status, body)
	}
	armed := make(chan struct{}, 1)
	trHookIdle(t, tr, &trHookConn{afterSetReadDline: func(d time.Time) {
		if d.After(time.Now()) { // the header deadline
			select {
			case armed <- struct{}{}:
			default:
			}
		}
	}})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for _, ch := range []chan struct{}{got, armed} {
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
		cancel()
	}()
	var err error
	trWithin(t, 2*time.Second, "RoundTrip cancelled while awaiting headers", func() {
		var resp *http.Response
		resp, err = tr.RoundTrip(trRequest(t, ctx, "GET", s.url("/2")))
		if resp != nil {
			resp.Body.Close()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip error %v (%T), want one wrapping context.Canceled", err, err)
	}
	if n := s.accepted.Load(); n != 1 {
		t.Errorf("the origin accepted %d connections, want 1 (no retry of a cancelled request)", n)
	}
	trAssertNoIdle(t, tr)
}

// A context that ends before the response (its deadline passes while
// awaiting headers, or it was cancelled before RoundTrip).
func TestTransportContextEnded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ctx     func(parent context.Context) (context.Context, context.CancelFunc)
		wantErr error
		dials   bool
	}{
		{"deadline while awaiting headers", func(parent context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(parent, 200*time.Millisecond)
		}, context.DeadlineExceeded, true},
		{"cancelled before the request", func(parent context.Context) (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(parent)
			cancel()
			return ctx, cancel
		}, context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
				io.Copy(io.Discard, c) // never answers
			})
			tr := trTransport(t, Options{HeaderTimeout: 20 * time.Second, BodyIdleTimeout: 20 * time.Second})
			ctx, cancel := tt.ctx(t.Context())
			defer cancel()
			var err error
			trWithin(t, 2*time.Second, "RoundTrip with its context ended", func() {
				var resp *http.Response
				resp, err = tr.RoundTrip(trRequest(t, ctx, "GET", s.url("/")))
				if resp != nil {
					resp.Body.Close()
				}
			})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("RoundTrip error %v (%T), want one wrapping %v", err, err, tt.wantErr)
			}
			if !tt.dials {
				if n := s.accepted.Load(); n != 0 {
					t.Errorf("the origin accepted %d connections for a cancelled request", n)
				}
			}
			trAssertNoIdle(t, tr)
		})
	}
}

// A cancellation that arrives after the request is written but before the
// transport sets its header deadline must still end RoundTrip at once.
// The hook makes this deterministic: the cancellation is sent, and has set
// its past deadline, before the request's Write returns.
func TestTransportCancelRightAfterTheRequestIsWritten(t *testing.T) {
	t.Parallel()
	// So long that only the cancellation can end RoundTrip within trBound:
	// no race between the two, whatever the load.
	const headerTimeout = time.Hour
	got := make(chan struct{}, 1)
	s := trSilentSecond(t, got)
	tr := trTransport(t, Options{HeaderTimeout: headerTimeout, BodyIdleTimeout: headerTimeout})
	if status, body := trFetch(t, tr, s.url("/1")); status != 200 || body != "first" {
		t.Fatalf("first request: %d %q", status, body)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	onDeadline, past := trOnPastDeadline()
	h := &trHookConn{afterSetDeadline: onDeadline}
	h.afterWrite = func() {
		cancel()
		select {
		case <-past: // the cancellation reached the connection
		case <-time.After(time.Second): // another mechanism: the order is moot
		}
	}
	trHookIdle(t, tr, h)
	var err error
	trWithin(t, trBound, "RoundTrip (if this fails: BUG, a cancellation just after the request was written "+
		"was ignored; exchange sets the header read deadline after the cancellation set its past deadline, "+
		"overriding it, and only HeaderTimeout, an hour, would end it)", func() {
		var resp *http.Response
		resp, err = tr.RoundTrip(trRequest(t, ctx, "GET", s.url("/2")))
		if resp != nil {
			resp.Body.Close()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RoundTrip error %v, want one wrapping context.Canceled", err)
	}
}

// Cancelling the context once the headers are in ends the body: the next
// read fails at once with the context's error, as with net/http.
func TestTransportContextCancelDuringBody(t *testing.T) {
	t.Parallel()
	// So long that only the cancellation can end the Read within trBound.
	const idle = time.Hour
	s := trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := trReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		io.Copy(io.Discard, c) // then stalls
	})
	tr := trTransport(t, Options{HeaderTimeout: idle, BodyIdleTimeout: idle})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	resp := trRoundTrip(t, tr, trRequest(t, ctx, "GET", s.url("/")))
	defer resp.Body.Close()
	buf := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatalf("reading the first 10 bytes: %v", err)
	}
	// White box: observe the cancellation reaching the connection, so the
	// next Read deterministically starts after it (and not while the
	// cancellation is still on its way, which would hide the bug).
	onDeadline, past := trOnPastDeadline()
	if b, ok := resp.Body.(*body); ok {
		b.pc.conn.Conn = &trHookConn{Conn: b.pc.conn.Conn, afterSetDeadline: onDeadline}
	} else {
		onDeadline(time.Unix(1, 0))
	}
	cancel()
	select {
	case <-past:
	case <-time.After(time.Second): // another mechanism: the order is moot
	}
	done := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(buf)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Read after cancel: %v, want an error wrapping context.Canceled", err)
		}
	case <-time.After(trBound):
		resp.Body.Close() // ends the Read
		t.Fatalf("BUG: Read after the request context was cancelled still blocked after %v (BodyIdleTimeout %v): "+
			"countingConn.Read sets a new read deadline, overriding the past one the cancellation set", trBound, idle)
	}
}

// 9. A refused connection is a dial error.
func TestTransportDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tr := trTransport(t, Options{DialTimeout: time.Second})
	var resp *http.Response
	trWithin(t, trBound, "RoundTrip to a closed port", func() {
		resp, err = tr.RoundTrip(trRequest(t, t.Context(), "GET", "http://"+addr+"/"))
	})
	if err == nil {
		resp.Body.Close()
		t.Fatal("RoundTrip to a closed port succeeded")
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" {
		t.Fatalf("error %v (%T) is not a *net.OpError with Op \"dial\"", err, err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not wrap ECONNREFUSED", err)
	}
}

// 10. Requests the transport does not send.
func TestTransportRefusesRequests(t *testing.T) {
	var hits atomic.Int32
	o := trStartOrigin(t, false, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	})
	tr := trTransport(t, Options{})
	tests := []struct {
		name string
		req  func() *http.Request
	}{
		{"body", func() *http.Request {
			r, _ := http.NewRequest("POST", o.URL+"/", strings.NewReader("payload"))
			return r
		}},
		{"empty but not NoBody body", func() *http.Request {
			r, _ := http.NewRequest("GET", o.URL+"/", nil)
			r.Body = io.NopCloser(strings.NewReader(""))
			return r
		}},
		{"ftp scheme", func() *http.Request {
			r, _ := http.NewRequest("GET", "ftp://"+o.Listener.Addr().String()+"/", nil)
			return r
		}},
		{"relative URL", func() *http.Request {
			r, _ := http.NewRequest("GET", "/path", nil)
			return r
		}},
		{"no host", func() *http.Request {
			r, _ := http.NewRequest("GET", "http:///path", nil)
			return r
		}},
		{"nil URL", func() *http.Request {
			r, _ := http.NewRequest("GET", o.URL+"/", nil)
			r.URL = nil
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req()
			if req == nil {
				t.Fatal("building the request failed")
			}
			resp, err := tr.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatal("RoundTrip succeeded, want an error")
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the origin got %d requests, want none", n)
	}
	if n := o.newConns.Load(); n != 0 {
		t.Errorf("the origin saw %d connections, want none", n)
	}
	// http.NoBody is no body.
	req := trRequest(t, t.Context(), "GET", o.URL+"/")
	req.Body = http.NoBody
	resp := trRoundTrip(t, tr, req)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok" || hits.Load() != 1 {
		t.Errorf("a request with http.NoBody: body %q, %d requests at the origin", b, hits.Load())
	}
}

// 11. The request the origin receives.
func TestTransportRequestOnTheWire(t *testing.T) {
	type seen struct {
		method, host, uri, proto string
		close                    bool
		header                   http.Header
	}
	got := make(chan seen, 1)
	o := trStartOrigin(t, false, func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Method, r.Host, r.URL.RequestURI(), r.Proto, r.Close, r.Header.Clone()}
	})
	addr := o.Listener.Addr().String()
	tr := trTransport(t, Options{})
	tests := []struct {
		name, method, url string
		host              string // req.Host, "" to leave it to the URL
		header            http.Header
		wantHost, wantURI string
	}{
		{name: "GET with query and headers", method: "GET", url: o.URL + "/a/b%20c?x=1&y=%2F",
			header:   http.Header{"X-Custom": {"one", "two"}, "User-Agent": {"stella-test/1"}, "X-Forwarded-For": {"198.51.100.7"}},
			wantHost: addr, wantURI: "/a/b%20c?x=1&y=%2F"},
		{name: "HEAD of the root", method: "HEAD", url: o.URL, wantHost: addr, wantURI: "/"},
		{name: "Host override", method: "GET", url: o.URL + "/p", host: "origin.example", wantHost: "origin.example", wantURI: "/p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := trRequest(t, t.Context(), tt.method, tt.url)
			if tt.host != "" {
				req.Host = tt.host
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp := trRoundTrip(t, tr, req)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			var s seen
			select {
			case s = <-got:
			case <-time.After(trBound):
				t.Fatal("the handler did not run")
			}
			if s.method != tt.method {
				t.Errorf("method %q, want %q", s.method, tt.method)
			}
			if s.host != tt.wantHost {
				t.Errorf("Host %q, want %q", s.host, tt.wantHost)
			}
			if s.uri != tt.wantURI {
				t.Errorf("request URI %q, want %q", s.uri, tt.wantURI)
			}
			if s.proto != "HTTP/1.1" {
				t.Errorf("proto %q, want HTTP/1.1", s.proto)
			}
			if s.close {
				t.Errorf("the request asked to close the connection")
			}
			for k, v := range tt.header {
				if g := s.header.Values(k); fmt.Sprint(g) != fmt.Sprint(v) {
					t.Errorf("header %s = %q, want %q", k, g, v)
				}
			}
			for _, k := range []string{"Accept-Encoding", "Connection", "Transfer-Encoding", "Content-Length"} {
				if v, ok := s.header[k]; ok {
					t.Errorf("the transport added %s: %q", k, v)
				}
			}
		})
	}
}

// "Connection: close" from either side: the connection is not reused.
func TestTransportConnectionClose(t *testing.T) {
	tests := []struct {
		name          string
		originCloses  bool
		requestCloses bool
	}{
		{"origin answers Connection: close", true, false},
		{"request has Close set", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sawClose atomic.Bool
			o := trStartOrigin(t, false, func(w http.ResponseWriter, r *http.Request) {
				if r.Close {
					sawClose.Store(true)
				}
				if tt.originCloses {
					w.Header().Set("Connection", "close")
				}
				io.WriteString(w, "ok")
			})
			tr := trTransport(t, Options{})
			for i := 0; i < 2; i++ {
				req := trRequest(t, t.Context(), "GET", o.URL+"/")
				req.Close = tt.requestCloses
				resp := trRoundTrip(t, tr, req)
				if !resp.Close { // a server answers Connection: close to one
					t.Errorf("resp.Close false, want true")
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != "ok" {
					t.Fatalf("request %d: %q, %v", i, b, err)
				}
				if n := trIdle(tr); n != 0 {
					t.Fatalf("%d idle connections, want 0", n)
				}
				o.waitClosed(t, 1)
			}
			if n := o.newConns.Load(); n != 2 {
				t.Errorf("the origin saw %d connections, want 2", n)
			}
			if sawClose.Load() != tt.requestCloses {
				t.Errorf("the origin saw Connection: close %v, want %v", sawClose.Load(), tt.requestCloses)
			}
		})
	}
}

// A 1xx informational answer (103 Early Hints) precedes the response: the
// transport must return the final response, as net/http's does, and leave
// the connection in step.
func TestTransportSkipsInformationalResponses(t *testing.T) {
	o := trStartOrigin(t, false, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hints" {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(r.URL.Path)))
		io.WriteString(w, r.URL.Path)
	})
	tr := trTransport(t, Options{})
	status, body := trFetch(t, tr, o.URL+"/hints")
	status2, body2 := trFetch(t, tr, o.URL+"/next")
	if status != 200 || body != "/hints" {
		t.Errorf("BUG: GET /hints (preceded by a 103 Early Hints) returned %d %q, want 200 \"/hints\": "+
			"the 1xx answer was returned as the final response", status, body)
	}
	if status2 != 200 || body2 != "/next" {
		t.Errorf("BUG: the next request on the connection returned %d %q, want 200 \"/next\" "+
			"(the previous request's response, left in the buffer, answered it)", status2, body2)
	}
}

// The pool: CloseIdleConnections, the idle lifetime, the idle limit.
func TestTransportIdlePool(t *testing.T) {
	handler := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	t.Run("CloseIdleConnections", func(t *testing.T) {
		o := trStartOrigin(t, false, handler)
		tr := trTransport(t, Options{})
		trFetch(t, tr, o.URL)
		if n := trIdle(tr); n != 1 {
			t.Fatalf("%d idle connections, want 1", n)
		}
		tr.CloseIdleConnections()
		if n := trIdle(tr); n != 0 {
			t.Errorf("%d idle connections after CloseIdleConnections", n)
		}
		o.waitClosed(t, 1)
		if _, body := trFetch(t, tr, o.URL); body != "ok" {
			t.Errorf("body %q", body)
		}
		if n := o.newConns.Load(); n != 2 {
			t.Errorf("%d connections, want 2", n)
		}
	})
	t.Run("expired idle connection", func(t *testing.T) {
		o := trStartOrigin(t, false, handler)
		tr := trTransport(t, Options{})
		tr.keepIdle = time.Nanosecond // every pooled connection has expired when next wanted
		trFetch(t, tr, o.URL)
		trFetch(t, tr, o.URL)
		if n := o.newConns.Load(); n != 2 {
			t.Errorf("%d connections, want 2 (an expired connection is not reused)", n)
		}
		o.waitClosed(t, 1) // and it is closed
	})
	t.Run("maxIdle", func(t *testing.T) {
		o := trStartOrigin(t, false, handler)
		tr := trTransport(t, Options{})
		tr.maxIdle = 1
		var resps []*http.Response
		for i := 0; i < 3; i++ {
			resps = append(resps, trRoundTrip(t, tr, trRequest(t, t.Context(), "GET", o.URL)))
		}
		for _, resp := range resps {
			io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if n := trIdle(tr); n != 1 {
			t.Errorf("%d idle connections, want maxIdle 1", n)
		}
		o.waitClosed(t, 2) // the two over the limit are closed
		if n := o.newConns.Load(); n != 3 {
			t.Errorf("%d connections, want 3", n)
		}
	})
}

// Concurrent requests (run with -race): each on its own connection, all
// correct, and no more connections than requests in flight.
func TestTransportConcurrent(t *testing.T) {
	o := trStartOrigin(t, false, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	})
	tr := trTransport(t, Options{})
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				path := fmt.Sprintf("/%d/%d", g, i)
				req, _ := http.NewRequestWithContext(t.Context(), "GET", o.URL+path, nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Errorf("%s: %v", path, err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != path {
					t.Errorf("%s: body %q, %v", path, b, err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * trBound):
		t.Fatal("concurrent requests did not finish")
	}
	if n := o.newConns.Load(); n > workers {
		t.Errorf("%d connections for %d concurrent workers", n, workers)
	}
	if n := trIdle(tr); n > workers || n < 1 {
		t.Errorf("%d idle connections, want 1..%d", n, workers)
	}
}

// 12. An https origin whose certificate is in OriginCAFile.
func TestTransportTLS(t *testing.T) {
	var sawTLS atomic.Int32
	o := trStartOrigin(t, true, func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && r.ProtoMajor == 1 {
			sawTLS.Add(1)
		}
		io.WriteString(w, "secure")
	})
	dir := t.TempDir()
	caFile := filepath.Join(dir, "origin-ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.Certificate().Raw})
	if err := os.WriteFile(caFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	port := o.Listener.Addr().(*net.TCPAddr).Port

	t.Run("trusted CA", func(t *testing.T) {
		tr := trTransport(t, Options{OriginCAFile: caFile})
		for i := 0; i < 3; i++ {
			status, body := trFetch(t, tr, o.URL+"/")
			if status != 200 || body != "secure" {
				t.Fatalf("request %d: %d %q", i, status, body)
			}
		}
		if n := o.newConns.Load(); n != 1 {
			t.Errorf("3 requests used %d TLS connections, want 1", n)
		}
		if n := sawTLS.Load(); n != 3 {
			t.Errorf("the origin saw %d HTTP/1.x requests over TLS, want 3", n)
		}
	})

	tests := []struct {
		name   string
		caFile string
		url    string
		check  func(t *testing.T, err error)
	}{
		{"no CA file", "", o.URL + "/", func(t *testing.T, err error) {
			var ua x509.UnknownAuthorityError
			if !errors.As(err, &ua) {
				t.Errorf("error %v is not an x509.UnknownAuthorityError", err)
			}
		}},
		{"name not in the certificate", caFile, fmt.Sprintf("https://localhost:%d/", port), func(t *testing.T, err error) {
			var he x509.HostnameError
			if !errors.As(err, &he) {
				t.Errorf("error %v is not an x509.HostnameError", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := trTransport(t, Options{OriginCAFile: tt.caFile})
			resp, err := tr.RoundTrip(trRequest(t, t.Context(), "GET", tt.url))
			if err == nil {
				resp.Body.Close()
				t.Fatal("RoundTrip succeeded, want a certificate error")
			}
			var cve *tls.CertificateVerificationError
			if !errors.As(err, &cve) {
				t.Errorf("error %v (%T) is not a *tls.CertificateVerificationError", err, err)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "dial" {
				t.Errorf("error %v is not a dial *net.OpError (the proxy reports it as \"connect\")", err)
			}
			tt.check(t, err)
		})
	}

	t.Run("bad CA files", func(t *testing.T) {
		garbage := filepath.Join(dir, "garbage.pem")
		if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{garbage, filepath.Join(dir, "missing.pem")} {
			if _, err := NewTransport(Options{OriginCAFile: f}); err == nil {
				t.Errorf("NewTransport with OriginCAFile %s succeeded", filepath.Base(f))
			}
		}
	})
}

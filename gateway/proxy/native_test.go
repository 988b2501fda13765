package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/internal/fastserve"
)

// The tests of this file hold ServeFast to ServeHTTP: the same client
// request, through each path in turn to the same scripted origin, must give
// the origin the same request and the client the same answer (or the same
// failure). The helpers are prefixed "nt".

// ntFront is one front server: fastserve with either the net/http handler
// (Proxy.ServeHTTP) or the Native hook (Proxy.ServeFast).
type ntFront struct {
	addr    string
	results chan FastResult // ServeFast's outcomes (native front only)
}

func ntStart(t *testing.T, p *Proxy, native bool, user string) *ntFront {
	t.Helper()
	f := &ntFront{results: make(chan FastResult, 16)}
	cfg := fastserve.Config{
		ReadHeaderTimeout: trBound,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.ServeHTTP(w, r.WithContext(WithInfo(r.Context(), &Info{User: user})))
		}),
	}
	if native {
		cfg.Native = func(fc *fasthttp.RequestCtx) bool {
			u, ok := fastserve.Plain(fc)
			if !ok {
				return false
			}
			calls := 0
			p.ServeFast(fc, FastRequest{Path: u.EscapedPath(), User: user}, func(r FastResult) {
				calls++
				if calls > 1 {
					panic("ServeFast called done twice")
				}
				f.results <- r
			})
			return true
		}
	}
	srv := fastserve.New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

// ntAnswer is what a client saw. A response that fails, whether before
// its headers (the connection ends without an answer) or in its body, is
// Failed, with nothing else recorded: which of the two happens depends on
// whether the body was buffered or streamed, and both tell the client the
// response is not complete.
type ntAnswer struct {
	Status int
	Header http.Header
	Body   string
	Failed bool
}

// ntDo sends the raw request head (without the final blank line) and reads
// the answer.
func ntDo(t *testing.T, addr, method, head string) ntAnswer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, trBound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * trBound))
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return ntAnswer{Failed: true}
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return ntAnswer{Failed: true}
	}
	h := resp.Header.Clone()
	h.Del("Date")
	return ntAnswer{Status: resp.StatusCode, Header: h, Body: string(body)}
}

// ntOrigin answers every request with script(c) and records the requests.
type ntOrigin struct {
	*trRaw
	mu   sync.Mutex
	seen []*http.Request
}

func ntStartOrigin(t *testing.T, script func(c net.Conn) (keep bool)) *ntOrigin {
	o := &ntOrigin{}
	o.trRaw = trStartRaw(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			req, err := trReadRequest(br)
			if err != nil {
				return
			}
			o.mu.Lock()
			o.seen = append(o.seen, req)
			o.mu.Unlock()
			if !script(c) {
				return
			}
		}
	})
	return o
}

func (o *ntOrigin) last() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.seen) == 0 {
		return nil
	}
	return o.seen[len(o.seen)-1]
}

// ntWire is what the origin saw of a request.
type ntWire struct {
	Method, URI, Host string
	Header            http.Header
}

func ntWireOf(r *http.Request) ntWire {
	if r == nil {
		return ntWire{}
	}
	return ntWire{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header}
}

// ntCompare sends head through both fronts and compares what the origin
// saw and what the client got; it returns the native answer and outcome.
func ntCompare(t *testing.T, o *ntOrigin, p *Proxy, user, method, head string) (ntAnswer, *FastResult) {
	t.Helper()
	slow := ntStart(t, p, false, user)
	fast := ntStart(t, p, true, user)
	want := ntDo(t, slow.addr, method, head)
	wantWire := ntWireOf(o.last())
	got := ntDo(t, fast.addr, method, head)
	gotWire := ntWireOf(o.last())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("client answer differs\nServeFast: %+v\nServeHTTP: %+v", got, want)
	}
	if !reflect.DeepEqual(gotWire, wantWire) {
		t.Errorf("request at the origin differs\nServeFast: %+v\nServeHTTP: %+v", gotWire, wantWire)
	}
	select {
	case r := <-fast.results:
		return got, &r
	case <-time.After(trBound):
		t.Fatal("ServeFast never reported its outcome")
		return got, nil
	}
}

func ntProxy(t *testing.T, o *ntOrigin, edit func(*Options)) *Proxy {
	t.Helper()
	u, _ := url.Parse(o.url(""))
	opts := Options{Origin: u}
	if edit != nil {
		edit(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !p.CanServeFast() {
		t.Fatal("CanServeFast = false for a plain origin URL")
	}
	t.Cleanup(func() { p.opts.Transport.(*Transport).CloseIdleConnections() })
	return p
}

func ntWrite(s string) func(c net.Conn) bool {
	return func(c net.Conn) bool {
		io.WriteString(c, s)
		return true
	}
}

// TestServeFastRequestRewriting: what reaches the origin, for requests
// carrying hop-by-hop fields, credentials, and forwarding fields from an
// untrusted and from a trusted peer, with and without a user.
func TestServeFastRequestRewriting(t *testing.T) {
	o := ntStartOrigin(t, ntWrite("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"))
	forwarding := "X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 192.0.2.2, 10.0.0.1\r\nX-Forwarded-Host: mirror.example\r\n" +
		"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nForwarded: for=192.0.2.1\r\nX-Stella-Forwarded-User: mallory\r\n"
	tests := []struct {
		name, user, method, head string
		trusted                  bool
	}{
		{name: "plain", method: "GET", head: "GET /concelier/exports/index.json HTTP/1.1\r\nHost: mirror.example\r\nUser-Agent: curl/8\r\nAccept: */*\r\n"},
		{name: "no user agent", method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\n"},
		{name: "query dropped, escapes kept", method: "GET", head: "GET /a%2Fb/c%20d?x=1&y=2 HTTP/1.1\r\nHost: mirror.example\r\n"},
		{name: "head", method: "HEAD", head: "HEAD /a HTTP/1.1\r\nHost: mirror.example\r\n"},
		{name: "repeated fields", method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\nAccept: a\r\nAccept: b\r\nX-Thing: 1\r\nX-Thing: 2\r\n"},
		{name: "hop-by-hop and credentials", method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\n" +
			"Connection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\nTe: deflate, trailers\r\nUpgrade: h2c\r\n" +
			"Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nCookie: a=b\r\nAuthorization: Basic Zm9vOmJhcg==\r\n"},
		{name: "te without trailers", method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\nTe: gzip\r\n"},
		{name: "forwarding from an untrusted peer", method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\n" + forwarding},
		{name: "forwarding from a trusted peer", trusted: true, method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\n" + forwarding},
		{name: "user, untrusted peer", user: "alice", method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\n" + forwarding},
		{name: "user, trusted peer", user: "alice", trusted: true, method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\n" + forwarding},
		{name: "trusted peer without forwarding", trusted: true, method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example:8443\r\n"},
		// The gateway refuses such a user at parse time; the proxy must not
		// let one split the request either (net/http's writer makes the
		// line breaks spaces; the native writer must do the same).
		{name: "user with CR LF", user: "al\r\nX-Injected: 1\r\n", method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\n"},
		{name: "user with a bare CR", user: "\ral\rice", method: "GET", head: "GET /a HTTP/1.1\r\nHost: mirror.example\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ntProxy(t, o, func(opts *Options) {
				if tc.trusted {
					opts.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
				}
			})
			got, res := ntCompare(t, o, p, tc.user, tc.method, tc.head)
			if got.Status != http.StatusOK || res.Status != http.StatusOK || res.Aborted {
				t.Errorf("answer %d, outcome %+v; want 200, not aborted", got.Status, *res)
			}
			w := o.last()
			if w.Header.Get("Authorization") != "" || w.Header.Get("Cookie") != "" || w.Header.Get("X-Drop") != "" {
				t.Errorf("the origin got credentials or a hop-by-hop field: %v", w.Header)
			}
			if w.Header.Get("X-Injected") != "" {
				t.Errorf("a user name added a field at the origin: %v", w.Header)
			}
			if u, want := w.Header.Get(UserHeader), fieldValue(tc.user); tc.user != "" && u != want || !tc.trusted && tc.user == "" && u != "" {
				t.Errorf("%s = %q with user %q (trusted %v)", UserHeader, u, tc.user, tc.trusted)
			}
		})
	}
}

// TestServeFastResponses: the origin's answers, well-formed and broken, as
// the client sees them through both paths.
func TestServeFastResponses(t *testing.T) {
	large := strings.Repeat("0123456789abcdef", 12<<10) // 192 KiB: streamed
	tests := []struct {
		name    string
		method  string
		script  func(c net.Conn) bool
		status  int  // of the client's answer and the outcome
		failed  bool // the client sees the response fail
		bytes   int64
		aborted bool
		edit    func(*Options)
	}{
		{name: "length", method: "GET", status: 200, bytes: 11,
			script: ntWrite("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"v1\"\r\nContent-Length: 11\r\n\r\nhello world")},
		{name: "hop-by-hop and cookies stripped", method: "GET", status: 200, bytes: 2,
			script: ntWrite("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n" +
				"Proxy-Authenticate: Basic\r\nSet-Cookie: a=b\r\nSet-Cookie: c=d\r\nX-Kept: yes\r\nX-Kept: twice\r\nContent-Length: 2\r\n\r\nok")},
		{name: "chunked with trailers", method: "GET", status: 200, bytes: 19,
			script: ntWrite("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
				"6\r\nhello \r\nd\r\nchunked world\r\n0\r\nX-Sum: 42\r\n\r\n")},
		{name: "until close", method: "GET", status: 200, bytes: 9,
			script: func(c net.Conn) bool {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil eof")
				return false
			}},
		{name: "large", method: "GET", status: 200, bytes: int64(len(large)),
			script: ntWrite(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n%s", len(large), large))},
		{name: "large chunked", method: "GET", status: 200, bytes: int64(len(large)),
			script: ntWrite(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(large), large))},
		{name: "empty", method: "GET", status: 200,
			script: ntWrite("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n")},
		{name: "not modified", method: "GET", status: 304,
			script: ntWrite("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: public, max-age=60\r\n\r\n")},
		{name: "no content", method: "GET", status: 204,
			script: ntWrite("HTTP/1.1 204 No Content\r\nX-Case: 204\r\n\r\n")},
		{name: "not found", method: "GET", status: 404, bytes: 9,
			script: ntWrite("HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found")},
		{name: "early hints first", method: "GET", status: 200, bytes: 2,
			script: ntWrite("HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")},
		{name: "head", method: "HEAD", status: 200,
			script: ntWrite("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 123456\r\n\r\n")},
		{name: "truncated length", method: "GET", status: 200, failed: true, bytes: 5, aborted: true,
			script: func(c net.Conn) bool {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello")
				return false
			}},
		{name: "truncated large", method: "GET", status: 200, failed: true, bytes: 100 << 10, aborted: true,
			script: func(c net.Conn) bool {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(large), large[:100<<10])
				return false
			}},
		{name: "truncated chunked", method: "GET", status: 200, failed: true, bytes: 6, aborted: true,
			script: func(c net.Conn) bool {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n")
				return false
			}},
		{name: "no answer", method: "GET", status: 502, bytes: int64(len(errorBody(502))),
			script: func(net.Conn) bool { return false }},
		{name: "switching protocols", method: "GET", status: 502, bytes: int64(len(errorBody(502))),
			script: ntWrite("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")},
		{name: "garbage", method: "GET", status: 502, bytes: int64(len(errorBody(502))),
			script: ntWrite("SMTP ready\r\n\r\n")},
		{name: "header timeout", method: "GET", status: 504, bytes: int64(len(errorBody(504))),
			edit: func(o *Options) { o.HeaderTimeout = 200 * time.Millisecond },
			script: func(c net.Conn) bool {
				io.Copy(io.Discard, c) // until the gateway gives up and closes
				return false
			}},
		{name: "body idle timeout", method: "GET", status: 200, failed: true, bytes: 5, aborted: true,
			edit: func(o *Options) { o.BodyIdleTimeout = 200 * time.Millisecond },
			script: func(c net.Conn) bool {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello")
				io.Copy(io.Discard, c)
				return false
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ntStartOrigin(t, tc.script)
			p := ntProxy(t, o, tc.edit)
			head := tc.method + " /r HTTP/1.1\r\nHost: mirror.example\r\n"
			got, res := ntCompare(t, o, p, "", tc.method, head)
			if got.Failed != tc.failed || (!tc.failed && got.Status != tc.status) {
				t.Errorf("client got %+v; want status %d, failed %v", got, tc.status, tc.failed)
			}
			if res.Status != tc.status || res.Aborted != tc.aborted || (!tc.aborted && res.Bytes != tc.bytes) {
				t.Errorf("outcome %+v; want status %d, bytes %d, aborted %v", *res, tc.status, tc.bytes, tc.aborted)
			}
		})
	}
}

// TestServeFastReusesConnections: a keep-alive origin sees one connection
// for many sequential requests of every framing, so each body was read to
// its end and the connection went back to the pool in order.
func TestServeFastReusesConnections(t *testing.T) {
	responses := []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nETag: \"v\"\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
	}
	var mu sync.Mutex
	i := 0
	o := ntStartOrigin(t, func(c net.Conn) bool {
		mu.Lock()
		r := responses[i%len(responses)]
		i++
		mu.Unlock()
		io.WriteString(c, r)
		return true
	})
	p := ntProxy(t, o, nil)
	f := ntStart(t, p, true, "")
	for n := 0; n < 3*len(responses); n++ {
		a := ntDo(t, f.addr, "GET", "GET /r HTTP/1.1\r\nHost: mirror.example\r\n")
		if a.Failed || (a.Status != 200 && a.Status != 304) {
			t.Fatalf("request %d: %+v", n, a)
		}
		<-f.results
	}
	// A HEAD answer carries no body even when it announces a length.
	if a := ntDo(t, f.addr, "HEAD", "HEAD /r HTTP/1.1\r\nHost: mirror.example\r\n"); a.Status != 200 {
		t.Fatalf("HEAD: %+v", a)
	}
	<-f.results
	if n := o.accepted.Load(); n != 1 {
		t.Errorf("the origin accepted %d connections, want 1", n)
	}
}

// TestServeFastRetriesIdleConnectionClosed: a kept-alive connection the
// origin closed while it was idle is retried once on a new one, and an
// origin that keeps failing is a 502.
func TestServeFastRetriesIdleConnectionClosed(t *testing.T) {
	o := ntStartOrigin(t, func(c net.Conn) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
		return false // close after one answer, without saying so
	})
	p := ntProxy(t, o, nil)
	f := ntStart(t, p, true, "")
	for n := 0; n < 3; n++ {
		if a := ntDo(t, f.addr, "GET", "GET /r HTTP/1.1\r\nHost: mirror.example\r\n"); a.Status != 200 || a.Body != "ok" {
			t.Fatalf("request %d: %+v", n, a)
		}
		<-f.results
	}
}

// TestServeFastCanServeFast: only this package's Transport, and an origin
// URL without a path or query of its own.
func TestServeFastCanServeFast(t *testing.T) {
	for _, tc := range []struct {
		origin string
		want   bool
	}{
		{"http://127.0.0.1:1", true},
		{"http://127.0.0.1:1/", true},
		{"http://127.0.0.1:1/base", false},
		{"http://127.0.0.1:1/?q=1", false},
	} {
		u, _ := url.Parse(tc.origin)
		p, err := New(Options{Origin: u})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.CanServeFast(); got != tc.want {
			t.Errorf("%s: CanServeFast = %v, want %v", tc.origin, got, tc.want)
		}
	}
	u, _ := url.Parse("http://127.0.0.1:1")
	p, err := New(Options{Origin: u, Transport: http.DefaultTransport})
	if err != nil {
		t.Fatal(err)
	}
	if p.CanServeFast() {
		t.Error("CanServeFast with another Transport = true")
	}
}

// TestServeFastUnsolicitedResponseOnIdleConnection: a 408 the origin sent
// on an idle kept-alive connection before closing it is not the answer to
// the next request, which goes out again on a new connection.
func TestServeFastUnsolicitedResponseOnIdleConnection(t *testing.T) {
	closed := make(chan struct{}, 1)
	idle := make(chan struct{}) // the gateway has pooled the connection
	o := &ntOrigin{}
	o.trRaw = trStartRaw(t, func(n int, c net.Conn, br *bufio.Reader) {
		if n > 1 {
			trKeepAnswering(c, br, "c"+strconv.Itoa(n))
			return
		}
		if _, err := trReadRequest(br); err != nil {
			return
		}
		trAnswer(c, "c1")
		select {
		case <-idle:
		case <-time.After(trBound):
			return
		}
		io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		c.Close()
		closed <- struct{}{}
	})
	p := ntProxy(t, o, nil)
	f := ntStart(t, p, true, "")
	if a := ntDo(t, f.addr, "GET", "GET /1 HTTP/1.1\r\nHost: mirror.example\r\n"); a.Status != 200 || a.Body != "c1" {
		t.Fatalf("first request: %+v", a)
	}
	<-f.results // reported once the connection went back to the pool
	close(idle)
	select {
	case <-closed:
	case <-time.After(trBound):
		t.Fatal("the origin did not close the connection")
	}
	if a := ntDo(t, f.addr, "GET", "GET /2 HTTP/1.1\r\nHost: mirror.example\r\n"); a.Status != 200 || a.Body != "c2" {
		t.Fatalf("second request got %+v, want 200 \"c2\": the idle connection's 408 was taken for its answer", a)
	}
	<-f.results
}

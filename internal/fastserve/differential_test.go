package fastserve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file is a differential test: one handler is served by net/http
// (httptest) and by fastserve, the same raw HTTP/1.1 bytes are written to
// both, and what came back (status, framing, headers, body, whether a
// complete answer came at all) and what the handler saw (method, path, host,
// headers, body...) are compared. net/http is the reference: fastserve's
// package doc promises net/http's behaviour except where it says otherwise.
//
// A difference that matters (the handler sees another request, a framing or
// smuggling difference, a response that looks complete when it is not, a
// request one server rejects and the other accepts) fails with a message
// that starts with "DIFF:". Legitimate differences are normalised where
// they are compared, each with the reason; a request fastserve refuses where
// net/http takes it is accepted when the case says why refusing is safe
// (diffCase.stricter). A DIFF failure is a finding about fastserve, not a
// test bug: the case stays until adapter.go behaves like net/http. With -v
// every case logs both exchanges (answers, what the handler saw, raw bytes).

// diffSeen is what the handler saw of one request.
type diffSeen struct {
	Method           string
	Path             string
	RawPath          string
	RawQuery         string
	RequestURI       string
	Host             string
	RemoteHost       string
	Proto            string
	ContentLength    int64
	TransferEncoding []string
	Header           http.Header
	Trailer          http.Header
	Close            bool
	TLSNil           bool
	Body             string
	BodyErr          string
}

// diffRecorder collects what the handler saw, in call order.
type diffRecorder struct {
	mu   sync.Mutex
	seen []diffSeen
}

func (d *diffRecorder) add(s diffSeen) {
	d.mu.Lock()
	d.seen = append(d.seen, s)
	d.mu.Unlock()
}

func (d *diffRecorder) all() []diffSeen {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.seen)
}

// diffHandler records each request and answers it the way its path asks
// (paths under /b/), or by echoing what it saw as JSON. Every answer it
// produces carries X-Handler: 1, which tells it from an answer the server
// made up itself (a 400 for an unreadable request).
func diffHandler(rec *diffRecorder) http.Handler {
	big := bytes.Repeat([]byte("0123456789"), 10<<10) // 100 KiB
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := diffSeen{
			Method:           r.Method,
			Path:             r.URL.Path,
			RawPath:          r.URL.RawPath,
			RawQuery:         r.URL.RawQuery,
			RequestURI:       r.RequestURI,
			Host:             r.Host,
			Proto:            r.Proto,
			ContentLength:    r.ContentLength,
			TransferEncoding: r.TransferEncoding,
			Close:            r.Close,
			TLSNil:           r.TLS == nil,
		}
		if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			s.RemoteHost = h
		} else {
			s.RemoteHost = "unparsable: " + r.RemoteAddr
		}
		body, err := io.ReadAll(r.Body)
		s.Body = string(body)
		if err != nil {
			s.BodyErr = err.Error()
		}
		// After the body: net/http fills r.Trailer while reading it.
		s.Header = r.Header.Clone()
		s.Trailer = r.Trailer.Clone()
		rec.add(s)

		w.Header().Set("X-Handler", "1")
		switch r.URL.Path {
		case "/b/sniff":
			io.WriteString(w, "<html><body>sniff me</body></html>")
		case "/b/sniff-binary":
			w.Write([]byte("\x00\x01\x02\x03 binary"))
		case "/b/no-type":
			w.Header()["Content-Type"] = nil // net/http: do not sniff
			io.WriteString(w, "<html>untyped</html>")
		case "/b/body":
			io.WriteString(w, "hello, body")
		case "/b/body-cl":
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello, body")
		case "/b/short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
		case "/b/long":
			w.Header().Set("Content-Length", "3")
			io.WriteString(w, "abcdef")
		case "/b/204":
			w.WriteHeader(http.StatusNoContent)
			io.WriteString(w, "must not be sent")
		case "/b/304":
			w.WriteHeader(http.StatusNotModified)
			io.WriteString(w, "must not be sent")
		case "/b/twice":
			w.WriteHeader(http.StatusCreated)
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "twice")
		case "/b/code0":
			w.WriteHeader(0)
			io.WriteString(w, "unreachable")
		case "/b/code1000":
			w.WriteHeader(1000)
			io.WriteString(w, "unreachable")
		case "/b/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/b/big":
			for i := 0; i < len(big); i += 10 << 10 {
				w.Write(big[i : i+10<<10])
			}
		case "/b/panic":
			panic("boom")
		case "/b/abort":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "partial")
			panic(http.ErrAbortHandler)
		case "/b/flush-sniff":
			io.WriteString(w, "<html><body>flushed</body></html>")
			w.(http.Flusher).Flush()
		case "/b/bad-key":
			w.Header()["X-Key\r\nX-Evil"] = []string{"1"}
			io.WriteString(w, "bad key")
		case "/b/inject":
			// A handler that copies request data into a header: the
			// server must not let it split the response.
			w.Header().Set("X-Inject", "a\r\nX-Evil: 1")
			w.Header().Set("Bad Name", "v")
			io.WriteString(w, "inject")
		default:
			b, err := json.Marshal(s)
			if err != nil {
				panic(err)
			}
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		}
	})
}

// diffAnswer is one response as a client parses it.
type diffAnswer struct {
	Status   int
	Proto    string
	Handler  bool   // made by the handler (X-Handler: 1), not by the server
	CL       string // Content-Length header as sent
	ParsedCL int64  // resp.ContentLength
	TE       []string
	Close    bool
	Header   map[string]string // all but Date and the framing
	Body     string
	BodyErr  string // non-empty: the body did not arrive whole
}

// diffResult is everything one server sent on one connection.
type diffResult struct {
	Answers  []diffAnswer
	Tail     string // what followed the last parsable answer, and why it did not parse
	TimedOut bool   // the connection was still open at the deadline
	Raw      string // the bytes as received, for -v
	Seen     []diffSeen
}

// diffDeadline bounds one exchange; every case ends the connection well
// before it (Connection: close, HTTP/1.0, or an error), so it is reached
// only when a server hangs.
const diffDeadline = 3 * time.Second

// exchange writes req on a fresh connection to addr and parses what comes
// back until the server closes the connection. methods[i] is the method of
// the i-th request (HEAD answers have no body); missing entries are GET.
func exchange(addr, req string, methods []string) diffResult {
	var res diffResult
	c, err := net.Dial("tcp", addr)
	if err != nil {
		res.Tail = "dial: " + err.Error()
		return res
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(diffDeadline))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		io.WriteString(c, req) // a server may answer and close before reading it all
	}()
	out, err := io.ReadAll(c)
	<-wrote
	var ne net.Error
	res.TimedOut = errors.As(err, &ne) && ne.Timeout()
	res.Raw = string(out)

	br := bufio.NewReader(bytes.NewReader(out))
	for i := 0; ; i++ {
		if _, err := br.Peek(1); err == io.EOF {
			break
		}
		method := http.MethodGet
		if i < len(methods) {
			method = methods[i]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			rest, _ := io.ReadAll(br)
			res.Tail = fmt.Sprintf("%v: %q", err, trunc(string(rest), 200))
			break
		}
		body, err := io.ReadAll(resp.Body)
		a := diffAnswer{
			Status:   resp.StatusCode,
			Proto:    resp.Proto,
			Handler:  resp.Header.Get("X-Handler") == "1",
			CL:       strings.Join(resp.Header["Content-Length"], ","),
			ParsedCL: resp.ContentLength,
			TE:       resp.TransferEncoding,
			Close:    resp.Close,
			Header:   map[string]string{},
			Body:     string(body),
		}
		if err != nil {
			a.BodyErr = err.Error()
		}
		for k, v := range resp.Header {
			switch k {
			case "Date", "Content-Length", "Transfer-Encoding":
				// Date: the clock; the framing is compared on its own.
			default:
				a.Header[k] = strings.Join(v, ",")
			}
		}
		res.Answers = append(res.Answers, a)
		if resp.StatusCode < 200 {
			i-- // an interim answer: the final one for the same request follows
		}
	}
	return res
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// diffServers starts net/http and fastserve with the same handler (and a
// recorder each) and returns their addresses.
func diffServers(t *testing.T) (stdAddr, fastAddr string, stdRec, fastRec *diffRecorder) {
	t.Helper()
	stdRec, fastRec = &diffRecorder{}, &diffRecorder{}

	ts := httptest.NewUnstartedServer(diffHandler(stdRec))
	// fastserve's default header limit; net/http adds 4 KiB of slack to
	// it, so the cases stay clear of the band between the two (64-68 KiB).
	ts.Config.MaxHeaderBytes = DefaultMaxHeaderBytes
	ts.Config.ReadHeaderTimeout = time.Second
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the panicking cases
	ts.Start()
	t.Cleanup(ts.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Handler: diffHandler(fastRec), ReadHeaderTimeout: time.Second, IdleTimeout: time.Second})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return ts.Listener.Addr().String(), ln.Addr().String(), stdRec, fastRec
}

// diffCase is one raw request (or several, pipelined).
type diffCase struct {
	name    string
	req     string
	methods []string // per request, for parsing the answers; default GET
	// want is the status of each answer net/http gives ("-" for none),
	// joined with commas: it checks that the case exercises what it means
	// to, before fastserve is compared with it.
	want string
	// stricter, when set, says why fastserve refusing a request net/http
	// takes is the safe choice: then a refusal is not a difference.
	stricter string
}

// req builds a request: the request line, Host: x unless host is "-", the
// extra header lines, and Connection: close so that the server ends the
// connection after answering.
func req(line, host string, extra ...string) string {
	var b strings.Builder
	b.WriteString(line + "\r\n")
	if host != "-" {
		b.WriteString("Host: " + host + "\r\n")
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}

func get(target string, extra ...string) string {
	return req("GET "+target+" HTTP/1.1", "x", extra...)
}

// Reasons for refusals that are safer than net/http's acceptance.
const (
	twoFramings = "RFC 9112 §6.3 lets a server refuse a request framed by both Content-Length and Transfer-Encoding; " +
		"net/http takes the chunked framing, fastserve refuses it as a smuggling attempt"
	badChunk = "fastserve reads the body before the handler runs, so a malformed chunked body is refused with 400; " +
		"net/http calls the handler and fails its body read"
)

func diffCases() []diffCase {
	long10 := "/long/" + strings.Repeat("a", 10<<10)
	long70 := "/long/" + strings.Repeat("a", 70<<10)
	return []diffCase{
		// Request targets.
		{name: "plain path", req: get("/a/b"), want: "200"},
		{name: "encoded dots", req: get("/a/%2e%2e/b"), want: "200"},
		{name: "encoded dots at root", req: get("/%2e%2e/%2e%2e/etc/passwd"), want: "200"},
		{name: "encoded slash", req: get("/a%2fb/c"), want: "200"},
		{name: "encoded backslash", req: get("/a%5c..%5cb"), want: "200"},
		{name: "double encoding", req: get("/a/%252e%252e/%252fb"), want: "200"},
		{name: "encoded NUL", req: get("/a%00b"), want: "200"},
		{name: "dot-dot segments", req: get("/a/../../b/./c"), want: "200"},
		{name: "double slashes", req: get("//a//b/"), want: "200"},
		{name: "query string", req: get("/q?a=1&b=%20x&a=2&c"), want: "200"},
		{name: "empty query", req: get("/q?"), want: "200"},
		{name: "query without path", req: get("?a=1"), want: "400"},
		{name: "fragment", req: get("/p?a=1#frag"), want: "200"},
		{name: "bad percent escape", req: get("/a%zzb"), want: "400"},
		{name: "bad percent escape in query", req: get("/a?b=%zz"), want: "200"},
		{name: "raw UTF-8 path", req: get("/caf\xc3\xa9"), want: "200"},
		{name: "control byte in path", req: get("/a\x01b"), want: "400"},
		{name: "space in target", req: get("/a b"), want: "400"},
		{name: "empty target", req: "GET  HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "400"},
		{name: "relative target", req: get("a/b"), want: "400"},
		{name: "absolute form", req: get("http://other/path?q=1"), want: "200"},
		{name: "absolute form https with port", req: get("https://other:8443/p"), want: "200"},
		{name: "absolute form without path", req: get("http://other"), want: "200"},
		{name: "absolute form with userinfo", req: get("http://user:pw@other/p"), want: "200"},
		{name: "absolute form with bad Host header", req: req("GET http://other/p HTTP/1.1", "a b"), want: "400"},
		{name: "asterisk OPTIONS", req: req("OPTIONS * HTTP/1.1", "x"), methods: []string{"OPTIONS"}, want: "200"},
		{name: "asterisk GET", req: get("*"), want: "200", stricter: "a GET of * names no resource; net/http hands it to the handler with Path \"*\""},
		{name: "10 KiB URI", req: get(long10), want: "200"},
		{name: "70 KiB URI", req: get(long70), want: "431"},

		// Versions and Host.
		{name: "HTTP/1.0 with Host", req: "GET /v HTTP/1.0\r\nHost: x\r\n\r\n", want: "200"},
		{name: "HTTP/1.0 without Host", req: "GET /v HTTP/1.0\r\n\r\n", want: "200"},
		{name: "HTTP/1.0 keep-alive then close", req: "GET /v1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /v2 HTTP/1.0\r\n\r\n", want: "200,200"},
		{name: "HTTP/1.1 without Host", req: req("GET /v HTTP/1.1", "-"), want: "400"},
		{name: "HTTP/1.1 empty Host", req: req("GET /v HTTP/1.1", ""), want: "200",
			stricter: "RFC 9112 §3.2 allows an empty Host, but refusing one (400) only costs a client that sends no authority"},
		{name: "empty Host then Host", req: req("GET /v HTTP/1.1", "", "Host: a"), want: "400"},
		{name: "Host then empty Host", req: req("GET /v HTTP/1.1", "a", "Host:"), want: "400"},
		{name: "duplicate Host", req: req("GET /v HTTP/1.1", "a", "Host: b"), want: "400"},
		{name: "duplicate Host other case", req: req("GET /v HTTP/1.1", "a", "host: a"), want: "400"},
		{name: "Host with port", req: req("GET /v HTTP/1.1", "example.com:8080"), want: "200"},
		{name: "Host IPv6 literal", req: req("GET /v HTTP/1.1", "[::1]:8080"), want: "200"},
		{name: "Host with space", req: req("GET /v HTTP/1.1", "a b"), want: "400"},
		{name: "Host with slash", req: req("GET /v HTTP/1.1", "a/b"), want: "400"},
		{name: "Host with at", req: req("GET /v HTTP/1.1", "user@a"), want: "400"},
		{name: "Host with trailing whitespace", req: req("GET /v HTTP/1.1", "a \t"), want: "200"},
		{name: "lowercase version", req: "GET /v http/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "400"},
		{name: "HTTP/1.2", req: "GET /v HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n", want: "200"},
		{name: "HTTP/2.0 request line", req: "GET /v HTTP/2.0\r\nHost: x\r\nConnection: close\r\n\r\n", want: "505"},
		{name: "HTTP/0.9 style", req: "GET /v\r\n\r\n", want: "400"},

		// Methods.
		{name: "PROPFIND", req: req("PROPFIND /dav HTTP/1.1", "x"), want: "200"},
		{name: "lowercase method", req: req("get /m HTTP/1.1", "x"), want: "200"},
		{name: "method with invalid characters", req: req("G(T /m HTTP/1.1", "x"), want: "400"},
		{name: "method with slash", req: req("GE/T /m HTTP/1.1", "x"), want: "400"},
		{name: "two spaces after method", req: "GET  /m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "400"},

		// Header fields.
		{name: "lowercase and odd-case names", req: get("/h", "x-lower: a", "X-oDD-cAsE: b", "x_under_score: c"), want: "200"},
		{name: "repeated header", req: get("/h", "X-A: 1", "X-A: 2", "x-a: 3"), want: "200"},
		{name: "trailing spaces and tabs", req: get("/h", "X-T: v \t ", "X-L:\t \tw"), want: "200"},
		{name: "empty header value", req: get("/h", "X-E:", "X-F: "), want: "200"},
		{name: "space before colon", req: get("/h", "X-S : v"), want: "400"},
		{name: "invalid header name", req: get("/h", "X@Y: v"), want: "400"},
		{name: "header without colon", req: get("/h", "NoColon"), want: "400"},
		{name: "NUL in header value", req: get("/h", "X-N: a\x00b"), want: "400"},
		{name: "CR in header value", req: get("/h", "X-C: a\rb"), want: "400"},
		{name: "bare CR line end", req: "GET /h HTTP/1.1\r\nHost: x\rX-C: v\r\nConnection: close\r\n\r\n", want: "400"},
		{name: "bare LF line ends", req: "GET /h HTTP/1.1\nHost: x\nX-L: v\nConnection: close\n\n", want: "200",
			stricter: "RFC 9112 §2.2 lets a recipient take a bare LF as a line end but does not require it; fastserve waits for CRLF and answers 408 at the read timeout"},
		{name: "bare LF inside the header block", req: "GET /h HTTP/1.1\r\nHost: x\r\nX-A: 1\nX-B: 2\r\nConnection: close\r\n\r\n", want: "200"},
		{name: "obs-fold", req: get("/h", "X-F: a", " b"), want: "200"},
		{name: "obs-fold first line", req: "GET /h HTTP/1.1\r\n X-F: a\r\nHost: x\r\nConnection: close\r\n\r\n", want: "400"},
		{name: "UTF-8 header value", req: get("/h", "X-U: caf\xc3\xa9"), want: "200"},
		{name: "header over 64 KiB", req: get("/h", "X-Big: "+strings.Repeat("a", 70<<10)), want: "431"},
		{name: "two Cookie lines", req: get("/h", "Cookie: a=1", "Cookie: b=2"), want: "200"},
		{name: "odd Cookie", req: get("/h", "Cookie: a=1;b=2; c; =d; e=\"q\"; a=3"), want: "200"},
		{name: "User-Agent twice", req: get("/h", "User-Agent: ua/1", "user-agent: ua/2"), want: "200"},
		{name: "Content-Type twice", req: req("POST /h HTTP/1.1", "x", "Content-Type: text/a", "Content-Type: text/b", "Content-Length: 2") + "ab", want: "200"},
		{name: "Content-Type and User-Agent once", req: get("/h", "User-Agent: ua/1", "Content-Type: text/x"), want: "200"},
		{name: "Connection keep-alive and tokens", req: "GET /h HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\nGET /h2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "200,200"},
		{name: "Trailer header names a header", req: get("/h", "X-Sec: 1", "Trailer: X-Sec"), want: "200"},
		{name: "Trailer header names Authorization", req: get("/h", "Authorization: Basic dTpw", "Trailer: Authorization"), want: "200",
			stricter: "a Trailer field may not announce Authorization (RFC 9110 §6.5.1); refusing the request is safe"},
		{name: "Trailer header names a header declared first", req: get("/h", "Trailer: X-Sec", "X-Sec: 1"), want: "200"},
		{name: "Expect other than 100-continue", req: get("/h", "Expect: foo"), want: "417"},

		// Request bodies and framing.
		{name: "GET with Content-Length body", req: req("GET /body HTTP/1.1", "x", "Content-Length: 5") + "hello", want: "200"},
		{name: "POST with Content-Length body", req: req("POST /body HTTP/1.1", "x", "Content-Length: 5") + "hello", want: "200"},
		{name: "Content-Length zero", req: req("POST /body HTTP/1.1", "x", "Content-Length: 0"), want: "200"},
		{name: "Content-Length leading zeros", req: req("POST /body HTTP/1.1", "x", "Content-Length: 005") + "hello", want: "200"},
		{name: "Content-Length repeated same", req: req("POST /body HTTP/1.1", "x", "Content-Length: 5", "Content-Length: 5") + "hello", want: "200",
			stricter: "RFC 9110 §8.6 allows taking repeated identical lengths as one, or refusing them"},
		{name: "POST without body", req: req("POST /body HTTP/1.1", "x"), want: "200"},
		{name: "Content-Length list", req: req("POST /body HTTP/1.1", "x", "Content-Length: 5, 5") + "hello", want: "400"},
		{name: "Content-Length different", req: req("POST /body HTTP/1.1", "x", "Content-Length: 5", "Content-Length: 6") + "hello!", want: "400"},
		{name: "Content-Length invalid", req: req("POST /body HTTP/1.1", "x", "Content-Length: abc") + "hello", want: "400"},
		{name: "Content-Length negative", req: req("POST /body HTTP/1.1", "x", "Content-Length: -5") + "hello", want: "400"},
		{name: "Content-Length signed", req: req("POST /body HTTP/1.1", "x", "Content-Length: +5") + "hello", want: "400"},
		{name: "chunked body", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked") + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", want: "200"},
		{name: "chunked with extension", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked") + "5;ext=1\r\nhello\r\n0\r\n\r\n", want: "200"},
		{name: "chunked with trailer", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked", "Trailer: X-Tr") + "5\r\nhello\r\n0\r\nX-Tr: t\r\n\r\n", want: "200"},
		{name: "chunked with User-Agent trailer", req: req("POST /body HTTP/1.1", "x", "User-Agent: ua/1", "Transfer-Encoding: chunked", "Trailer: User-Agent") + "5\r\nhello\r\n0\r\nUser-Agent: evil\r\n\r\n", want: "200"},
		{name: "chunked with Host trailer", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked") + "5\r\nhello\r\n0\r\nHost: evil\r\n\r\n", want: "200",
			stricter: "RFC 9110 §6.5.1 forbids Host in a trailer section; net/http files it under r.Trailer"},
		{name: "chunked, Trailer names a sent header", req: req("POST /body HTTP/1.1", "x", "X-Sec: 1", "Transfer-Encoding: chunked", "Trailer: X-Sec") + "5\r\nhello\r\n0\r\n\r\n", want: "200"},
		{name: "chunked with undeclared trailer", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked") + "5\r\nhello\r\n0\r\nX-Tr: t\r\n\r\n", want: "200"},
		{name: "chunked uppercase", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: Chunked") + "5\r\nhello\r\n0\r\n\r\n", want: "200"},
		{name: "chunked bad size", stricter: badChunk, req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked") + "zz\r\nhello\r\n0\r\n\r\n", want: "200"},
		{name: "chunked size with 0x", stricter: badChunk, req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked") + "0x5\r\nhello\r\n0\r\n\r\n", want: "200"},
		{name: "chunked bare LF", stricter: badChunk, req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked") + "5\nhello\n0\n\n", want: "200"},
		{name: "chunked twice", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked") + "5\r\nhello\r\n0\r\n\r\n", want: "501"},
		{name: "gzip, chunked", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: gzip, chunked") + "5\r\nhello\r\n0\r\n\r\n", want: "501"},
		{name: "gzip alone", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: gzip") + "hello", want: "501"},
		{name: "empty Transfer-Encoding", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding:") + "hello", want: "501"},
		{name: "identity, kept alive", req: "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "501"},
		{name: "identity", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: identity") + "hello", want: "501"},
		{name: "CL and TE", req: req("POST /body HTTP/1.1", "x", "Content-Length: 30", "Transfer-Encoding: chunked") + "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", want: "200", stricter: twoFramings},
		{name: "TE and CL", req: req("POST /body HTTP/1.1", "x", "Transfer-Encoding: chunked", "Content-Length: 3") + "0\r\n\r\n", want: "200", stricter: twoFramings},
		{name: "CL and TE, kept alive", req: "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "200,200", stricter: twoFramings},
		{name: "chunked on HTTP/1.0", req: "POST /body HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", want: "200",
			stricter: "RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing; net/http ignores it and reads no body"},
		{name: "Expect 100-continue", req: req("POST /body HTTP/1.1", "x", "Content-Length: 5", "Expect: 100-continue") + "hello", want: "100,200"},
		{name: "Expect 100-continue without body", req: req("GET /body HTTP/1.1", "x", "Expect: 100-continue"), want: "200"},
		{name: "smuggled second request in body", req: req("POST /body HTTP/1.1", "x", "Content-Length: 39") + "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\n", want: "200"},

		// Responses.
		{name: "HEAD of a written body", req: req("HEAD /b/body HTTP/1.1", "x"), methods: []string{"HEAD"}, want: "200"},
		{name: "HEAD with Content-Length", req: req("HEAD /b/body-cl HTTP/1.1", "x"), methods: []string{"HEAD"}, want: "200"},
		{name: "HEAD of the echo", req: req("HEAD /echo HTTP/1.1", "x"), methods: []string{"HEAD"}, want: "200"},
		{name: "HEAD then GET", req: "HEAD /b/body HTTP/1.1\r\nHost: x\r\n\r\nGET /b/body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", methods: []string{"HEAD", "GET"}, want: "200,200"},
		{name: "body with Content-Length", req: get("/b/body-cl"), want: "200"},
		{name: "short body under Content-Length", req: get("/b/short"), want: "200"},
		{name: "long body over Content-Length", req: get("/b/long"), want: "200"},
		{name: "sniffed HTML", req: get("/b/sniff"), want: "200"},
		{name: "sniffed binary", req: get("/b/sniff-binary"), want: "200"},
		{name: "sniffing suppressed", req: get("/b/no-type"), want: "200"},
		{name: "204 with body", req: get("/b/204"), want: "204"},
		{name: "304 with body", req: get("/b/304"), want: "304"},
		{name: "204 then GET", req: "GET /b/204 HTTP/1.1\r\nHost: x\r\n\r\nGET /b/body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "204,200"},
		{name: "WriteHeader twice", req: get("/b/twice"), want: "201"},
		{name: "WriteHeader(0)", req: get("/b/code0"), want: "-"},
		{name: "WriteHeader(1000)", req: get("/b/code1000"), want: "-"},
		{name: "panic", req: get("/b/panic"), want: "-"},
		{name: "ErrAbortHandler", req: get("/b/abort"), want: "-"},
		{name: "handler sets Connection: close", req: "GET /b/close HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n", want: "200"},
		{name: "streamed body without length", req: get("/b/big"), want: "200"},
		{name: "flushed body without type", req: get("/b/flush-sniff"), want: "200"},
		{name: "invalid header name from the handler", req: get("/b/bad-key"), want: "200"},
		{name: "header injection by the handler", req: get("/b/inject"), want: "200"},

		// Connection reuse.
		{name: "pipelined GETs", req: "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "200,200"},
		{name: "pipelined POST then GET", req: "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "200,200"},
		{name: "pipelined after a bad request", req: "GET /one HTTP/1.1\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "400"},
		{name: "pipelined after a panic", req: "GET /b/panic HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "-"},
		{name: "pipelined after a short body", req: "GET /b/short HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", want: "200"},
	}
}

func statuses(r diffResult) string {
	if len(r.Answers) == 0 {
		return "-"
	}
	var s []string
	for _, a := range r.Answers {
		s = append(s, strconv.Itoa(a.Status))
	}
	return strings.Join(s, ",")
}

func TestDifferential(t *testing.T) {
	for _, tc := range diffCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stdAddr, fastAddr, stdRec, fastRec := diffServers(t)
			var std, fast diffResult
			var wg sync.WaitGroup
			wg.Go(func() { std = exchange(stdAddr, tc.req, tc.methods) })
			wg.Go(func() { fast = exchange(fastAddr, tc.req, tc.methods) })
			wg.Wait()
			std.Seen, fast.Seen = stdRec.all(), fastRec.all()
			compareDiff(t, tc, std, fast)
		})
	}
}

// rejected reports whether a server refused the request: the handler was
// not called and the answer, if any, is the server's own error.
func rejected(r diffResult) bool {
	if len(r.Seen) > 0 {
		return false
	}
	for _, a := range r.Answers {
		if a.Handler || a.Status < 400 {
			return false
		}
	}
	return true
}

// normalise drops what is not compared from a result: interim (1xx)
// answers, and an answer whose body did not arrive whole, which is what
// the answer count below is about: such an answer and none at all are the
// same to a client (it must not trust either), so only whole answers are
// counted and compared.
//
// 1xx: fastserve (fasthttp) sends "100 Continue" as soon as it reads
// "Expect: 100-continue", because it reads the body before the handler
// runs; net/http sends it when the handler first reads the body, so not
// for a request without one. RFC 9110 §15.2 requires a client to accept an
// interim answer it did not expect, so the extra one is harmless.
func normalise(r diffResult) (whole []diffAnswer) {
	for _, a := range r.Answers {
		if a.Status >= 200 && a.BodyErr == "" {
			whole = append(whole, a)
		}
	}
	return whole
}

// compareDiff checks net/http's answer against the case's expectation (so
// the case exercises what it means to) and then fastserve against net/http.
func compareDiff(t *testing.T, tc diffCase, std, fast diffResult) {
	t.Helper()
	if got := statuses(std); got != tc.want {
		t.Fatalf("test bug: net/http answered %s, the case expects %s (tail %s)", got, tc.want, std.Tail)
	}
	if std.TimedOut {
		t.Fatalf("test bug: net/http kept the connection open until the deadline")
	}
	if testing.Verbose() {
		sj, _ := json.Marshal(std.Seen)
		fj, _ := json.Marshal(fast.Seen)
		t.Logf("net/http:  %s\n\tseen %s\n\traw %q", answersSummary(std), sj, trunc(std.Raw, 600))
		t.Logf("fastserve: %s\n\tseen %s\n\traw %q", answersSummary(fast), fj, trunc(fast.Raw, 600))
	}
	if tc.stricter != "" && !rejected(std) && rejected(fast) {
		// A request net/http takes and fastserve refuses, where refusing
		// is the safe choice (the reason is on the case).
		return
	}
	diff := func(aspect string, s, f any) {
		t.Errorf("DIFF: %s: %s:\n\tnet/http:  %s\n\tfastserve: %s", tc.name, aspect, show(s), show(f))
	}

	// What the handler saw.
	seenSame := len(std.Seen) == len(fast.Seen)
	if !seenSame {
		diff("handler calls", std.Seen, fast.Seen)
	} else {
		for i := range std.Seen {
			for _, d := range seenDiffs(std.Seen[i], fast.Seen[i]) {
				seenSame = false
				diff(fmt.Sprintf("request %d as the handler saw it: %s", i+1, d.field), d.std, d.fast)
			}
		}
	}

	// What came back.
	if fast.TimedOut {
		diff("connection end", "closed by the server", "still open at the deadline")
	}
	sw := normalise(std)
	fw := normalise(fast)
	if len(sw) != len(fw) {
		diff("whole answers", answersSummary(std), answersSummary(fast))
		return
	}
	for i := range sw {
		s, f := sw[i], fw[i]
		what := fmt.Sprintf("answer %d", i+1)
		if s.Handler != f.Handler {
			diff(what+" made by the handler", answersSummary(std), answersSummary(fast))
			continue
		}
		if !s.Handler {
			// An answer the server made up: its status (400, 431, 501,
			// 505...), body text and headers are the server's own wording
			// ("400 Bad Request: missing required Host header" against
			// "400 Bad Request"; net/http's 501 for an unknown transfer
			// coding and 505 for HTTP/2.0 are fastserve's 400). What counts
			// is that both refuse and end the connection.
			if (s.Status >= 400) != (f.Status >= 400) {
				diff(what+" status", s.Status, f.Status)
			}
			if s.Close != f.Close {
				diff(what+" Connection: close", s.Close, f.Close)
			}
			continue
		}
		if s.Status != f.Status {
			diff(what+" status", s.Status, f.Status)
		}
		// s.Proto is not compared: net/http answers an HTTP/1.0 request
		// with "HTTP/1.0", fastserve with "HTTP/1.1"; RFC 9110 §6.2 has a
		// server send the highest minor version it supports, and the
		// answer's framing (Content-Length, close) suits both.
		echo := s.Header["Content-Type"] == "application/json"
		sameBody := s.Body == f.Body || (echo && !seenSame) // an echo differs whenever the requests do (reported above)
		if !sameBody {
			diff(what+" body", trunc(s.Body, 300), trunc(f.Body, 300))
		}
		// Framing: a body delimited by the connection's end must be so in
		// both; otherwise net/http chunks what outgrows its 2 KiB buffer
		// before the handler returns where fastserve, buffering up to 64
		// KiB, sends a Content-Length: either delimits the body, so only
		// two Content-Lengths are compared (when the bodies are the same
		// and for HEAD, where the length is all there is).
		sClose, fClose := s.ParsedCL < 0 && len(s.TE) == 0, f.ParsedCL < 0 && len(f.TE) == 0
		head := i < len(tc.methods) && tc.methods[i] == http.MethodHead
		switch {
		case sClose != fClose:
			diff(what+" framing (body delimited by the connection's end)", sClose, fClose)
		case (s.CL != "" && f.CL != "" && s.Body == f.Body || head || s.Status == 204 || s.Status == 304) && (s.CL != f.CL || !slices.Equal(s.TE, f.TE)):
			diff(what+" framing", fmt.Sprintf("Content-Length %q Transfer-Encoding %q", s.CL, s.TE), fmt.Sprintf("Content-Length %q Transfer-Encoding %q", f.CL, f.TE))
		}
		if s.Close != f.Close {
			diff(what+" Connection: close", s.Close, f.Close)
		}
		if !maps.Equal(s.Header, f.Header) {
			diff(what+" headers", s.Header, f.Header)
		}
	}
	if std.Tail != fast.Tail {
		diff("bytes after the answers", std.Tail, fast.Tail)
	}
}

type fieldDiff struct {
	field     string
	std, fast any
}

func seenDiffs(s, f diffSeen) []fieldDiff {
	var out []fieldDiff
	sv, fv := reflect.ValueOf(s), reflect.ValueOf(f)
	for i := 0; i < sv.NumField(); i++ {
		a, b := sv.Field(i).Interface(), fv.Field(i).Interface()
		if !reflect.DeepEqual(normEmpty(a), normEmpty(b)) {
			out = append(out, fieldDiff{sv.Type().Field(i).Name, a, b})
		}
	}
	return out
}

// normEmpty makes a nil and an empty header (or slice) equal.
func normEmpty(v any) any {
	switch x := v.(type) {
	case http.Header:
		if len(x) == 0 {
			return nil
		}
	case []string:
		if len(x) == 0 {
			return nil
		}
	}
	return v
}

func answersSummary(r diffResult) string {
	var b strings.Builder
	for _, a := range r.Answers {
		fmt.Fprintf(&b, "[%d handler=%v CL=%q TE=%q close=%v body=%q err=%q] ", a.Status, a.Handler, a.CL, a.TE, a.Close, trunc(a.Body, 80), a.BodyErr)
	}
	if len(r.Answers) == 0 {
		b.WriteString("no answer ")
	}
	if r.Tail != "" {
		fmt.Fprintf(&b, "tail %s", r.Tail)
	}
	return b.String()
}

func show(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []diffSeen:
		var parts []string
		for _, s := range x {
			parts = append(parts, fmt.Sprintf("%s %q host %q", s.Method, s.RequestURI, s.Host))
		}
		return fmt.Sprintf("%d call(s) %v", len(x), parts)
	}
	return fmt.Sprintf("%#v", v)
}

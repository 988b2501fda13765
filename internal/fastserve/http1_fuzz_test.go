package fastserve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// FuzzHTTP1 is differential_test.go driven by the fuzzer: the same raw
// bytes go to net/http's server and to fastserve (with a Native hook that
// asks Plain about every request and then declines), each on a fresh
// connection that the client half-closes after writing, so that an
// incomplete request ends at once instead of at a read timeout. The
// servers and their recorders live for the whole run.
//
// The property, net/http being the reference:
//   - fastserve never panics and always ends the connection;
//   - the requests fastserve's handler sees are a prefix of those net/http's
//     sees, each the same (method, target, path, query, host, headers in
//     order, body, trailers, ...): fastserve may refuse what net/http takes
//     (the by-design refusals of the package comment), never the reverse,
//     and one request never becomes two (smuggling);
//   - every request Plain declares simple enough for a Native hook is one
//     the handler then sees with the same method, target and host, so a
//     hook never serves what net/http would refuse;
//   - an answer both handlers made for the same request has the same
//     status and body.
//
// Tolerated, each where it is checked: empty lines before a request line
// (fasthttp skips them, RFC 9112 §2.2; net/http answers 400), r.Close on
// an HTTP/1.2 request, white space ending a trailer name (see
// trimTrailerNames), and the text of an echo whose seen request is equal.
// (Requests with an obs-fold are compared in full: Plain declines them, so
// fasthttp's in-place fold joining is scanned once.)
//
// Seeds: the 142 requests of diffCases, and hostile bytes (CR, LF, NUL,
// obs-fold, duplicate framing, non-ASCII in every field, Basic user names
// with CR and NUL); testdata/fuzz/FuzzHTTP1 holds the checked-in corpus.
func FuzzHTTP1(f *testing.F) {
	for _, tc := range diffCases() {
		if len(tc.req) <= 4<<10 {
			f.Add([]byte(tc.req))
		}
	}
	for _, s := range hostileRequests() {
		f.Add([]byte(s))
	}
	fs := startFuzzServers(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		fs.check(t, in)
	})
}

// plainSeen is what Plain returned for one request.
type plainSeen struct {
	Method, RequestURI, Path, RawQuery, Host string
}

type fuzzServers struct {
	stdAddr, fastAddr string
	stdRec, fastRec   *diffRecorder
	mu                sync.Mutex
	plain             []plainSeen
}

func (fs *fuzzServers) plainAll() []plainSeen {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]plainSeen(nil), fs.plain...)
}

// startFuzzServers is diffServers for a fuzz run: both servers once, with
// fastserve's Native hook recording what Plain accepts.
func startFuzzServers(tb testing.TB) *fuzzServers {
	tb.Helper()
	fs := &fuzzServers{stdRec: &diffRecorder{}, fastRec: &diffRecorder{}}

	ts := httptest.NewUnstartedServer(diffHandler(fs.stdRec))
	ts.Config.MaxHeaderBytes = DefaultMaxHeaderBytes
	ts.Config.ReadHeaderTimeout = time.Second
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.Start()
	tb.Cleanup(ts.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	native := func(fc *fasthttp.RequestCtx) bool {
		if u, ok := Plain(fc); ok {
			fs.mu.Lock()
			fs.plain = append(fs.plain, plainSeen{
				Method:     string(fc.Method()),
				RequestURI: string(fc.Request.Header.RequestURI()),
				Path:       u.Path,
				RawQuery:   u.RawQuery,
				Host:       string(fc.Request.Header.Host()),
			})
			fs.mu.Unlock()
		}
		return false
	}
	s := New(Config{Handler: diffHandler(fs.fastRec), Native: native, ReadHeaderTimeout: time.Second, IdleTimeout: time.Second})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != http.ErrServerClosed {
			tb.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	fs.stdAddr, fs.fastAddr = ts.Listener.Addr().String(), ln.Addr().String()
	return fs
}

func (fs *fuzzServers) reset() {
	fs.stdRec.mu.Lock()
	fs.stdRec.seen = nil
	fs.stdRec.mu.Unlock()
	fs.fastRec.mu.Lock()
	fs.fastRec.seen = nil
	fs.fastRec.mu.Unlock()
	fs.mu.Lock()
	fs.plain = nil
	fs.mu.Unlock()
}

// fuzzDeadline bounds one exchange: both servers see the end of the input
// at once (half-close), so only a hung server reaches it.
const fuzzDeadline = 2 * time.Second

func (fs *fuzzServers) check(t *testing.T, in []byte) {
	fs.reset()
	// One server at a time: the recorders are per server, and running them
	// in turn keeps the run to one core.
	std := halfCloseExchange(t, fs.stdAddr, in)
	std.Seen = fs.stdRec.all()
	fast := halfCloseExchange(t, fs.fastAddr, in)
	fast.Seen = fs.fastRec.all()
	plain := fs.plainAll()

	if fast.TimedOut {
		t.Fatalf("fastserve kept the connection open until the deadline; got %q", trunc(fast.Raw, 300))
	}
	if std.TimedOut {
		return // net/http hung: no reference to compare with
	}
	problem := compareFuzz(in, std, fast, plain)
	if problem == "" {
		return
	}
	// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before
	// a request line. fasthttp ignores any number; net/http answers 400.
	// Where the input has such lines, net/http's answer to the input
	// without them is the reference too.
	if alt := dropEmptyLines(in); !bytes.Equal(alt, in) {
		fs.stdRec.mu.Lock()
		fs.stdRec.seen = nil
		fs.stdRec.mu.Unlock()
		std2 := halfCloseExchange(t, fs.stdAddr, alt)
		std2.Seen = fs.stdRec.all()
		if !std2.TimedOut && compareFuzz(in, std2, fast, plain) == "" {
			return
		}
	}
	t.Fatal(problem)
}

// emptyLines are empty lines at the start of the input or after the end of
// a header block (or of a request that ends with one).
var emptyLines = regexp.MustCompile(`^(\r?\n)+|(\r?\n\r?\n)(\r?\n)+`)

func dropEmptyLines(in []byte) []byte {
	return emptyLines.ReplaceAll(in, []byte("$2"))
}

// compareFuzz returns what is wrong with fastserve's handling of in, or "".
func compareFuzz(in []byte, std, fast diffResult, plain []plainSeen) string {
	if len(fast.Seen) > len(std.Seen) {
		return fmt.Sprintf("fastserve's handler ran %d times, net/http's %d:\n\tnet/http:  %s\n\tfastserve: %s",
			len(fast.Seen), len(std.Seen), show(std.Seen), show(fast.Seen))
	}
	var b strings.Builder
	for i := range fast.Seen {
		for _, d := range seenDiffs(trimTrailerNames(std.Seen[i]), fast.Seen[i]) {
			if d.field == "Close" && fast.Seen[i].Close && minorAbove1(std.Seen[i].Proto) {
				// fasthttp keeps alive only "HTTP/1.1" (and 1.0 with
				// keep-alive); "HTTP/1.2" gets 1.0's close. Closing is
				// the conservative choice; the request is the same.
				continue
			}
			fmt.Fprintf(&b, "request %d as the handler saw it: %s:\n\tnet/http:  %s\n\tfastserve: %s\n", i+1, d.field, show(d.std), show(d.fast))
		}
	}
	if b.Len() > 0 {
		return b.String()
	}

	// Plain's acceptances are a subsequence of fastserve's handler calls.
	j := 0
	for _, p := range plain {
		for j < len(fast.Seen) && !plainMatches(p, fast.Seen[j]) {
			j++
		}
		if j == len(fast.Seen) {
			return fmt.Sprintf("Plain accepted %+v, but the handler never saw it (handler saw %s)", p, show(fast.Seen))
		}
		j++
	}

	// Answers the handlers made for the same requests agree.
	sw, fw := handlerAnswers(std), handlerAnswers(fast)
	for i := 0; i < min(len(sw), len(fw), len(fast.Seen)); i++ {
		s, f := sw[i], fw[i]
		// The echo (JSON of what the handler saw) is compared above,
		// where nil and empty headers are the same; as text they are not
		// (net/http's r.Trailer is an empty map for a chunked body
		// without trailers, fastserve's is nil).
		echo := s.Header["Content-Type"] == "application/json"
		if s.Status != f.Status || (s.Body != f.Body && !echo) {
			return fmt.Sprintf("answer %d: net/http %d %q, fastserve %d %q", i+1, s.Status, trunc(s.Body, 200), f.Status, trunc(f.Body, 200))
		}
	}
	return ""
}

// trimTrailerNames returns s with white space trimmed from the end of its
// trailer names. A trailer line "User-Agent :" (white space before the
// colon, which RFC 9112 §5.1 has a server refuse in a header section)
// lands in net/http's r.Trailer under "User-Agent " and in fastserve's
// under "User-Agent" (fasthttp trims it); both are lenient, differently.
func trimTrailerNames(s diffSeen) diffSeen {
	if len(s.Trailer) == 0 {
		return s
	}
	tr := make(http.Header, len(s.Trailer))
	for k, v := range s.Trailer {
		k = strings.TrimRight(k, " \t")
		tr[k] = append(tr[k], v...)
	}
	s.Trailer = tr
	return s
}

// minorAbove1 reports whether proto is HTTP/1.x with x > 1.
func minorAbove1(proto string) bool {
	major, minor, ok := http.ParseHTTPVersion(proto)
	return ok && major == 1 && minor > 1
}

func plainMatches(p plainSeen, s diffSeen) bool {
	return p.Method == s.Method && p.RequestURI == s.RequestURI && p.Path == s.Path && p.RawQuery == s.RawQuery && p.Host == s.Host
}

// handlerAnswers is the whole, final answers the handler made, in order.
func handlerAnswers(r diffResult) []diffAnswer {
	var out []diffAnswer
	for _, a := range normalise(r) {
		if !a.Handler {
			break
		}
		out = append(out, a)
	}
	return out
}

// halfCloseExchange writes in on a fresh connection to addr, half-closes
// it, and reads everything until the server closes. The answers are parsed
// afterwards with the methods the handler saw (HEAD answers have no body).
func halfCloseExchange(t *testing.T, addr string, in []byte) diffResult {
	var res diffResult
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(fuzzDeadline))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		c.Write(in) // a server may answer and close before reading it all
		c.(*net.TCPConn).CloseWrite()
	}()
	out, err := io.ReadAll(c)
	<-wrote
	var ne net.Error
	res.TimedOut = errors.As(err, &ne) && ne.Timeout()
	res.Raw = string(out)
	res.Answers, res.Tail = parseAnswers(out, requestMethods(in))
	return res
}

// requestMethods guesses the method of each pipelined request from the
// request lines in in: good enough to parse HEAD answers without a body.
// A wrong guess only makes the comparison of later answers lenient.
func requestMethods(in []byte) []string {
	var m []string
	for _, line := range bytes.Split(in, []byte("\n")) {
		if method, _, ok := bytes.Cut(line, []byte(" ")); ok && bytes.Contains(line, []byte(" HTTP/")) {
			m = append(m, string(method))
		}
	}
	return m
}

// parseAnswers is exchange's response parser over bytes already read.
func parseAnswers(out []byte, methods []string) (answers []diffAnswer, tail string) {
	br := bufio.NewReader(bytes.NewReader(out))
	for i := 0; ; i++ {
		if _, err := br.Peek(1); err == io.EOF {
			return answers, ""
		}
		method := http.MethodGet
		if i < len(methods) && methods[i] == http.MethodHead {
			method = http.MethodHead
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			rest, _ := io.ReadAll(br)
			return answers, fmt.Sprintf("%v: %q", err, trunc(string(rest), 200))
		}
		body, err := io.ReadAll(resp.Body)
		a := diffAnswer{
			Status:  resp.StatusCode,
			Handler: resp.Header.Get("X-Handler") == "1",
			Close:   resp.Close,
			Body:    string(body),
			Header:  map[string]string{"Content-Type": resp.Header.Get("Content-Type")},
		}
		if err != nil {
			a.BodyErr = err.Error()
		}
		answers = append(answers, a)
		if resp.StatusCode < 200 {
			i--
		}
	}
}

// hostileRequests are seeds with bytes a hostile client sends.
func hostileRequests() []string {
	basic := func(user string) string {
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":pw"))
	}
	post := func(extra ...string) string { return req("POST /body HTTP/1.1", "x", extra...) }
	return []string{
		// CR, LF and NUL where they do not belong.
		"GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a\nb HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET\x00/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n",
		"GET / HTTP/1.1\r\nHo\x00st: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\r\nX-B: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\rX-A: 1\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\nHost: x\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
		// obs-fold.
		"GET / HTTP/1.1\r\nHost: x\r\nX-F: a\r\n\tb\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n ,chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n 0\r\n\r\nabcdefghij",
		"GET / HTTP/1.1\r\nHost: x\r\n" + basic("u") + "\r\n \r\n\r\n",
		// Duplicate and conflicting framing.
		post("Content-Length: 3", "Content-Length: 3") + "abc",
		post("Content-Length: 3", "Content-Length: 4") + "abcd",
		post("Content-Length: 3,3") + "abc",
		post("Content-Length: 3", "Transfer-Encoding: chunked") + "0\r\n\r\n",
		post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked") + "0\r\n\r\n",
		post("Transfer-Encoding: chunked, chunked") + "0\r\n\r\n",
		post("Transfer-Encoding: chunked ") + "3\r\nabc\r\n0\r\n\r\n",
		post("Transfer-Encoding:\tchunked") + "3\r\nabc\r\n0\r\n\r\n",
		post("Transfer-Encoding: \x0bchunked") + "3\r\nabc\r\n0\r\n\r\n",
		post("Transfer-Encoding : chunked") + "3\r\nabc\r\n0\r\n\r\n",
		post("Transfer_Encoding: chunked") + "3\r\nabc\r\n0\r\n\r\n",
		post("Content-Length: 0x3") + "abc",
		post("Content-Length: 3 ") + "abc",
		post("Content-Length:  3") + "abc",
		post("Content-Length: 3\x00") + "abc",
		post("Content-Length: 99999999999999999999") + "abc",
		post("Transfer-Encoding: chunked") + "3;a=\"\r\n\"\r\nabc\r\n0\r\n\r\n",
		post("Transfer-Encoding: chunked") + "ffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
		post("Transfer-Encoding: chunked") + "3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n",
		post("Transfer-Encoding: chunked") + "3\r\nabcX\r\n0\r\n\r\n",
		post("Transfer-Encoding: chunked") + "3\nabc\n0\n\n",
		"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /1 HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.0\r\n\r\n",
		// Non-ASCII in every field.
		"G\xc3\x89T / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /caf\xc3\xa9?q=\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.\xc3\xa9\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nX-\xc3\xa9: v\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nX-V: \xc3\xa9\xff\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: \xc3\xa9.example\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: xn--caf-dma.example\r\n\r\n",
		"GET http://\xc3\xa9/p HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: \x80\r\n\r\n",
		// Basic user names with CR, LF, NUL, non-ASCII, colons.
		get("/auth", basic("us\rer")),
		get("/auth", basic("us\ner")),
		get("/auth", basic("us\x00er")),
		get("/auth", basic("us\r\nX-Forwarded-User: admin")),
		get("/auth", basic("\xc3\xa9l\xc3\xa8ve")),
		get("/auth", basic("a:b")),
		get("/auth", "Authorization: Basic dXNlcjpwdw==", "Authorization: Basic YWRtaW46cHc="),
		get("/auth", "Authorization: Basic  dXNlcjpwdw== "),
		get("/auth", "Authorization: basic dXNlcjpwdw=="),
		get("/auth", "Authorization: Basic dXNlcjpwdw"),
		get("/auth", "Authorization: Basic dXNl\rcjpwdw=="),
		// Host games.
		"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n",
		"GET http://a@b/ HTTP/1.1\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n",
		"GET //evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /%2e%2e/%2f HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /a\\..\\b HTTP/1.1\r\nHost: x\r\n\r\n",
		// Truncated and empty.
		"",
		"GET",
		"GET / HTTP/1.1\r\nHost: x\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
		"HEAD /b/body HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b/body-cl HTTP/1.1\r\nHost: x\r\n\r\n",
		strings.Repeat("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 8),
	}
}

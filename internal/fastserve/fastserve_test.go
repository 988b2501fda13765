package fastserve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/devcert"
)

// start serves h on a loopback port (with TLS when tlsCfg is set) and
// returns the base URL.
func start(t *testing.T, h http.Handler, tlsCfg *tls.Config) (string, *Server) {
	t.Helper()
	return startServer(t, Config{Handler: h, TLS: tlsCfg, ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 10 * time.Second})
}

// startWith is start with a Config of the test's own.
func startWith(t *testing.T, cfg Config) string {
	t.Helper()
	base, _ := startServer(t, cfg)
	return base
}

func startServer(t *testing.T, cfg Config) (string, *Server) {
	t.Helper()
	tlsCfg := cfg.TLS
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	return scheme + "://" + ln.Addr().String(), s
}

func client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func TestResponses(t *testing.T) {
	big := pattern(1 << 20)
	dir := t.TempDir()
	file := filepath.Join(dir, "bundle.json")
	if err := os.WriteFile(file, big, 0o644); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Path", r.URL.Path)
		w.Header().Set("X-Host", r.Host)
		w.Header().Set("X-Agent", r.Header.Get("User-Agent"))
		io.WriteString(w, `{"ok":true}`)
	})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html><body>x</body></html>") })
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "short and stout")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1048576")
		for i := 0; i < len(big); i += 10000 {
			w.Write(big[i:min(i+10000, len(big))])
		}
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(big); i += 100000 {
			w.Write(big[i:min(i+100000, len(big))])
		}
	})
	mux.HandleFunc("/copied", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1048576")
		io.Copy(w, bytes.NewReader(big)) // ReadFrom with a reader that is not a file
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(file)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "bundle.json", time.Unix(1e9, 0), f)
	})
	base, _ := start(t, mux, nil)
	cl := client()
	tests := []struct {
		name, method, path string
		header             map[string]string
		status             int
		body               []byte
		wantHeader         map[string]string
	}{
		{"small", "GET", "/small", map[string]string{"User-Agent": "t/1"}, 200, []byte(`{"ok":true}`),
			map[string]string{"Content-Type": "application/json", "Content-Length": "11", "X-Path": "/small", "X-Agent": "t/1", "X-Host": strings.TrimPrefix(base, "http://")}},
		{"sniffed type", "GET", "/sniff", nil, 200, []byte("<html><body>x</body></html>"), map[string]string{"Content-Type": "text/html; charset=utf-8"}},
		{"status", "GET", "/status", nil, 418, []byte("short and stout"), nil},
		{"not found", "GET", "/nope", nil, 404, []byte("404 page not found\n"), nil},
		{"streamed with length", "GET", "/big", nil, 200, big, map[string]string{"Content-Length": "1048576"}},
		{"streamed chunked", "GET", "/chunked", nil, 200, big, nil},
		{"copied from a reader", "GET", "/copied", nil, 200, big, map[string]string{"Content-Length": "1048576"}},
		{"file", "GET", "/file", nil, 200, big, map[string]string{"Content-Length": "1048576", "Accept-Ranges": "bytes"}},
		{"file range", "GET", "/file", map[string]string{"Range": "bytes=10-19"}, 206, big[10:20], map[string]string{"Content-Range": "bytes 10-19/1048576", "Content-Length": "10"}},
		{"large file range", "GET", "/file", map[string]string{"Range": "bytes=100003-900002"}, 206, big[100003:900003], map[string]string{"Content-Range": "bytes 100003-900002/1048576", "Content-Length": "800000"}},
		{"file not modified", "GET", "/file", map[string]string{"If-None-Match": `"v1"`}, 304, nil, map[string]string{"ETag": `"v1"`}},
		{"file HEAD", "HEAD", "/file", nil, 200, nil, map[string]string{"Content-Length": "1048576"}},
		{"small HEAD", "HEAD", "/small", nil, 200, nil, map[string]string{"Content-Length": "11"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading body: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if !bytes.Equal(body, tc.body) {
				t.Fatalf("body %d bytes, want %d", len(body), len(tc.body))
			}
			for k, v := range tc.wantHeader {
				got := resp.Header.Get(k)
				if k == "Content-Length" && tc.method != "HEAD" {
					got = itoa64(resp.ContentLength)
				}
				if got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if s := resp.Header.Get("Server"); s != "" {
				t.Errorf("Server header %q sent", s)
			}
		})
	}
}

// TestFileBodies: a file copied whole into a response goes out with
// sendfile past fasthttp's writer (rawsock.SendFile); each way that can end early
// or fail still gives the client exactly the bytes, or an error.
func TestFileBodies(t *testing.T) {
	big := pattern(3<<20 + 12345) // several SendFile chunks and a tail
	file := filepath.Join(t.TempDir(), "bundle.json")
	if err := os.WriteFile(file, big, 0o644); err != nil {
		t.Fatal(err)
	}
	copyFile := func(extra int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f, err := os.Open(file)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			n := len(big) + extra
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.(io.ReaderFrom).ReadFrom(io.LimitReader(f, int64(n)))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/file", copyFile(0))
	// /watched is larger than both sides' socket buffers can hold, so the
	// copy is still running when its client goes away.
	const watchedSize = 64 << 20
	watched := filepath.Join(t.TempDir(), "sparse")
	if f, err := os.Create(watched); err != nil || f.Truncate(watchedSize) != nil || f.Close() != nil {
		t.Fatal("creating a sparse file", err)
	}
	copyErr := make(chan error, 1)
	mux.HandleFunc("/watched", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(watched)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", strconv.Itoa(watchedSize))
		_, err = w.(io.ReaderFrom).ReadFrom(io.LimitReader(f, watchedSize))
		copyErr <- err
	})
	mux.HandleFunc("/bare-file", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(file)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		io.Copy(w, f) // ReadFrom(*os.File), no LimitedReader
	})
	// A file that ends before the length the handler announced (it shrank
	// after being measured): the client must not see a complete response.
	mux.HandleFunc("/shorter", copyFile(1000))
	// A pipe is an *os.File that sendfile cannot read: the copy falls back.
	mux.HandleFunc("/pipe", func(w http.ResponseWriter, r *http.Request) {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Error(err)
			return
		}
		defer pr.Close()
		go func() {
			pw.Write(big)
			pw.Close()
		}()
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.(io.ReaderFrom).ReadFrom(io.LimitReader(pr, int64(len(big))))
	})
	base, _ := start(t, mux, nil)
	cl := client()
	get := func(t *testing.T, path string) ([]byte, error) {
		resp, err := cl.Get(base + path)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return io.ReadAll(resp.Body)
	}
	for _, p := range []string{"/file", "/bare-file", "/pipe"} {
		t.Run(p, func(t *testing.T) {
			body, err := get(t, p)
			if err != nil || !bytes.Equal(body, big) {
				t.Fatalf("%d bytes (%v), want the file's %d", len(body), err, len(big))
			}
		})
	}
	t.Run("/shorter", func(t *testing.T) {
		if body, err := get(t, "/shorter"); err == nil {
			t.Fatalf("%d bytes read as a complete response", len(body))
		}
	})
	t.Run("client goes away", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(4096) // the server soon waits for room
		io.WriteString(c, "GET /watched HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
			t.Fatalf("status line %q, %v", line, err)
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // reset, with most of the body unsent
		select {
		case err := <-copyErr:
			if err == nil {
				t.Fatal("the handler's copy reported success to a client that went away")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the handler's copy did not end after the client went away")
		}
		if body, err := get(t, "/file"); err != nil || !bytes.Equal(body, big) {
			t.Fatalf("next request: %d bytes (%v)", len(body), err)
		}
	})
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// raw sends a request on a fresh connection and returns what came back
// before the server closed it (or the read deadline passed).
func raw(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(c)
	return string(out)
}

func TestBadRequests(t *testing.T) {
	var reached []string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached = append(reached, r.URL.Path)
		io.WriteString(w, "ok")
	})
	base, _ := start(t, h, nil)
	addr := strings.TrimPrefix(base, "http://")
	tests := []struct {
		name, req, status string
	}{
		{"no Host in HTTP/1.1", "GET /a HTTP/1.1\r\n\r\n", "400"},
		{"two Host headers", "GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
		{"bad Host", "GET /a HTTP/1.1\r\nHost: a b\r\n\r\n", "400"},
		{"bad request target", "GET a HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
		{"HTTP/2 preface without TLS", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "400"},
		{"70 KiB header", "GET /a HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", "431"},
		{"two different Content-Lengths", "GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 30\r\n\r\nhello", "400"},
		{"signed Content-Length", "GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", "400"},
		{"space before colon", "GET /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "400"},
		{"unknown transfer coding", "GET /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", "400"},
		{"CL and TE (smuggling)", "GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := raw(t, addr, tc.req)
			if !strings.HasPrefix(out, "HTTP/1.1 "+tc.status) {
				t.Fatalf("answer %q, want status %s", firstLine(out), tc.status)
			}
			if strings.Count(out, "HTTP/1.1 ") != 1 {
				t.Fatalf("more than one answer:\n%s", out)
			}
		})
	}
	for _, p := range reached {
		if p == "/smuggled" {
			t.Fatal("the smuggled request reached the handler")
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// TestPipelinedAndKeepAlive: answers come back in order on one connection.
func TestPipelinedAndKeepAlive(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })
	base, _ := start(t, h, nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/one", "/two"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
}

// TestAbortedResponses: a handler that aborts (http.ErrAbortHandler, as
// httputil.ReverseProxy does when the origin fails mid-body) or writes less
// than its Content-Length never gives the client a response that looks
// complete.
func TestAbortedResponses(t *testing.T) {
	big := pattern(256 << 10)
	mux := http.NewServeMux()
	mux.HandleFunc("/abort-before", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "partial")
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/abort-streaming", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write(big)
		panic(http.ErrAbortHandler)
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "only this")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	base, _ := start(t, mux, nil)
	cl := client()
	for _, p := range []string{"/abort-before", "/abort-streaming", "/short", "/panic"} {
		t.Run(p, func(t *testing.T) {
			resp, err := cl.Get(base + p)
			if err != nil {
				return // no answer at all: fine
			}
			defer resp.Body.Close()
			_, err = io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("status %d with a body that read as complete", resp.StatusCode)
			}
		})
	}
}

// TestFlushStreams: after Flush the client has the status and headers
// while the handler is still running, and every later write reaches it as
// it is made, even one far smaller than a write buffer (a cache fill
// streaming from a slow origin), over plain TCP and over TLS, with and
// without a declared Content-Length.
func TestFlushStreams(t *testing.T) {
	cert, pool := selfSigned(t)
	for _, tc := range []struct {
		name   string
		tls    bool
		length bool
	}{{"plain", false, true}, {"plain chunked", false, false}, {"TLS", true, true}, {"TLS chunked", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Early", "yes")
				if tc.length {
					w.Header().Set("Content-Length", "1027")
				}
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				w.Write(pattern(1 << 10))
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-time.After(20 * time.Second):
				}
				io.WriteString(w, "end")
			})
			var cfg *tls.Config
			cl := client()
			if tc.tls {
				cfg = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
				cl.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
			}
			base, _ := start(t, h, cfg)
			resp, err := cl.Get(base + "/")
			if err != nil {
				close(release)
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Header.Get("X-Early") != "yes" {
				t.Error("headers missing")
			}
			first := make([]byte, 1<<10)
			got := make(chan error, 1)
			go func() { _, err := io.ReadFull(resp.Body, first); got <- err }()
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the first KiB did not arrive while the handler waited")
			}
			close(release)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "end" {
				t.Fatalf("rest %q, %v", rest, err)
			}
		})
	}
}

// TestTLSBothProtocols: over TLS, HTTP/1.1 clients are served here and
// HTTP/2 clients by the net/http server, with r.TLS set either way.
func TestTLSBothProtocols(t *testing.T) {
	cert, pool := selfSigned(t)
	bigBody := pattern(3<<20 + 17)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("r.TLS is nil")
		}
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", itoa64(int64(len(bigBody))))
			for i, step := 0, 1000; i < len(bigBody); i, step = i+step, step*2%70001+1 {
				w.Write(bigBody[i:min(i+step, len(bigBody))])
			}
			return
		}
		io.WriteString(w, r.Proto)
	})
	base, _ := start(t, h, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12})
	for _, tc := range []struct {
		name string
		h2   bool
		want string
	}{{"HTTP/1.1", false, "HTTP/1.1"}, {"HTTP/2", true, "HTTP/2.0"}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}, ForceAttemptHTTP2: tc.h2}
			if !tc.h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
			resp, err := cl.Get(base + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if string(b) != tc.want {
				t.Fatalf("served as %q, want %q", b, tc.want)
			}
			// A large streamed body (written in uneven pieces) arrives whole.
			resp, err = cl.Get(base + "/big")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err = io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(b, bigBody) || resp.ContentLength != int64(len(bigBody)) {
				t.Fatalf("big body: %d bytes (Content-Length %d), %v", len(b), resp.ContentLength, err)
			}
		})
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca, err := devcert.NewCA("fastserve test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return cert, ca.Pool()
}

// TestShutdownFinishesInFlight: Shutdown waits for a running download.
func TestShutdownFinishesInFlight(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "6")
		io.WriteString(w, "abc")
		w.(http.Flusher).Flush()
		close(started)
		<-release
		io.WriteString(w, "def")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Handler: h, ReadHeaderTimeout: 2 * time.Second})
	go s.Serve(ln)
	got := make(chan string, 1)
	go func() {
		resp, err := client().Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	close(release)
	if b := <-got; b != "abcdef" {
		t.Fatalf("download got %q, want abcdef", b)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestClientGoneCancelsContext: when a write to a client that went away
// fails, the handler's request context is cancelled at once, so that work
// the handler started for the client (an upstream request, a cache fill
// no one else waits for) stops too. Before, the context stayed live until
// the handler returned.
func TestClientGoneCancelsContext(t *testing.T) {
	cert, _ := selfSigned(t)
	for _, tc := range []struct {
		name   string
		tlsCfg *tls.Config
	}{{"plain", nil}, {"tls", tlsConfig(cert)}} {
		t.Run(tc.name, func(t *testing.T) {
			firstSent := make(chan struct{})
			cancelled := make(chan error, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "1000000000")
				chunk := make([]byte, 32<<10)
				w.Write(chunk)
				w.(http.Flusher).Flush()
				close(firstSent)
				for range 30000 { // less than the declared length
					if _, err := w.Write(chunk); err != nil {
						cancelled <- r.Context().Err() // right after the failed write
						return
					}
				}
				cancelled <- errors.New("every write succeeded")
			})
			base, _ := start(t, h, tc.tlsCfg)
			addr := strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://")
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			if tc.tlsCfg != nil {
				c = tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			c.Read(make([]byte, 4096)) // the answer has begun
			<-firstSent
			c.Close()
			if err := <-cancelled; !errors.Is(err, context.Canceled) {
				t.Fatalf("request context after a failed write: %v, want context.Canceled", err)
			}
		})
	}
}

// TestClientGoneBeforeAnswerCancelsContext: a client that leaves while
// the handler is still waiting (as for an upstream's headers) has the
// request's context cancelled, without any write, over plain TCP and TLS
// (the TCP connection closed under TLS, as a client that crashed or
// timed out does). Before, the context lived until the handler returned.
func TestClientGoneBeforeAnswerCancelsContext(t *testing.T) {
	cert, _ := selfSigned(t)
	for _, tc := range []struct {
		name   string
		tlsCfg *tls.Config
	}{{"plain", nil}, {"tls", tlsConfig(cert)}} {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{})
			cancelled := make(chan bool, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				select {
				case <-r.Context().Done():
					cancelled <- true
				case <-time.After(20 * time.Second):
					cancelled <- false
				}
			})
			base, _ := start(t, h, tc.tlsCfg)
			addr := strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://")
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			var c net.Conn = raw
			if tc.tlsCfg != nil {
				c = tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			<-started
			raw.Close()
			if !<-cancelled {
				t.Fatal("the request context was not cancelled after the client left")
			}
		})
	}
}

// TestSlowAnswerStillServed: a handler that answers after the connection
// started being watched still answers, and the keep-alive connection
// serves a pipelined request after it.
func TestSlowAnswerStillServed(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(3 * peerGoneAfter) // longer than the watch delay (not synchronisation)
		io.WriteString(w, r.URL.Path)
	})
	base, _ := start(t, h, nil)
	out := raw(t, strings.TrimPrefix(base, "http://"),
		"GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if !strings.Contains(out, "/one") || !strings.Contains(out, "/two") || strings.Count(out, "HTTP/1.1 200") != 2 {
		t.Fatalf("answers: %q", out)
	}
}

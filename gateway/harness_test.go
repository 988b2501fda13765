package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/devcert"
	"github.com/stella-ops/stella-mirror/internal/serve"
	"github.com/stella-ops/stella-mirror/internal/testenv"
	"github.com/stella-ops/stella-mirror/origin"
	"github.com/stella-ops/stella-mirror/origin/origintest"
)

const (
	hostPrimary   = "mirror-primary.localhost"
	hostCommunity = "mirror-community.localhost"
)

// seen records the headers of requests that reached the upstream.
type seen struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (s *seen) add(r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Clone(context.Background()))
	s.mu.Unlock()
}

func (s *seen) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return nil
	}
	return s.reqs[len(s.reqs)-1]
}

func (s *seen) paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p []string
	for _, r := range s.reqs {
		p = append(p, r.URL.Path)
	}
	return p
}

// harness is a gateway in front of a real origin over fixture data.
type harness struct {
	t        *testing.T
	dir      string
	ca       *devcert.CA
	gw       *Gateway
	cfg      Config
	addr     string // HTTPS listener
	httpAddr string
	admin    string
	upstream *seen
	reg      *prometheus.Registry
	reloaded chan string // "kind site ok|fail"
	access   *strings.Builder
	accessMu *sync.Mutex
	wrote    chan struct{} // closed and replaced on every access-log write
	origin   *httptest.Server
	stop     func()
}

type harnessOpts struct {
	edit     func(*Config)
	upstream http.Handler // instead of the real origin
	opts     Options
	noNative bool // the native paths off: Handler answers everything
	// engine is GATEWAY__SERVER__ENGINE; empty: the default (fast).
	engine string
}

// forEngines runs test once on each server engine, as a subtest named
// after it.
func forEngines(t *testing.T, test func(t *testing.T, engine string)) {
	for _, e := range []string{serve.EngineFast, serve.EngineStd} {
		t.Run(e, func(t *testing.T) { test(t, e) })
	}
}

var (
	exportOnce sync.Once
	exportRoot string
	exportErr  error
)

// sharedExport writes one small fixture export for all tests.
func sharedExport(t *testing.T) string {
	exportOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gateway-test-export-")
		if err != nil {
			exportErr = err
			return
		}
		exportRoot = filepath.Join(dir, "exports")
		_, exportErr = fixture.Write(exportRoot, fixture.Options{
			Domains: []string{"primary", "community"}, BundleSize: 64 << 10, VEXSize: 16 << 10, SetLatest: true,
		})
	})
	if exportErr != nil {
		t.Fatal(exportErr)
	}
	return exportRoot
}

func htpasswd(t *testing.T, args ...string) {
	t.Helper()
	testenv.Tool(t, "htpasswd", "apache2-utils")
	if out, err := exec.Command("htpasswd", args...).CombinedOutput(); err != nil {
		t.Fatalf("htpasswd %v: %v\n%s", args, err, out)
	}
}

func newHarness(t *testing.T, ho harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), upstream: &seen{}, reloaded: make(chan string, 64),
		access: &strings.Builder{}, accessMu: &sync.Mutex{}, wrote: make(chan struct{})}
	var err error
	if h.ca, err = devcert.NewCA("gateway test CA", 0); err != nil {
		t.Fatal(err)
	}
	// Origin (real) or the test's upstream.
	up := ho.upstream
	if up == nil {
		o, err := origin.New(origintest.Config(sharedExport(t)), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		up = o.Handler()
	}
	h.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.upstream.add(r)
		up.ServeHTTP(w, r)
	}))
	t.Cleanup(h.origin.Close)

	// Per-site certificate and htpasswd (each in its own directory).
	site := func(host, domain, user, pass string) SiteConfig {
		d := filepath.Join(h.dir, domain)
		os.MkdirAll(filepath.Join(d, "tls"), 0o755)
		os.MkdirAll(filepath.Join(d, "auth"), 0o755)
		leaf, err := h.ca.Issue(devcert.LeafOptions{Names: []string{host}})
		if err != nil {
			t.Fatal(err)
		}
		sc := SiteConfig{Hosts: []string{host}, Domains: []string{domain},
			CertFile: filepath.Join(d, "tls", "cert.pem"), KeyFile: filepath.Join(d, "tls", "key.pem"),
			HtpasswdFile: filepath.Join(d, "auth", "htpasswd")}
		if err := leaf.WriteFiles(sc.CertFile, sc.KeyFile); err != nil {
			t.Fatal(err)
		}
		htpasswd(t, "-c", "-B", "-b", sc.HtpasswdFile, user, pass)
		return sc
	}
	cfg := DefaultConfig()
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.HTTPListen = "127.0.0.1:0"
	cfg.Gateway.AdminListen = "127.0.0.1:0"
	cfg.Gateway.Origin = h.origin.URL
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	cfg.Gateway.Sites = []SiteConfig{
		site(hostPrimary, "primary", "alice", "alice-pw"),
		site(hostCommunity, "community", "carol", "carol-pw"),
	}
	if ho.engine != "" {
		cfg.Gateway.Server.Engine = ho.engine
	}
	if ho.edit != nil {
		ho.edit(&cfg)
	}
	h.cfg = cfg
	h.reg = prometheus.NewRegistry()
	o := ho.opts
	o.Registerer = h.reg
	o.AccessLog = accesslog.New(lockedWriter{h}, accesslog.Options{BufferSize: -1})
	o.Reloaded = func(kind, site string, err error) {
		r := "ok"
		if err != nil {
			r = "fail"
		}
		h.reloaded <- kind + " " + site + " " + r
	}
	h.gw, err = New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	h.gw.noNative = ho.noNative
	l, err := Listen(cfg.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	h.addr, h.admin = l.HTTPS.Addr().String(), l.Admin.Addr().String()
	if l.HTTP != nil {
		h.httpAddr = l.HTTP.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	up2 := make(chan struct{})
	go func() { done <- h.gw.Serve(ctx, l, func() { close(up2) }) }()
	select {
	case <-up2:
	case err := <-done:
		t.Fatalf("gateway stopped before serving: %v", err)
	}
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway Serve: %v", err)
		}
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(h.stop) })
	return h
}

// client returns an HTTPS client trusting the test CA that connects every
// host name to the gateway.
func (h *harness) client() *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: h.ca.Pool()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, h.addr)
		},
		// HTTP/1.1: the tests send hop-by-hop headers, which HTTP/2 forbids.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type resp struct {
	status int
	header http.Header
	body   string
	err    error
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// get fetches https://host+path with the given headers.
func (h *harness) get(host, path string, hdr map[string]string) resp {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+host+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := h.client().Do(req)
	if err != nil {
		return resp{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return resp{status: res.StatusCode, header: res.Header, body: string(b), err: err}
}

// raw sends a hand-written request over TLS (SNI sni) and returns the
// status line's code (0 if none) and whatever else was read.
func (h *harness) raw(sni, request string) (int, string) {
	h.t.Helper()
	conn, err := tls.Dial("tcp", h.addr, &tls.Config{ServerName: sni, RootCAs: h.ca.Pool(), NextProtos: []string{"http/1.1"}})
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		h.t.Fatal(err)
	}
	all, _ := io.ReadAll(conn)
	s := string(all)
	code := 0
	if line, _, _ := strings.Cut(s, "\r\n"); strings.HasPrefix(line, "HTTP/1.1 ") {
		fmt.Sscanf(line, "HTTP/1.1 %d", &code)
	}
	return code, s
}

// waitReload waits for the next reload report.
func (h *harness) waitReload(want string) {
	h.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case got := <-h.reloaded:
			if got == want {
				return
			}
			h.t.Logf("reload report %q (waiting for %q)", got, want)
		case <-timeout:
			h.t.Fatalf("no reload report %q within 20s", want)
		}
	}
}

// serverCert returns the leaf certificate the gateway presents for sni.
func (h *harness) serverCert(sni string) *x509.Certificate {
	h.t.Helper()
	conn, err := tls.Dial("tcp", h.addr, &tls.Config{ServerName: sni, RootCAs: h.ca.Pool()})
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func (h *harness) metrics() string {
	h.t.Helper()
	res, err := http.Get("http://" + h.admin + "/metrics")
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// waitAccess returns the access log once it holds at least n lines. The
// gateway writes a request's line when its handler returns, which for a
// streamed response can be just after the client has read the last byte.
func (h *harness) waitAccess(n int) string {
	h.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		h.accessMu.Lock()
		s, wrote := h.access.String(), h.wrote
		h.accessMu.Unlock()
		if strings.Count(s, "\n") >= n {
			return s
		}
		select {
		case <-wrote:
		case <-timeout:
			h.t.Fatalf("access log has %d lines after 20s, want %d:\n%s", strings.Count(s, "\n"), n, s)
		}
	}
}

type lockedWriter struct{ h *harness }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.h.accessMu.Lock()
	defer w.h.accessMu.Unlock()
	close(w.h.wrote)
	w.h.wrote = make(chan struct{})
	return w.h.access.Write(p)
}

// readLines returns a scanner over s.
func readLines(s string) *bufio.Scanner { return bufio.NewScanner(strings.NewReader(s)) }

// newStaticOrigin is a stand-in origin answering index.json.
func newStaticOrigin(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"domains":[]}`)
	}))
	t.Cleanup(s.Close)
	return s
}

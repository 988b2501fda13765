package origin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/serve"
)

// treeOpts shape a test export.
type treeOpts struct {
	domains []string // default: primary, community
	pad     int      // extra bytes in every bundle and VEX export
}

// testExport is an export written by writeExport: its files by relative
// path, so tests can compare served bytes with what is on disk.
type testExport struct {
	id    string
	dir   string
	files map[string][]byte
}

// Export keys every test domain has.
const (
	keyOpenVEX = "openvex-1.json"
	keyJSONL   = "statements-1.jsonl"
)

var testTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// writeExport writes a small but valid export <root>/<id> holding both
// Concelier and Excititor content. Content differs per export id.
func writeExport(t testing.TB, root, id string, o treeOpts) *testExport {
	t.Helper()
	if len(o.domains) == 0 {
		o.domains = []string{"primary", "community"}
	}
	te := &testExport{id: id, dir: filepath.Join(root, id), files: map[string][]byte{}}
	put := func(rel string, data []byte) {
		t.Helper()
		p := filepath.Join(te.dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		te.files[rel] = data
	}
	putJSON := func(rel string, v any) []byte {
		t.Helper()
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, '\n')
		put(rel, data)
		return data
	}
	sigRef := func(p string) *export.SignatureRef {
		return &export.SignatureRef{Path: p, Algorithm: "EdDSA", KeyID: "test-kid", SignedAt: testTime}
	}
	ix := export.Index{SchemaVersion: export.SchemaVersion, ExportID: id, GeneratedAt: testTime}
	pad := strings.Repeat("x", o.pad)
	for _, d := range o.domains {
		b := export.Bundle{
			SchemaVersion: export.SchemaVersion, GeneratedAt: testTime, DomainID: d, AdvisoryCount: 1,
			Advisories: []export.Advisory{{AdvisoryKey: "CVE-2026-0001", Title: "bundle of " + id + "/" + d, Summary: pad}},
		}
		bundle := putJSON(export.BundlePath(d), b)
		put(export.BundleSignaturePath(d), []byte("eyJhbGciOiJFZERTQSJ9..sig-"+id+"-"+d))
		bref := export.FileRef{Path: export.BundlePath(d), SizeBytes: int64(len(bundle)), Digest: export.Digest(bundle),
			Signature: sigRef(export.BundleSignaturePath(d))}
		manifest := putJSON(export.ManifestPath(d), export.Manifest{
			SchemaVersion: export.SchemaVersion, ExportID: id, GeneratedAt: testTime, DomainID: d, AdvisoryCount: 1, Bundle: bref,
		})
		ix.Domains = append(ix.Domains, export.IndexDomain{
			DomainID: d, AdvisoryCount: 1,
			Manifest: export.FileRef{Path: export.ManifestPath(d), SizeBytes: int64(len(manifest)), Digest: export.Digest(manifest)},
			Bundle:   bref,
		})

		xi := export.ExcititorIndex{SchemaVersion: export.SchemaVersion, ExportID: id, GeneratedAt: testTime, DomainID: d}
		for _, x := range []struct{ key, format, body string }{
			{keyOpenVEX, "openvex", `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"` + id + `/` + d + `","pad":"` + pad + `"}` + "\n"},
			{keyJSONL, "jsonl", `{"export":"` + id + `","domain":"` + d + `"}` + "\n" + `{"pad":"` + pad + `"}` + "\n"},
		} {
			put(export.ExcititorExportPath(d, x.key), []byte(x.body))
			put(export.ExcititorSignaturePath(d, x.key), []byte("eyJhbGciOiJFZERTQSJ9..vexsig-"+id+"-"+d+"-"+x.key))
			url := export.ExcititorExportURL(d, x.key)
			xi.Exports = append(xi.Exports, export.ExcititorExport{
				ExportKey: x.key, Format: x.format, CreatedAt: testTime, SizeBytes: int64(len(x.body)), Digest: export.Digest([]byte(x.body)),
				ExportPath: url, SignaturePath: url + "/signature", Signature: sigRef(export.ExcititorSignaturePath(d, x.key)),
			})
		}
		putJSON(export.ExcititorIndexPath(d), xi)
	}
	putJSON(export.IndexPath, ix)
	return te
}

// setMarkerTimes sets the mtime of an export's markers (Concelier index and
// every Excititor domain index).
func setMarkerTimes(t *testing.T, te *testExport, mt time.Time) {
	t.Helper()
	for rel := range te.files {
		if rel == export.IndexPath || strings.HasSuffix(rel, "/index.json") {
			if err := os.Chtimes(filepath.Join(te.dir, filepath.FromSlash(rel)), mt, mt); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// pointLatest atomically points <root>/latest at target (any string).
func pointLatest(t testing.TB, root, target string) {
	t.Helper()
	tmp := filepath.Join(root, ".latest.tmp")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(root, export.LatestLink)); err != nil {
		t.Fatal(err)
	}
}

// testConfig enables both products on root (Concelier and Excititor share
// it, as in the demo).
func testConfig(root string) Config {
	cfg := DefaultConfig()
	cfg.Concelier.Mirror.Enabled = true
	cfg.Concelier.Mirror.ExportRoot = root
	cfg.Excititor.Mirror.Enabled = true
	cfg.Excititor.Artifacts.FileSystem.Root = root
	return cfg
}

// logBuffer collects JSON log lines safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the decoded log records whose msg is msg.
func (b *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", sc.Text(), err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// fakeClock is a settable clock for options.now.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// harness is an origin under test with its logs, registry and servers.
type harness struct {
	o      *Origin
	logs   *logBuffer
	reg    *prometheus.Registry
	public *liveServer // net/http's server with serve's limits, as `stella-mirror origin` serves
	admin  *httptest.Server

	// inflight counts handlers still running: a client has the whole
	// response before the handler has recorded metrics and the access log.
	mu       sync.Mutex
	cond     *sync.Cond
	inflight int
}

// track wraps h so settle can wait for it to return.
func (h *harness) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.inflight++
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			h.inflight--
			h.cond.Broadcast()
			h.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

// settle waits until every handler that has started has returned, so its
// metrics and access-log line are recorded.
func (h *harness) settle(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		h.mu.Lock()
		for h.inflight > 0 {
			h.cond.Wait()
		}
		h.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("handlers still running after 30s")
	}
}

// newHarness builds an origin and serves it on real loopback listeners.
func newHarness(t *testing.T, cfg Config, opts options) *harness {
	t.Helper()
	h := &harness{logs: &logBuffer{}, reg: prometheus.NewRegistry()}
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.recheck == 0 {
		// Tests flip latest and expect the next request to see it; the
		// production recheck interval has its own test.
		opts.recheck = -1
	}
	if cfg.AccessLog == nil {
		cfg.AccessLog = accesslog.New(h.logs, accesslog.Options{BufferSize: -1})
	}
	o, err := newOrigin(cfg, logger, h.reg, opts)
	if err != nil {
		t.Fatalf("newOrigin: %v", err)
	}
	h.o = o
	h.cond = sync.NewCond(&h.mu)
	h.public = newLiveServer(t, h.track(o.Handler()), logger)
	h.admin = httptest.NewServer(h.track(o.AdminHandler()))
	t.Cleanup(func() {
		h.public.Close()
		h.admin.Close()
		o.Close()
	})
	return h
}

// liveServer serves a handler on a loopback port with the server the
// origin's public listener uses in production (serve.NewServer: net/http
// with serve's timeouts and limits), so the tests see what clients see.
// It offers what the tests use of httptest.Server.
type liveServer struct {
	URL    string
	srv    *http.Server
	done   chan error
	client *http.Client
}

func newLiveServer(t *testing.T, h http.Handler, logger *slog.Logger) *liveServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &liveServer{URL: "http://" + ln.Addr().String(), srv: serve.NewServer(h, logger), done: make(chan error, 1),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s
}

// Client returns a client for the server.
func (s *liveServer) Client() *http.Client { return s.client }

// Close stops the server, giving in-flight requests 5 s.
func (s *liveServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.done
	s.client.CloseIdleConnections()
}

// response is a fully read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends method path with headers to base and reads the whole response.
func do(t testing.TB, client *http.Client, method, url string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func (h *harness) get(t testing.TB, path string) response {
	t.Helper()
	return do(t, h.public.Client(), http.MethodGet, h.public.URL+path, nil)
}

// rawGet sends a request line with target exactly as given (no client-side
// cleaning or escaping) and reads the response.
func rawGet(t *testing.T, addr, target string) response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// errorCode decodes a JSON error body and returns its "error" field.
func errorCode(t *testing.T, r response) string {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	if b.Message == "" {
		t.Errorf("error body %q has no message", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	return b.Error
}

// rewriteJSON overwrites a file of a test export with v encoded as JSON.
func rewriteJSON(t *testing.T, te *testExport, rel string, v any) {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	overwrite(t, te, rel, data)
	te.files[rel] = data
}

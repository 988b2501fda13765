package upstream_test

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
	"github.com/stella-ops/stella-mirror/mirrorsync/upstream"
	"github.com/stella-ops/stella-mirror/origin"
	"github.com/stella-ops/stella-mirror/origin/origintest"
)

var testKey = fixture.DerivedKey(7)

func keys(context.Context) ([]jws.PublicKey, error) {
	return []jws.PublicKey{{Key: testKey.Public().(ed25519.PublicKey)}}, nil
}

func writeSource(t testing.TB, root string, seed uint64) *fixture.Result {
	t.Helper()
	res, err := fixture.Write(root, fixture.Options{
		Domains: []string{"primary", "community"}, BundleSize: 48 << 10, VEXSize: 4 << 10,
		Seed: seed, Key: testKey, SetLatest: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// newOrigin serves root with our origin on 127.0.0.1.
func newOrigin(t testing.TB, root string) *origin.Origin {
	t.Helper()
	return origintest.New(t, root)
}

func newSource(t testing.TB, base string, mod func(*upstream.Options)) *upstream.Source {
	t.Helper()
	opts := upstream.Options{BaseURL: base, Timeout: 5 * time.Second, RetryMax: 2,
		RetryWaitMin: 10 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond}
	if mod != nil {
		mod(&opts)
	}
	s, err := upstream.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func run(t testing.TB, dst string, src mirrorsync.Source) (*mirrorsync.Result, error) {
	t.Helper()
	return mirrorsync.Run(context.Background(), mirrorsync.Options{Root: dst, Source: src, Keys: keys})
}

func TestSyncFromOrigin(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	up := httptest.NewServer(newOrigin(t, src).Handler())
	defer up.Close()
	s := newSource(t, up.URL, nil)

	res, err := run(t, dst, s)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Published || res.FilesDownloaded == 0 {
		t.Fatalf("first sync: %+v", res)
	}
	sourcetest.CheckPublished(t, dst, fx)

	res, err = run(t, dst, s)
	if err != nil || !res.Skipped || res.BytesDownloaded != 0 {
		t.Fatalf("no-op sync: %+v, %v", res, err)
	}

	// A new export upstream is fetched and published.
	fx2 := writeSource(t, src, 2)
	res, err = run(t, dst, s)
	if err != nil || !res.Published {
		t.Fatalf("second export: %+v, %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, fx2)
}

func TestAuthCredentialsFromFiles(t *testing.T) {
	src := t.TempDir()
	fx := writeSource(t, src, 1)
	o := newOrigin(t, src)
	dir := t.TempDir()
	basic := filepath.Join(dir, "basic")
	bearer := filepath.Join(dir, "token")
	os.WriteFile(basic, []byte("sync:s3cret\n"), 0o600)
	os.WriteFile(bearer, []byte("tok-123\n"), 0o600)
	tests := []struct {
		name string
		mod  func(*upstream.Options)
		want string
	}{
		{"basic", func(o *upstream.Options) { o.BasicAuthFile = basic }, "Basic c3luYzpzM2NyZXQ="},
		{"bearer", func(o *upstream.Options) { o.BearerTokenFile = bearer }, "Bearer tok-123"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var denied atomic.Int64
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != tc.want {
					denied.Add(1)
					http.Error(w, "unauthorized", http.StatusUnauthorized)
					return
				}
				o.Handler().ServeHTTP(w, r)
			}))
			defer up.Close()
			dst := t.TempDir()
			if _, err := run(t, dst, newSource(t, up.URL, tc.mod)); err != nil {
				t.Fatal(err)
			}
			sourcetest.CheckPublished(t, dst, fx)
			if denied.Load() != 0 {
				t.Errorf("%d requests without the right credentials", denied.Load())
			}
			// Without credentials the run fails with the status, nothing published.
			dst2 := t.TempDir()
			_, err := run(t, dst2, newSource(t, up.URL, nil))
			if err == nil || !strings.Contains(err.Error(), "401") {
				t.Fatalf("without credentials: %v", err)
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	o := newOrigin(t, src)
	var throttled atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/bundle.json") && throttled.Add(1) <= 2 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		o.Handler().ServeHTTP(w, r)
	}))
	defer up.Close()
	if _, err := run(t, dst, newSource(t, up.URL, nil)); err != nil {
		t.Fatal(err)
	}
	sourcetest.CheckPublished(t, dst, fx)
	if throttled.Load() < 3 {
		t.Errorf("throttled %d times; the retries did not happen", throttled.Load())
	}
}

func TestBackoff(t *testing.T) {
	resp := func(code int, after string) *http.Response {
		h := http.Header{}
		if after != "" {
			h.Set("Retry-After", after)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	tests := []struct {
		name string
		resp *http.Response
		want time.Duration
	}{
		{"429 with Retry-After", resp(429, "7"), 7 * time.Second},
		{"503 with Retry-After", resp(503, "3"), 3 * time.Second},
		{"Retry-After above the cap", resp(429, "3600"), time.Minute},
		{"500 without Retry-After", resp(500, ""), 4 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := upstream.Backoff(time.Second, 30*time.Second, time.Minute, 2, tc.resp); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestUpstreamDiesMidDownload: the upstream's connection drops in the
// middle of a bundle and then the upstream is gone; nothing is published.
// A later run against a new upstream completes, keeping what it had.
func TestUpstreamDiesMidDownload(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	old := writeSource(t, src, 1)
	o := newOrigin(t, src)
	up := httptest.NewServer(o.Handler())
	if _, err := run(t, dst, newSource(t, up.URL, nil)); err != nil {
		t.Fatal(err)
	}
	up.Close()

	fx := writeSource(t, src, 2)
	var up2 *httptest.Server
	dying := make(chan struct{})
	up2 = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "community/bundle.json") {
			w.Header().Set("Content-Length", "49152")
			w.WriteHeader(http.StatusOK)
			w.Write(make([]byte, 1000))
			w.(http.Flusher).Flush()
			select {
			case <-dying:
			default:
				close(dying)
			}
			panic(http.ErrAbortHandler)
		}
		o.Handler().ServeHTTP(w, r)
	}))
	_, err := run(t, dst, newSource(t, up2.URL, nil))
	if err == nil {
		t.Fatal("a run against a dying upstream succeeded")
	}
	<-dying
	up2.Close()
	sourcetest.CheckPublished(t, dst, old)

	up3 := httptest.NewServer(o.Handler())
	defer up3.Close()
	res, err := run(t, dst, newSource(t, up3.URL, nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.FilesResumed == 0 {
		t.Errorf("nothing was resumed: %+v", res)
	}
	sourcetest.CheckPublished(t, dst, fx)
}

func TestTamperedUpstream(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	old := writeSource(t, src, 1)
	o := newOrigin(t, src)
	up := httptest.NewServer(o.Handler())
	defer up.Close()
	if _, err := run(t, dst, newSource(t, up.URL, nil)); err != nil {
		t.Fatal(err)
	}
	writeSource(t, src, 2)
	// A man in the middle rewrites the signature.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/bundle.json.jws") {
			w.Write([]byte("eyJhbGciOiJFZERTQSJ9..AAAA"))
			return
		}
		o.Handler().ServeHTTP(w, r)
	}))
	defer evil.Close()
	_, err := run(t, dst, newSource(t, evil.URL, nil))
	var ve *mirrorsync.VerifyError
	if !errors.As(err, &ve) || !strings.HasSuffix(ve.Path, "bundle.json.jws") {
		t.Fatalf("want a verification error naming the signature, got %v", err)
	}
	// The old export is still what an origin over dst serves.
	served := httptest.NewServer(newOrigin(t, dst).Handler())
	defer served.Close()
	resp, err := http.Get(served.URL + "/concelier/exports/mirror/primary/bundle.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get(upstream.ExportIDHeader) != old.ExportID || export.Digest(body) != fileDigest(old, export.BundlePath("primary")) {
		t.Fatalf("served %d from %q", resp.StatusCode, resp.Header.Get(upstream.ExportIDHeader))
	}
}

func fileDigest(fx *fixture.Result, rel string) string {
	for _, f := range fx.Files {
		if f.Path == rel {
			return f.Digest
		}
	}
	return ""
}

func TestCustomCA(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	up := httptest.NewTLSServer(newOrigin(t, src).Handler())
	defer up.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o644)

	if _, err := run(t, t.TempDir(), newSource(t, up.URL, nil)); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: %v", err)
	}
	if _, err := run(t, dst, newSource(t, up.URL, func(o *upstream.Options) { o.CAFile = ca })); err != nil {
		t.Fatal(err)
	}
	sourcetest.CheckPublished(t, dst, fx)
}

func TestNewRejects(t *testing.T) {
	tests := []struct{ url, want string }{
		{"http://mirror.example.org", "only for loopback"},
		{"ftp://x", "scheme must be https"},
		{"https://u:p@mirror.example.org", "not in the URL"},
		{"mirror", "not an absolute URL"},
	}
	for _, tc := range tests {
		_, err := upstream.New(upstream.Options{BaseURL: tc.url})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.url, err, tc.want)
		}
	}
}

func TestConformance(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, root string) mirrorsync.Source {
		up := httptest.NewServer(newOrigin(t, root).Handler())
		t.Cleanup(up.Close)
		return newSource(t, up.URL, nil)
	})
}

// TestEndlessBodyIsCut: an upstream streaming more than the declared size
// is cut off one byte past it and the file rejected.
func TestEndlessBodyIsCut(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeSource(t, src, 1)
	o := newOrigin(t, src)
	var sent atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "primary/bundle.json") {
			chunk := make([]byte, 32<<10)
			for i := 0; i < 4096; i++ { // at most 128 MiB
				n, err := w.Write(chunk)
				sent.Add(int64(n))
				if err != nil {
					return
				}
			}
			return
		}
		o.Handler().ServeHTTP(w, r)
	}))
	defer up.Close()
	_, err := run(t, dst, newSource(t, up.URL, nil))
	var ve *mirrorsync.VerifyError
	if !errors.As(err, &ve) || ve.Path != export.BundlePath("primary") {
		t.Fatalf("want a verification error on the bundle, got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dst, export.LatestLink)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something was published: %v", err)
	}
	up.Close() // waits for the handler, so sent is final
	if sent.Load() >= 32<<20 {
		t.Errorf("the upstream could send %d bytes; the client did not hang up", sent.Load())
	}
}

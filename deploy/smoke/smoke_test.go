package smoke_test

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/demo"
	"github.com/stella-ops/stella-mirror/deploy/smoke"
	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/gateway"
	"github.com/stella-ops/stella-mirror/gateway/cache"
	"github.com/stella-ops/stella-mirror/origin"
)

// stack is the in-process demo: origin and gateway on loopback ports with
// a generated export, CA, certificates and users.
type stack struct {
	state demo.State
	pool  *x509.CertPool
	keys  []jws.PublicKey
}

func startDemo(t *testing.T) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan demo.State, 1)
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(ctx, demo.Options{
			Dir: t.TempDir(), OriginListen: "127.0.0.1:0", OriginAdminListen: "127.0.0.1:0",
			GatewayListen: "127.0.0.1:0", GatewayAdminListen: "127.0.0.1:0",
			BundleSize: 128 << 10, Ready: func(s demo.State) { ready <- s },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
	})
	var s stack
	select {
	case s.state = <-ready:
	case err := <-done:
		t.Fatalf("demo exited before it was ready: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("demo not ready after 2 minutes")
	}
	pem, err := os.ReadFile(s.state.CA)
	if err != nil {
		t.Fatal(err)
	}
	s.pool = x509.NewCertPool()
	if !s.pool.AppendCertsFromPEM(pem) {
		t.Fatal("demo CA: no certificate")
	}
	pub, err := jws.LoadPublicKeyPEM(s.state.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	s.keys = []jws.PublicKey{{Key: pub}}
	return &s
}

// options returns smoke options for the demo site of domain.
func (s *stack) options(t *testing.T, domain string) smoke.Options {
	t.Helper()
	site, err := url.Parse(s.state.Sites[domain])
	if err != nil {
		t.Fatal(err)
	}
	u := s.state.Users[domain]
	return smoke.Options{Base: site.String(), Domain: domain, User: u.User, Password: u.Password,
		RootCAs: s.pool, PublicKeys: s.keys, ConnectTo: "127.0.0.1:" + site.Port(), Timeout: 30 * time.Second}
}

// startGateway starts a second gateway from the demo's gateway.yaml with
// env overrides and, when withCache, the gateway cache as its transport.
// It returns the HTTPS port.
func (s *stack) startGateway(t *testing.T, env []string, withCache bool) string {
	t.Helper()
	// Not the demo's cache directory: the demo's gateway holds it. The
	// cache, when wanted, is this test's own (opts.Transport below).
	env = append(env[:len(env):len(env)], "GATEWAY__CACHE__DIR=")
	cfg, err := gateway.LoadConfig(s.state.Configs["gateway"], env)
	if err != nil {
		t.Fatal(err)
	}
	opts := gateway.Options{Registerer: prometheus.NewRegistry()}
	if withCache {
		c, err := cache.New(cache.Config{Dir: t.TempDir()}, http.DefaultTransport.(*http.Transport).Clone(), cache.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		opts.Transport = c
	}
	gw, err := gateway.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	up := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ctx, gateway.Listeners{HTTPS: ln, Admin: admin}, func() { close(up) }) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("gateway: %v", err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// startAuthOrigin serves the demo's export from a second origin that
// requires authentication (no bypass network, no Authority): every
// request without a token is 401.
func (s *stack) startAuthOrigin(t *testing.T) string {
	t.Helper()
	cfg := origin.DefaultConfig()
	cfg.Concelier.Mirror.Enabled = true
	cfg.Concelier.Mirror.ExportRoot = s.state.ExportRoots["concelier"]
	cfg.Concelier.Mirror.RequireAuthentication = true
	o, err := origin.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(o.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(func() { o.Close() })
	return srv.URL
}

func run(t *testing.T, opts smoke.Options) map[string]smoke.Result {
	t.Helper()
	rep, err := smoke.Run(context.Background(), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]smoke.Result{}
	var lines []string
	for _, r := range rep.Results {
		got[r.Name] = r
		lines = append(lines, r.String())
	}
	if len(rep.Results) != len(smoke.Checks) {
		t.Fatalf("%d results, want one per check (%d):\n%s", len(rep.Results), len(smoke.Checks), strings.Join(lines, "\n"))
	}
	t.Logf("smoke:\n%s", strings.Join(lines, "\n"))
	return got
}

// want asserts the status of each named check, and that the detail of a
// failure contains the given text.
func want(t *testing.T, got map[string]smoke.Result, name string, st smoke.Status, contains string) {
	t.Helper()
	r := got[name]
	if r.Status != st {
		t.Errorf("%s: %s, want %s (%s)", name, r.Status, st, r.Detail)
		return
	}
	if contains != "" && !strings.Contains(r.Detail, contains) {
		t.Errorf("%s: detail %q lacks %q", name, r.Detail, contains)
	}
}

func TestSmoke(t *testing.T) {
	s := startDemo(t)
	cachedPort := s.startGateway(t, []string{"GATEWAY__SITES__0__MAXINDEXREQUESTSPERHOUR=5"}, true)
	authOrigin := s.startAuthOrigin(t)
	core := []string{smoke.CheckGatewayAuth, smoke.CheckIndex, smoke.CheckIndexCache, smoke.CheckManifest,
		smoke.CheckBundleJWS, smoke.CheckCoherence, smoke.CheckExcititor, smoke.CheckExcititorJWS}

	t.Run("demo gateway: core checks pass", func(t *testing.T) {
		got := run(t, s.options(t, "primary"))
		for _, c := range core {
			want(t, got, c, smoke.Pass, "")
		}
		want(t, got, smoke.CheckIndex, smoke.Pass, "domains,exportId,generatedAt,schemaVersion")
		want(t, got, smoke.CheckManifest, smoke.Pass, "public, max-age=300, immutable")
		want(t, got, smoke.CheckBundleJWS, smoke.Pass, "digest matches the manifest")
		want(t, got, smoke.CheckCoherence, smoke.Pass, "by pinned URLs")
		want(t, got, smoke.CheckOriginAuth, smoke.Skip, "no --origin")
		want(t, got, smoke.CheckBudget, smoke.Skip, "opt-in")
		if st := got[smoke.CheckCacheStatus].Status; st == smoke.Fail {
			t.Errorf("cache-status failed without --expect-cache: %s", got[smoke.CheckCacheStatus].Detail)
		}
	})
	t.Run("community site", func(t *testing.T) {
		got := run(t, s.options(t, "community"))
		for _, c := range core {
			want(t, got, c, smoke.Pass, "")
		}
	})
	t.Run("cached gateway with budget and protected origin: every check passes", func(t *testing.T) {
		o := s.options(t, "primary")
		o.ConnectTo = "127.0.0.1:" + cachedPort
		u, _ := url.Parse(o.Base)
		u.Host = u.Hostname() + ":" + cachedPort
		o.Base = u.String()
		o.Origin = authOrigin
		o.ExpectCache = true
		o.ProbeBudget = true
		o.ProbeLimit = 10
		got := run(t, o)
		for _, c := range smoke.Checks {
			want(t, got, c, smoke.Pass, "")
		}
		want(t, got, smoke.CheckCacheStatus, smoke.Pass, "then HIT")
		want(t, got, smoke.CheckOriginAuth, smoke.Pass, "Bearer")
		want(t, got, smoke.CheckBudget, smoke.Pass, "Retry-After")
	})
	t.Run("no cache in front: --expect-cache fails", func(t *testing.T) {
		o := s.options(t, "primary")
		o.ExpectCache = true
		o.Skip = []string{smoke.CheckBundleJWS, smoke.CheckExcititorJWS}
		got := run(t, o)
		if got[smoke.CheckCacheStatus].Status == smoke.Skip {
			t.Fatalf("cache-status SKIPped with --expect-cache: %s", got[smoke.CheckCacheStatus].Detail)
		}
		// The demo gateway may or may not carry a cache; without one the
		// check must fail with --expect-cache.
		if strings.Contains(got[smoke.CheckCacheStatus].Detail, "no X-Cache-Status") {
			want(t, got, smoke.CheckCacheStatus, smoke.Fail, "")
		}
		want(t, got, smoke.CheckBundleJWS, smoke.Skip, "--skip")
	})
	t.Run("wrong password fails", func(t *testing.T) {
		o := s.options(t, "primary")
		o.Password = "not-the-password"
		got := run(t, o)
		want(t, got, smoke.CheckIndex, smoke.Fail, "HTTP 401")
		// Later checks do not hammer the site with refused credentials.
		want(t, got, smoke.CheckManifest, smoke.Skip, "refused the credentials")
		want(t, got, smoke.CheckBundleJWS, smoke.Skip, "refused the credentials")
	})
	t.Run("other site's user fails", func(t *testing.T) {
		o := s.options(t, "primary")
		cu := s.state.Users["community"]
		o.User, o.Password = cu.User, cu.Password
		got := run(t, o)
		want(t, got, smoke.CheckIndex, smoke.Fail, "HTTP 401")
	})
	t.Run("domain of another site fails", func(t *testing.T) {
		o := s.options(t, "primary")
		o.Domain = "community"
		got := run(t, o)
		want(t, got, smoke.CheckManifest, smoke.Fail, "HTTP 404")
		want(t, got, smoke.CheckBundleJWS, smoke.Fail, "HTTP 404")
	})
	t.Run("unprotected origin fails origin-auth", func(t *testing.T) {
		o := s.options(t, "primary")
		o.Origin = s.state.Origin
		got := run(t, o)
		want(t, got, smoke.CheckOriginAuth, smoke.Fail, "HTTP 200, want 401")
	})
	t.Run("no budget: the probe fails", func(t *testing.T) {
		o := s.options(t, "primary")
		o.ProbeBudget, o.ProbeLimit = true, 5
		got := run(t, o)
		want(t, got, smoke.CheckBudget, smoke.Fail, "no 429 after 5")
	})
	t.Run("wrong public key fails", func(t *testing.T) {
		o := s.options(t, "primary")
		other, err := jws.GenerateKey(jws.ES256)
		if err != nil {
			t.Fatal(err)
		}
		o.PublicKeys = []jws.PublicKey{{Key: other.Public()}}
		got := run(t, o)
		want(t, got, smoke.CheckBundleJWS, smoke.Fail, "signature invalid")
		want(t, got, smoke.CheckExcititorJWS, smoke.Fail, "signature invalid")
	})
	t.Run("untrusted CA fails", func(t *testing.T) {
		o := s.options(t, "primary")
		o.RootCAs = x509.NewCertPool()
		got := run(t, o)
		want(t, got, smoke.CheckIndex, smoke.Fail, "certificate")
	})
	t.Run("bundle tampered in transit fails", func(t *testing.T) {
		// A front that flips one byte of the bundle (same length): only
		// the signature can tell.
		o := s.options(t, "primary")
		inner := http.DefaultTransport.(*http.Transport).Clone()
		inner.TLSClientConfig.RootCAs = s.pool
		inner.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, o.ConnectTo)
		}
		o.Client = &http.Client{Transport: flipTransport{inner: inner, path: "/concelier/exports/" + export.BundlePath("primary")}}
		got := run(t, o)
		want(t, got, smoke.CheckManifest, smoke.Pass, "")
		want(t, got, smoke.CheckBundleJWS, smoke.Fail, "signature invalid")
	})
	t.Run("bundle tampered on disk fails", func(t *testing.T) {
		p := filepath.Join(s.state.ExportRoots["concelier"], s.state.ExportID, filepath.FromSlash(export.BundlePath("primary")))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[100] ^= 1
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			data[100] ^= 1
			os.WriteFile(p, data, 0o644)
		})
		// A fresh origin (the demo's has the good bytes in memory), asked
		// directly: it refuses bytes that do not match the manifest.
		cfg := origin.DefaultConfig()
		cfg.Concelier.Mirror.Enabled = true
		cfg.Concelier.Mirror.ExportRoot = s.state.ExportRoots["concelier"]
		cfg.Excititor.Mirror.Enabled = true
		cfg.Excititor.Artifacts.FileSystem.Root = s.state.ExportRoots["excititor"]
		o, err := origin.New(cfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		srv := httptest.NewServer(o.Handler())
		defer srv.Close()
		got := run(t, smoke.Options{Base: srv.URL, Domain: "primary", PublicKeys: s.keys})
		want(t, got, smoke.CheckGatewayAuth, smoke.Skip, "no --user")
		want(t, got, smoke.CheckManifest, smoke.Pass, "")
		want(t, got, smoke.CheckBundleJWS, smoke.Fail, "HTTP 503")
	})
}

// flipTransport flips one byte of the body of path.
type flipTransport struct {
	inner http.RoundTripper
	path  string
}

func (f flipTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := f.inner.RoundTrip(req)
	if err != nil || req.URL.Path != f.path {
		return res, err
	}
	res.Body = &flipReader{rc: res.Body}
	return res, nil
}

type flipReader struct {
	rc      io.ReadCloser
	flipped bool
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.rc.Read(p)
	if !f.flipped && n > 50 {
		p[50] ^= 1
		f.flipped = true
	}
	return n, err
}

func (f *flipReader) Close() error { return f.rc.Close() }

func TestOptionsErrors(t *testing.T) {
	key, err := jws.GenerateKey(jws.ES256)
	if err != nil {
		t.Fatal(err)
	}
	keys := []jws.PublicKey{{Key: key.Public()}}
	tests := []struct {
		name string
		opts smoke.Options
		want string
	}{
		{"no base", smoke.Options{Domain: "primary", PublicKeys: keys}, "--base"},
		{"ftp base", smoke.Options{Base: "ftp://x", Domain: "primary", PublicKeys: keys}, "--base"},
		{"bad domain", smoke.Options{Base: "https://x", Domain: "Primary!", PublicKeys: keys}, "--domain"},
		{"no key", smoke.Options{Base: "https://x", Domain: "primary"}, "--public-key"},
		{"bad connect-to", smoke.Options{Base: "https://x", Domain: "primary", PublicKeys: keys, ConnectTo: "127.0.0.1"}, "--connect-to"},
		{"unknown skip", smoke.Options{Base: "https://x", Domain: "primary", PublicKeys: keys, Skip: []string{"nope"}}, `--skip "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := smoke.Run(context.Background(), tt.opts, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}

package origin

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stella-ops/stella-mirror/origin/authority"
	"github.com/stella-ops/stella-mirror/origin/authority/authoritytest"
)

const testAudience = "stella-mirror"

// authConfig enables both products on root with Authority validating
// tokens of iss (discovery over plain http, as in a lab).
func authConfig(root string, iss *authoritytest.Issuer) Config {
	cfg := testConfig(root)
	no := false
	for _, a := range []*AuthorityConfig{&cfg.Concelier.Authority, &cfg.Excititor.Authority} {
		a.Enabled = true
		a.Issuer = iss.URL
		a.Audiences = []string{testAudience}
		a.RequireHTTPSMetadata = &no
	}
	cfg.Concelier.Mirror.RequireAuthentication = true
	cfg.Excititor.Mirror.RequireAuthentication = true
	return cfg
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func b64json(v any) string {
	data, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(data)
}

// TestBearerTokens drives the origin with tokens from a real issuer over
// HTTP: every answer, its challenge and that nothing echoes the token.
func TestBearerTokens(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	iss := authoritytest.NewIssuer(t)
	rsaKey := authoritytest.NewKey(t, "rsa-1", jose.RS256)
	iss.SetKeys(iss.Keys()[0], rsaKey)
	clock := newFakeClock()
	h := newHarness(t, authConfig(root, iss), options{now: clock.Now})
	now := clock.Now()

	claims := func(scope string) authoritytest.Claims { return iss.Token(now, "alice", testAudience, scope) }
	with := func(f func(*authoritytest.Claims)) string {
		c := claims(ScopeConcelier)
		f(&c)
		return iss.Sign(t, c)
	}
	payload := map[string]any{"iss": iss.URL, "sub": "mallory", "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "scope": ScopeConcelier + " " + ScopeExcititor}
	signing := b64json(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}) + "." + b64json(payload)
	mac := hmac.New(sha256.New, rsaKey.PublicPEM())
	mac.Write([]byte(signing))
	hs256 := signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	huge := strings.Repeat("A", 64<<10)

	const (
		cIndex  = "/concelier/exports/index.json"
		cBundle = "/concelier/exports/mirror/primary/bundle.json"
		xIndex  = "/excititor/mirror/primary/index"
	)
	tests := []struct {
		name      string
		path      string
		hdr       map[string]string
		status    int
		code      string // JSON error
		challenge string // WWW-Authenticate prefix
		desc      string // in error_description
	}{
		{"no token", cIndex, nil, 401, "unauthorized", `Bearer realm="stella-mirror", scope="concelier.mirror.read"`, ""},
		{"basic credentials are no token", cBundle, map[string]string{"Authorization": "Basic YWxpY2U6c2VjcmV0"}, 401, "unauthorized", `Bearer realm="stella-mirror"`, ""},
		{"valid on index", cIndex, bearer(iss.Sign(t, claims(ScopeConcelier))), 200, "", "", ""},
		{"valid on bundle", cBundle, bearer(iss.Sign(t, claims(ScopeConcelier))), 200, "", "", ""},
		{"valid RS256 with scp", cBundle, bearer(authoritytest.SignWith(t, rsaKey, func() authoritytest.Claims {
			c := claims("")
			c.Extra["scp"] = []string{ScopeConcelier}
			return c
		}())), 200, "", "", ""},
		{"expired", cIndex, bearer(with(func(c *authoritytest.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Hour)) })),
			401, "invalid_token", `Bearer realm="stella-mirror", error="invalid_token"`, "expired"},
		{"not yet valid", cIndex, bearer(with(func(c *authoritytest.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })),
			401, "invalid_token", `Bearer realm="stella-mirror", error="invalid_token"`, "not valid yet"},
		{"wrong issuer", cIndex, bearer(with(func(c *authoritytest.Claims) { c.Issuer = "https://authority.evil.example" })),
			401, "invalid_token", `Bearer realm="stella-mirror", error="invalid_token"`, "another issuer"},
		{"wrong audience", cIndex, bearer(with(func(c *authoritytest.Claims) { c.Audience = jwt.Audience{"other-service"} })),
			401, "invalid_token", `Bearer realm="stella-mirror", error="invalid_token"`, "another audience"},
		{"missing scope", cIndex, bearer(iss.Sign(t, claims(""))),
			403, "insufficient_scope", `Bearer realm="stella-mirror", error="insufficient_scope", scope="concelier.mirror.read"`, ""},
		{"other product's scope", cBundle, bearer(iss.Sign(t, claims(ScopeExcititor))),
			403, "insufficient_scope", `Bearer realm="stella-mirror", error="insufficient_scope", scope="concelier.mirror.read"`, ""},
		{"own scope on the other product", xIndex, bearer(iss.Sign(t, claims(ScopeExcititor))), 200, "", "", ""},
		{"alg none", cIndex, bearer(b64json(map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64json(payload) + "."),
			401, "invalid_token", `Bearer realm="stella-mirror", error="invalid_token"`, "algorithm"},
		{"HS256 signed with the public key", cIndex, bearer(hs256),
			401, "invalid_token", `Bearer realm="stella-mirror", error="invalid_token"`, "algorithm"},
		{"64 KiB Authorization header", cIndex, bearer(huge),
			401, "invalid_token", `Bearer realm="stella-mirror", error="invalid_token"`, "too large"},
		{"empty bearer", cIndex, map[string]string{"Authorization": "Bearer "},
			400, "invalid_request", `Bearer realm="stella-mirror", error="invalid_request"`, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, h.public.Client(), http.MethodGet, h.public.URL+tt.path, tt.hdr)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d; body %s", r.status, tt.status, r.body)
			}
			tok := strings.TrimPrefix(tt.hdr["Authorization"], "Bearer ")
			if len(tok) > 16 && strings.Contains(string(r.body), tok[len(tok)-16:]) {
				t.Errorf("the body echoes the token")
			}
			if tt.status == 200 {
				return
			}
			if code := errorCode(t, r); code != tt.code {
				t.Errorf("error %q, want %q", code, tt.code)
			}
			got := r.header.Get("WWW-Authenticate")
			if !strings.HasPrefix(got, tt.challenge) || !strings.Contains(got, tt.desc) {
				t.Errorf("WWW-Authenticate = %q, want prefix %q containing %q", got, tt.challenge, tt.desc)
			}
			if r.header.Get("X-Stella-Export-Id") != "" {
				t.Errorf("a refusal names the export")
			}
		})
	}
	t.Run("two Authorization headers", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, h.public.URL+cIndex, nil)
		req.Header.Add("Authorization", "Bearer "+iss.Sign(t, claims(ScopeConcelier)))
		req.Header.Add("Authorization", "Bearer other")
		resp, err := h.public.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_request"`) {
			t.Fatalf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})

	h.settle(t)
	logs := h.logs.String()
	for _, tt := range tests {
		if tok := strings.TrimPrefix(tt.hdr["Authorization"], "Bearer "); len(tok) > 16 && strings.Contains(logs, tok[len(tok)-16:]) {
			t.Errorf("case %q: the token reached the log", tt.name)
		}
	}
	// The access log names the token's subject.
	found := false
	for _, rec := range h.logs.lines(t, "request") {
		if rec["status"] == float64(200) && rec["client"] == "sub:alice" {
			found = true
		}
	}
	if !found {
		t.Errorf("no access log line with client sub:alice:\n%s", logs)
	}
	for outcome, want := range map[string]float64{"missing": 1, "insufficient_scope": 1} {
		if got := counterValue(t, h.o.auth.(*accessControl).m.outcomes.WithLabelValues("concelier", "_shared", outcome)); got != want {
			t.Errorf("auth_total{concelier,_shared,%s} = %v, want %v", outcome, got, want)
		}
	}
}

// TestKeyRotationAndIssuerDown: a token with a new kid is accepted after
// the issuer rotates (the origin refetches the JWKS), and tokens keep
// validating with the cached keys while the issuer is down.
func TestKeyRotationAndIssuerDown(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	iss := authoritytest.NewIssuer(t)
	clock := newFakeClock()
	h := newHarness(t, authConfig(root, iss), options{now: clock.Now})
	const path = "/concelier/exports/mirror/primary/manifest.json"
	get := func(tok string) response {
		return do(t, h.public.Client(), http.MethodGet, h.public.URL+path, bearer(tok))
	}

	if r := get(iss.Sign(t, iss.Token(clock.Now(), "alice", testAudience, ScopeConcelier))); r.status != 200 {
		t.Fatalf("first token: %d %s", r.status, r.body)
	}
	next := authoritytest.NewKey(t, "key-2", jose.ES256)
	rotated := authoritytest.SignWith(t, next, iss.Token(clock.Now(), "bob", testAudience, ScopeConcelier))
	if r := get(rotated); r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "unknown") {
		t.Fatalf("unknown kid before rotation: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	iss.SetKeys(next, iss.Keys()[0])
	clock.Advance(authority.DefaultMinRefreshInterval)
	if r := get(rotated); r.status != 200 {
		t.Fatalf("after rotation: %d %s", r.status, r.body)
	}

	iss.SetDown(true)
	clock.Advance(authority.DefaultMaxKeyAge) // stale keys: a refresh is tried and fails
	fresh := authoritytest.SignWith(t, next, iss.Token(clock.Now(), "carol", testAudience, ScopeConcelier))
	if r := get(fresh); r.status != 200 {
		t.Fatalf("issuer down, keys cached: %d %s", r.status, r.body)
	}
	m := h.o.auth.(*accessControl).m.refreshes
	if ok, fail := counterValue(t, m.WithLabelValues("concelier", "success")), counterValue(t, m.WithLabelValues("concelier", "failure")); ok != 2 || fail != 1 {
		t.Errorf("key fetches: %v successful, %v failed; want 2 and 1", ok, fail)
	}
	h.settle(t)
	if len(h.logs.lines(t, "fetching Authority signing keys failed; the last good keys stay in use")) != 1 {
		t.Errorf("no warning about the failed key fetch:\n%s", h.logs.String())
	}
}

// TestIssuerDownBeforeKeys: with no keys ever fetched, a token cannot be
// checked: 503 + Retry-After where authentication is required, anonymous
// service where it is not.
func TestIssuerDownBeforeKeys(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	iss := authoritytest.NewIssuer(t)
	iss.SetDown(true)
	cfg := authConfig(root, iss)
	no := false
	cfg.Concelier.Mirror.Domains = []DomainConfig{{ID: "primary"}, {ID: "community", RequireAuthentication: &no}}
	h := newHarness(t, cfg, options{})
	tok := iss.Sign(t, iss.Token(time.Now(), "alice", testAudience, ScopeConcelier))
	r := do(t, h.public.Client(), http.MethodGet, h.public.URL+"/concelier/exports/mirror/primary/bundle.json", bearer(tok))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || errorCode(t, r) != "authority_unavailable" {
		t.Fatalf("required: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	r = do(t, h.public.Client(), http.MethodGet, h.public.URL+"/concelier/exports/mirror/community/bundle.json", bearer(tok))
	if r.status != http.StatusOK {
		t.Fatalf("public domain: %d %s", r.status, r.body)
	}
}

// TestPolicy covers bypass networks (TCP peer vs spoofed headers),
// anonymous fallback and the per-domain override. The test client's peer
// is always 127.0.0.1.
func TestPolicy(t *testing.T) {
	yes, no := true, false
	iss := authoritytest.NewIssuer(t)
	type req struct {
		path   string
		hdr    map[string]string
		status int
		client string // expected access-log client; "" skips
	}
	spoof := map[string]string{"X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.1.2.3", "Forwarded": "for=10.1.2.3", ForwardedUserHeader: "eve"}
	cases := []struct {
		name string
		mod  func(*Config)
		reqs []req
	}{
		{"bypass CIDR matches the peer", func(c *Config) {
			c.Concelier.Authority.BypassNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		}, []req{
			{"/concelier/exports/mirror/primary/bundle.json", nil, 200, "ip:127.0.0.1"},
			{"/concelier/exports/index.json", map[string]string{ForwardedUserHeader: "gw-alice"}, 200, "user:gw-alice"},
			{"/excititor/mirror/primary/index", nil, 401, ""}, // bypass is per product
		}},
		{"spoofed X-Forwarded-For does not bypass", func(c *Config) {
			c.Concelier.Authority.BypassNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		}, []req{
			{"/concelier/exports/index.json", spoof, 401, "ip:127.0.0.1"},
		}},
		{"forwarded user ignored outside bypass networks", func(c *Config) {
			c.Concelier.Mirror.RequireAuthentication = false
		}, []req{
			{"/concelier/exports/index.json", map[string]string{ForwardedUserHeader: "eve"}, 200, "ip:127.0.0.1"},
		}},
		{"anonymous fallback on", func(c *Config) { c.Concelier.Authority.AllowAnonymousFallback = true }, []req{
			{"/concelier/exports/index.json", nil, 200, "ip:127.0.0.1"},
			{"/concelier/exports/mirror/primary/bundle.json", bearer("garbage.token.value"), 401, ""},
			{"/concelier/exports/mirror/primary/bundle.json", bearer(iss.Sign(t, iss.Token(time.Now(), "alice", testAudience, ScopeConcelier))), 200, "sub:alice"},
		}},
		{"anonymous fallback off", nil, []req{
			{"/concelier/exports/index.json", nil, 401, ""},
		}},
		{"domain override off under global on", func(c *Config) {
			c.Concelier.Mirror.Domains = []DomainConfig{{ID: "primary", RequireAuthentication: &no}, {ID: "community"}}
		}, []req{
			{"/concelier/exports/mirror/primary/bundle.json", nil, 200, ""},
			{"/concelier/exports/mirror/community/bundle.json", nil, 401, ""},
			{"/concelier/exports/index.json", nil, 401, ""}, // the shared index follows the global setting
		}},
		{"domain override on under global off", func(c *Config) {
			c.Concelier.Mirror.RequireAuthentication = false
			c.Concelier.Mirror.Domains = []DomainConfig{{ID: "primary", RequireAuthentication: &yes}, {ID: "community"}}
		}, []req{
			{"/concelier/exports/index.json", nil, 200, ""},
			{"/concelier/exports/mirror/primary/manifest.json", nil, 401, ""},
			{"/concelier/exports/mirror/community/manifest.json", nil, 200, ""},
			// A verified token without the scope on a public path is served.
			{"/concelier/exports/mirror/community/manifest.json", bearer(iss.Sign(t, iss.Token(time.Now(), "bob", testAudience, ""))), 200, "sub:bob"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeExport(t, root, "e1", treeOpts{})
			cfg := authConfig(root, iss)
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			h := newHarness(t, cfg, options{})
			for i, rq := range tc.reqs {
				r := do(t, h.public.Client(), http.MethodGet, h.public.URL+rq.path, rq.hdr)
				if r.status != rq.status {
					t.Errorf("request %d GET %s: status %d, want %d (%s)", i, rq.path, r.status, rq.status, r.body)
				}
				if r.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("request %d: 401 without a Bearer challenge", i)
				}
			}
			h.settle(t)
			lines := h.logs.lines(t, "request")
			for i, rq := range tc.reqs {
				if rq.client == "" {
					continue
				}
				if i >= len(lines) || lines[i]["client"] != rq.client {
					t.Errorf("request %d: access log client = %v, want %q", i, lineField(lines, i, "client"), rq.client)
				}
			}
		})
	}
}

func lineField(lines []map[string]any, i int, k string) any {
	if i >= len(lines) {
		return nil
	}
	return lines[i][k]
}

// TestBudgets: a budget of 1/hour answers the second call 429 with an
// accurate Retry-After; other domains, budgets and clients are unaffected;
// the budget refills after the hour.
func TestBudgets(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	iss := authoritytest.NewIssuer(t)
	clock := newFakeClock()
	cfg := authConfig(root, iss)
	cfg.Concelier.Mirror.MaxIndexRequestsPerHour = 1
	cfg.Concelier.Mirror.Domains = []DomainConfig{{ID: "primary", MaxDownloadRequestsPerHour: 2}, {ID: "community"}}
	cfg.Excititor.Mirror.MaxIndexRequestsPerHour = 1
	h := newHarness(t, cfg, options{now: clock.Now})
	alice := bearer(iss.Sign(t, iss.Token(clock.Now(), "alice", testAudience, ScopeConcelier+" "+ScopeExcititor)))
	bob := bearer(iss.Sign(t, iss.Token(clock.Now(), "bob", testAudience, ScopeConcelier+" "+ScopeExcititor)))

	steps := []struct {
		name   string
		path   string
		hdr    map[string]string
		status int
		retry  string
	}{
		{"index first", "/concelier/exports/index.json", alice, 200, ""},
		{"index second", "/concelier/exports/index.json", alice, 429, "3600"},
		{"index, other client", "/concelier/exports/index.json", bob, 200, ""},
		{"own download budget 2: first", "/concelier/exports/mirror/primary/manifest.json", alice, 200, ""},
		{"own download budget 2: second", "/concelier/exports/mirror/primary/bundle.json", alice, 200, ""},
		{"own download budget 2: third", "/concelier/exports/mirror/primary/bundle.json.jws", alice, 429, "1800"},
		{"inherited budget 1: first", "/concelier/exports/mirror/community/manifest.json", alice, 200, ""},
		{"inherited budget 1: second", "/concelier/exports/mirror/community/bundle.json", alice, 429, "3600"},
		{"excititor index, domain primary", "/excititor/mirror/primary/index", alice, 200, ""},
		{"excititor index, domain community", "/excititor/mirror/community/index", alice, 200, ""},
		{"excititor index, primary again", "/excititor/mirror/primary/index", alice, 429, "3600"},
		{"unauthenticated requests spend nothing", "/concelier/exports/index.json", nil, 401, ""},
	}
	for _, s := range steps {
		r := do(t, h.public.Client(), http.MethodGet, h.public.URL+s.path, s.hdr)
		if r.status != s.status || r.header.Get("Retry-After") != s.retry {
			t.Errorf("%s: status %d Retry-After %q, want %d %q (%s)", s.name, r.status, r.header.Get("Retry-After"), s.status, s.retry, r.body)
		}
		if r.status == 429 && errorCode(t, r) != "rate_limited" {
			t.Errorf("%s: error code", s.name)
		}
	}
	clock.Advance(time.Hour)
	if r := do(t, h.public.Client(), http.MethodGet, h.public.URL+"/concelier/exports/index.json", alice); r.status != 200 {
		t.Errorf("after an hour: status %d", r.status)
	}
	m := h.o.auth.(*accessControl).m.rejection
	for _, c := range []struct {
		product, domain, budget string
		want                    float64
	}{
		{"concelier", "_shared", "index", 1}, {"concelier", "primary", "download", 1},
		{"concelier", "community", "download", 1}, {"excititor", "primary", "index", 1}, {"excititor", "community", "index", 0},
	} {
		if got := counterValue(t, m.WithLabelValues(c.product, c.domain, c.budget)); got != c.want {
			t.Errorf("budget_rejections_total{%s,%s,%s} = %v, want %v", c.product, c.domain, c.budget, got, c.want)
		}
	}
	// The metric is exposed on the admin listener.
	if r := do(t, h.admin.Client(), http.MethodGet, h.admin.URL+"/metrics", nil); !strings.Contains(string(r.body),
		`stella_mirror_origin_budget_rejections_total{budget="index",domain="_shared",product="concelier"} 1`) {
		t.Errorf("/metrics lacks the budget rejection counter")
	}
}

// TestBudgetClientsBounded drives 100,000 distinct clients (peer
// addresses) through the origin's handler: the budgets never track more
// clients than their bound, and a client that is still tracked keeps its
// debt.
func TestBudgetClientsBounded(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	cfg := testConfig(root)
	cfg.Concelier.Mirror.MaxIndexRequestsPerHour = 1
	const bound = 1000
	clock := newFakeClock()
	h := newHarness(t, cfg, options{now: clock.Now, access: accessOptions{maxClients: bound}})
	ac := h.o.auth.(*accessControl)
	handler := h.o.Handler()
	serve := func(peer string) int {
		req := httptest.NewRequest(http.MethodHead, "/concelier/exports/index.json", nil)
		req.RemoteAddr = peer
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		return w.Code
	}
	for i := 0; i < 100_000; i++ {
		peer := fmt.Sprintf("10.%d.%d.%d:40000", i>>16&255, i>>8&255, i&255)
		if code := serve(peer); code != 200 {
			t.Fatalf("client %d: status %d", i, code)
		}
		if i%1000 == 999 {
			if n, _ := ac.trackedClients(); n > bound {
				t.Fatalf("after %d clients the budgets track %d, bound %d", i+1, n, bound)
			}
		}
	}
	if n, limiters := ac.trackedClients(); n > bound*limiters || n == 0 {
		t.Fatalf("tracking %d clients in %d budgets", n, limiters)
	}
	last := fmt.Sprintf("10.%d.%d.%d:40000", 99_999>>16&255, 99_999>>8&255, 99_999&255)
	if code := serve(last); code != http.StatusTooManyRequests {
		t.Fatalf("a recent client's second request: %d, want 429", code)
	}
}

// counterValue reads a counter's value.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// TestAccessConfiguration: start-up errors name the key; warnings say what
// an operator may not expect.
func TestAccessConfiguration(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	iss := authoritytest.NewIssuer(t)

	t.Run("missing signing key file names the key", func(t *testing.T) {
		cfg := authConfig(root, iss)
		cfg.Excititor.Authority.SigningKeyFile = root + "/nope.pem"
		_, err := newOrigin(cfg, nil, nil, options{})
		if err == nil || !strings.Contains(err.Error(), "EXCITITOR__AUTHORITY__SIGNINGKEYFILE") || !strings.Contains(err.Error(), "nope.pem") {
			t.Fatalf("err = %v", err)
		}
	})
	warn := func(cfg Config) string { return strings.Join(cfg.Warnings(), "\n") }
	t.Run("warnings", func(t *testing.T) {
		cfg := authConfig(root, iss)
		cfg.Concelier.Authority.Audiences = nil
		cfg.Concelier.Authority.AllowAnonymousFallback = true
		cfg.Excititor.Authority.Enabled = false
		w := warn(cfg)
		for _, want := range []string{
			"CONCELIER__AUTHORITY__AUDIENCES: empty; tokens for any audience are accepted",
			"CONCELIER__AUTHORITY__ALLOWANONYMOUSFALLBACK: requests without a token are served",
			"EXCITITOR__MIRROR__REQUIREAUTHENTICATION: no client can authenticate",
		} {
			if !strings.Contains(w, want) {
				t.Errorf("warnings lack %q:\n%s", want, w)
			}
		}
		if w := warn(authConfig(root, iss)); w != "" {
			t.Errorf("a complete configuration warns:\n%s", w)
		}
	})
}

package authority

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/stella-ops/stella-mirror/origin/authority/authoritytest"
)

const (
	testAudience = "stella-mirror"
	scopeC       = "concelier.mirror.read"
	scopeX       = "excititor.mirror.read"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

// newValidator returns a validator using discovery on iss.
func newValidator(t *testing.T, iss *authoritytest.Issuer, c *clock, mod func(*Config)) *Validator {
	t.Helper()
	cfg := Config{Issuer: iss.URL, Audiences: []string{testAudience}, Scope: scopeC, Now: c.Now}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func b64(v any) string {
	data, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(data)
}

func TestValidate(t *testing.T) {
	iss := authoritytest.NewIssuer(t)
	c := newClock()
	now := c.Now()
	v := newValidator(t, iss, c, nil)
	rsaKey := authoritytest.NewKey(t, "rsa-1", jose.RS256)
	iss.SetKeys(iss.Keys()[0], rsaKey)

	valid := func() authoritytest.Claims { return iss.Token(now, "alice", testAudience, scopeC) }
	payload := map[string]any{"iss": iss.URL, "sub": "mallory", "aud": testAudience, "exp": now.Add(time.Hour).Unix(), "scope": scopeC}
	hs256 := func() string {
		// The classic confusion attack: HMAC keyed with the issuer's public key.
		signing := b64(map[string]any{"alg": "HS256", "typ": "JWT", "kid": rsaKey.ID}) + "." + b64(payload)
		mac := hmac.New(sha256.New, rsaKey.PublicPEM())
		mac.Write([]byte(signing))
		return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}

	tests := []struct {
		name     string
		token    func() string
		wantKind Kind
		wantSub  string
		wantDesc string
	}{
		{"valid scope string", func() string { return iss.Sign(t, valid()) }, 0, "alice", ""},
		{"valid scp array", func() string {
			cl := iss.Token(now, "bob", testAudience, "")
			cl.Extra["scp"] = []string{"openid", scopeC}
			return iss.Sign(t, cl)
		}, 0, "bob", ""},
		{"valid RS256 key", func() string { return authoritytest.SignWith(t, rsaKey, valid()) }, 0, "alice", ""},
		{"client_id when no sub", func() string {
			cl := valid()
			cl.Subject = ""
			cl.Extra["client_id"] = "gateway-eu"
			return iss.Sign(t, cl)
		}, 0, "gateway-eu", ""},
		{"one audience of several", func() string {
			cl := valid()
			cl.Audience = jwt.Audience{"other", testAudience}
			return iss.Sign(t, cl)
		}, 0, "alice", ""},
		{"expired", func() string {
			cl := valid()
			cl.Expiry = jwt.NewNumericDate(now.Add(-time.Minute))
			return iss.Sign(t, cl)
		}, InvalidToken, "", "expired"},
		{"expired within leeway", func() string {
			cl := valid()
			cl.Expiry = jwt.NewNumericDate(now.Add(-10 * time.Second))
			return iss.Sign(t, cl)
		}, 0, "alice", ""},
		{"not yet valid", func() string {
			cl := valid()
			cl.NotBefore = jwt.NewNumericDate(now.Add(5 * time.Minute))
			return iss.Sign(t, cl)
		}, InvalidToken, "", "not valid yet"},
		{"no exp", func() string {
			cl := valid()
			cl.Expiry = nil
			return iss.Sign(t, cl)
		}, InvalidToken, "", "no expiry"},
		{"wrong issuer", func() string {
			cl := valid()
			cl.Issuer = "https://evil.example"
			return iss.Sign(t, cl)
		}, InvalidToken, "", "another issuer"},
		{"wrong audience", func() string {
			cl := valid()
			cl.Audience = jwt.Audience{"someone-else"}
			return iss.Sign(t, cl)
		}, InvalidToken, "", "another audience"},
		{"missing scope", func() string { return iss.Sign(t, iss.Token(now, "alice", testAudience, "")) }, InsufficientScope, "alice", "lacks the scope"},
		{"other product's scope", func() string { return iss.Sign(t, iss.Token(now, "alice", testAudience, scopeX)) }, InsufficientScope, "alice", "lacks the scope"},
		{"scope prefix is not the scope", func() string {
			return iss.Sign(t, iss.Token(now, "alice", testAudience, "concelier.mirror.read.extra concelier.mirror"))
		}, InsufficientScope, "alice", ""},
		{"alg none", func() string {
			return b64(map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64(payload) + "."
		}, InvalidToken, "", "algorithm"},
		{"HS256 signed with the public key", hs256, InvalidToken, "", "algorithm"},
		{"signed by a key the issuer does not publish", func() string {
			k := authoritytest.NewKey(t, iss.Keys()[0].ID, jose.ES256) // same kid, other key
			return authoritytest.SignWith(t, k, valid())
		}, InvalidToken, "", "signature"},
		{"tampered payload", func() string {
			parts := strings.Split(iss.Sign(t, valid()), ".")
			p := map[string]any{}
			for k, v := range payload {
				p[k] = v
			}
			p["sub"] = "admin"
			return parts[0] + "." + b64(p) + "." + parts[2]
		}, InvalidToken, "", "signature"},
		{"garbage", func() string { return "not-a-jwt" }, InvalidToken, "", "malformed"},
		{"64 KiB", func() string { return strings.Repeat("a", 64<<10) }, InvalidToken, "", "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := tt.token()
			p, err := v.Validate(tok)
			if got := kindOf(err); got != tt.wantKind {
				t.Fatalf("kind = %v (err %v), want %v", got, err, tt.wantKind)
			}
			if err != nil && kindOf(err) == 0 {
				t.Fatalf("error %v is not an *Error", err)
			}
			if p.Subject != tt.wantSub {
				t.Errorf("subject = %q, want %q", p.Subject, tt.wantSub)
			}
			var e *Error
			if errors.As(err, &e) {
				if !strings.Contains(e.Description, tt.wantDesc) {
					t.Errorf("description %q, want it to contain %q", e.Description, tt.wantDesc)
				}
				if len(tok) > 20 && (strings.Contains(e.Description, tok[:20]) || strings.Contains(err.Error(), tok)) {
					t.Errorf("the error echoes the token")
				}
			}
		})
	}
}

// TestCacheAndExpiry: a verified token is answered from the cache (the
// issuer is not asked again, even when down) until it expires.
func TestCacheAndExpiry(t *testing.T) {
	iss := authoritytest.NewIssuer(t)
	c := newClock()
	v := newValidator(t, iss, c, nil)
	tok := iss.Sign(t, iss.Token(c.Now(), "alice", testAudience, scopeC))
	for i := 0; i < 3; i++ {
		if _, err := v.Validate(tok); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if hits := iss.JWKSHits(); hits != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", hits)
	}
	if n := v.CacheLen(); n != 1 {
		t.Fatalf("cache holds %d tokens, want 1", n)
	}
	c.Advance(time.Hour + DefaultLeeway + time.Second)
	if _, err := v.Validate(tok); kindOf(err) != InvalidToken || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("after expiry: %v, want expired", err)
	}
	if n := v.CacheLen(); n != 0 {
		t.Fatalf("expired token still cached (%d)", n)
	}
}

// TestCacheBounded: the cache never holds more than CacheSize tokens.
func TestCacheBounded(t *testing.T) {
	iss := authoritytest.NewIssuer(t)
	c := newClock()
	v := newValidator(t, iss, c, func(cfg *Config) { cfg.CacheSize = 20 })
	for i := 0; i < 100; i++ {
		cl := iss.Token(c.Now(), "user-"+strings.Repeat("x", i), testAudience, scopeC)
		if _, err := v.Validate(iss.Sign(t, cl)); err != nil {
			t.Fatal(err)
		}
		if n := v.CacheLen(); n > 20 {
			t.Fatalf("cache holds %d tokens, bound 20", n)
		}
	}
}

// TestKeyRotation: a token with an unknown kid makes the validator refetch
// the JWKS — at most once per MinRefreshInterval — and then accepts tokens
// of the new key.
func TestKeyRotation(t *testing.T) {
	iss := authoritytest.NewIssuer(t)
	c := newClock()
	v := newValidator(t, iss, c, nil)
	old := iss.Keys()[0]
	if _, err := v.Validate(iss.Sign(t, iss.Token(c.Now(), "alice", testAudience, scopeC))); err != nil {
		t.Fatal(err)
	}
	next := authoritytest.NewKey(t, "key-2", jose.ES256)

	// A kid nobody publishes yet, right after the first fetch: no refetch.
	early := authoritytest.SignWith(t, next, iss.Token(c.Now(), "bob", testAudience, scopeC))
	if _, err := v.Validate(early); kindOf(err) != InvalidToken || !strings.Contains(err.Error(), "unknown signing key") {
		t.Fatalf("unknown kid: %v", err)
	}
	if hits := iss.JWKSHits(); hits != 1 {
		t.Fatalf("unknown kid within the refresh interval fetched the JWKS (%d hits)", hits)
	}

	// The issuer rotates; once the interval has passed the new kid is found.
	iss.SetKeys(next, old)
	c.Advance(DefaultMinRefreshInterval)
	tok := authoritytest.SignWith(t, next, iss.Token(c.Now(), "bob", testAudience, scopeC))
	p, err := v.Validate(tok)
	if err != nil || p.Subject != "bob" {
		t.Fatalf("after rotation: %+v %v", p, err)
	}
	if hits := iss.JWKSHits(); hits != 2 {
		t.Fatalf("JWKS hits = %d, want 2", hits)
	}
	// A flood of unknown kids costs at most one fetch per interval.
	for i := 0; i < 50; i++ {
		k := authoritytest.NewKey(t, "nope", jose.ES256)
		v.Validate(authoritytest.SignWith(t, k, iss.Token(c.Now(), "x", testAudience, scopeC)))
	}
	if hits := iss.JWKSHits(); hits != 2 {
		t.Fatalf("50 unknown kids caused %d more fetches", hits-2)
	}
}

// TestIssuerDown: keys fetched before the issuer went down keep working
// (also past MaxKeyAge); with no keys ever fetched the answer is
// Unavailable, not InvalidToken.
func TestIssuerDown(t *testing.T) {
	t.Run("after keys were cached", func(t *testing.T) {
		iss := authoritytest.NewIssuer(t)
		c := newClock()
		var refreshErrs []error
		v := newValidator(t, iss, c, func(cfg *Config) { cfg.OnRefresh = func(err error) { refreshErrs = append(refreshErrs, err) } })
		if _, err := v.Validate(iss.Sign(t, iss.Token(c.Now(), "alice", testAudience, scopeC))); err != nil {
			t.Fatal(err)
		}
		iss.SetDown(true)
		c.Advance(DefaultMaxKeyAge + time.Minute) // keys are stale: a refresh is tried and fails
		tok := iss.Sign(t, iss.Token(c.Now(), "carol", testAudience, scopeC))
		if p, err := v.Validate(tok); err != nil || p.Subject != "carol" {
			t.Fatalf("issuer down, cached keys: %+v %v", p, err)
		}
		if len(refreshErrs) != 2 || refreshErrs[0] != nil || refreshErrs[1] == nil {
			t.Fatalf("refresh outcomes = %v, want [nil, error]", refreshErrs)
		}
		// The issuer comes back: the next refresh (after the interval) succeeds.
		iss.SetDown(false)
		c.Advance(DefaultMinRefreshInterval)
		if _, err := v.Validate(iss.Sign(t, iss.Token(c.Now(), "dave", testAudience, scopeC))); err != nil {
			t.Fatal(err)
		}
		if len(refreshErrs) != 3 || refreshErrs[2] != nil {
			t.Fatalf("refresh outcomes = %v, want a third, successful one", refreshErrs)
		}
	})
	t.Run("before any key was fetched", func(t *testing.T) {
		iss := authoritytest.NewIssuer(t)
		c := newClock()
		v := newValidator(t, iss, c, nil)
		iss.SetDown(true)
		_, err := v.Validate(iss.Sign(t, iss.Token(c.Now(), "alice", testAudience, scopeC)))
		if kindOf(err) != Unavailable {
			t.Fatalf("err = %v, want Unavailable", err)
		}
	})
}

func TestKeySources(t *testing.T) {
	iss := authoritytest.NewIssuer(t)
	c := newClock()
	rsaKey := authoritytest.NewKey(t, "", jose.RS256)
	dir := t.TempDir()
	pubFile := filepath.Join(dir, "authority.pem")
	if err := os.WriteFile(pubFile, rsaKey.PublicPEM(), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("JWKS URL without discovery", func(t *testing.T) {
		v := newValidator(t, iss, c, func(cfg *Config) { cfg.JWKSURL = iss.URL + "/jwks" })
		if _, err := v.Validate(iss.Sign(t, iss.Token(c.Now(), "alice", testAudience, scopeC))); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("signing key file, no kid, nothing fetched", func(t *testing.T) {
		before := iss.JWKSHits()
		v := newValidator(t, iss, c, func(cfg *Config) { cfg.SigningKeyFile = pubFile })
		if _, err := v.Validate(authoritytest.SignWith(t, rsaKey, iss.Token(c.Now(), "alice", testAudience, scopeC))); err != nil {
			t.Fatal(err)
		}
		// The issuer's own (JWKS) key is not trusted in this mode.
		if _, err := v.Validate(iss.Sign(t, iss.Token(c.Now(), "alice", testAudience, scopeC))); kindOf(err) != InvalidToken {
			t.Fatalf("JWKS-signed token with a key file: %v", err)
		}
		if iss.JWKSHits() != before {
			t.Fatal("the JWKS was fetched although a signing key file is configured")
		}
	})
	t.Run("private key file refused", func(t *testing.T) {
		p := filepath.Join(dir, "private.pem")
		os.WriteFile(p, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		_, err := New(Config{SigningKeyFile: p, Scope: scopeC})
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "private key") {
			t.Fatalf("err = %v, want it to name %s and say private key", err, p)
		}
	})
	t.Run("missing key file", func(t *testing.T) {
		_, err := New(Config{SigningKeyFile: filepath.Join(dir, "nope.pem"), Scope: scopeC})
		if err == nil || !strings.Contains(err.Error(), "nope.pem") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("http issuer with https required", func(t *testing.T) {
		_, err := New(Config{Issuer: iss.URL, Scope: scopeC, RequireHTTPSMetadata: true})
		if err == nil || !strings.Contains(err.Error(), "https") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("discovery names another issuer", func(t *testing.T) {
		// Same server under another name: the document's issuer differs.
		v := newValidator(t, iss, c, func(cfg *Config) { cfg.Issuer = strings.Replace(iss.URL, "127.0.0.1", "localhost", 1) })
		_, err := v.Validate(iss.Sign(t, iss.Token(c.Now(), "alice", testAudience, scopeC)))
		if kindOf(err) != Unavailable || !strings.Contains(err.Error(), "names issuer") {
			t.Fatalf("err = %v", err)
		}
	})
}

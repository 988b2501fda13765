// Package authoritytest is an OpenID Connect issuer for tests: a real HTTP
// server (httptest) publishing a discovery document and a JWKS, and
// signing JWT access tokens with its current keys. Keys can be rotated and
// the issuer taken down, so tests exercise key discovery, caching and
// refresh over HTTP instead of a stubbed validator.
//
// It is for tests only: keys are generated in memory and nothing is
// protected.
package authoritytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Key is one signing key of the issuer.
type Key struct {
	// ID is the JWK "kid".
	ID string
	// Algorithm is the JWS algorithm the key signs with (ES256 or RS256).
	Algorithm jose.SignatureAlgorithm
	// Private is the *ecdsa.PrivateKey or *rsa.PrivateKey.
	Private any
}

// Public returns the key's public half.
func (k Key) Public() any {
	switch p := k.Private.(type) {
	case *ecdsa.PrivateKey:
		return p.Public()
	case *rsa.PrivateKey:
		return p.Public()
	}
	panic(fmt.Sprintf("authoritytest: unsupported key %T", k.Private))
}

// PublicPEM returns the public key as an SPKI PEM block.
func (k Key) PublicPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Issuer is a running test issuer. Its URL is the issuer identifier
// ("iss") and the base of discovery.
type Issuer struct {
	// URL is the issuer identifier, http://127.0.0.1:port.
	URL string
	srv *httptest.Server

	mu   sync.Mutex
	keys []Key // published in the JWKS; keys[0] signs by default

	down      atomic.Bool
	jwksHits  atomic.Int64
	discoHits atomic.Int64
}

// NewIssuer starts an issuer with one ES256 key ("key-1") and stops it
// when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	iss := &Issuer{}
	iss.keys = []Key{NewKey(t, "key-1", jose.ES256)}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		iss.discoHits.Add(1)
		if iss.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, map[string]any{"issuer": iss.URL, "jwks_uri": iss.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"ES256", "RS256"}})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		iss.jwksHits.Add(1)
		if iss.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		iss.mu.Lock()
		set := jose.JSONWebKeySet{}
		for _, k := range iss.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: k.ID, Algorithm: string(k.Algorithm), Use: "sig"})
		}
		iss.mu.Unlock()
		writeJSON(w, set)
	})
	iss.srv = httptest.NewServer(mux)
	iss.URL = iss.srv.URL
	t.Cleanup(iss.srv.Close)
	return iss
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// NewKey generates a key for alg (ES256 or RS256).
func NewKey(t testing.TB, id string, alg jose.SignatureAlgorithm) Key {
	t.Helper()
	var priv any
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("authoritytest: unsupported algorithm %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Algorithm: alg, Private: priv}
}

// Keys returns the published keys; Keys()[0] signs by default.
func (iss *Issuer) Keys() []Key {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return append([]Key(nil), iss.keys...)
}

// SetKeys replaces the published keys (a rotation).
func (iss *Issuer) SetKeys(keys ...Key) {
	iss.mu.Lock()
	iss.keys = append([]Key(nil), keys...)
	iss.mu.Unlock()
}

// SetDown makes discovery and the JWKS answer 503 (true) or work again.
func (iss *Issuer) SetDown(down bool) { iss.down.Store(down) }

// JWKSHits is how many times the JWKS was requested.
func (iss *Issuer) JWKSHits() int64 { return iss.jwksHits.Load() }

// Claims are a token's claims: registered ones plus anything else (scope,
// scp, client_id).
type Claims struct {
	jwt.Claims
	Extra map[string]any
}

// Token returns claims for a token valid from now for an hour, for subject
// and audience, with scope (space-separated) set when not empty.
func (iss *Issuer) Token(now time.Time, subject, audience, scope string) Claims {
	c := Claims{Claims: jwt.Claims{
		Issuer:    iss.URL,
		Subject:   subject,
		Audience:  jwt.Audience{audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(time.Hour)),
	}, Extra: map[string]any{}}
	if scope != "" {
		c.Extra["scope"] = scope
	}
	return c
}

// Sign serializes c signed with the issuer's first key.
func (iss *Issuer) Sign(t testing.TB, c Claims) string {
	t.Helper()
	return SignWith(t, iss.Keys()[0], c)
}

// SignWith serializes c signed with k (kid in the header).
func SignWith(t testing.TB, k Key, c Claims) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.ID != "" {
		opts = opts.WithHeader("kid", k.ID)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Algorithm, Key: k.Private}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := jwt.Signed(signer).Claims(c.Claims)
	if len(c.Extra) > 0 {
		b = b.Claims(c.Extra)
	}
	tok, err := b.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

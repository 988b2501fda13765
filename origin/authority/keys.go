package authority

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// errNoKeys: keys were never fetched successfully, so nothing can be
// verified (the issuer is down or misconfigured).
var errNoKeys = errors.New("no signing keys available")

// errUnknownKey: the token's kid is not in the key set, even after a
// refresh (or a refresh was not allowed yet).
var errUnknownKey = errors.New("unknown signing key")

// keySnapshot is one immutable, verified key set.
type keySnapshot struct {
	byKid   map[string][]jose.JSONWebKey
	all     []jose.JSONWebKey
	fetched time.Time
}

// keySet finds the public keys that may verify a token: a fixed key from a
// PEM file, or keys fetched from the issuer and cached.
type keySet struct {
	cfg *Config

	static *keySnapshot // from SigningKeyFile; never refreshed

	snap atomic.Pointer[keySnapshot]
	// fetchMu serialises fetches; lastAttempt and lastErr are guarded by it.
	fetchMu     sync.Mutex
	lastAttempt time.Time
	lastErr     error
}

func newKeySet(cfg *Config) (*keySet, error) {
	ks := &keySet{cfg: cfg}
	if cfg.SigningKeyFile != "" {
		pub, err := loadPublicKeyPEM(cfg.SigningKeyFile)
		if err != nil {
			return nil, fmt.Errorf("signing key file %s: %w", cfg.SigningKeyFile, err)
		}
		k := jose.JSONWebKey{Key: pub, Use: "sig"}
		if !usableKey(k) {
			return nil, fmt.Errorf("signing key file %s: %T is not an RSA, ECDSA or Ed25519 public key", cfg.SigningKeyFile, pub)
		}
		ks.static = newSnapshot([]jose.JSONWebKey{k}, cfg.Now())
		return ks, nil
	}
	if cfg.JWKSURL == "" && cfg.Issuer == "" {
		return nil, errors.New("no key source: set an issuer, a JWKS URL or a signing key file")
	}
	for _, u := range []string{cfg.JWKSURL, cfg.Issuer} {
		if err := cfg.checkURL(u); u != "" && err != nil {
			return nil, err
		}
	}
	return ks, nil
}

func newSnapshot(keys []jose.JSONWebKey, now time.Time) *keySnapshot {
	s := &keySnapshot{byKid: map[string][]jose.JSONWebKey{}, all: keys, fetched: now}
	for _, k := range keys {
		s.byKid[k.KeyID] = append(s.byKid[k.KeyID], k)
	}
	return s
}

// candidates returns the keys of s that may verify a token with kid and
// alg: the kid's keys, or every key when the token names none (or when the
// set is the single configured PEM key).
func (s *keySnapshot) candidates(kid, alg string, any bool) []jose.JSONWebKey {
	keys := s.byKid[kid]
	if any || kid == "" {
		keys = s.all
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.Algorithm == "" || k.Algorithm == alg {
			out = append(out, k)
		}
	}
	return out
}

// lookup returns the candidate keys for a token header. It fetches when no
// keys are cached or the kid is unknown (at most once per
// MinRefreshInterval), and refreshes keys older than MaxKeyAge without
// making other requests wait.
func (ks *keySet) lookup(kid, alg string) ([]jose.JSONWebKey, error) {
	if ks.static != nil {
		return ks.static.candidates(kid, alg, true), nil
	}
	now := ks.cfg.Now()
	s := ks.snap.Load()
	if s != nil {
		if keys := s.candidates(kid, alg, false); len(keys) > 0 {
			if now.Sub(s.fetched) >= ks.cfg.MaxKeyAge && ks.fetchMu.TryLock() {
				ks.refreshLocked(now) // a failure keeps the old keys
				ks.fetchMu.Unlock()
			}
			return keys, nil
		}
	}
	// Unknown kid or no keys yet: one fetch, the others wait for it.
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	if s2 := ks.snap.Load(); s2 != s && s2 != nil {
		if keys := s2.candidates(kid, alg, false); len(keys) > 0 {
			return keys, nil
		}
	}
	if err := ks.refreshLocked(now); err != nil && ks.snap.Load() == nil {
		return nil, fmt.Errorf("%w: %w", errNoKeys, err)
	}
	if s := ks.snap.Load(); s != nil {
		if keys := s.candidates(kid, alg, false); len(keys) > 0 {
			return keys, nil
		}
	}
	return nil, errUnknownKey
}

// refreshLocked fetches the key set unless the last attempt was less than
// MinRefreshInterval ago; it keeps the old keys on failure. fetchMu is
// held.
func (ks *keySet) refreshLocked(now time.Time) error {
	if !ks.lastAttempt.IsZero() && now.Sub(ks.lastAttempt) < ks.cfg.MinRefreshInterval {
		if ks.lastErr != nil {
			return ks.lastErr
		}
		return nil
	}
	ks.lastAttempt = now
	keys, err := ks.fetch()
	if err == nil {
		ks.snap.Store(newSnapshot(keys, now))
	}
	ks.lastErr = err
	if ks.cfg.OnRefresh != nil {
		ks.cfg.OnRefresh(err)
	}
	return err
}

// fetch reads the JWKS (discovering its URL first when needed) and
// returns its usable public signing keys.
func (ks *keySet) fetch() ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultFetchTimeout)
	defer cancel()
	jwksURL := ks.cfg.JWKSURL
	if jwksURL == "" {
		disco := strings.TrimSuffix(ks.cfg.Issuer, "/") + "/.well-known/openid-configuration"
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := ks.getJSON(ctx, disco, &doc); err != nil {
			return nil, err
		}
		if strings.TrimSuffix(doc.Issuer, "/") != strings.TrimSuffix(ks.cfg.Issuer, "/") {
			return nil, fmt.Errorf("discovery document %s names issuer %q, want %q", disco, doc.Issuer, ks.cfg.Issuer)
		}
		if doc.JWKSURI == "" {
			return nil, fmt.Errorf("discovery document %s has no jwks_uri", disco)
		}
		if err := ks.cfg.checkURL(doc.JWKSURI); err != nil {
			return nil, fmt.Errorf("discovery document %s: jwks_uri: %w", disco, err)
		}
		jwksURL = doc.JWKSURI
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := ks.getJSON(ctx, jwksURL, &set); err != nil {
		return nil, err
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue // an unsupported key type must not discard the others
		}
		if usableKey(k) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key set %s holds no usable public signing key", jwksURL)
	}
	return keys, nil
}

// usableKey reports whether k is an asymmetric public key meant for
// signatures. Symmetric ("oct") and private keys are never used.
func usableKey(k jose.JSONWebKey) bool {
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	switch k.Key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}

// getJSON GETs u and decodes at most maxDocumentBytes of JSON into v.
func (ks *keySet) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("fetching %s: status %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return fmt.Errorf("fetching %s: %w", u, err)
	}
	if len(body) > maxDocumentBytes {
		return fmt.Errorf("fetching %s: document larger than %d bytes", u, maxDocumentBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("fetching %s: %w", u, err)
	}
	return nil
}

// checkURL refuses a non-absolute URL, and an http:// one when
// RequireHTTPSMetadata is set.
func (c *Config) checkURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	case c.RequireHTTPSMetadata && u.Scheme != "https":
		return fmt.Errorf("%q is not https and https metadata is required", raw)
	}
	return nil
}

// maxKeyFileBytes bounds a SigningKeyFile.
const maxKeyFileBytes = 64 << 10

// loadPublicKeyPEM reads the first public key of a PEM file: an SPKI
// "PUBLIC KEY", a PKCS #1 "RSA PUBLIC KEY" or a "CERTIFICATE" (its subject
// key). Private keys are refused: the origin only verifies.
func loadPublicKeyPEM(path string) (any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeyFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxKeyFileBytes)
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New(`no PEM "PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE" block`)
		}
		switch {
		case block.Type == "PUBLIC KEY":
			return x509.ParsePKIXPublicKey(block.Bytes)
		case block.Type == "RSA PUBLIC KEY":
			return x509.ParsePKCS1PublicKey(block.Bytes)
		case block.Type == "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, err
			}
			return cert.PublicKey, nil
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			return nil, errors.New("holds a private key; give the issuer's public key (openssl pkey -pubout)")
		}
	}
}

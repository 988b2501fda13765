package mirrorsync

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/go-jose/go-jose/v4"

	"github.com/stella-ops/stella-mirror/export/jws"
)

// KeySource returns an Options.Keys function: the keys of the JWKS at
// jwksURL when it is set and reachable, else the PEM public keys at
// pemPaths (loaded now, so a bad file fails at once). A single PEM key
// trusts any kid (the engine still checks the kid the index declares) or
// carries expectKeyID when set; several PEM keys carry their RFC 7638
// thumbprints.
func KeySource(pemPaths []string, jwksURL string, client *http.Client, expectKeyID string, logger *slog.Logger) (func(context.Context) ([]jws.PublicKey, error), error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var pems []jws.PublicKey
	for _, p := range pemPaths {
		k, err := jws.LoadPublicKeyPEM(p)
		if err != nil {
			return nil, fmt.Errorf("public key %s: %w", p, err)
		}
		id := expectKeyID
		if len(pemPaths) > 1 {
			if id, err = jws.Thumbprint(k); err != nil {
				return nil, fmt.Errorf("public key %s: %w", p, err)
			}
		}
		pems = append(pems, jws.PublicKey{KeyID: id, Key: k})
	}
	return func(ctx context.Context) ([]jws.PublicKey, error) {
		if jwksURL == "" {
			return pems, nil
		}
		keys, err := fetchJWKS(ctx, client, jwksURL)
		if err == nil {
			return keys, nil
		}
		if len(pems) == 0 {
			return nil, err
		}
		logger.Warn("key registry unreachable; using the PEM keys", "jwks_url", jwksURL, "error", err)
		return pems, nil
	}, nil
}

// fetchJWKS reads the public signing keys of a JWKS.
func fetchJWKS(ctx context.Context, client *http.Client, u string) ([]jws.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching JWKS %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", u, err)
	}
	var keys []jws.PublicKey
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" || !k.IsPublic() {
			continue
		}
		keys = append(keys, jws.PublicKey{KeyID: k.KeyID, Key: crypto.PublicKey(k.Key)})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS %s: no public signing keys", u)
	}
	return keys, nil
}

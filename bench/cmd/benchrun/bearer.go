//go:build unix

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/stella-ops/stella-mirror/bench"
)

// Claims of the bench's bearer token.
const (
	benchIssuer   = "https://authority.bench.invalid"
	benchAudience = "stella-mirror"
	benchScope    = "concelier.mirror.read"
)

// benchToken writes a fresh ES256 public key to tmp/authority.pem and
// returns its path and a token it verifies (valid for two hours).
func benchToken(tmp string) (keyFile, token string, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generating the bench token key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return "", "", fmt.Errorf("encoding the bench token key: %w", err)
	}
	keyFile = filepath.Join(tmp, "authority.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return "", "", fmt.Errorf("writing the bench token key: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench-1"))
	if err != nil {
		return "", "", fmt.Errorf("bench token signer: %w", err)
	}
	now := time.Now()
	token, err = jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: benchIssuer, Subject: "bench-client", Audience: jwt.Audience{benchAudience},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
		Expiry: jwt.NewNumericDate(now.Add(2 * time.Hour)),
	}).Claims(map[string]any{"scope": benchScope}).Serialize()
	if err != nil {
		return "", "", fmt.Errorf("signing the bench token: %w", err)
	}
	return keyFile, token, nil
}

// bearerEnv configures an origin that requires a token verified with
// keyFile.
func bearerEnv(keyFile string) []string {
	return []string{
		"CONCELIER__MIRROR__REQUIREAUTHENTICATION=true",
		"EXCITITOR__MIRROR__REQUIREAUTHENTICATION=true",
		"CONCELIER__AUTHORITY__ENABLED=true",
		"CONCELIER__AUTHORITY__ISSUER=" + benchIssuer,
		"CONCELIER__AUTHORITY__AUDIENCES__0=" + benchAudience,
		"CONCELIER__AUTHORITY__SIGNINGKEYFILE=" + keyFile,
	}
}

// checkBearer fails unless the token origin refuses c.path without the
// token (401) and both servers serve the file's exact bytes with it.
func checkBearer(ctx context.Context, client *http.Client, c benchCase, auth, noauth *server, token string) error {
	want, err := bench.FileBody(c.file)
	if err != nil {
		return err
	}
	fetch := func(s *server, withToken bool) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+c.path, nil)
		if err != nil {
			return 0, "", err
		}
		if withToken {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", fmt.Errorf("%s: %w", s.name, err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		if _, err := io.Copy(h, resp.Body); err != nil {
			return 0, "", fmt.Errorf("%s: %w", s.name, err)
		}
		return resp.StatusCode, hex.EncodeToString(h.Sum(nil)), nil
	}
	if code, _, err := fetch(auth, false); err != nil || code != http.StatusUnauthorized {
		return fmt.Errorf("%s without a token: status %d, %v (want 401: the origin must require the token)", auth.name, code, err)
	}
	for _, s := range []*server{auth, noauth} {
		code, sum, err := fetch(s, true)
		if err != nil {
			return err
		}
		if code != http.StatusOK || sum != want.SHA256 {
			return fmt.Errorf("%s with the token: status %d, sha256 %s; want 200 and the file's sha256 %s", s.name, code, sum, want.SHA256)
		}
	}
	return nil
}

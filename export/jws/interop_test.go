package jws

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// Interoperability with independent JOSE implementations: go-jose (Go) and
// jwcrypto (Python), plus the RFC 8037 test vector.

var joseAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// TestRFC8037Vector reproduces the EdDSA JWS of RFC 8037 appendix A.4 with
// the streaming signer, and verifies its detached form.
func TestRFC8037Vector(t *testing.T) {
	seed, _ := b64.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	priv := ed25519.NewKeyFromSeed(seed)
	payload := []byte("Example of Ed25519 signing")
	const want = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc." +
		"hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
	wantParts := strings.Split(want, ".")

	got := forge(t, `{"alg":"EdDSA"}`, priv, payload)
	if wantDetached := wantParts[0] + ".." + wantParts[2]; got != wantDetached {
		t.Fatalf("signature differs from RFC 8037 A.4\n got %s\nwant %s", got, wantDetached)
	}
	if _, err := Verify([]byte(got), bytes.NewReader(payload), []PublicKey{{Key: priv.Public()}}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestGoJOSEVerifiesOurSignatures(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		for _, n := range []int{0, 1, 100, 65_537} {
			payload := testMessage(n, uint64(n))
			t.Run(fmt.Sprintf("%s/%dB", alg, n), func(t *testing.T) {
				key := testKeys[alg]
				sig, err := Sign(bytes.NewReader(payload), key, "")
				if err != nil {
					t.Fatal(err)
				}
				// ParseDetached reattaches the payload.
				obj, err := jose.ParseDetached(string(sig), payload, joseAlgs)
				if err != nil {
					t.Fatalf("jose.ParseDetached: %v", err)
				}
				got, err := obj.Verify(key.Public())
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("go-jose Verify: %v", err)
				}
				if h := obj.Signatures[0].Protected; h.KeyID != mustThumbprint(t, key) || h.Algorithm != alg {
					t.Errorf("go-jose sees header %+v", h)
				}
				// ParseSigned + DetachedVerify.
				obj, err = jose.ParseSigned(string(sig), joseAlgs)
				if err != nil {
					t.Fatalf("jose.ParseSigned: %v", err)
				}
				if err := obj.DetachedVerify(payload, key.Public()); err != nil {
					t.Fatalf("go-jose DetachedVerify: %v", err)
				}
				tampered := append(append([]byte{}, payload...), '!')
				if err := obj.DetachedVerify(tampered, key.Public()); err == nil {
					t.Fatal("go-jose accepts a tampered payload")
				}
			})
		}
	}
}

func TestWeVerifyGoJOSESignatures(t *testing.T) {
	payload := []byte(`{"domain":"primary","exports":[]}`)
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			key := testKeys[alg]
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key},
				(&jose.SignerOptions{}).WithType("JOSE").WithHeader(jose.HeaderKey("kid"), "k1"))
			if err != nil {
				t.Fatal(err)
			}
			obj, err := signer.Sign(payload)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := obj.DetachedCompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			h, err := Verify([]byte(sig), bytes.NewReader(payload), []PublicKey{{KeyID: "k1", Key: key.Public()}})
			if err != nil {
				t.Fatalf("Verify(go-jose JWS): %v", err)
			}
			if h.Alg != alg || h.Kid != "k1" {
				t.Errorf("header = %+v", h)
			}
			if _, err := Verify([]byte(sig), strings.NewReader("other"), []PublicKey{{KeyID: "k1", Key: key.Public()}}); !errors.Is(err, ErrSignatureInvalid) {
				t.Errorf("Verify(go-jose JWS, other payload) = %v; want ErrSignatureInvalid", err)
			}
		})
	}
}

func TestThumbprintMatchesGoJOSE(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		for i := range 5 {
			key := mustKey(t, alg)
			jwk := jose.JSONWebKey{Key: key.Public()}
			sum, err := jwk.Thumbprint(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := mustThumbprint(t, key.Public()), b64.EncodeToString(sum); got != want {
				t.Errorf("%s key %d: Thumbprint = %s, go-jose says %s", alg, i, got, want)
			}
		}
	}
}

// systemPython is Debian's interpreter, which has python3-jwcrypto; the
// python3 on PATH may be another one.
const systemPython = "/usr/bin/python3"

// requireJWCrypto skips the test when python3-jwcrypto is not installed,
// unless CI is set: CI installs it, so its absence there is a failure.
func requireJWCrypto(t *testing.T) {
	t.Helper()
	missing := func(why string) {
		testenv.Missing(t, "jwcrypto cross-check: %s (apt-get install python3-jwcrypto)", why)
	}
	if _, err := os.Stat(systemPython); err != nil {
		missing(systemPython + " not found")
	}
	if out, err := exec.Command(systemPython, "-c", "import jwcrypto.jws, jwcrypto.jwk").CombinedOutput(); err != nil {
		missing("cannot import jwcrypto: " + strings.TrimSpace(string(out)))
	}
}

func TestJWCryptoVerifiesOurSignatures(t *testing.T) {
	requireJWCrypto(t)
	script, err := filepath.Abs("testdata/verify_jwcrypto.py")
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			key := testKeys[alg]
			pubPEM, err := MarshalPublicKeyPEM(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			pubPath := filepath.Join(dir, "key.pub.pem")
			payloadPath := filepath.Join(dir, "bundle.json")
			sigPath := payloadPath + ".jws"
			payload := testMessage(300_001, 3)
			mustWrite(t, pubPath, pubPEM)
			mustWrite(t, payloadPath, payload)
			sig, err := SignFile(payloadPath, key, "")
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, sigPath, sig)

			run := func() (int, string) {
				cmd := exec.Command(systemPython, script, pubPath, sigPath, payloadPath)
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if err != nil && !errors.As(err, &exit) {
					t.Fatalf("run jwcrypto: %v", err)
				}
				return cmd.ProcessState.ExitCode(), strings.TrimSpace(string(out))
			}
			if code, out := run(); code != 0 {
				t.Fatalf("jwcrypto rejects our %s signature (exit %d): %s", alg, code, out)
			} else if !strings.Contains(out, "alg="+alg) {
				t.Errorf("jwcrypto output %q does not show alg=%s", out, alg)
			}

			payload[len(payload)/2] ^= 0x20
			mustWrite(t, payloadPath, payload)
			if code, out := run(); code != 1 {
				t.Fatalf("jwcrypto on a tampered payload: exit %d, want 1: %s", code, out)
			}
		})
	}
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

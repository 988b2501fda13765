package jws

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func samePublic(t *testing.T, got, want crypto.PublicKey) {
	t.Helper()
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if !want.(equaler).Equal(got) {
		t.Fatalf("public key %T differs from the expected one", got)
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			key := mustKey(t, alg)
			privPEM, err := MarshalPrivateKeyPEM(key)
			if err != nil {
				t.Fatal(err)
			}
			pubPEM, err := MarshalPublicKeyPEM(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(privPEM, []byte("-----BEGIN PRIVATE KEY-----")) ||
				!bytes.HasPrefix(pubPEM, []byte("-----BEGIN PUBLIC KEY-----")) {
				t.Fatalf("unexpected PEM types:\n%s\n%s", privPEM, pubPEM)
			}
			dir := t.TempDir()
			privPath, pubPath := filepath.Join(dir, "k.key.pem"), filepath.Join(dir, "k.pub.pem")
			os.WriteFile(privPath, privPEM, 0o600)
			os.WriteFile(pubPath, pubPEM, 0o644)

			priv, err := LoadPrivateKeyPEM(privPath)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := Algorithm(priv); got != alg {
				t.Errorf("Algorithm(loaded key) = %q, want %q", got, alg)
			}
			samePublic(t, priv.Public(), key.Public())

			for name, path := range map[string]string{"public PEM": pubPath, "private PEM": privPath} {
				pub, err := LoadPublicKeyPEM(path)
				if err != nil {
					t.Fatalf("LoadPublicKeyPEM(%s): %v", name, err)
				}
				samePublic(t, pub, key.Public())
				if _, isSigner := pub.(crypto.Signer); isSigner {
					t.Errorf("LoadPublicKeyPEM(%s) returned a private key", name)
				}
			}
			// The public half of a private key marshals the same as the key.
			pub2, err := MarshalPublicKeyPEM(key)
			if err != nil || !bytes.Equal(pub2, pubPEM) {
				t.Errorf("MarshalPublicKeyPEM(private key) = %s, %v", pub2, err)
			}
		})
	}
}

func TestParsePrivateKeyPEMFormats(t *testing.T) {
	ec := mustKey(t, ES256).(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	tests := []struct {
		name string
		data []byte
	}{
		{"SEC 1", pemBlock("EC PRIVATE KEY", sec1)},
		{"openssl ecparam -genkey (EC PARAMETERS first)", append(ecParams, pemBlock("EC PRIVATE KEY", sec1)...)},
		{"with text before", append([]byte("Comment: made by hand\n"), pemBlock("EC PRIVATE KEY", sec1)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParsePrivateKeyPEM(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			samePublic(t, k.Public(), ec.Public())
		})
	}
}

func TestParseKeyPEMRejects(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaPKCS8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	rsaSPKI, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384PKCS8, _ := x509.MarshalPKCS8PrivateKey(p384)
	p384SEC1, _ := x509.MarshalECPrivateKey(p384)
	p384SPKI, _ := x509.MarshalPKIXPublicKey(&p384.PublicKey)
	edPEM, _ := MarshalPrivateKeyPEM(testKeys[EdDSA])
	esPEM, _ := MarshalPrivateKeyPEM(testKeys[ES256])
	pubPEM, _ := MarshalPublicKeyPEM(testKeys[ES256].Public())
	legacyEncrypted := []byte("-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END EC PRIVATE KEY-----\n")

	const noPrivate, noPEM = `no PEM "PRIVATE KEY"`, "no PEM"
	tests := []struct {
		name     string
		data     []byte
		privWant string // substring of ParsePrivateKeyPEM's error; "" = success
		pubWant  string // substring of ParsePublicKeyPEM's error; "" = success
	}{
		{"empty", nil, noPEM, noPEM},
		{"DER, not PEM", rsaPKCS8, noPEM, noPEM},
		{"RSA PKCS#8", pemBlock("PRIVATE KEY", rsaPKCS8), "unsupported key type", "unsupported key type"},
		{"RSA PKCS#1", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "RSA PRIVATE KEY", "RSA PRIVATE KEY"},
		{"RSA public", pemBlock("PUBLIC KEY", rsaSPKI), noPrivate, "unsupported key type"},
		{"P-384 PKCS#8", pemBlock("PRIVATE KEY", p384PKCS8), "P-384", "P-384"},
		{"P-384 SEC 1", pemBlock("EC PRIVATE KEY", p384SEC1), "P-384", "P-384"},
		{"P-384 public", pemBlock("PUBLIC KEY", p384SPKI), noPrivate, "P-384"},
		{"encrypted PKCS#8", pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "encrypted", "encrypted"},
		{"legacy encrypted PEM", legacyEncrypted, "encrypted", "encrypted"},
		{"garbage in block", pemBlock("PRIVATE KEY", []byte("garbage")), "PRIVATE KEY", "PRIVATE KEY"},
		{"garbage public", pemBlock("PUBLIC KEY", []byte("garbage")), noPrivate, "PUBLIC KEY"},
		{"two private keys", append(append([]byte{}, edPEM...), esPEM...), "more than one", ""},
		{"public key given as private", pubPEM, noPrivate, ""},
	}
	check := func(t *testing.T, fn string, err error, want string) {
		t.Helper()
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", fn, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s error = %v; want one mentioning %q", fn, err, want)
		}
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrivateKeyPEM(tc.data)
			check(t, "ParsePrivateKeyPEM", err, tc.privWant)
			_, err = ParsePublicKeyPEM(tc.data)
			check(t, "ParsePublicKeyPEM", err, tc.pubWant)
		})
	}
}

func TestLoadKeyErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	missing := filepath.Join(dir, "missing.pem")
	for _, path := range []string{bad, missing} {
		if _, err := LoadPrivateKeyPEM(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadPrivateKeyPEM(%s) = %v; want an error naming the file", path, err)
		}
		if _, err := LoadPublicKeyPEM(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadPublicKeyPEM(%s) = %v; want an error naming the file", path, err)
		}
	}
	// Callers create a key when there is none: a missing file stays
	// recognisable.
	if _, err := LoadPrivateKeyPEM(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPrivateKeyPEM(missing) = %v; want fs.ErrNotExist", err)
	}
	if _, err := LoadPublicKeyPEM(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPublicKeyPEM(missing) = %v; want fs.ErrNotExist", err)
	}
}

func TestLoadPublicKeyFromCertificate(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			key := mustKey(t, alg)
			tmpl := &x509.Certificate{
				SerialNumber: big.NewInt(1),
				Subject:      pkix.Name{CommonName: "stella-mirror test"},
				NotBefore:    time.Unix(0, 0),
				NotAfter:     time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "cert.pem")
			os.WriteFile(path, pemBlock("CERTIFICATE", der), 0o644)
			pub, err := LoadPublicKeyPEM(path)
			if err != nil {
				t.Fatal(err)
			}
			samePublic(t, pub, key.Public())
		})
	}
}

func TestAlgorithm(t *testing.T) {
	es := testKeys[ES256].(*ecdsa.PrivateKey)
	ed := testKeys[EdDSA].(ed25519.PrivateKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	tests := []struct {
		name string
		key  any
		want string // "" = error
	}{
		{"ecdsa private", es, ES256},
		{"ecdsa public", &es.PublicKey, ES256},
		{"ed25519 private", ed, EdDSA},
		{"ed25519 public", ed.Public(), EdDSA},
		{"opaque signer", opaqueSigner{es}, ES256},
		{"P-384", p384, ""},
		{"nil", nil, ""},
		{"nil ecdsa", (*ecdsa.PublicKey)(nil), ""},
		{"short ed25519", ed25519.PublicKey(make([]byte, 31)), ""},
		{"bytes", []byte("key"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Algorithm(tc.key)
			if got != tc.want || (err != nil) != (tc.want == "") {
				t.Fatalf("Algorithm = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := GenerateKey("HS256"); err == nil {
		t.Error("GenerateKey(HS256) succeeded")
	}
}

// TestThumbprintRFC8037 checks the Ed25519 thumbprint against RFC 8037
// appendix A.3.
func TestThumbprintRFC8037(t *testing.T) {
	x, _ := b64.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	got, err := Thumbprint(ed25519.PublicKey(x))
	if err != nil {
		t.Fatal(err)
	}
	if want := "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("Thumbprint = %s, want %s", got, want)
	}
}

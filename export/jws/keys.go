package jws

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// maxKeyFileSize bounds the key files LoadPrivateKeyPEM and LoadPublicKeyPEM
// read.
const maxKeyFileSize = 1 << 20

// Algorithm returns the JWS algorithm for key: ES256 for an ECDSA P-256 key,
// EdDSA for an Ed25519 key. key may be a public key, a private key or any
// crypto.Signer; other key types and curves are an error.
func Algorithm(key any) (string, error) {
	_, alg, err := normalizePublic(key)
	if err != nil {
		return "", fmt.Errorf("jws: %w", err)
	}
	return alg, nil
}

// normalizePublic returns the public half of key as *ecdsa.PublicKey (P-256)
// or ed25519.PublicKey, and its algorithm.
func normalizePublic(key any) (crypto.PublicKey, string, error) {
	switch k := key.(type) {
	case nil:
		return nil, "", errors.New("no key")
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return nil, "", errors.New("no key")
		}
		if k.Curve != elliptic.P256() {
			return nil, "", fmt.Errorf("ECDSA key on curve %s: ES256 needs P-256", k.Curve.Params().Name)
		}
		return k, ES256, nil
	case *ecdsa.PrivateKey:
		if k == nil {
			return nil, "", errors.New("no key")
		}
		return normalizePublic(&k.PublicKey)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, "", fmt.Errorf("ed25519 public key is %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return k, EdDSA, nil
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, "", fmt.Errorf("ed25519 private key is %d bytes, want %d", len(k), ed25519.PrivateKeySize)
		}
		return normalizePublic(k.Public())
	case crypto.Signer:
		pub := k.Public()
		if _, isSigner := pub.(crypto.Signer); isSigner {
			return nil, "", fmt.Errorf("unsupported key type %T", key)
		}
		return normalizePublic(pub)
	default:
		return nil, "", fmt.Errorf("unsupported key type %T (want ECDSA P-256 or Ed25519)", key)
	}
}

// Thumbprint returns the RFC 7638 JWK SHA-256 thumbprint of the key,
// base64url-encoded without padding: the default key id. pub may also be a
// private key, whose public half is used.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	p, alg, err := normalizePublic(pub)
	if err != nil {
		return "", fmt.Errorf("jws: thumbprint: %w", err)
	}
	// The required members in lexicographic order, no whitespace (RFC 7638
	// section 3.2); the base64url values need no JSON escaping.
	var jwk string
	switch alg {
	case ES256:
		pt, err := p.(*ecdsa.PublicKey).Bytes() // 0x04 || X || Y
		if err != nil {
			return "", fmt.Errorf("jws: thumbprint: %w", err)
		}
		jwk = `{"crv":"P-256","kty":"EC","x":"` + b64.EncodeToString(pt[1:33]) +
			`","y":"` + b64.EncodeToString(pt[33:65]) + `"}`
	case EdDSA:
		jwk = `{"crv":"Ed25519","kty":"OKP","x":"` + b64.EncodeToString(p.(ed25519.PublicKey)) + `"}`
	}
	sum := sha256.Sum256([]byte(jwk))
	return b64.EncodeToString(sum[:]), nil
}

// GenerateKey returns a new private key for alg (ES256 or EdDSA): an
// *ecdsa.PrivateKey or an ed25519.PrivateKey.
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("jws: generate ES256 key: %w", err)
		}
		return k, nil
	case EdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("jws: generate EdDSA key: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("jws: generate key: unsupported alg %q (want ES256 or EdDSA)", alg)
	}
}

// MarshalPrivateKeyPEM encodes an *ecdsa.PrivateKey (P-256) or an
// ed25519.PrivateKey as an unencrypted PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	if _, _, err := normalizePublic(key); err != nil {
		return nil, fmt.Errorf("jws: marshal private key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("jws: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes an ECDSA P-256 or Ed25519 public key (or the
// public half of such a private key) as an SPKI "PUBLIC KEY" PEM block.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	p, _, err := normalizePublic(pub)
	if err != nil {
		return nil, fmt.Errorf("jws: marshal public key: %w", err)
	}
	der, err := x509.MarshalPKIXPublicKey(p)
	if err != nil {
		return nil, fmt.Errorf("jws: marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// LoadPrivateKeyPEM reads a private key from a PEM file; see
// ParsePrivateKeyPEM. Errors name the file.
func LoadPrivateKeyPEM(path string) (crypto.Signer, error) {
	data, err := readLimited(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("jws: load private key: %w", err)
	}
	key, err := parsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("jws: load private key %s: %w", path, err)
	}
	return key, nil
}

// ParsePrivateKeyPEM parses the one unencrypted private key in PEM data: a
// PKCS#8 "PRIVATE KEY" (ECDSA P-256 or Ed25519) or a SEC 1 "EC PRIVATE KEY"
// (P-256). Other blocks, such as the "EC PARAMETERS" that openssl ecparam
// writes, are skipped. The key is an *ecdsa.PrivateKey or ed25519.PrivateKey.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	key, err := parsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("jws: parse private key: %w", err)
	}
	return key, nil
}

func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	var found crypto.Signer
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		key, err := parsePrivateKeyBlock(block)
		if err != nil {
			return nil, err
		}
		if found != nil {
			return nil, errors.New("more than one private key in the PEM data")
		}
		found = key
	}
	if found == nil {
		return nil, errors.New(`no PEM "PRIVATE KEY" or "EC PRIVATE KEY" block`)
	}
	return found, nil
}

func parsePrivateKeyBlock(block *pem.Block) (crypto.Signer, error) {
	if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, errors.New("the private key is encrypted; decrypt it first (openssl pkey -in ENC.pem -out KEY.pem)")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q (want ECDSA P-256 or Ed25519 as \"PRIVATE KEY\" or \"EC PRIVATE KEY\")", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	if _, _, err := normalizePublic(signer); err != nil {
		return nil, err
	}
	return signer, nil
}

// LoadPublicKeyPEM reads a public key from a PEM file; see ParsePublicKeyPEM.
// Errors name the file.
func LoadPublicKeyPEM(path string) (crypto.PublicKey, error) {
	data, err := readLimited(path, maxKeyFileSize)
	if err != nil {
		return nil, fmt.Errorf("jws: load public key: %w", err)
	}
	pub, err := parsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("jws: load public key %s: %w", path, err)
	}
	return pub, nil
}

// ParsePublicKeyPEM returns the ECDSA P-256 or Ed25519 public key in the first
// key-bearing PEM block of data: an SPKI "PUBLIC KEY", a "CERTIFICATE" (the
// first one is the leaf of a chain), or a private key as ParsePrivateKeyPEM
// accepts (its public half). The key is an *ecdsa.PublicKey or an
// ed25519.PublicKey.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	pub, err := parsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("jws: parse public key: %w", err)
	}
	return pub, nil
}

func parsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New(`no PEM "PUBLIC KEY", "CERTIFICATE" or private key block`)
		}
		var key any
		var err error
		switch {
		case block.Type == "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case block.Type == "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			key, err = parsePrivateKeyBlock(block)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", block.Type, err)
		}
		pub, _, err := normalizePublic(key)
		return pub, err
	}
}

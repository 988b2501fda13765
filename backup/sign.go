package backup

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/stella-ops/stella-mirror/export/jws"
)

// SignatureName is the member holding the archive's signature (JSON, see
// Signature), under the archive's top-level folder.
const SignatureName = "MANIFEST.sig"

// maxSignatureBytes bounds the signature member.
const maxSignatureBytes = 64 << 10

// signatureContext starts every signed message, so a backup signature can
// never be taken for a signature over anything else made with the key.
const signatureContext = "stella-mirror backup signature v1\n"

// Signature is an Ed25519 signature over an archive's manifest and
// checksum file. The manifest names every entry with its SHA-256 and
// SHA256SUMS lists the same digests and the manifest's own, so the
// signature covers every byte restore writes.
type Signature struct {
	// Algorithm is "Ed25519".
	Algorithm string `json:"alg"`
	// KeyID is the signing key's RFC 7638 thumbprint (what `stella-mirror
	// keygen` prints), to tell which key signed during a rotation.
	KeyID string `json:"kid"`
	// Value is the signature (base64 in JSON).
	Value []byte `json:"sig"`
}

// ErrSignature is returned (wrapped) when an archive's signature is
// missing, malformed or does not verify against any verification key.
var ErrSignature = errors.New("archive signature")

// signedMessage is what the signature covers.
func signedMessage(manifest, sums []byte) []byte {
	m := sha256.Sum256(manifest)
	s := sha256.Sum256(sums)
	return []byte(signatureContext + ManifestName + " " + hex.EncodeToString(m[:]) + "\n" + SumsName + " " + hex.EncodeToString(s[:]) + "\n")
}

// KeyID returns a verification key's id (its RFC 7638 thumbprint).
func KeyID(pub ed25519.PublicKey) string {
	id, err := jws.Thumbprint(pub)
	if err != nil {
		return "?"
	}
	return id
}

// signArchive returns the signature member for manifest and sums.
func signArchive(key ed25519.PrivateKey, manifest, sums []byte) ([]byte, error) {
	pub, _ := key.Public().(ed25519.PublicKey)
	s := Signature{Algorithm: "Ed25519", KeyID: KeyID(pub), Value: ed25519.Sign(key, signedMessage(manifest, sums))}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// parseSignature decodes a signature member strictly.
func parseSignature(data []byte) (*Signature, error) {
	var s Signature
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %v", SignatureName, err)
	}
	if s.Algorithm != "Ed25519" || len(s.Value) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%s: algorithm %q with a %d-byte signature, want Ed25519 (%d bytes)", SignatureName, s.Algorithm, len(s.Value), ed25519.SignatureSize)
	}
	return &s, nil
}

// verifySignature checks sig against every key (several during a key
// rotation) and returns the id of the key that verifies it.
func verifySignature(s *Signature, manifest, sums []byte, keys []ed25519.PublicKey) (string, error) {
	msg := signedMessage(manifest, sums)
	var ids []string
	for _, k := range keys {
		if ed25519.Verify(k, msg, s.Value) {
			return KeyID(k), nil
		}
		ids = append(ids, KeyID(k))
	}
	return "", fmt.Errorf("%w: the signature (key id %s) does not verify against any --verify-key (%s): the archive was not made with a trusted signing key, or was altered", ErrSignature, s.KeyID, strings.Join(ids, ", "))
}

package export

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
)

// DigestPrefix is the algorithm prefix of every digest in the format.
const DigestPrefix = "sha256:"

// Digest returns the `sha256:<hex>` digest of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return DigestPrefix + hex.EncodeToString(sum[:])
}

// DigestReader returns the `sha256:<hex>` digest of everything r yields and
// the number of bytes read. Memory use is constant.
func DigestReader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return DigestPrefix + hex.EncodeToString(h.Sum(nil)), n, nil
}

// DigestFile returns the digest and size of the file at path.
func DigestFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	d, n, err := DigestReader(f)
	if err != nil {
		return "", n, fmt.Errorf("reading %s: %w", path, err)
	}
	return d, n, nil
}

// ValidateDigest reports whether s is a well-formed `sha256:` digest: the
// prefix followed by exactly 64 lower-case hex digits.
func ValidateDigest(s string) error {
	hexPart, ok := strings.CutPrefix(s, DigestPrefix)
	if !ok {
		return fmt.Errorf("digest %q: want prefix %q", s, DigestPrefix)
	}
	if len(hexPart) != sha256.Size*2 {
		return fmt.Errorf("digest %q: want %d hex digits, have %d", s, sha256.Size*2, len(hexPart))
	}
	for _, c := range hexPart {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("digest %q: not lower-case hex", s)
		}
	}
	return nil
}

// Package peertoken is the shared secret between the gateway and the
// origin (ORIGIN__PEERTOKENFILE, GATEWAY__ORIGINPEERTOKENFILE): the file
// format both read, the request header that carries the token, and a
// constant-time matcher over every token the origin accepts.
//
// A token file holds one token per line; blank lines and lines starting
// with '#' are ignored. Each token is at least MinLen bytes of visible
// ASCII (0x21–0x7e: it travels in a header), at most MaxLen. Several
// tokens let the origin accept the old and the new one during a rotation;
// the gateway sends the first.
//
// It never logs, and its errors never quote, a token: they name the file
// and the line.
package peertoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Header carries the gateway's peer token on every request to the origin.
// The gateway removes any copy a client sends.
const Header = "X-Stella-Peer-Token"

// MinLen is the shortest token accepted, in bytes (`openssl rand -hex 32`
// writes 64).
const MinLen = 32

// MaxLen is the longest token accepted, in bytes.
const MaxLen = 1024

// maxFile bounds what is read of a token file.
const maxFile = 64 << 10

// Parse returns the tokens of a token file's contents in file order; path
// names the file in errors. A file without any token is an error, and so
// is a line that is not a valid token (the error names path and line
// number, never the line).
func Parse(path string, data []byte) ([]string, error) {
	if len(data) > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFile)
	}
	var toks []string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line) // also the \r of CRLF files
		if line == "" || line[0] == '#' {
			continue
		}
		if err := check(line); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		toks = append(toks, line)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%s: no token (one per line, at least %d bytes; blank lines and # comments are ignored)", path, MinLen)
	}
	return toks, nil
}

// check validates one token without quoting it.
func check(tok string) error {
	switch {
	case len(tok) < MinLen:
		return fmt.Errorf("token shorter than %d bytes", MinLen)
	case len(tok) > MaxLen:
		return fmt.Errorf("token longer than %d bytes", MaxLen)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c < 0x21 || c > 0x7e {
			return errors.New("token holds a character other than visible ASCII (space, control or non-ASCII)")
		}
	}
	return nil
}

// ReadFile reads and parses the token file at path.
func ReadFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return Parse(path, data)
}

// Set is the tokens the origin accepts, kept as SHA-256 sums. It is
// immutable and safe for concurrent use.
type Set struct {
	sums [][sha256.Size]byte
}

// NewSet returns the set of toks.
func NewSet(toks []string) *Set {
	s := &Set{sums: make([][sha256.Size]byte, len(toks))}
	for i, t := range toks {
		s.sums[i] = sha256.Sum256([]byte(t))
	}
	return s
}

// Len is the number of tokens in the set.
func (s *Set) Len() int { return len(s.sums) }

// Match reports whether presented is one of the set's tokens. It hashes
// presented and compares the sum with every token's in constant time,
// without stopping at a match, so the time taken tells neither which
// token matched nor how much of one.
func (s *Set) Match(presented string) bool {
	got := sha256.Sum256([]byte(presented))
	ok := 0
	for i := range s.sums {
		ok |= subtle.ConstantTimeCompare(got[:], s.sums[i][:])
	}
	return ok == 1
}

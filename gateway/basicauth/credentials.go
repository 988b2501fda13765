package basicauth

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds of a Basic credential. A longer user name or password is refused
// before anything is hashed.
const (
	MaxUserLen     = 256
	MaxPasswordLen = 1024
	// maxCredentialLen bounds the base64 text: the encoding of the longest
	// user:password, rounded up.
	maxCredentialLen = (MaxUserLen+1+MaxPasswordLen+2)/3*4 + 4
)

// Errors of ParseBasic. The gateway counts them as failure reasons.
var (
	// ErrScheme: the Authorization header is not Basic.
	ErrScheme = errors.New("authorization scheme is not Basic")
	// ErrMalformed: a Basic header that does not decode to an acceptable
	// user:password (bad base64, no ':', an empty or long user name, a
	// long password, a control character).
	ErrMalformed = errors.New("malformed Basic credentials")
)

// ParseBasic decodes the value of an Authorization header of the Basic
// scheme (RFC 7617): "Basic " and the base64 of user ":" password. It is
// the one parser of Basic credentials in the gateway (both request paths
// use it). It refuses, with ErrMalformed, anything but the base64 alphabet
// in the token (base64 decoding would skip CR and LF), a user name that is
// empty or longer than MaxUserLen, a password longer than MaxPasswordLen,
// and a control character (any byte below 0x20, or 0x7f: CR, LF, NUL, TAB,
// …) in either. A user name never contains ':' (the first ':' separates).
func ParseBasic(header string) (user, password string, err error) {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", ErrScheme
	}
	cred = strings.Trim(cred, " ")
	if cred == "" || len(cred) > maxCredentialLen || !isBase64(cred) {
		return "", "", ErrMalformed
	}
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return "", "", ErrMalformed
	}
	user, password, ok = strings.Cut(string(raw), ":")
	if !ok || user == "" || len(user) > MaxUserLen || len(password) > MaxPasswordLen ||
		hasControl(user) || hasControl(password) {
		return "", "", ErrMalformed
	}
	return user, password, nil
}

// isBase64 reports whether s holds only the standard base64 alphabet and
// padding.
func isBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// hasControl reports whether s holds a byte below 0x20 or 0x7f.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// SafeUser renders a user name for a log line: control characters (C0,
// DEL and C1), invalid UTF-8 and every other rune that is not printable
// (line and paragraph separators, bidi overrides, zero-width characters)
// become '?', and a name longer than 64 bytes is cut with "…".
func SafeUser(name string) string {
	const max = 64
	cut := len(name) > max
	if cut {
		name = name[:max]
	}
	if hasControl(name) {
		b := []byte(name)
		for i, c := range b {
			if c < 0x20 || c == 0x7f {
				b[i] = '?'
			}
		}
		name = string(b)
	}
	name = strings.ToValidUTF8(name, "?")
	name = strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf || unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, name)
	if cut {
		name += "…"
	}
	return name
}

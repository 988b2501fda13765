package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
)

// minAdminTokenLen is the shortest admin token accepted.
const minAdminTokenLen = 16

// adminToken holds the admin listener's bearer token (its SHA-256, so the
// comparison is constant-time whatever the lengths), read from a file.
type adminToken struct {
	path string
	sum  atomic.Pointer[[sha256.Size]byte]
}

// loadAdminToken reads the token file. An empty path returns nil (no
// token: the endpoints it guards are not served).
func loadAdminToken(path string) (*adminToken, error) {
	if path == "" {
		return nil, nil
	}
	t := &adminToken{path: path}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// reload re-reads the file; on failure the token in service stays.
func (t *adminToken) reload() error {
	data, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("GATEWAY__ADMINTOKENFILE: %w", err)
	}
	tok := strings.TrimRight(string(data), "\r\n")
	if len(tok) < minAdminTokenLen || strings.ContainsAny(tok, " \t\r\n") {
		return fmt.Errorf("GATEWAY__ADMINTOKENFILE: %s must hold one token of at least %d characters without spaces", t.path, minAdminTokenLen)
	}
	sum := sha256.Sum256([]byte(tok))
	t.sum.Store(&sum)
	return nil
}

// errAdminAuth: the request lacks the right bearer token.
var errAdminAuth = errors.New("admin token required")

// check returns nil when r carries "Authorization: Bearer <token>".
func (t *adminToken) check(r *http.Request) error {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return errAdminAuth
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return errAdminAuth
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], t.sum.Load()[:]) != 1 {
		return errAdminAuth
	}
	return nil
}

// requireAdmin answers 401 (Bearer challenge) unless the request carries
// the admin token; nothing else looks at the request before that.
func (t *adminToken) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := t.check(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stella-mirror gateway admin"`)
			writeJSON(w, http.StatusUnauthorized, "unauthorized", "the admin bearer token is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

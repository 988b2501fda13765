package authority

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Algorithms are the signature algorithms a token may use: asymmetric
// only. "none" and the HMAC algorithms are never accepted, so a token
// "signed" with a public key as an HMAC secret is refused before any key is
// looked at.
var Algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Kind classifies a validation failure.
type Kind int

const (
	// InvalidToken: malformed, badly signed, expired, not yet valid, for
	// another issuer or audience (RFC 6750 invalid_token, HTTP 401).
	InvalidToken Kind = iota + 1
	// InsufficientScope: a valid token without the required scope (RFC
	// 6750 insufficient_scope, HTTP 403).
	InsufficientScope
	// Unavailable: no signing keys could be obtained from the issuer, so
	// the token cannot be checked (HTTP 503).
	Unavailable
)

// Error is a validation failure. Description is safe to show to the client
// (it never contains the token); Unwrap gives the detail for the log.
type Error struct {
	Kind        Kind
	Description string
	err         error
}

func (e *Error) Error() string {
	if e.err != nil {
		return e.Description + ": " + e.err.Error()
	}
	return e.Description
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.err }

func invalid(desc string, err error) *Error {
	return &Error{Kind: InvalidToken, Description: desc, err: err}
}

// Principal is who a valid token speaks for.
type Principal struct {
	// Subject is the token's "sub", else its "client_id"; may be empty.
	Subject string
	// Expiry is the token's "exp".
	Expiry time.Time
}

// Validator checks bearer tokens. Create it with New; it is safe for
// concurrent use.
type Validator struct {
	cfg      Config
	keys     *keySet
	expected jwt.Expected

	mu     sync.RWMutex
	cache  map[[sha256.Size]byte]*verified
	maxLen int
}

// verified is a cached outcome of a successful signature and issuer and
// audience check; times are re-checked on every use.
type verified struct {
	principal Principal
	notBefore time.Time // zero when the token has no nbf
	hasScope  bool
}

// New returns a Validator for cfg. It reads SigningKeyFile now (an error
// names the file) but fetches nothing: remote keys are fetched on the first
// token.
func New(cfg Config) (*Validator, error) {
	cfg.setDefaults()
	if cfg.Scope == "" {
		return nil, errors.New("authority: no required scope configured")
	}
	ks, err := newKeySet(&cfg)
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	v := &Validator{
		cfg:      cfg,
		expected: jwt.Expected{Issuer: cfg.Issuer, AnyAudience: jwt.Audience(cfg.Audiences)},
		cache:    make(map[[sha256.Size]byte]*verified),
		maxLen:   cfg.CacheSize,
	}
	v.keys = ks
	// The keySet holds a pointer to v.cfg's copy so both agree.
	v.keys.cfg = &v.cfg
	return v, nil
}

// Scope is the scope this Validator requires.
func (v *Validator) Scope() string { return v.cfg.Scope }

// Validate checks token (the credentials of an "Authorization: Bearer"
// header). It returns the token's principal, or an *Error. A token that
// verified earlier and has not expired is answered from the cache.
func (v *Validator) Validate(token string) (Principal, error) {
	if len(token) > v.cfg.MaxTokenBytes {
		return Principal{}, invalid("the token is too large", nil)
	}
	now := v.cfg.Now()
	// Hash the string's bytes in place: []byte(token) would copy every
	// token on the hot path. Sum256 only reads its argument.
	key := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	v.mu.RLock()
	e := v.cache[key]
	v.mu.RUnlock()
	if e == nil {
		var err *Error
		if e, err = v.verify(token, now); err != nil {
			return Principal{}, err
		}
		v.put(key, e, now)
	}
	leeway := v.cfg.Leeway
	switch {
	case now.After(e.principal.Expiry.Add(leeway)):
		v.mu.Lock()
		delete(v.cache, key)
		v.mu.Unlock()
		return Principal{}, invalid("the token has expired", nil)
	case !e.notBefore.IsZero() && now.Add(leeway).Before(e.notBefore):
		return Principal{}, invalid("the token is not valid yet", nil)
	case !e.hasScope:
		return e.principal, &Error{Kind: InsufficientScope, Description: "the token lacks the scope " + v.cfg.Scope}
	}
	return e.principal, nil
}

// extraClaims are the non-registered claims we read.
type extraClaims struct {
	Scope    string          `json:"scope"`
	Scp      json.RawMessage `json:"scp"`
	ClientID string          `json:"client_id"`
}

// verify parses token, checks its signature, issuer and audience, and
// records its times and scope.
func (v *Validator) verify(token string, now time.Time) (*verified, *Error) {
	tok, err := jwt.ParseSigned(token, Algorithms)
	if err != nil {
		return nil, invalid("the token is malformed or uses an algorithm that is not accepted", err)
	}
	if len(tok.Headers) != 1 {
		return nil, invalid("the token must carry exactly one signature", nil)
	}
	h := tok.Headers[0]
	keys, err := v.keys.lookup(h.KeyID, h.Algorithm)
	switch {
	case errors.Is(err, errNoKeys):
		return nil, &Error{Kind: Unavailable, Description: "the issuer's signing keys are unavailable", err: err}
	case err != nil:
		return nil, invalid("the token is signed with an unknown key", err)
	case len(keys) == 0:
		return nil, invalid("no key of the issuer matches the token's algorithm", nil)
	}
	var std jwt.Claims
	var extra extraClaims
	verr := errors.New("no key verified the signature")
	for _, k := range keys {
		if verr = tok.Claims(k.Key, &std, &extra); verr == nil {
			break
		}
	}
	if verr != nil {
		return nil, invalid("the token's signature is invalid", verr)
	}
	if std.Expiry == nil {
		return nil, invalid("the token has no expiry (exp)", nil)
	}
	// Times are checked by Validate on every use; here only iss and aud.
	if err := std.ValidateWithLeeway(v.expected.WithTime(now), v.cfg.Leeway); err != nil {
		switch {
		case errors.Is(err, jwt.ErrInvalidIssuer):
			return nil, invalid("the token is from another issuer", err)
		case errors.Is(err, jwt.ErrInvalidAudience):
			return nil, invalid("the token is for another audience", err)
		case errors.Is(err, jwt.ErrExpired):
			return nil, invalid("the token has expired", err)
		case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
			return nil, invalid("the token is not valid yet", err)
		}
		return nil, invalid("the token's claims are invalid", err)
	}
	e := &verified{
		principal: Principal{Subject: std.Subject, Expiry: std.Expiry.Time()},
		hasScope:  hasScope(extra, v.cfg.Scope),
	}
	if e.principal.Subject == "" {
		e.principal.Subject = extra.ClientID
	}
	if std.NotBefore != nil {
		e.notBefore = std.NotBefore.Time()
	}
	return e, nil
}

// hasScope reports whether the space-separated "scope" claim or the "scp"
// claim (an array, or a space-separated string) contains want.
func hasScope(c extraClaims, want string) bool {
	for _, s := range strings.Fields(c.Scope) {
		if s == want {
			return true
		}
	}
	if len(c.Scp) == 0 {
		return false
	}
	var list []string
	if err := json.Unmarshal(c.Scp, &list); err != nil {
		var one string
		if json.Unmarshal(c.Scp, &one) != nil {
			return false
		}
		list = strings.Fields(one)
	}
	for _, s := range list {
		if s == want {
			return true
		}
	}
	return false
}

// put remembers e. When the cache is full it first drops expired tokens,
// then, if still full, an arbitrary tenth of the entries.
func (v *Validator) put(key [sha256.Size]byte, e *verified, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.maxLen {
		for k, c := range v.cache {
			if now.After(c.principal.Expiry.Add(v.cfg.Leeway)) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache {
			if len(v.cache) < v.maxLen-v.maxLen/10 {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = e
}

// CacheLen is the number of verified tokens currently remembered.
func (v *Validator) CacheLen() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.cache)
}

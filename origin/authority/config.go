package authority

import (
	"net/http"
	"time"
)

// Defaults of the Config fields that are not read from the operator's
// configuration.
const (
	// DefaultLeeway is the clock skew tolerated on "exp" and "nbf".
	DefaultLeeway = 30 * time.Second
	// DefaultMinRefreshInterval is the least time between two key fetches.
	DefaultMinRefreshInterval = 30 * time.Second
	// DefaultMaxKeyAge is how long fetched keys are used before a refresh.
	DefaultMaxKeyAge = time.Hour
	// DefaultCacheSize bounds the verified-token cache.
	DefaultCacheSize = 10_000
	// DefaultMaxTokenBytes bounds the size of a token that is parsed at all.
	DefaultMaxTokenBytes = 8 << 10
	// DefaultFetchTimeout bounds one discovery or JWKS request.
	DefaultFetchTimeout = 10 * time.Second
	// maxDocumentBytes bounds a discovery document or JWKS.
	maxDocumentBytes = 1 << 20
)

// Config configures a Validator. Issuer, Audiences, RequireHTTPSMetadata,
// JWKSURL and SigningKeyFile come from the operator's <PRODUCT>__AUTHORITY__
// keys; the rest are tuning knobs with defaults.
type Config struct {
	// Issuer is the expected "iss" claim and the base of discovery
	// ({Issuer}/.well-known/openid-configuration). When empty, "iss" is
	// not checked (JWKSURL or SigningKeyFile must then be set).
	Issuer string
	// Audiences are the accepted "aud" values; a token must name at least
	// one. When empty, "aud" is not checked.
	Audiences []string
	// RequireHTTPSMetadata refuses http:// discovery and JWKS URLs,
	// including a jwks_uri found by discovery. The caller resolves the
	// operator's default (true).
	RequireHTTPSMetadata bool
	// JWKSURL is where the signing keys are fetched; when empty they are
	// discovered from Issuer.
	JWKSURL string
	// SigningKeyFile is a PEM public key (SPKI or certificate) that
	// verifies every token, whatever its kid; nothing is fetched then.
	SigningKeyFile string
	// Scope is the scope a token must carry, e.g. "concelier.mirror.read".
	// Required.
	Scope string

	// Leeway is the clock skew tolerated on "exp" and "nbf".
	// Default: DefaultLeeway (30s).
	Leeway time.Duration
	// MinRefreshInterval is the least time between two key fetches, so a
	// stream of tokens with unknown kids cannot hammer the issuer.
	// Default: DefaultMinRefreshInterval (30s).
	MinRefreshInterval time.Duration
	// MaxKeyAge is how long fetched keys are used before they are
	// refreshed (the old keys stay in use if the refresh fails).
	// Default: DefaultMaxKeyAge (1h).
	MaxKeyAge time.Duration
	// CacheSize bounds the number of verified tokens remembered.
	// Default: DefaultCacheSize (10,000).
	CacheSize int
	// MaxTokenBytes: longer tokens are rejected unparsed.
	// Default: DefaultMaxTokenBytes (8 KiB).
	MaxTokenBytes int
	// HTTPClient fetches discovery documents and key sets. Default: a
	// client with a DefaultFetchTimeout (10s) timeout that honours the
	// HTTPS_PROXY/NO_PROXY environment like any Go client.
	HTTPClient *http.Client
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// OnRefresh, when set, is called after every key fetch attempt with
	// its error (nil on success). It must be cheap and safe for
	// concurrent use (it is the metrics hook).
	OnRefresh func(err error)
}

// setDefaults fills unset tuning knobs.
func (c *Config) setDefaults() {
	if c.Leeway <= 0 {
		c.Leeway = DefaultLeeway
	}
	if c.MinRefreshInterval <= 0 {
		c.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if c.MaxKeyAge <= 0 {
		c.MaxKeyAge = DefaultMaxKeyAge
	}
	if c.CacheSize <= 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.MaxTokenBytes <= 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: DefaultFetchTimeout, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

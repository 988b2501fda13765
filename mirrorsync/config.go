package mirrorsync

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/config"
	"github.com/stella-ops/stella-mirror/internal/loopname"
)

// Config is what `stella-mirror sync` reads from its YAML file (--config)
// and the environment: the SYNC section, and the runbook's Concelier
// mirror-connector settings (CONCELIER__SOURCES__STELLAOPSMIRROR__…),
// unchanged so existing env files work. Flags override both. Only
// variables under those two prefixes are read from the environment, so
// an env file shared with the origin (CONCELIER__MIRROR__…) is fine.
type Config struct {
	// Sync configures the run. Keys: SYNC__….
	Sync SyncConfig
	// Concelier holds the runbook's connector section.
	Concelier ConcelierSources
}

// ConcelierSources is CONCELIER__SOURCES.
type ConcelierSources struct {
	// Sources holds the connectors; only STELLAOPSMIRROR is read.
	Sources struct {
		// StellaOpsMirror is CONCELIER__SOURCES__STELLAOPSMIRROR.
		StellaOpsMirror ConnectorConfig
	}
}

// ConnectorConfig is the runbook's mirror connector,
// CONCELIER__SOURCES__STELLAOPSMIRROR__….
type ConnectorConfig struct {
	// BaseAddress is the upstream mirror's URL; the source when
	// SYNC__SOURCE and --source are unset. Default: unset.
	BaseAddress string
	// IndexPath is the index's path on the upstream. Default:
	// /concelier/exports/index.json.
	IndexPath string
	// DomainID is the domain (or comma-separated domains) to pull.
	// Default: every domain of the upstream's export.
	DomainID string
	// HTTPTimeout is the per-request timeout (headers, and any stall of a
	// body). Default: 30s.
	HTTPTimeout time.Duration
	// Signature describes the expected signatures.
	Signature SignatureConfig
}

// SignatureConfig is …__STELLAOPSMIRROR__SIGNATURE.
type SignatureConfig struct {
	// Enabled verifies detached JWS signatures. Default: unset, which
	// means true; false verifies digests only (logged as a warning).
	Enabled *bool
	// KeyID is the expected JWS kid: a signature under another kid is
	// rejected. Default: any kid a trusted key carries.
	KeyID string
	// Provider is the expected signing provider the index declares.
	// Default: any.
	Provider string
	// PublicKeyPath is a PEM public key, trusted in addition to
	// SYNC__PUBLICKEYS and the fallback when the JWKS is unreachable.
	// Default: unset.
	PublicKeyPath string
}

// SyncConfig is the SYNC section.
type SyncConfig struct {
	// Source is where to sync from: s3://bucket/prefix, rsync://host/module/path,
	// host:path, https://upstream-mirror or a local directory. Default:
	// the connector's BaseAddress.
	Source string
	// Dest is the export root to publish into. Required.
	Dest string
	// Keep is how many exports to keep, the published one included; at
	// least MinKeep. Default: 3.
	Keep int
	// PublicKeys are PEM public keys trusted for signatures. Keys:
	// SYNC__PUBLICKEYS__{n}. Default: none.
	PublicKeys []string
	// JWKSURL is a key registry (JWKS) to fetch trusted keys from; the PEM
	// keys are the fallback when it is unreachable. Default: unset.
	JWKSURL string
	// Domains restricts the sync to these domains. Keys: SYNC__DOMAINS__{n}.
	// Default: the connector's DomainID, else every domain.
	Domains []string
	// MetricsTextfile is where to write Prometheus textfile metrics (for
	// node_exporter's textfile collector). Default: unset (none written).
	MetricsTextfile string
	// HTTPTimeout overrides the connector's HTTPTimeout. Default: unset.
	HTTPTimeout time.Duration
	// BasicAuthFile holds user:password for the upstream mirror.
	// Default: unset.
	BasicAuthFile string
	// BearerTokenFile holds a bearer token for the upstream mirror.
	// Default: unset.
	BearerTokenFile string
	// CAFile is a PEM bundle of extra CAs for the upstream and the JWKS.
	// Default: the system roots.
	CAFile string
	// RsyncPath is the rsync binary. Default: rsync (from PATH).
	RsyncPath string
	// Every makes `stella-mirror sync` repeat: a run at once, then one
	// this long (plus a random 0-10 %) after the previous run started, for
	// a sidecar container that has no timer. Default: 0, one run. The
	// command checks its minimum.
	Every time.Duration
	// S3 configures s3:// sources.
	S3 S3Config
}

// S3Config is SYNC__S3.
type S3Config struct {
	// Endpoint is the S3 API endpoint (any S3-compatible store). Default:
	// AWS_ENDPOINT_URL, else AWS's regional endpoint.
	Endpoint string
	// Region is the signing region. Default: AWS_REGION, else the
	// profile's, else us-east-1.
	Region string
	// PathStyle addresses buckets as endpoint/bucket (most S3-compatible
	// stores need it). Default: unset, which means true when Endpoint is
	// set and false for AWS.
	PathStyle *bool
	// Profile is the shared-config profile. Default: AWS_PROFILE, else "default".
	Profile string
	// CredentialsFile is a shared credentials file (e.g. one systemd
	// passes with LoadCredential=). Default: the AWS chain (environment,
	// ~/.aws/credentials, web identity, instance role).
	CredentialsFile string
	// UploadGrace is how long after its index was written an export with
	// a missing object counts as an upload in progress (the previous export
	// is synced, one info line says so) rather than a failure. Default: 0,
	// a missing object fails the run at once.
	UploadGrace time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	c := Config{}
	c.Sync.Keep = DefaultKeep
	c.Concelier.Sources.StellaOpsMirror.IndexPath = "/concelier/exports/index.json"
	c.Concelier.Sources.StellaOpsMirror.HTTPTimeout = 30 * time.Second
	return c
}

// envPrefixes are the environment prefixes sync reads.
var envPrefixes = []string{"SYNC__", "CONCELIER__SOURCES__STELLAOPSMIRROR__"}

// LoadConfig reads the defaults, then the YAML file at path (if any), then
// the SYNC__ and CONCELIER__SOURCES__STELLAOPSMIRROR__ variables of environ.
func LoadConfig(path string, environ []string) (Config, error) {
	var keep []string
	for _, kv := range environ {
		up := strings.ToUpper(kv)
		for _, p := range envPrefixes {
			if strings.HasPrefix(up, p) {
				keep = append(keep, kv)
				break
			}
		}
	}
	c := DefaultConfig()
	if err := config.Load(&c, path, keep); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ConfigKeys lists every key Config accepts, for --help.
func ConfigKeys() []string { return config.Keys(Config{}) }

// EffectiveSource returns SYNC__SOURCE, else the connector's BaseAddress.
func (c *Config) EffectiveSource() string {
	if c.Sync.Source != "" {
		return c.Sync.Source
	}
	return c.Concelier.Sources.StellaOpsMirror.BaseAddress
}

// EffectiveDomains returns SYNC__DOMAINS, else the connector's DomainID
// split at commas.
func (c *Config) EffectiveDomains() []string {
	if len(c.Sync.Domains) > 0 {
		return c.Sync.Domains
	}
	var out []string
	for d := range strings.SplitSeq(c.Concelier.Sources.StellaOpsMirror.DomainID, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// EffectiveTimeout returns SYNC__HTTPTIMEOUT, else the connector's.
func (c *Config) EffectiveTimeout() time.Duration {
	if c.Sync.HTTPTimeout > 0 {
		return c.Sync.HTTPTimeout
	}
	return c.Concelier.Sources.StellaOpsMirror.HTTPTimeout
}

// SignaturesEnabled reports whether JWS verification is on.
func (c *Config) SignaturesEnabled() bool {
	e := c.Concelier.Sources.StellaOpsMirror.Signature.Enabled
	return e == nil || *e
}

// PublicKeyPaths returns every configured PEM key path.
func (c *Config) PublicKeyPaths() []string {
	out := append([]string(nil), c.Sync.PublicKeys...)
	if p := c.Concelier.Sources.StellaOpsMirror.Signature.PublicKeyPath; p != "" {
		out = append(out, p)
	}
	return out
}

// Validate checks the settings; errors name the key.
func (c *Config) Validate() error {
	var errs []error
	if c.EffectiveSource() == "" {
		errs = append(errs, errors.New("SYNC__SOURCE (--source): required (or CONCELIER__SOURCES__STELLAOPSMIRROR__BASEADDRESS)"))
	}
	if c.Sync.Dest == "" {
		errs = append(errs, errors.New("SYNC__DEST (--dest): required"))
	}
	if c.Sync.Keep < MinKeep {
		errs = append(errs, fmt.Errorf("SYNC__KEEP (--keep): %d, must be at least %d (the previous export stays on disk so its export-pinned URLs keep answering after a switch)", c.Sync.Keep, MinKeep))
	}
	for _, d := range c.EffectiveDomains() {
		if !export.ValidDomainID(d) {
			errs = append(errs, fmt.Errorf("SYNC__DOMAINS / CONCELIER__SOURCES__STELLAOPSMIRROR__DOMAINID: %q is not a valid domain id", d))
		}
	}
	if c.Sync.JWKSURL != "" {
		if u, err := url.Parse(c.Sync.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("SYNC__JWKSURL (--jwks-url): %q is not an http(s) URL", c.Sync.JWKSURL))
		} else if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
			// The keys that verify every export: never over plain HTTP
			// across a network, where anyone on the path could swap them.
			errs = append(errs, fmt.Errorf("SYNC__JWKSURL (--jwks-url): %q: http:// only for a loopback host; use https://", c.Sync.JWKSURL))
		}
	}
	if c.Sync.HTTPTimeout < 0 || c.Concelier.Sources.StellaOpsMirror.HTTPTimeout < 0 {
		errs = append(errs, fmt.Errorf("SYNC__HTTPTIMEOUT (--http-timeout) / CONCELIER__SOURCES__STELLAOPSMIRROR__HTTPTIMEOUT: %s / %s, must not be negative",
			c.Sync.HTTPTimeout, c.Concelier.Sources.StellaOpsMirror.HTTPTimeout))
	}
	if c.SignaturesEnabled() && c.Sync.JWKSURL == "" && len(c.PublicKeyPaths()) == 0 {
		errs = append(errs, errors.New("no verification key: give --public-key (SYNC__PUBLICKEYS__{n}), --jwks-url (SYNC__JWKSURL) or CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__PUBLICKEYPATH"))
	}
	if c.EffectiveTimeout() <= 0 {
		errs = append(errs, errors.New("SYNC__HTTPTIMEOUT / CONCELIER__SOURCES__STELLAOPSMIRROR__HTTPTIMEOUT: must be positive"))
	}
	if c.Sync.S3.UploadGrace < 0 {
		errs = append(errs, fmt.Errorf("SYNC__S3__UPLOADGRACE (--s3-upload-grace): %s, must not be negative", c.Sync.S3.UploadGrace))
	}
	if c.Sync.BasicAuthFile != "" && c.Sync.BearerTokenFile != "" {
		errs = append(errs, errors.New("SYNC__BASICAUTHFILE and SYNC__BEARERTOKENFILE: give one, not both"))
	}
	return errors.Join(errs...)
}

// loopbackHost reports whether host is a loopback address or a localhost
// name (RFC 6761: localhost and *.localhost resolve to loopback here).
func loopbackHost(host string) bool {
	if loopname.Is(host) {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

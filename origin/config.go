package origin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/config"
	"github.com/stella-ops/stella-mirror/internal/peertoken"
	"github.com/stella-ops/stella-mirror/internal/serve"
)

// Config is everything the origin reads from the runbook's environment
// names and the optional YAML file: the CONCELIER and EXCITITOR sections
// (names unchanged from the runbook operators already hold) and the ORIGIN
// section (listeners and logging). Load it with LoadConfig, adjust it (flags
// override it), then Validate it; New validates again.
//
// DefaultConfig sets every default; the defaults are written beside each
// field below.
type Config struct {
	// Concelier configures the Concelier mirror endpoints
	// (/concelier/exports/…). Keys: CONCELIER__….
	Concelier ConcelierConfig
	// Excititor configures the Excititor mirror endpoints
	// (/excititor/mirror/…). Keys: EXCITITOR__….
	Excititor ExcititorConfig
	// Origin configures the process: listeners and logging. Keys: ORIGIN__….
	Origin ServerConfig

	// Authorizer decides whether a request for an export-backed path may
	// proceed. It is not read from the environment or the file. Default
	// (nil): the built-in access control configured by the AUTHORITY and
	// MIRROR sections (bearer tokens, bypass networks, anonymous fallback,
	// request budgets).
	Authorizer Authorizer `config:"-"`
	// AccessLog receives one JSON line per request (health and metrics
	// probes excepted). It is not read from the environment or the file.
	// Default (nil): no access log.
	AccessLog *accesslog.Logger `config:"-"`
	// LatestRecheck is how long a resolved active export id is reused
	// before latest is read again. It is not read from the environment or
	// the file. Default (0): 100 ms. Negative: on every request (tests
	// that flip latest and expect the very next request to see it).
	LatestRecheck time.Duration `config:"-"`
}

// ConcelierConfig is the CONCELIER section.
type ConcelierConfig struct {
	// Mirror configures what is served. Keys: CONCELIER__MIRROR__….
	Mirror MirrorConfig
	// Authority configures who may fetch. Keys: CONCELIER__AUTHORITY__….
	Authority AuthorityConfig
}

// ExcititorConfig is the EXCITITOR section. Its export root is
// EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT, not …__MIRROR__EXPORTROOT.
type ExcititorConfig struct {
	// Mirror configures what is served. Keys: EXCITITOR__MIRROR__….
	// Mirror.ExportRoot must stay empty (Validate rejects it).
	Mirror MirrorConfig
	// Authority configures who may fetch. Keys: EXCITITOR__AUTHORITY__….
	Authority AuthorityConfig
	// Artifacts names where Excititor's exports are stored.
	// Keys: EXCITITOR__ARTIFACTS__….
	Artifacts ArtifactsConfig
}

// ArtifactsConfig is EXCITITOR__ARTIFACTS.
type ArtifactsConfig struct {
	// FileSystem is the file-system artifact store.
	FileSystem FileSystemConfig
}

// FileSystemConfig is EXCITITOR__ARTIFACTS__FILESYSTEM.
type FileSystemConfig struct {
	// Root is Excititor's export root: the directory holding
	// <exportId>/excititor/… and the optional latest symlink.
	// Key: EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT. Default: unset (the
	// origin starts but stays not-ready and logs "Mirror export root is not
	// configured").
	Root string
}

// MirrorConfig is <PRODUCT>__MIRROR: whether the product is served, from
// where, and its per-domain settings.
type MirrorConfig struct {
	// Enabled serves the product's endpoints; when false they answer 404
	// and readiness ignores the product. Default: false.
	Enabled bool
	// ExportRoot is Concelier's export root: the directory holding
	// <exportId>/mirror/… and the optional latest symlink. Key:
	// CONCELIER__MIRROR__EXPORTROOT. Default: unset (the origin starts but
	// stays not-ready and logs "Mirror export root is not configured", or
	// "Mirror export root does not exist" with the path when set but missing).
	// Excititor ignores this field and Validate rejects it there: use
	// EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT.
	ExportRoot string
	// ActiveExportID pins the served export to <root>/<ActiveExportID>,
	// overriding the latest symlink and the newest-export scan. It must be
	// a valid export id. Default: unset (follow latest, else the newest
	// complete export).
	ActiveExportID string
	// RequireAuthentication requires an authenticated client (a valid
	// bearer token with the product's scope, or a peer in a bypass
	// network) for the index endpoints and for every domain that does not
	// override it. Default: false.
	RequireAuthentication bool
	// MaxIndexRequestsPerHour is the per-client, per-domain budget for
	// index requests (the Concelier index and each Excititor domain
	// index), and the download budget of every domain that sets none;
	// 0 means no budget. Exceeded: 429 with Retry-After. Default: 0.
	MaxIndexRequestsPerHour int
	// Domains lists the domains served. When empty, every domain of the
	// active export is served; when not, only the listed ones (others are
	// 404). Keys: …__MIRROR__DOMAINS__{n}__…. Default: empty.
	Domains []DomainConfig
}

// DomainConfig is one entry of <PRODUCT>__MIRROR__DOMAINS.
type DomainConfig struct {
	// ID is the domain id as it appears in the export (e.g. "primary");
	// required, valid by export.ValidDomainID, unique within the list.
	ID string
	// DisplayName is a human-readable name, informational. Default: empty.
	DisplayName string
	// RequireAuthentication overrides the product's RequireAuthentication
	// for this domain's paths. Default: unset (inherit).
	RequireAuthentication *bool
	// MaxDownloadRequestsPerHour is the per-client budget for this
	// domain's manifests, bundles, signatures and exports; 0 means the
	// domain inherits MaxIndexRequestsPerHour (counted separately from
	// index requests). Default: 0.
	MaxDownloadRequestsPerHour int
}

// AuthorityConfig is <PRODUCT>__AUTHORITY: who may fetch. Bearer tokens
// are validated against Stella Ops Authority when Enabled; bypass networks
// and the anonymous fallback apply whether or not it is.
type AuthorityConfig struct {
	// Enabled turns on bearer-token validation: JWTs signed by the
	// issuer's keys, for one of Audiences, carrying the product's scope
	// (concelier.mirror.read or excititor.mirror.read). When false, a
	// token on a path that requires authentication answers 401.
	// Default: false.
	Enabled bool
	// AllowAnonymousFallback serves requests that carry no token where
	// authentication is required, as anonymous clients (a migration aid
	// while downstream clients learn to send tokens). A token that is
	// sent is still validated. Default: false.
	AllowAnonymousFallback bool
	// BypassNetworks are CIDR prefixes (e.g. 10.0.0.0/8) whose clients need
	// no token, matched against the TCP peer address only (never
	// X-Forwarded-For). From these peers the X-Stella-Forwarded-User
	// header names the client for budgets and logs. Host bits must be
	// zero. Keys: …__BYPASSNETWORKS__{n}. Default: empty.
	BypassNetworks []netip.Prefix
	// Issuer is Authority's issuer URL: the required token "iss" and the
	// base of discovery ({Issuer}/.well-known/openid-configuration →
	// jwks_uri). Required when Enabled, unless JWKSURL or SigningKeyFile
	// is set (then "iss" is not checked when empty). Default: empty.
	Issuer string
	// Audiences are the accepted token audiences: a token's "aud" must
	// name one. Empty: "aud" is not checked (a warning is logged). Keys:
	// …__AUDIENCES__{n}. Default: empty.
	Audiences []string
	// RequireHTTPSMetadata requires https for Issuer, JWKSURL and a
	// discovered jwks_uri; false allows http:// for labs. Default: unset,
	// which means true.
	RequireHTTPSMetadata *bool
	// JWKSURL is where signing keys are fetched from, skipping
	// discovery. Default: empty (discovered from Issuer).
	JWKSURL string
	// SigningKeyFile is a PEM public key (SPKI "PUBLIC KEY", "RSA PUBLIC
	// KEY" or a certificate) that verifies every token offline (air-gapped
	// sites); nothing is fetched then. Read at start-up. Default: empty.
	SigningKeyFile string
}

// ServerConfig is the ORIGIN section.
type ServerConfig struct {
	// Listen is the public listener's host:port. Key: ORIGIN__LISTEN;
	// flag --listen. Default: 127.0.0.1:8080.
	Listen string
	// AdminListen is the admin listener (/metrics, /health/*); keep it on
	// loopback or a private network, never proxied. Key:
	// ORIGIN__ADMINLISTEN; flag --admin-listen. Default: 127.0.0.1:9090.
	AdminListen string
	// AdminPprof serves Go's runtime profiles (net/http/pprof) under
	// /debug/pprof/ on the admin listener. No authentication: turn it on
	// only while profiling, with the admin listener on loopback. Key:
	// ORIGIN__ADMINPPROF. Default: false.
	AdminPprof bool
	// LogFormat is "json" or "text". Key: ORIGIN__LOGFORMAT; flag
	// --log-format. Default: json.
	LogFormat string
	// LogLevel is "debug", "info", "warn" or "error". Key:
	// ORIGIN__LOGLEVEL. Default: info.
	LogLevel string
	// SyncMetricsTextfile is the Prometheus textfile the sync writes
	// (SYNC__METRICSTEXTFILE); when set, the admin listener's /status page
	// shows the last sync run from it. Key: ORIGIN__SYNCMETRICSTEXTFILE.
	// Default: none.
	SyncMetricsTextfile string
	// SyncMetricsExport also serves the textfile's stella_mirror_sync_*
	// metric families on the admin listener's /metrics, read at each scrape
	// (at most 1 MiB; other families are ignored, timestamps dropped), with
	// stella_mirror_origin_sync_textfile_up (1 read and parsed, else 0 and
	// no sync family). For clusters, where no node_exporter reads the file;
	// leave it off where node_exporter's textfile collector exports it (the
	// series would be scraped twice). Requires SyncMetricsTextfile. Key:
	// ORIGIN__SYNCMETRICSEXPORT. Default: false.
	SyncMetricsExport bool
	// PeerTokenFile holds the tokens a gateway must present (header
	// X-Stella-Peer-Token) to count as a bypass peer: one per line, at
	// least 32 bytes each, blank lines and # comments ignored; several
	// lines let a rotation accept the old and the new token at once. When
	// set, a peer in a bypass network (<PRODUCT>__AUTHORITY__BYPASSNETWORKS,
	// both products) without the header is treated like any other client
	// (bearer-token rules; its X-Stella-Forwarded-User is ignored), and one
	// with a wrong token is refused with 401. A token from outside the
	// bypass networks grants nothing: network AND token. The file is read
	// at start (an invalid file is a configuration error naming the file
	// and line) and re-read when it changes or on SIGHUP (an invalid new
	// version is logged and the tokens in service stay). Key:
	// ORIGIN__PEERTOKENFILE. Default: none (bypass networks alone decide).
	PeerTokenFile string
	// ShutdownDelay is how long the origin keeps accepting and serving
	// after SIGTERM/SIGINT before its graceful shutdown (15 s for
	// in-flight requests) begins: a drain during which /health/ready
	// answers 503 and HTTP/1.1 responses carry Connection: close, so that
	// load balancers and Kubernetes stop routing to it before its ports
	// close; a second signal ends it early. At most 5m. A supervisor's
	// kill deadline must exceed ShutdownDelay + 15s. Key:
	// ORIGIN__SHUTDOWNDELAY. Default: 0 (none).
	ShutdownDelay time.Duration
}

// Configuration keys the origin names in messages.
const (
	// KeyPeerTokenFile is the peer token file's key.
	KeyPeerTokenFile = "ORIGIN__PEERTOKENFILE"
	// KeyConcelierRoot is Concelier's export root key.
	KeyConcelierRoot = "CONCELIER__MIRROR__EXPORTROOT"
	// KeyExcititorRoot is Excititor's export root key.
	KeyExcititorRoot = "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT"
	// keyExcititorWrongRoot is the Concelier-style key Excititor rejects.
	keyExcititorWrongRoot = "EXCITITOR__MIRROR__EXPORTROOT"
)

// DefaultConfig returns the configuration with every default set: both
// products disabled with no export root, listeners on loopback (public
// 127.0.0.1:8080, admin 127.0.0.1:9090), JSON logs at info.
func DefaultConfig() Config {
	return Config{
		Origin: ServerConfig{
			Listen:      "127.0.0.1:8080",
			AdminListen: "127.0.0.1:9090",
			LogFormat:   "json",
			LogLevel:    "info",
		},
	}
}

// LoadConfig returns DefaultConfig overlaid with the YAML file at path
// (skipped when path is "") and then environ (os.Environ() format), the
// environment winning. It does not validate; call Validate after applying
// flags.
func LoadConfig(path string, environ []string) (Config, error) {
	cfg := DefaultConfig()
	if err := config.Load(&cfg, path, environ); err != nil {
		return Config{}, fmt.Errorf("loading origin configuration: %w", err)
	}
	return cfg, nil
}

// ConfigKeys lists every key the origin accepts, upper-cased, with {n} for
// list indexes (for --help and documentation).
func ConfigKeys() []string {
	var keys []string
	for _, k := range config.Keys(Config{}) {
		if k != keyExcititorWrongRoot {
			keys = append(keys, k)
		}
	}
	return keys
}

// Validate checks the configuration without touching the file system and
// reports every problem at once, each naming its key. An unset or missing
// export root is not an error (the origin starts and stays not-ready); see
// Warnings.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if !c.Concelier.Mirror.Enabled && !c.Excititor.Mirror.Enabled {
		errs = append(errs, errors.New("nothing to serve: set CONCELIER__MIRROR__ENABLED=true and/or EXCITITOR__MIRROR__ENABLED=true"))
	}
	if c.Excititor.Mirror.ExportRoot != "" {
		add(keyExcititorWrongRoot, "not an Excititor setting; set %s instead", KeyExcititorRoot)
	}
	c.Concelier.Mirror.validate("CONCELIER__MIRROR", add)
	c.Excititor.Mirror.validate("EXCITITOR__MIRROR", add)
	c.Concelier.Authority.validate("CONCELIER__AUTHORITY", add)
	c.Excititor.Authority.validate("EXCITITOR__AUTHORITY", add)
	c.Origin.validate(add)
	return errors.Join(errs...)
}

// CheckFiles reads the files the configuration names that New would
// refuse to start with (ORIGIN__PEERTOKENFILE), for --check-config; each
// error names the key, the file and, for a bad token, the line (never the
// token).
func (c *Config) CheckFiles() error {
	if c.Origin.PeerTokenFile == "" {
		return nil
	}
	if _, err := peertoken.ReadFile(c.Origin.PeerTokenFile); err != nil {
		return fmt.Errorf("%s: %w", KeyPeerTokenFile, err)
	}
	return nil
}

// MissingRoots returns one message per enabled product whose export root
// is set but is not an existing directory, naming the key and the path
// (the origin starts with it, not-ready until the directory appears).
func (c *Config) MissingRoots() []string {
	var out []string
	for _, r := range []struct {
		on        bool
		key, root string
	}{{c.Concelier.Mirror.Enabled, KeyConcelierRoot, c.Concelier.Mirror.ExportRoot},
		{c.Excititor.Mirror.Enabled, KeyExcititorRoot, c.Excititor.Artifacts.FileSystem.Root}} {
		if !r.on || r.root == "" {
			continue
		}
		if fi, err := os.Stat(r.root); err != nil {
			out = append(out, fmt.Sprintf("%s: export root %s: %v", r.key, r.root, errors.Unwrap(err)))
		} else if !fi.IsDir() {
			out = append(out, fmt.Sprintf("%s: export root %s is not a directory", r.key, r.root))
		}
	}
	return out
}

// Warnings lists settings that are valid but leave the origin not-ready or
// less protected than an operator may expect. It does not touch the file
// system.
func (c *Config) Warnings() []string {
	var w []string
	if c.Concelier.Mirror.Enabled && c.Concelier.Mirror.ExportRoot == "" {
		w = append(w, KeyConcelierRoot+": not set; the Concelier mirror stays not-ready")
	}
	if c.Excititor.Mirror.Enabled && c.Excititor.Artifacts.FileSystem.Root == "" {
		w = append(w, KeyExcititorRoot+": not set; the Excititor mirror stays not-ready")
	}
	if c.Origin.PeerTokenFile != "" && c.Authorizer == nil &&
		!(c.Concelier.Mirror.Enabled && len(c.Concelier.Authority.BypassNetworks) > 0) &&
		!(c.Excititor.Mirror.Enabled && len(c.Excititor.Authority.BypassNetworks) > 0) {
		w = append(w, "ORIGIN__PEERTOKENFILE: set, but no enabled product has bypass networks; the peer token is never consulted")
	}
	for _, p := range []struct {
		name string
		m    *MirrorConfig
		a    *AuthorityConfig
	}{{"CONCELIER", &c.Concelier.Mirror, &c.Concelier.Authority}, {"EXCITITOR", &c.Excititor.Mirror, &c.Excititor.Authority}} {
		if !p.m.Enabled || c.Authorizer != nil {
			continue
		}
		auth := p.name + "__AUTHORITY"
		if p.m.requiresAuth() && !p.a.Enabled && len(p.a.BypassNetworks) == 0 && !p.a.AllowAnonymousFallback {
			w = append(w, p.name+"__MIRROR__REQUIREAUTHENTICATION: no client can authenticate ("+auth+"__ENABLED is false and no bypass networks are set); paths that require authentication answer 401")
		}
		if p.m.requiresAuth() && p.a.AllowAnonymousFallback {
			w = append(w, auth+"__ALLOWANONYMOUSFALLBACK: requests without a token are served where authentication is required")
		}
		if p.a.Enabled && len(p.a.Audiences) == 0 {
			w = append(w, auth+"__AUDIENCES: empty; tokens for any audience are accepted")
		}
		if p.a.Enabled && p.a.Issuer == "" {
			w = append(w, auth+"__ISSUER: empty; the token issuer (iss) is not checked")
		}
	}
	return w
}

type addFunc func(key, format string, args ...any)

func (m *MirrorConfig) validate(prefix string, add addFunc) {
	if m.ActiveExportID != "" && !export.ValidExportID(m.ActiveExportID) {
		add(prefix+"__ACTIVEEXPORTID", "%q is not a valid export id (%s)", m.ActiveExportID, export.ExportIDRule)
	}
	if m.MaxIndexRequestsPerHour < 0 {
		add(prefix+"__MAXINDEXREQUESTSPERHOUR", "%d is negative (0 means no budget)", m.MaxIndexRequestsPerHour)
	}
	seen := make(map[string]int, len(m.Domains))
	for i, d := range m.Domains {
		key := fmt.Sprintf("%s__DOMAINS__%d", prefix, i)
		switch {
		case d.ID == "":
			add(key+"__ID", "empty")
		case !export.ValidDomainID(d.ID):
			add(key+"__ID", "%q is not a valid domain id (1-63 of [a-z0-9-], starting with a letter or digit)", d.ID)
		default:
			if j, dup := seen[d.ID]; dup {
				add(key+"__ID", "%q duplicates %s__DOMAINS__%d__ID", d.ID, prefix, j)
			} else {
				seen[d.ID] = i
			}
		}
		if d.MaxDownloadRequestsPerHour < 0 {
			add(key+"__MAXDOWNLOADREQUESTSPERHOUR", "%d is negative (0 means no budget)", d.MaxDownloadRequestsPerHour)
		}
	}
}

// requiresAuth reports whether any path of the product requires
// authentication.
func (m *MirrorConfig) requiresAuth() bool {
	if m.RequireAuthentication {
		return true
	}
	for _, d := range m.Domains {
		if d.RequireAuthentication != nil && *d.RequireAuthentication {
			return true
		}
	}
	return false
}

// hasBudgets reports whether any request budget is set.
func (m *MirrorConfig) hasBudgets() bool {
	if m.MaxIndexRequestsPerHour > 0 {
		return true
	}
	for _, d := range m.Domains {
		if d.MaxDownloadRequestsPerHour > 0 {
			return true
		}
	}
	return false
}

func (a *AuthorityConfig) validate(prefix string, add addFunc) {
	for i, p := range a.BypassNetworks {
		key := fmt.Sprintf("%s__BYPASSNETWORKS__%d", prefix, i)
		switch {
		case !p.IsValid():
			add(key, "not a valid CIDR prefix")
		case p.Masked() != p:
			add(key, "%s has host bits set (did you mean %s?)", p, p.Masked())
		}
	}
	for i, aud := range a.Audiences {
		if strings.TrimSpace(aud) == "" {
			add(fmt.Sprintf("%s__AUDIENCES__%d", prefix, i), "empty")
		}
	}
	httpsOnly := a.RequireHTTPSMetadata == nil || *a.RequireHTTPSMetadata
	checkURL := func(key, raw string) {
		if raw == "" {
			return
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			add(key, "%q is not an absolute http(s) URL", raw)
		case httpsOnly && u.Scheme != "https":
			add(key, "%q is not https (set %s__REQUIREHTTPSMETADATA=false to allow http)", raw, prefix)
		}
	}
	checkURL(prefix+"__ISSUER", a.Issuer)
	checkURL(prefix+"__JWKSURL", a.JWKSURL)
	if a.Enabled && a.Issuer == "" && a.JWKSURL == "" && a.SigningKeyFile == "" {
		add(prefix+"__ISSUER", "required when %s__ENABLED=true (or set %s__JWKSURL or %s__SIGNINGKEYFILE)", prefix, prefix, prefix)
	}
}

func (s *ServerConfig) validate(add addFunc) {
	checkAddr := func(key, addr string) {
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			add(key, "%q is not host:port (e.g. 127.0.0.1:8080 or :8080)", addr)
		}
	}
	checkAddr("ORIGIN__LISTEN", s.Listen)
	checkAddr("ORIGIN__ADMINLISTEN", s.AdminListen)
	if s.Listen == s.AdminListen && s.Listen != "" && !strings.HasSuffix(s.Listen, ":0") {
		add("ORIGIN__ADMINLISTEN", "%q is the public listener's address; the admin listener must be separate", s.AdminListen)
	}
	if s.SyncMetricsExport && s.SyncMetricsTextfile == "" {
		add("ORIGIN__SYNCMETRICSEXPORT", "true requires ORIGIN__SYNCMETRICSTEXTFILE (the sync's textfile to serve)")
	}
	if d := s.ShutdownDelay; d < 0 || d > serve.MaxShutdownDelay {
		add("ORIGIN__SHUTDOWNDELAY", "%s: want 0 (no drain) to %s", d, serve.MaxShutdownDelay)
	}
	switch s.LogFormat {
	case "json", "text":
	default:
		add("ORIGIN__LOGFORMAT", "%q: want json or text", s.LogFormat)
	}
	switch strings.ToLower(s.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		add("ORIGIN__LOGLEVEL", "%q: want debug, info, warn or error", s.LogLevel)
	}
}

package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/gateway/cache"
	"github.com/stella-ops/stella-mirror/internal/config"
	"github.com/stella-ops/stella-mirror/internal/serve"
)

// Config is the gateway's configuration: the GATEWAY section of the YAML
// file (--config) and of the environment (GATEWAY__…, environment winning).
// Load it with LoadConfig, apply flags, then Validate; New validates again.
type Config struct {
	// Gateway holds every setting. Keys: GATEWAY__….
	Gateway Settings
}

// Settings is the GATEWAY section.
type Settings struct {
	// Listen is the HTTPS listener. Key: GATEWAY__LISTEN; flag --listen.
	// Default: :443.
	Listen string
	// HTTPListen is the plain-HTTP listener that redirects to HTTPS and
	// answers ACME HTTP-01 challenges; empty disables it. Key:
	// GATEWAY__HTTPLISTEN; flag --http-listen. Default: :80.
	HTTPListen string
	// AdminListen serves /health/live, /health/ready and /metrics; keep it
	// on loopback or a private network. Key: GATEWAY__ADMINLISTEN; flag
	// --admin-listen. Default: 127.0.0.1:9091.
	AdminListen string
	// AdminPprof serves Go's runtime profiles (net/http/pprof) under
	// /debug/pprof/ on the admin listener, for profiling a production
	// gateway: behind the admin bearer token when AdminTokenFile is set,
	// else without authentication. Turn it on only while profiling, with
	// the admin listener on loopback. Key: GATEWAY__ADMINPPROF. Default:
	// false.
	AdminPprof bool
	// Origin is the origin's base URL. Key: GATEWAY__ORIGIN. Default:
	// http://127.0.0.1:8080.
	Origin string
	// OriginCAFile is a PEM bundle trusted for an https Origin. Key:
	// GATEWAY__ORIGINCAFILE. Default: the system roots.
	OriginCAFile string
	// OriginPeerTokenFile holds the peer token the gateway sends to the
	// origin in X-Stella-Peer-Token on every request (fills, revalidations,
	// readiness probes), so that the origin's ORIGIN__PEERTOKENFILE can
	// require it of bypass-network peers: the first line that is a token
	// (blank lines and # comments skipped; at least 32 bytes of visible
	// ASCII). Read at start (an invalid file stops start-up, naming the
	// file and line, never the token); re-read when it changes or on
	// SIGHUP, an invalid new version keeping the token in service. A
	// client's X-Stella-Peer-Token is always removed, set or not. Key:
	// GATEWAY__ORIGINPEERTOKENFILE. Default: none.
	OriginPeerTokenFile string
	// TrustedProxies are CIDR prefixes of peers (e.g. a CDN) whose
	// X-Forwarded-* headers are kept and whose X-Forwarded-For names the
	// client for budgets. Keys: GATEWAY__TRUSTEDPROXIES__{n}. Default: none.
	TrustedProxies []netip.Prefix
	// HSTSMaxAge is the Strict-Transport-Security max-age; 0 sends none.
	// Key: GATEWAY__HSTSMAXAGE. Default: 8760h (one year).
	HSTSMaxAge time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (slow-loris).
	// Key: GATEWAY__READHEADERTIMEOUT. Default: 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Key:
	// GATEWAY__IDLETIMEOUT. Default: 120s.
	IdleTimeout time.Duration
	// ShutdownTimeout is how long in-flight downloads may finish after
	// SIGTERM/SIGINT. Key: GATEWAY__SHUTDOWNTIMEOUT. Default: 30s.
	ShutdownTimeout time.Duration
	// ShutdownDelay is how long the gateway keeps accepting and serving
	// after SIGTERM/SIGINT before the graceful shutdown begins (a drain:
	// /health/ready answers 503, HTTP/1.1 responses carry Connection:
	// close), so that load balancers and Kubernetes stop routing to it
	// before its ports close; a second signal ends it early. At most 5m.
	// A supervisor's kill deadline (terminationGracePeriodSeconds,
	// stop_grace_period, TimeoutStopSec) must exceed ShutdownDelay +
	// ShutdownTimeout. Key: GATEWAY__SHUTDOWNDELAY. Default: 0 (none).
	ShutdownDelay time.Duration
	// UpstreamDialTimeout bounds connecting to the origin. Key:
	// GATEWAY__UPSTREAMDIALTIMEOUT. Default: 5s.
	UpstreamDialTimeout time.Duration
	// UpstreamHeaderTimeout bounds waiting for the origin's response
	// headers. Key: GATEWAY__UPSTREAMHEADERTIMEOUT. Default: 30s.
	UpstreamHeaderTimeout time.Duration
	// UpstreamIdleTimeout bounds each wait for more of the origin's
	// response body. Key: GATEWAY__UPSTREAMIDLETIMEOUT. Default: 60s.
	UpstreamIdleTimeout time.Duration
	// CredentialCacheTTL is how long a verified credential is remembered
	// (bcrypt runs once per TTL per credential); 0 uses the default,
	// negative disables. Key: GATEWAY__CREDENTIALCACHETTL. Default: 5m.
	CredentialCacheTTL time.Duration
	// AllowLegacyHashes accepts apr1, {SHA} and {SSHA} htpasswd hashes
	// with a warning; without it they are load errors naming the file,
	// line and user (crypt(3) and plain text are refused either way).
	// Key: GATEWAY__ALLOWLEGACYHASHES. Default: false.
	AllowLegacyHashes bool
	// AuthThrottle bounds what wrong passwords may cost. Keys:
	// GATEWAY__AUTHTHROTTLE__….
	AuthThrottle AuthThrottleSettings
	// LogFormat is json or text (operational log; the access log is always
	// JSON on stdout). Key: GATEWAY__LOGFORMAT. Default: json.
	LogFormat string
	// LogLevel is debug, info, warn or error. Key: GATEWAY__LOGLEVEL.
	// Default: info.
	LogLevel string
	// ACME configures certificates obtained over ACME for sites with
	// ACME: true. Keys: GATEWAY__ACME__….
	ACME ACMESettings
	// Authority configures the OAuth2 client-credentials token sent to the
	// origin. Keys: GATEWAY__AUTHORITY__….
	Authority AuthoritySettings
	// Cache is the shared HTTP cache between the policy and the origin
	// (docs/cache.md). It is on when Cache.Dir is set and off (every
	// request goes to the origin) when it is empty: the cache needs a
	// directory of its own, which only the operator can name. Keys:
	// GATEWAY__CACHE__DIR, __MAXSIZE, __MAXOBJECTSIZE,
	// __MEMORYMAXOBJECTSIZE, __MEMORYMAXSIZE, __STALEIFERRORGRACE,
	// __HONOURCLIENTNOCACHE, __UPSTREAMTIMEOUT. Default: off.
	Cache cache.Config
	// CDNMaxAge is the max-age of the CDN-Cache-Control field (RFC 9213)
	// the cache adds to unversioned Concelier manifests, bundles and
	// signatures, with Cache-Tag and Surrogate-Key naming the export id
	// (docs/operations.md, "CDN integration"). Keep it no longer than the
	// index's max-age (60s) so that a CDN drops them no later than the
	// index that names them. Between 1s and 1h. Key: GATEWAY__CDNMAXAGE.
	// Default: 60s.
	CDNMaxAge time.Duration
	// OriginStatusURL is the origin's admin /status.json (e.g.
	// http://127.0.0.1:9090/status.json); when set, the gateway's /status
	// page shows the active exports and the last sync run from it. Key:
	// GATEWAY__ORIGINSTATUSURL. Default: none.
	OriginStatusURL string
	// AdminTokenFile holds the bearer token (at least 16 characters,
	// trailing newline trimmed; re-read on SIGHUP) that the admin
	// listener's POST /admin/cache/purge requires. Without it the purge
	// endpoint is not served (404). Key: GATEWAY__ADMINTOKENFILE.
	// Default: none.
	AdminTokenFile string
	// Server configures the HTTPS, HTTP and admin servers' engine and
	// limits. Keys: GATEWAY__SERVER__….
	Server ServerSettings
	// Sites lists the published hostnames. Keys: GATEWAY__SITES__{n}__….
	Sites []SiteConfig
}

// ServerSettings is GATEWAY__SERVER: the HTTP engine and the limits that
// keep hostile clients from exhausting the gateway.
type ServerSettings struct {
	// Engine is fast (HTTP/1.1 on fasthttp with the native hit paths,
	// HTTP/2 on net/http's server) or std (net/http's server alone). Key:
	// GATEWAY__SERVER__ENGINE. Default: fast.
	Engine string
	// WriteProgressTimeout: a connection, or an HTTP/2 stream, whose
	// client accepts no byte of the response for this long is closed
	// (reset); an HTTP/1.1 connection must take at least 64 KiB
	// (connguard.MinProgress) per period. Slow downloads that progress
	// are not affected. Key:
	// GATEWAY__SERVER__WRITEPROGRESSTIMEOUT. Default: 30s.
	WriteProgressTimeout time.Duration
	// MaxConns caps the client connections open at once (all listeners),
	// an HTTP/2 stream in flight counting as one; more are closed as soon
	// as accepted (a stream: 503). 0: derived from the open-file
	// limit (half of RLIMIT_NOFILE minus 64); -1: no cap. Key:
	// GATEWAY__SERVER__MAXCONNS. Default: 0.
	MaxConns int
	// MaxConnsPerIP caps the connections (and HTTP/2 streams in flight)
	// from one client address, at most half of the total cap (a larger
	// value is lowered to that). -1: no cap. Key:
	// GATEWAY__SERVER__MAXCONNSPERIP. Default: 256.
	MaxConnsPerIP int
	// MaxConcurrentStreams caps the concurrent streams of one HTTP/2
	// connection. Key: GATEWAY__SERVER__MAXCONCURRENTSTREAMS. Default: 128.
	MaxConcurrentStreams int
}

// CacheEnabled reports whether the cache is configured (Cache.Dir set).
func (s *Settings) CacheEnabled() bool { return strings.TrimSpace(s.Cache.Dir) != "" }

// AuthThrottleSettings is GATEWAY__AUTHTHROTTLE: failed Basic credentials
// are counted per client address (the address budgets use, an IPv6
// address by its /64), and bcrypt runs in a bounded number of checks.
type AuthThrottleSettings struct {
	// MaxFailures is how many wrong credentials a client address may send
	// in Window before it is answered 429 (with Retry-After) without any
	// password check; the allowance refills evenly over Window (one more
	// failure every Window/MaxFailures). 0 disables the throttle. Key:
	// GATEWAY__AUTHTHROTTLE__MAXFAILURES. Default: 10.
	MaxFailures int
	// Window is the period MaxFailures refers to. Key:
	// GATEWAY__AUTHTHROTTLE__WINDOW. Default: 1m.
	Window time.Duration
	// MaxConcurrentChecks bounds the bcrypt comparisons running at once,
	// over all sites; more wait. 0 means GOMAXPROCS. Key:
	// GATEWAY__AUTHTHROTTLE__MAXCONCURRENTCHECKS. Default: 0 (GOMAXPROCS).
	MaxConcurrentChecks int
}

// ACMESettings is GATEWAY__ACME.
type ACMESettings struct {
	// DirectoryURL is the ACME CA's directory. Key:
	// GATEWAY__ACME__DIRECTORYURL. Default:
	// https://acme-v02.api.letsencrypt.org/directory.
	DirectoryURL string
	// Email is the account contact. Key: GATEWAY__ACME__EMAIL. Default: none.
	Email string
	// Storage is the folder for the account, keys and certificates. Key:
	// GATEWAY__ACME__STORAGE. Default: /var/lib/stella-mirror/acme.
	Storage string
	// CARootFile is a PEM bundle trusted for the directory's HTTPS (a
	// private ACME CA). Key: GATEWAY__ACME__CAROOTFILE. Default: system roots.
	CARootFile string
	// HTTPPort is the port the CA uses for HTTP-01 (the public port that
	// reaches HTTPListen). Key: GATEWAY__ACME__HTTPPORT. Default: 80.
	HTTPPort int
}

// AuthoritySettings is GATEWAY__AUTHORITY: how the gateway identifies
// itself to the origin. Disabled (the default), the origin trusts the
// gateway's network (its BYPASSNETWORKS).
type AuthoritySettings struct {
	// Enabled sends an OAuth2 client-credentials bearer token. Key:
	// GATEWAY__AUTHORITY__ENABLED. Default: false.
	Enabled bool
	// TokenURL is Authority's token endpoint. Key:
	// GATEWAY__AUTHORITY__TOKENURL. Required when enabled.
	TokenURL string
	// ClientID is the gateway's client id. Key: GATEWAY__AUTHORITY__CLIENTID.
	// Required when enabled.
	ClientID string
	// ClientSecretFile holds the client secret (read at start, trailing
	// newline trimmed). Key: GATEWAY__AUTHORITY__CLIENTSECRETFILE. Default:
	// /run/secrets/concelier-authority-client.
	ClientSecretFile string
	// Scopes requested. Keys: GATEWAY__AUTHORITY__SCOPES__{n}. Default: none.
	Scopes []string
	// Audience, if set, is sent as the "audience" parameter. Key:
	// GATEWAY__AUTHORITY__AUDIENCE. Default: none.
	Audience string
	// CAFile is a PEM bundle trusted for TokenURL. Key:
	// GATEWAY__AUTHORITY__CAFILE. Default: system roots.
	CAFile string
}

// SiteConfig is one entry of GATEWAY__SITES.
type SiteConfig struct {
	// Name labels the site in logs and metrics and is the default realm.
	// Key: …__NAME. Default: the first host.
	Name string
	// Hosts are the hostnames (SNI and Host) of the site. Keys:
	// …__HOSTS__{n}. Required.
	Hosts []string
	// Domains are the mirror domains the site reaches (besides the shared
	// index). Keys: …__DOMAINS__{n}. Required.
	Domains []string
	// CertFile and KeyFile are the site's PEM certificate chain and key,
	// reloaded when they change or on SIGHUP. Keys: …__CERTFILE,
	// …__KEYFILE. Required unless ACME.
	CertFile, KeyFile string
	// ACME obtains the certificate over ACME (GATEWAY__ACME). Key:
	// …__ACME. Default: false.
	ACME bool
	// HtpasswdFile is the site's htpasswd file (htpasswd -B), reloaded
	// when it changes or on SIGHUP. Key: …__HTPASSWDFILE. Required unless
	// Anonymous.
	HtpasswdFile string
	// Anonymous serves the site without Basic Auth. Key: …__ANONYMOUS.
	// Default: false.
	Anonymous bool
	// Realm is the Basic Auth realm. Key: …__REALM. Default: Name.
	Realm string
	// Origin overrides GATEWAY__ORIGIN for this site. Key: …__ORIGIN.
	// Default: GATEWAY__ORIGIN.
	Origin string
	// MaxIndexRequestsPerHour is the per-client budget for index requests;
	// 0 means none. Key: …__MAXINDEXREQUESTSPERHOUR. Default: 0.
	MaxIndexRequestsPerHour int
	// MaxDownloadRequestsPerHour is the per-client budget for downloads
	// (manifests, bundles, signatures, exports); 0 means none. Key:
	// …__MAXDOWNLOADREQUESTSPERHOUR. Default: 0.
	MaxDownloadRequestsPerHour int
	// HonourClientCacheControl makes the cache answer this site's
	// requests by their Cache-Control (RFC 9111 section 5.2.1: max-age,
	// min-fresh, max-stale, no-cache, no-store, only-if-cached; Pragma:
	// no-cache): a client may then make the gateway revalidate with the
	// origin. GATEWAY__CACHE__HONOURCLIENTNOCACHE does it for every site.
	// Key: …__HONOURCLIENTCACHECONTROL. Default: false.
	HonourClientCacheControl bool
}

// DefaultConfig returns the configuration with every default set and no sites.
func DefaultConfig() Config {
	return Config{Gateway: Settings{
		Listen:                ":443",
		HTTPListen:            ":80",
		AdminListen:           "127.0.0.1:9091",
		Origin:                "http://127.0.0.1:8080",
		HSTSMaxAge:            365 * 24 * time.Hour,
		ReadHeaderTimeout:     10 * time.Second,
		IdleTimeout:           120 * time.Second,
		ShutdownTimeout:       30 * time.Second,
		UpstreamDialTimeout:   5 * time.Second,
		UpstreamHeaderTimeout: 30 * time.Second,
		UpstreamIdleTimeout:   60 * time.Second,
		CDNMaxAge:             cache.DefaultCDNMaxAge,
		LogFormat:             "json",
		LogLevel:              "info",
		AuthThrottle:          AuthThrottleSettings{MaxFailures: 10, Window: time.Minute},
		ACME: ACMESettings{
			DirectoryURL: "https://acme-v02.api.letsencrypt.org/directory",
			Storage:      "/var/lib/stella-mirror/acme",
			HTTPPort:     80,
		},
		Authority: AuthoritySettings{ClientSecretFile: "/run/secrets/concelier-authority-client"},
		Server: ServerSettings{
			Engine:               serve.EngineFast,
			WriteProgressTimeout: serve.DefaultWriteProgressTimeout,
			MaxConnsPerIP:        serve.DefaultMaxConnsPerIP,
			MaxConcurrentStreams: serve.DefaultMaxConcurrentStreams,
		},
	}}
}

// LoadConfig returns DefaultConfig overlaid with the YAML file at path
// (skipped when "") and environ, the environment winning. It does not
// validate.
func LoadConfig(path string, environ []string) (Config, error) {
	cfg := DefaultConfig()
	if err := config.Load(&cfg, path, environ); err != nil {
		return Config{}, fmt.Errorf("loading gateway configuration: %w", err)
	}
	return cfg, nil
}

// ConfigKeys lists every key the gateway accepts ({n} for list indexes).
func ConfigKeys() []string { return config.Keys(Config{}) }

// siteName returns the site's label.
func (s *SiteConfig) siteName() string {
	if s.Name != "" {
		return s.Name
	}
	if len(s.Hosts) > 0 {
		return strings.ToLower(s.Hosts[0])
	}
	return ""
}

// Validate checks the configuration without touching the file system and
// reports every problem, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	g := &c.Gateway
	checkAddr := func(key, addr string, optional bool) {
		if addr == "" && optional {
			return
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			add(key, "%q is not host:port (e.g. 127.0.0.1:8443 or :443)", addr)
		}
	}
	checkAddr("GATEWAY__LISTEN", g.Listen, false)
	checkAddr("GATEWAY__HTTPLISTEN", g.HTTPListen, true)
	checkAddr("GATEWAY__ADMINLISTEN", g.AdminListen, false)
	checkURL := func(key, raw string) {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.RawQuery != "" {
			add(key, "%q is not an absolute http(s) URL without a query", raw)
		}
	}
	checkURL("GATEWAY__ORIGIN", g.Origin)
	if g.OriginStatusURL != "" {
		checkURL("GATEWAY__ORIGINSTATUSURL", g.OriginStatusURL)
	}
	for i, p := range g.TrustedProxies {
		key := fmt.Sprintf("GATEWAY__TRUSTEDPROXIES__%d", i)
		switch {
		case !p.IsValid():
			add(key, "not a valid CIDR prefix")
		case p.Masked() != p:
			add(key, "%s has host bits set (did you mean %s?)", p, p.Masked())
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"GATEWAY__HSTSMAXAGE", g.HSTSMaxAge},
		{"GATEWAY__READHEADERTIMEOUT", g.ReadHeaderTimeout}, {"GATEWAY__IDLETIMEOUT", g.IdleTimeout},
		{"GATEWAY__SHUTDOWNTIMEOUT", g.ShutdownTimeout}, {"GATEWAY__UPSTREAMDIALTIMEOUT", g.UpstreamDialTimeout},
		{"GATEWAY__UPSTREAMHEADERTIMEOUT", g.UpstreamHeaderTimeout}, {"GATEWAY__UPSTREAMIDLETIMEOUT", g.UpstreamIdleTimeout},
	} {
		if d.v < 0 || (d.v == 0 && d.key != "GATEWAY__HSTSMAXAGE") {
			add(d.key, "%s must be positive", d.v)
		}
	}
	if d := g.ShutdownDelay; d < 0 || d > serve.MaxShutdownDelay {
		add("GATEWAY__SHUTDOWNDELAY", "%s: want 0 (no drain) to %s", d, serve.MaxShutdownDelay)
	}
	if g.AuthThrottle.MaxFailures < 0 {
		add("GATEWAY__AUTHTHROTTLE__MAXFAILURES", "%d is negative (0 disables the throttle)", g.AuthThrottle.MaxFailures)
	}
	if g.AuthThrottle.MaxFailures > 0 && g.AuthThrottle.Window <= 0 {
		add("GATEWAY__AUTHTHROTTLE__WINDOW", "%s must be positive", g.AuthThrottle.Window)
	}
	if g.AuthThrottle.MaxConcurrentChecks < 0 {
		add("GATEWAY__AUTHTHROTTLE__MAXCONCURRENTCHECKS", "%d is negative (0 means GOMAXPROCS)", g.AuthThrottle.MaxConcurrentChecks)
	}
	switch g.Server.Engine {
	case serve.EngineFast, serve.EngineStd:
	default:
		add("GATEWAY__SERVER__ENGINE", "%q: want %s or %s", g.Server.Engine, serve.EngineFast, serve.EngineStd)
	}
	if g.Server.WriteProgressTimeout <= 0 {
		add("GATEWAY__SERVER__WRITEPROGRESSTIMEOUT", "%s must be positive", g.Server.WriteProgressTimeout)
	}
	if g.Server.MaxConns < -1 {
		add("GATEWAY__SERVER__MAXCONNS", "%d: want a positive cap, 0 (derived from the open-file limit) or -1 (no cap)", g.Server.MaxConns)
	}
	if g.Server.MaxConnsPerIP < -1 || g.Server.MaxConnsPerIP == 0 {
		add("GATEWAY__SERVER__MAXCONNSPERIP", "%d: want a positive cap or -1 (no cap)", g.Server.MaxConnsPerIP)
	}
	if n := g.Server.MaxConcurrentStreams; n <= 0 || n > 1<<20 {
		add("GATEWAY__SERVER__MAXCONCURRENTSTREAMS", "%d: want 1 to 1048576", n)
	}
	switch g.LogFormat {
	case "json", "text":
	default:
		add("GATEWAY__LOGFORMAT", "%q: want json or text", g.LogFormat)
	}
	switch strings.ToLower(g.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		add("GATEWAY__LOGLEVEL", "%q: want debug, info, warn or error", g.LogLevel)
	}
	if len(g.Sites) == 0 {
		add("GATEWAY__SITES", "no sites configured (set GATEWAY__SITES__0__HOSTS__0, …__DOMAINS__0, …)")
	}
	hosts := make(map[string]string)
	names := make(map[string]string)
	anyACME := false
	for i, s := range g.Sites {
		key := fmt.Sprintf("GATEWAY__SITES__%d", i)
		if len(s.Hosts) == 0 {
			add(key+"__HOSTS", "at least one hostname is required")
		}
		for j, h := range s.Hosts {
			hk := fmt.Sprintf("%s__HOSTS__%d", key, j)
			lh := strings.ToLower(h)
			switch {
			case !validHostname(lh):
				add(hk, "%q is not a hostname", h)
			case hosts[lh] != "":
				add(hk, "%q is also %s", h, hosts[lh])
			default:
				hosts[lh] = hk
			}
		}
		if n := s.siteName(); n != "" {
			if prev, dup := names[n]; dup {
				add(key+"__NAME", "%q is also the name of %s", n, prev)
			}
			names[n] = key
		}
		if len(s.Domains) == 0 {
			add(key+"__DOMAINS", "at least one domain is required")
		}
		for j, d := range s.Domains {
			if !export.ValidDomainID(d) {
				add(fmt.Sprintf("%s__DOMAINS__%d", key, j), "%q is not a valid domain id (1-63 of [a-z0-9-], starting with a letter or digit)", d)
			}
		}
		switch {
		case s.ACME && (s.CertFile != "" || s.KeyFile != ""):
			add(key+"__ACME", "set either ACME or CERTFILE/KEYFILE, not both")
		case s.ACME:
			anyACME = true
		case s.CertFile == "" || s.KeyFile == "":
			add(key+"__CERTFILE", "CERTFILE and KEYFILE are required (or set %s__ACME=true)", key)
		}
		switch {
		case s.Anonymous && s.HtpasswdFile != "":
			add(key+"__ANONYMOUS", "set either ANONYMOUS or HTPASSWDFILE, not both")
		case !s.Anonymous && s.HtpasswdFile == "":
			add(key+"__HTPASSWDFILE", "required (or set %s__ANONYMOUS=true to serve without Basic Auth)", key)
		}
		if strings.ContainsAny(s.Realm, "\"\\\r\n") {
			add(key+"__REALM", "%q may not contain quotes, backslashes or line breaks", s.Realm)
		}
		if s.Origin != "" {
			checkURL(key+"__ORIGIN", s.Origin)
		}
		if s.MaxIndexRequestsPerHour < 0 {
			add(key+"__MAXINDEXREQUESTSPERHOUR", "%d is negative (0 means no budget)", s.MaxIndexRequestsPerHour)
		}
		if s.MaxDownloadRequestsPerHour < 0 {
			add(key+"__MAXDOWNLOADREQUESTSPERHOUR", "%d is negative (0 means no budget)", s.MaxDownloadRequestsPerHour)
		}
	}
	if anyACME {
		checkURL("GATEWAY__ACME__DIRECTORYURL", g.ACME.DirectoryURL)
		if g.ACME.Storage == "" {
			add("GATEWAY__ACME__STORAGE", "required when a site uses ACME")
		}
		if g.ACME.HTTPPort <= 0 || g.ACME.HTTPPort > 65535 {
			add("GATEWAY__ACME__HTTPPORT", "%d is not a port", g.ACME.HTTPPort)
		}
		if g.HTTPListen == "" {
			add("GATEWAY__HTTPLISTEN", "required when a site uses ACME (HTTP-01 challenges)")
		}
	}
	if g.CDNMaxAge < time.Second || g.CDNMaxAge > cache.MaxCDNMaxAge {
		add("GATEWAY__CDNMAXAGE", "%s must be between 1s and %s (at most the index's max-age, 60s, is advised)", g.CDNMaxAge, cache.MaxCDNMaxAge)
	}
	if g.CacheEnabled() {
		cc := g.Cache
		cc.SetDefaults()
		if err := cc.Validate(); err != nil {
			var list []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				list = j.Unwrap()
			} else {
				list = []error{err}
			}
			for _, e := range list {
				errs = append(errs, fmt.Errorf("GATEWAY__%w", e))
			}
		}
		for i, s := range g.Sites {
			if s.Origin != "" && s.Origin != g.Origin {
				add(fmt.Sprintf("GATEWAY__SITES__%d__ORIGIN", i),
					"a per-site origin cannot share the cache (keyed by path); unset it or GATEWAY__CACHE__DIR")
			}
		}
	}
	if a := &g.Authority; a.Enabled {
		if a.TokenURL == "" {
			add("GATEWAY__AUTHORITY__TOKENURL", "required when GATEWAY__AUTHORITY__ENABLED=true")
		} else {
			checkURL("GATEWAY__AUTHORITY__TOKENURL", a.TokenURL)
		}
		if a.ClientID == "" {
			add("GATEWAY__AUTHORITY__CLIENTID", "required when GATEWAY__AUTHORITY__ENABLED=true")
		}
		if a.ClientSecretFile == "" {
			add("GATEWAY__AUTHORITY__CLIENTSECRETFILE", "required when GATEWAY__AUTHORITY__ENABLED=true")
		}
	}
	return errors.Join(errs...)
}

// validHostname accepts lower-case DNS names (letters, digits, '-', '.').
func validHostname(h string) bool {
	if h == "" || len(h) > 253 || h[0] == '.' || h[len(h)-1] == '.' || strings.Contains(h, "..") {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

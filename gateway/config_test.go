package gateway

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(path, []byte(`gateway:
  listen: ":8443"
  origin: http://origin:8080
  trustedProxies: [10.0.0.0/8]
  sites:
    - hosts: [mirror-primary.example.org]
      domains: [primary]
      certFile: /tls/p.crt
      keyFile: /tls/p.key
      htpasswdFile: /run/secrets/p.htpasswd
      maxDownloadRequestsPerHour: 1200
`), 0o644)
	cfg, err := LoadConfig(path, []string{
		"GATEWAY__SITES__0__MAXINDEXREQUESTSPERHOUR=60",
		"GATEWAY__SITES__1__HOSTS__0=mirror-community.example.org",
		"GATEWAY__SITES__1__DOMAINS__0=community",
		"GATEWAY__SITES__1__ACME=true",
		"GATEWAY__SITES__1__ANONYMOUS=true",
		"GATEWAY__UPSTREAMIDLETIMEOUT=00:02:00",
	})
	if err != nil {
		t.Fatal(err)
	}
	g := cfg.Gateway
	if g.Listen != ":8443" || g.AdminListen != "127.0.0.1:9091" || len(g.Sites) != 2 ||
		g.Sites[0].MaxIndexRequestsPerHour != 60 || g.Sites[0].MaxDownloadRequestsPerHour != 1200 ||
		!g.Sites[1].ACME || g.UpstreamIdleTimeout != 2*time.Minute || len(g.TrustedProxies) != 1 {
		t.Fatalf("loaded %+v", g)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path, []string{"GATEWAY__SITES__0__HTPASSWD=/x"}); err == nil ||
		!strings.Contains(err.Error(), "GATEWAY__SITES__0__HTPASSWD: unknown key") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestValidate(t *testing.T) {
	good := func() Config {
		c := DefaultConfig()
		c.Gateway.Sites = []SiteConfig{{Hosts: []string{"a.example"}, Domains: []string{"primary"},
			CertFile: "c", KeyFile: "k", HtpasswdFile: "h"}}
		return c
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no sites", func(c *Config) { c.Gateway.Sites = nil }, "GATEWAY__SITES: no sites configured"},
		{"bad listen", func(c *Config) { c.Gateway.Listen = "443" }, `GATEWAY__LISTEN: "443" is not host:port`},
		{"bad origin", func(c *Config) { c.Gateway.Origin = "origin:8080" }, `GATEWAY__ORIGIN: "origin:8080" is not an absolute http(s) URL`},
		{"no hosts", func(c *Config) { c.Gateway.Sites[0].Hosts = nil }, "GATEWAY__SITES__0__HOSTS: at least one hostname"},
		{"bad host", func(c *Config) { c.Gateway.Sites[0].Hosts = []string{"a b"} }, `GATEWAY__SITES__0__HOSTS__0: "a b" is not a hostname`},
		{"duplicate host", func(c *Config) {
			c.Gateway.Sites = append(c.Gateway.Sites, c.Gateway.Sites[0])
			c.Gateway.Sites[1].Name = "other"
		}, `GATEWAY__SITES__1__HOSTS__0: "a.example" is also GATEWAY__SITES__0__HOSTS__0`},
		{"bad domain", func(c *Config) { c.Gateway.Sites[0].Domains = []string{"../x"} }, `GATEWAY__SITES__0__DOMAINS__0: "../x" is not a valid domain id`},
		{"no cert", func(c *Config) { c.Gateway.Sites[0].CertFile = "" }, "GATEWAY__SITES__0__CERTFILE: CERTFILE and KEYFILE are required"},
		{"no htpasswd", func(c *Config) { c.Gateway.Sites[0].HtpasswdFile = "" }, "GATEWAY__SITES__0__HTPASSWDFILE: required"},
		{"acme and files", func(c *Config) { c.Gateway.Sites[0].ACME = true }, "GATEWAY__SITES__0__ACME: set either ACME or CERTFILE/KEYFILE"},
		{"negative budget", func(c *Config) { c.Gateway.Sites[0].MaxIndexRequestsPerHour = -1 }, "GATEWAY__SITES__0__MAXINDEXREQUESTSPERHOUR: -1 is negative"},
		{"bad realm", func(c *Config) { c.Gateway.Sites[0].Realm = `a"b` }, "GATEWAY__SITES__0__REALM"},
		{"host bits", func(c *Config) { c.Gateway.TrustedProxies = []netipPrefix{mustPrefix("10.0.0.1/8")} }, "GATEWAY__TRUSTEDPROXIES__0: 10.0.0.1/8 has host bits set"},
		{"authority without url", func(c *Config) { c.Gateway.Authority.Enabled = true }, "GATEWAY__AUTHORITY__TOKENURL: required"},
		{"zero timeout", func(c *Config) { c.Gateway.ReadHeaderTimeout = 0 }, "GATEWAY__READHEADERTIMEOUT: 0s must be positive"},
		{"negative max failures", func(c *Config) { c.Gateway.AuthThrottle.MaxFailures = -1 }, "GATEWAY__AUTHTHROTTLE__MAXFAILURES: -1 is negative"},
		{"zero throttle window", func(c *Config) { c.Gateway.AuthThrottle.Window = 0 }, "GATEWAY__AUTHTHROTTLE__WINDOW: 0s must be positive"},
		{"negative drain delay", func(c *Config) { c.Gateway.ShutdownDelay = -time.Second }, "GATEWAY__SHUTDOWNDELAY: -1s: want 0 (no drain) to 5m0s"},
		{"drain delay above 5m", func(c *Config) { c.Gateway.ShutdownDelay = 5*time.Minute + time.Second }, "GATEWAY__SHUTDOWNDELAY: 5m1s"},
		{"negative concurrent checks", func(c *Config) { c.Gateway.AuthThrottle.MaxConcurrentChecks = -2 }, "GATEWAY__AUTHTHROTTLE__MAXCONCURRENTCHECKS: -2 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
	c := good()
	if err := c.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, d := range []time.Duration{time.Second, 5 * time.Minute} {
		c.Gateway.ShutdownDelay = d
		if err := c.Validate(); err != nil {
			t.Errorf("GATEWAY__SHUTDOWNDELAY %s: %v", d, err)
		}
	}
}

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestCacheConfigErrorsNameTheKey: the cache section loads from YAML and
// the environment, and every bad value names its GATEWAY__CACHE__ key.
func TestCacheConfigErrorsNameTheKey(t *testing.T) {
	base := []string{
		"GATEWAY__SITES__0__HOSTS__0=mirror-primary.example.org", "GATEWAY__SITES__0__DOMAINS__0=primary",
		"GATEWAY__SITES__0__CERTFILE=/c", "GATEWAY__SITES__0__KEYFILE=/k", "GATEWAY__SITES__0__ANONYMOUS=true",
	}
	tests := []struct {
		name    string
		env     []string
		loadErr string // error of LoadConfig
		valErr  string // error of Validate
	}{
		{"off by default", nil, "", ""},
		{"on", []string{"GATEWAY__CACHE__DIR=/var/cache/sm", "GATEWAY__CACHE__MAXSIZE=2GiB"}, "", ""},
		{"bad size", []string{"GATEWAY__CACHE__DIR=/c", "GATEWAY__CACHE__MAXSIZE=lots"}, "GATEWAY__CACHE__MAXSIZE", ""},
		{"bad duration", []string{"GATEWAY__CACHE__DIR=/c", "GATEWAY__CACHE__STALEIFERRORGRACE=soon"}, "GATEWAY__CACHE__STALEIFERRORGRACE", ""},
		{"unknown key", []string{"GATEWAY__CACHE__DIRECTORY=/c"}, "GATEWAY__CACHE__DIRECTORY", ""},
		{"memory object above memory size", []string{"GATEWAY__CACHE__DIR=/c", "GATEWAY__CACHE__MEMORYMAXSIZE=1MiB",
			"GATEWAY__CACHE__MEMORYMAXOBJECTSIZE=2MiB"}, "", "GATEWAY__CACHE__MEMORYMAXOBJECTSIZE"},
		{"object above max size", []string{"GATEWAY__CACHE__DIR=/c", "GATEWAY__CACHE__MAXSIZE=1GiB",
			"GATEWAY__CACHE__MAXOBJECTSIZE=2GiB"}, "", "GATEWAY__CACHE__MAXOBJECTSIZE"},
		{"per-site origin with the cache", []string{"GATEWAY__CACHE__DIR=/c", "GATEWAY__SITES__0__ORIGIN=http://other:8080"},
			"", "GATEWAY__SITES__0__ORIGIN"},
		{"settings without a dir are ignored", []string{"GATEWAY__CACHE__MAXSIZE=1GiB", "GATEWAY__CACHE__MAXOBJECTSIZE=2GiB"}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig("", append(append([]string(nil), base...), tt.env...))
			if tt.loadErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.loadErr) {
					t.Fatalf("LoadConfig error %v, want one naming %s", err, tt.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate()
			if tt.valErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.valErr+":") {
				t.Fatalf("Validate error %v, want one naming %s", err, tt.valErr)
			}
		})
	}
	yml := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(yml, []byte("gateway:\n  cache:\n    dir: /var/cache/sm\n    maxSize: 512MiB\n    staleIfErrorGrace: 1h\n"), 0o644)
	cfg, err := LoadConfig(yml, base)
	if err != nil {
		t.Fatal(err)
	}
	if c := cfg.Gateway.Cache; !cfg.Gateway.CacheEnabled() || c.MaxSize != 512<<20 || c.StaleIfErrorGrace != time.Hour {
		t.Fatalf("cache section from YAML: %+v", c)
	}
}

// TestAuthKeys: the authentication keys load from the environment with
// their defaults, and a disabled throttle needs no window.
func TestAuthKeys(t *testing.T) {
	d := DefaultConfig().Gateway
	if d.AuthThrottle.MaxFailures != 10 || d.AuthThrottle.Window != time.Minute || d.AuthThrottle.MaxConcurrentChecks != 0 || d.AllowLegacyHashes {
		t.Fatalf("defaults: %+v, legacy %v; want 10 failures per 1m, GOMAXPROCS checks, no legacy hashes", d.AuthThrottle, d.AllowLegacyHashes)
	}
	c, err := LoadConfig("", []string{"GATEWAY__AUTHTHROTTLE__MAXFAILURES=3", "GATEWAY__AUTHTHROTTLE__WINDOW=30s",
		"GATEWAY__AUTHTHROTTLE__MAXCONCURRENTCHECKS=4", "GATEWAY__ALLOWLEGACYHASHES=true"})
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Gateway; g.AuthThrottle != (AuthThrottleSettings{MaxFailures: 3, Window: 30 * time.Second, MaxConcurrentChecks: 4}) || !g.AllowLegacyHashes {
		t.Fatalf("loaded %+v, legacy %v", g.AuthThrottle, g.AllowLegacyHashes)
	}
	yml := filepath.Join(t.TempDir(), "gateway.yaml")
	os.WriteFile(yml, []byte("gateway:\n  allowLegacyHashes: true\n  authThrottle:\n    maxFailures: 4\n    window: 2m\n    maxConcurrentChecks: 3\n"), 0o600)
	y, err := LoadConfig(yml, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g := y.Gateway; g.AuthThrottle != (AuthThrottleSettings{MaxFailures: 4, Window: 2 * time.Minute, MaxConcurrentChecks: 3}) || !g.AllowLegacyHashes {
		t.Fatalf("from YAML %+v, legacy %v", g.AuthThrottle, g.AllowLegacyHashes)
	}
	c.Gateway.AuthThrottle = AuthThrottleSettings{MaxFailures: 0, Window: 0}
	if err := c.Validate(); err != nil && strings.Contains(err.Error(), "AUTHTHROTTLE") {
		t.Fatalf("a disabled throttle without a window: %v", err)
	}
}

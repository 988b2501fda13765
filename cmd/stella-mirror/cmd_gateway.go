package main

import (
	"context"
	"io"
	"os"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/gateway"
	"github.com/stella-ops/stella-mirror/gateway/basicauth"
	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/logging"
)

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gateway", "[--config FILE] [--listen ADDR] [--http-listen ADDR] [--admin-listen ADDR] [--check-config]",
		`Serve the mirror over HTTPS in front of the origin: one site per hostname
with its own certificate (PEM files, reloaded on change or SIGHUP; or ACME)
and htpasswd file (Basic Auth, reloaded on change or SIGHUP), the host →
domain policy, per-client budgets (429 + Retry-After) and a reverse proxy to
the origin. A broken certificate or htpasswd file keeps the last good one.

Settings come from a YAML file (--config; gateway: {listen: ..., sites: [...]})
and GATEWAY__… environment variables (overriding the file); flags override
both. Unknown keys and malformed values stop start-up naming the key.

The cache (cache: dir: ...) is off unless a directory is given; on, it sits
between auth/policy/budgets and the origin, answers with X-Cache-Status
(HIT MISS EXPIRED STALE UPDATING REVALIDATED BYPASS) and keeps serving
stored objects while the origin is down (staleIfErrorGrace, default 24h).

The access log (one JSON line per request, with cache_status) goes to
stdout; everything else to stderr. /health/live, /health/ready, /metrics and
the status page (/status, /status.json; GATEWAY__ORIGINSTATUSURL adds the
exports and the sync run) are served on the admin listener only, and with the cache on and
adminTokenFile set, POST /admin/cache/purge?path=/... (or ?all=true) with
"Authorization: Bearer <token>".

Keys ({n} is a list index: 0, 1, ...):
  `+strings.Join(gateway.ConfigKeys(), "\n  ")+`

Example (gateway.yaml):
  gateway:
    listen: ":443"
    origin: http://127.0.0.1:8080
    sites:
      - hosts: [mirror-primary.example.org]
        domains: [primary]
        certFile: /etc/stella-mirror/tls/primary.crt
        keyFile: /etc/stella-mirror/tls/primary.key
        htpasswdFile: /run/secrets/primary.htpasswd
        maxDownloadRequestsPerHour: 1200
    cache:
      dir: /var/cache/stella-mirror     # off when unset
      maxSize: 10GiB                    # default 10GiB
    adminTokenFile: /run/secrets/gateway-admin-token
  stella-mirror gateway --config gateway.yaml
  curl -X POST -H "Authorization: Bearer $(cat /run/secrets/gateway-admin-token)" \
    'http://127.0.0.1:9091/admin/cache/purge?path=/concelier/exports/index.json'
  kill -HUP <pid>     # reload certificates and htpasswd files now`, stderr)
	configPath := fs.String("config", "", "YAML configuration `file` (environment variables override it)")
	listen := fs.String("listen", "", "HTTPS listener `address` (overrides GATEWAY__LISTEN; default :443)")
	httpListen := fs.String("http-listen", "", "plain-HTTP listener `address` for redirects and ACME (overrides GATEWAY__HTTPLISTEN; default :80; \"off\" disables)")
	adminListen := fs.String("admin-listen", "", "admin listener `address` for /metrics and /health (overrides GATEWAY__ADMINLISTEN; default 127.0.0.1:9091)")
	logFormat := fs.String("log-format", "", "log `format`: json or text (overrides GATEWAY__LOGFORMAT; default json)")
	logLevel := fs.String("log-level", "", "log `level` (overrides GATEWAY__LOGLEVEL; default info)")
	checkConfig := fs.Bool("check-config", false, "validate the configuration and the certificate and htpasswd files, print the result and exit (status 1 when invalid)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(fs, *configPath, gateway.LoadConfig, map[string]func(*gateway.Config){
		"listen": func(c *gateway.Config) { c.Gateway.Listen = *listen },
		"http-listen": func(c *gateway.Config) {
			c.Gateway.HTTPListen = *httpListen
			if *httpListen == "off" {
				c.Gateway.HTTPListen = ""
			}
		},
		"admin-listen": func(c *gateway.Config) { c.Gateway.AdminListen = *adminListen },
		"log-format":   func(c *gateway.Config) { c.Gateway.LogFormat = *logFormat },
		"log-level":    func(c *gateway.Config) { c.Gateway.LogLevel = *logLevel },
	})
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *checkConfig {
		// The cache directory is not opened: a running gateway may be
		// filling it, and opening removes files it does not recognise.
		check := cfg
		check.Gateway.Cache.Dir = ""
		if _, err := gateway.New(check, gateway.Options{}); err != nil {
			return err
		}
		var warnings []string
		for _, s := range cfg.Gateway.Sites {
			if s.HtpasswdFile == "" {
				continue
			}
			t, err := basicauth.LoadFile(s.HtpasswdFile, basicauth.LoadOptions{AllowLegacy: cfg.Gateway.AllowLegacyHashes})
			if err != nil {
				return err
			}
			for _, w := range t.Warnings {
				warnings = append(warnings, s.HtpasswdFile+": "+w)
			}
		}
		printConfigOK(stdout, warnings)
		return nil
	}
	logger, err := logging.NewComponent(stderr, cfg.Gateway.LogFormat, cfg.Gateway.LogLevel, "gateway")
	if err != nil {
		return err
	}
	if cfg.Gateway.CacheEnabled() {
		memoryLimitFor(int64(cfg.Gateway.Cache.MemoryMaxSize), os.Getenv)
	}
	// Access lines are batched (64 KiB, flushed every second and on exit).
	access := accesslog.New(stdout, accesslog.Options{FlushInterval: time.Second, Component: "gateway"})
	defer access.Close()
	return gateway.Run(ctx, cfg, gateway.Options{Logger: logger, AccessLog: access, Registerer: newRegistry()})
}

package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/logging"
	"github.com/stella-ops/stella-mirror/origin"
)

func runOrigin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("origin", "[--config FILE] [--listen ADDR] [--admin-listen ADDR] [--check-config]",
		`Serve the Concelier and Excititor mirror endpoints from export trees.
Settings come from the runbook's environment names, optionally from a YAML
file (--config, same structure, e.g. concelier: {mirror: {enabled: true}}),
the environment overriding the file and flags overriding both. Unknown keys
and malformed values stop start-up with an error naming the key.

The access log (one JSON line per request, with the client identity, never
a token) goes to stdout; everything else to stderr. /metrics and the status
page (/status, /status.json; ORIGIN__SYNCMETRICSTEXTFILE adds the last sync
run) are served on the admin listener only; ORIGIN__SYNCMETRICSEXPORT=true
also serves that textfile's stella_mirror_sync_* metrics on /metrics (for
clusters, where no node_exporter reads it).

Access control per product: REQUIREAUTHENTICATION (global, per-domain
override) is met by an OAuth2 bearer token from Authority with the scope
concelier.mirror.read / excititor.mirror.read (AUTHORITY__ENABLED=true), or
by a peer in AUTHORITY__BYPASSNETWORKS (TCP peer only; a gateway there may
name its user in X-Stella-Forwarded-User); with ORIGIN__PEERTOKENFILE such a
peer must also send one of the file's tokens in X-Stella-Peer-Token (the
file is re-read on change or SIGHUP). Missing token: 401 with
WWW-Authenticate: Bearer. MAX…REQUESTSPERHOUR budgets answer 429 with
Retry-After. Defaults and details: docs/configuration.md.

Keys ({n} is a list index: 0, 1, ...):
  `+strings.Join(origin.ConfigKeys(), "\n  ")+`

Example:
  CONCELIER__MIRROR__ENABLED=true CONCELIER__MIRROR__EXPORTROOT=/srv/exports \
  EXCITITOR__MIRROR__ENABLED=true EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT=/srv/exports \
  CONCELIER__MIRROR__DOMAINS__0__ID=primary \
  stella-mirror origin --listen 0.0.0.0:8080 --admin-listen 127.0.0.1:9090`, stderr)
	configPath := fs.String("config", "", "YAML configuration `file` (environment variables override it)")
	listen := fs.String("listen", "", "public listener `address` (overrides ORIGIN__LISTEN; default 127.0.0.1:8080)")
	adminListen := fs.String("admin-listen", "", "admin listener `address` for /metrics and /health (overrides ORIGIN__ADMINLISTEN; default 127.0.0.1:9090)")
	logFormat := fs.String("log-format", "", "log `format`: json or text (overrides ORIGIN__LOGFORMAT; default json)")
	logLevel := fs.String("log-level", "", "log `level`: debug, info, warn or error (overrides ORIGIN__LOGLEVEL; default info)")
	checkConfig := fs.Bool("check-config", false, "validate the configuration, print the result and exit (status 1 when invalid)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	cfg, err := loadConfig(fs, *configPath, origin.LoadConfig, map[string]func(*origin.Config){
		"listen":       func(c *origin.Config) { c.Origin.Listen = *listen },
		"admin-listen": func(c *origin.Config) { c.Origin.AdminListen = *adminListen },
		"log-format":   func(c *origin.Config) { c.Origin.LogFormat = *logFormat },
		"log-level":    func(c *origin.Config) { c.Origin.LogLevel = *logLevel },
	})
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if *checkConfig {
		if err := cfg.CheckFiles(); err != nil {
			return err
		}
		if missing := cfg.MissingRoots(); len(missing) > 0 {
			// Valid settings, but the origin would start not-ready:
			// not "configuration OK".
			for _, w := range cfg.Warnings() {
				fmt.Fprintf(stdout, "warning: %s\n", w)
			}
			return fmt.Errorf("configuration valid but the origin cannot serve: %s (it starts not-ready until the directory exists)", strings.Join(missing, "; "))
		}
		printConfigOK(stdout, cfg.Warnings())
		return nil
	}

	logger, err := logging.NewComponent(stderr, cfg.Origin.LogFormat, cfg.Origin.LogLevel, "origin")
	if err != nil {
		return err
	}
	cfg.AccessLog = accesslog.New(stdout, accesslog.Options{Component: "origin"})
	defer cfg.AccessLog.Close()
	return origin.Run(ctx, cfg, logger, newRegistry())
}

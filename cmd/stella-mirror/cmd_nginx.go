package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/stella-ops/stella-mirror/gateway"
	"github.com/stella-ops/stella-mirror/internal/atomicfile"
	"github.com/stella-ops/stella-mirror/nginx"
)

func runNginxConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("nginx-conf", "[--config FILE] --cache-dir DIR [--out FILE] [--full --prefix DIR]",
		`Render the nginx front: an nginx configuration equivalent to the gateway
(per-site server blocks, TLS, auth_basic, proxy_cache with X-Cache-Status,
proxy_cache_lock, proxy_cache_use_stale, limit_req budgets with 429 +
Retry-After, the same path policy), from the gateway's own configuration:
the YAML file (--config) and GATEWAY__… environment variables, read exactly
as `+"`stella-mirror gateway`"+` reads them. The template is nginx/mirror.conf.tmpl;
nginx/README.md explains the differences from the Go gateway.

By default the output is a file for nginx's http context (Debian:
/etc/nginx/conf.d/stella-mirror.conf); --full renders a complete nginx.conf
with the pid file, logs and temp directories under --prefix.

Not supported by nginx (an error naming the key): sites with ACME (use
certbot and CERTFILE/KEYFILE) and GATEWAY__AUTHORITY (nginx cannot fetch
OAuth2 tokens; the origin must list the nginx host in BYPASSNETWORKS).

Example:
  stella-mirror nginx-conf --config /etc/stella-mirror/gateway.yaml \
    --cache-dir /var/cache/nginx/stella-mirror --out /etc/nginx/conf.d/stella-mirror.conf
  nginx -t && systemctl reload nginx`, stderr)
	configPath := fs.String("config", "", "the gateway's YAML configuration `file` (GATEWAY__… variables override it)")
	out := fs.String("out", "", "write to `file` (atomically) instead of stdout")
	o := nginx.Options{}
	fs.StringVar(&o.CacheDir, "cache-dir", "", "proxy_cache_path `directory`, owned by nginx's worker user (required)")
	fs.StringVar(&o.CacheMaxSize, "cache-max-size", "10g", "cache size `bound` (nginx size: 10g, 512m)")
	fs.StringVar(&o.CacheInactive, "cache-inactive", "7d", "drop cached objects unused for this `time` (nginx time: 7d, 12h)")
	fs.StringVar(&o.CacheKeysZone, "cache-keys-zone", "50m", "shared-memory `size` of the cache keys zone (~8000 keys per MB)")
	fs.StringVar(&o.AccessLog, "access-log", "", "access log `file` (default /var/log/nginx/stella-mirror.access.log, or PREFIX/access.log with --full)")
	fs.BoolVar(&o.Full, "full", false, "render a complete nginx.conf (main, events, http) with runtime files under --prefix")
	fs.StringVar(&o.Prefix, "prefix", "", "`directory` for the pid file, logs and temp directories (with --full)")
	fs.StringVar(&o.User, "user", "", "nginx `user` directive (with --full, when nginx starts as root)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := gateway.LoadConfig(*configPath, os.Environ())
	if err != nil {
		return err
	}
	o.Source = *configPath
	if o.Source == "" {
		o.Source = "GATEWAY__ environment"
	}
	conf, err := nginx.Render(cfg, o)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err := stdout.Write(conf)
		return err
	}
	if err := atomicfile.WriteFile(*out, conf, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", *out, err)
	}
	fmt.Fprintf(stderr, "wrote %s; check it with nginx -t\n", *out)
	return nil
}

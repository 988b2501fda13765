package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/stella-ops/stella-mirror/demo"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/logging"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[--dir DIR] [--gateway-listen ADDR] [--origin-listen ADDR]",
		`Start the embedded demo: a signing key, a generated and signed export tree
(Concelier advisory bundles and Excititor VEX exports), the origin, and the
gateway in front of it on localhost: a local CA (tls/ca.pem), a certificate
for mirror-<domain>.localhost per domain and a demo user per site (bcrypt
htpasswd in auth/). The directory is created on first run and reused
afterwards (CA, key, export, passwords). demo.json lists the URLs (sites,
gatewayAdmin, origin, originAdmin), the CA, the users, the export roots, the
public key and the configuration files the demo runs with (configs.origin,
configs.gateway: start the same stack with stella-mirror origin|gateway
--config FILE, or copy them as a starting point). Ctrl-C stops it cleanly.

*.localhost names resolve to the loopback address in curl and browsers.

Example:
  stella-mirror demo --dir /tmp/stella-demo --gateway-listen 127.0.0.1:18443
  curl --cacert /tmp/stella-demo/tls/ca.pem -u demo-primary:$(cat /tmp/stella-demo/auth/primary.password) \
    https://mirror-primary.localhost:18443/concelier/exports/index.json`, stderr)
	dir := fs.String("dir", "demo-data", "demo `directory` (keys, exports, demo.json)")
	originListen := fs.String("origin-listen", "127.0.0.1:8080", "origin public `address`")
	adminListen := fs.String("origin-admin-listen", "127.0.0.1:9090", "origin admin `address` (/metrics, /health/*)")
	gatewayListen := fs.String("gateway-listen", "127.0.0.1:8443", "gateway HTTPS `address`")
	gatewayAdmin := fs.String("gateway-admin-listen", "127.0.0.1:9091", "gateway admin `address` (/metrics, /health/*)")
	domains := fs.String("domains", "primary,community", "comma-separated domain `ids` to generate")
	bundleSize := fs.String("bundle-size", "4MiB", "approximate `size` of each advisory bundle (e.g. 64MiB)")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	size, err := fixture.ParseSize(*bundleSize)
	if err != nil {
		return fmt.Errorf("--bundle-size: %w", err)
	}
	logger, err := logging.New(stderr, *logFormat, "info")
	if err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	return demo.Run(ctx, demo.Options{
		Dir:                *dir,
		OriginListen:       *originListen,
		OriginAdminListen:  *adminListen,
		GatewayListen:      *gatewayListen,
		GatewayAdminListen: *gatewayAdmin,
		Domains:            strings.Split(*domains, ","),
		BundleSize:         size,
		Logger:             logger,
		// Unbuffered: in a terminal each request shows at once.
		AccessLog: accesslog.New(stderr, accesslog.Options{BufferSize: -1}),
		Out:       stdout,
	})
}

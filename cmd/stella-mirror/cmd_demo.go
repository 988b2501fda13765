package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/stella-ops/stella-mirror/demo"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/logging"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[--dir DIR] [--port-base N | --origin-listen ADDR --origin-admin-listen ADDR --gateway-listen ADDR --gateway-admin-listen ADDR] [--domains IDS] [--bundle-size SIZE]",
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

Ports: by default the origin listens on 127.0.0.1:8080 (admin 9090) and the
gateway on 127.0.0.1:8443 (admin 9091); a default port that is taken moves
to a free one and the banner says which (demo.json has them all).
--port-base N takes N, N+1, N+2, N+3 for origin, origin admin, gateway and
gateway admin; an address given explicitly never moves.

*.localhost names resolve to the loopback address (RFC 6761) in curl,
browsers and stella-mirror's own clients (smoke, sync, healthcheck); the
banner prints ready curl and smoke commands.

Example:
  stella-mirror demo --dir /tmp/stella-demo --gateway-listen 127.0.0.1:18443
  curl --cacert /tmp/stella-demo/tls/ca.pem -u demo-primary:$(cat /tmp/stella-demo/auth/primary.password) \
    https://mirror-primary.localhost:18443/concelier/exports/index.json`, stderr)
	dir := fs.String("dir", "demo-data", "demo `directory` (keys, exports, demo.json)")
	originListen := fs.String("origin-listen", "127.0.0.1:8080", "origin public `address` (a free port if the default is taken)")
	adminListen := fs.String("origin-admin-listen", "127.0.0.1:9090", "origin admin `address` (/metrics, /health/*)")
	gatewayListen := fs.String("gateway-listen", "127.0.0.1:8443", "gateway HTTPS `address`")
	gatewayAdmin := fs.String("gateway-admin-listen", "127.0.0.1:9091", "gateway admin `address` (/metrics, /status, /health/*)")
	portBase := fs.Int("port-base", 0, "listen on 127.0.0.1 `port`s N..N+3: origin, origin admin, gateway, gateway admin")
	domains := fs.String("domains", "primary,community", "comma-separated domain `ids` to generate")
	bundleSize := fs.String("bundle-size", "4MiB", "approximate `size` of each advisory bundle (e.g. 64MiB)")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	addrs := []*string{originListen, adminListen, gatewayListen, gatewayAdmin}
	flagNames := []string{"origin-listen", "origin-admin-listen", "gateway-listen", "gateway-admin-listen"}
	if set["port-base"] {
		if *portBase < 1 || *portBase > 65535-3 {
			return usageError(fs, fmt.Sprintf("--port-base %d: want a port from 1 to 65532", *portBase))
		}
		for i, a := range addrs {
			if set[flagNames[i]] {
				return usageError(fs, fmt.Sprintf("--port-base and --%s: give one or the other", flagNames[i]))
			}
			*a = net.JoinHostPort("127.0.0.1", strconv.Itoa(*portBase+i))
			set[flagNames[i]] = true
		}
	}
	for i, a := range addrs {
		if !set[flagNames[i]] {
			*a = "" // the default: may move to a free port
		}
	}
	size, err := fixture.ParseSize(*bundleSize)
	if err != nil {
		return fmt.Errorf("--bundle-size: %w", err)
	}
	logger, err := logging.New(stderr, *logFormat, "info")
	if err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	bin, err := os.Executable()
	if err != nil {
		bin = "stella-mirror"
	}
	err = demo.Run(ctx, demo.Options{
		PickFreePorts:      true,
		Bin:                bin,
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
	if le, ok := errors.AsType[*demo.ListenError](err); ok {
		for i, n := range []string{"origin", "origin-admin", "gateway", "gateway-admin"} {
			if le.Name != n {
				continue
			}
			if set["port-base"] {
				// The operator gave --port-base, not the per-listener flag.
				return fmt.Errorf("%w (set by --port-base %d: port N+%d is the %s; choose another N)", err, *portBase, i, n)
			}
			return fmt.Errorf("%w (set by --%s; choose another address, or --port-base N for all four)", err, flagNames[i])
		}
	}
	return err
}

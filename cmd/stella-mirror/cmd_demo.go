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
	fs := newFlagSet("demo", "[--dir DIR] [--origin-listen ADDR]",
		`Start the embedded demo: a signing key, a generated and signed export tree
(Concelier advisory bundles and Excititor VEX exports), and the origin on
localhost. The directory is created on first run and reused afterwards; its
demo.json lists the URLs, export roots, public key and domains so scripts can
drive the demo. Ctrl-C stops it cleanly.

Example:
  stella-mirror demo --dir /tmp/stella-demo --origin-listen 127.0.0.1:18080`, stderr)
	dir := fs.String("dir", "demo-data", "demo `directory` (keys, exports, demo.json)")
	originListen := fs.String("origin-listen", "127.0.0.1:8080", "origin public `address`")
	adminListen := fs.String("origin-admin-listen", "127.0.0.1:9090", "origin admin `address` (/metrics, /health/*)")
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
		Dir:               *dir,
		OriginListen:      *originListen,
		OriginAdminListen: *adminListen,
		Domains:           strings.Split(*domains, ","),
		BundleSize:        size,
		Logger:            logger,
		// Unbuffered: in a terminal each request shows at once.
		AccessLog: accesslog.New(stderr, accesslog.Options{BufferSize: -1}),
		Out:       stdout,
	})
}

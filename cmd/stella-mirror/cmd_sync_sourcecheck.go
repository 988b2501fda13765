package main

import (
	"fmt"
	"strings"

	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/upstream"
)

// checkSourceSyntax refuses a source URL that cannot be right whatever the
// network or the files it names do: an S3 URL without a bucket, an
// upstream URL that does not parse, has no host or uses http:// to a
// remote host. It is part of the configuration check (exit status 2,
// --check-config); files the source names (tokens, CA bundles) are read
// at run time, where a missing one is a failure (status 1).
func checkSourceSyntax(cfg *mirrorsync.Config) error {
	s := cfg.EffectiveSource()
	switch {
	case strings.HasPrefix(s, "s3://"):
		if bucket, _, _ := strings.Cut(strings.TrimPrefix(s, "s3://"), "/"); bucket == "" {
			return fmt.Errorf("SYNC__SOURCE (--source): S3 source %q: want s3://bucket/prefix", s)
		}
	case strings.HasPrefix(s, "https://"), strings.HasPrefix(s, "http://"):
		// Only the URL and the index path: New reads no file without them.
		if _, err := upstream.New(upstream.Options{BaseURL: s, IndexPath: cfg.Concelier.Sources.StellaOpsMirror.IndexPath}); err != nil {
			return fmt.Errorf("SYNC__SOURCE (--source): %w", err)
		}
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/rsyncsrc"
	"github.com/stella-ops/stella-mirror/mirrorsync/s3src"
)

func newS3Source(ctx context.Context, cfg *mirrorsync.Config, logger *slog.Logger) (mirrorsync.Source, error) {
	s3 := cfg.Sync.S3
	return s3src.New(ctx, s3src.Options{
		URL: cfg.EffectiveSource(), Endpoint: s3.Endpoint, Region: s3.Region, PathStyle: s3.PathStyle,
		Profile: s3.Profile, CredentialsFile: s3.CredentialsFile, Timeout: cfg.EffectiveTimeout(),
		UploadGrace: s3.UploadGrace, Logger: logger,
	})
}

func newRsyncSource(cfg *mirrorsync.Config, _ *slog.Logger) (mirrorsync.Source, error) {
	return rsyncsrc.New(cfg.EffectiveSource(), cfg.Sync.RsyncPath)
}

// syncFailure gives a failed run sync's documented status 1, whatever the
// error wraps: a tool's own exit status (rsync's *exec.ExitError has an
// ExitCode method, which run() would otherwise pass on) is never sync's.
// Only sync's own statuses (exitError: 75 when locked) pass through.
func syncFailure(err error) error {
	var ee *exitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return &exitError{code: 1, err: err}
}

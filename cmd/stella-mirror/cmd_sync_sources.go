package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/rsyncsrc"
)

func newS3Source(ctx context.Context, cfg *mirrorsync.Config, logger *slog.Logger) (mirrorsync.Source, error) {
	return nil, errors.New("s3 sources: not built yet")
}

func newRsyncSource(cfg *mirrorsync.Config, _ *slog.Logger) (mirrorsync.Source, error) {
	return rsyncsrc.New(cfg.EffectiveSource(), cfg.Sync.RsyncPath)
}

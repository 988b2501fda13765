package rsyncsrc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/rsyncsrc"
	"github.com/stella-ops/stella-mirror/mirrorsync/rsyncsrc/rsynctest"
)

// TestHostileLatestIsNotTransferred: a source whose "latest" is a 1 GiB
// regular file instead of a symlink must not make sync copy that file
// (into its temporary directory, outside every space check): reading
// latest is bounded like every other transfer, and sync goes on to find
// the newest export by listing. The rsync here runs with a 32 MiB file size
// limit (ulimit -f), so an unbounded copy of latest fails the run.
func TestHostileLatestIsNotTransferred(t *testing.T) {
	real := rsynctest.Binary(t)
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1, false)
	if _, err := os.Lstat(filepath.Join(src, export.LatestLink)); err == nil {
		t.Fatal("the fixture wrote latest although asked not to")
	}
	f, err := os.Create(filepath.Join(src, export.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse: no disk space
		t.Fatal(err)
	}
	f.Close()
	bounded := filepath.Join(t.TempDir(), "rsync")
	if err := os.WriteFile(bounded, []byte("#!/bin/sh\nulimit -f 65536\nexec "+real+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := rsyncsrc.New(startDaemon(t, src), bounded)
	if err != nil {
		t.Fatal(err)
	}
	res, err := mirrorsync.Run(context.Background(), mirrorsync.Options{Root: dst, Source: s, Keys: keys})
	if err != nil {
		t.Fatalf("sync failed (latest, a 1 GiB regular file, was transferred?): %v", err)
	}
	if !res.Published || res.ExportID != fx.ExportID {
		t.Fatalf("result %+v: want export %s published", res, fx.ExportID)
	}
}

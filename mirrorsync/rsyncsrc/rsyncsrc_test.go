package rsyncsrc_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/rsyncsrc"
	"github.com/stella-ops/stella-mirror/mirrorsync/rsyncsrc/rsynctest"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

var testKey = fixture.DerivedKey(7)

func keys(context.Context) ([]jws.PublicKey, error) {
	return []jws.PublicKey{{Key: testKey.Public().(ed25519.PublicKey)}}, nil
}

// startDaemon runs a real rsync daemon on 127.0.0.1 exporting dir as
// module "exports" and returns its rsync:// URL.
func startDaemon(t *testing.T, dir string) string {
	t.Helper()
	return rsynctest.Start(t, dir, rsynctest.Options{}).URL
}

func writeSource(t *testing.T, root string, seed uint64, latest bool) *fixture.Result {
	t.Helper()
	res, err := fixture.Write(root, fixture.Options{Domains: []string{"primary", "community"}, BundleSize: 64 << 10,
		VEXSize: 4 << 10, Seed: seed, Key: testKey, SetLatest: latest})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRsyncDaemon(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	url := startDaemon(t, src)
	fx := writeSource(t, src, 1, true)
	s, err := rsyncsrc.New(url, "")
	if err != nil {
		t.Fatal(err)
	}
	opts := mirrorsync.Options{Root: dst, Source: s, Keys: keys}
	res, err := mirrorsync.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Published || res.BytesDownloaded < 128<<10 {
		t.Fatalf("first sync: %+v", res)
	}
	sourcetest.CheckPublished(t, dst, fx)

	res, err = mirrorsync.Run(context.Background(), opts)
	if err != nil || !res.Skipped || res.BytesDownloaded != 0 {
		t.Fatalf("no-op sync: %+v %v", res, err)
	}

	// Without latest the newest complete export is taken; its unchanged
	// files (none here: a new seed) and a same-size change are handled by
	// checksums.
	os.Remove(filepath.Join(src, export.LatestLink))
	fx2 := writeSource(t, src, 2, false)
	if res, err = mirrorsync.Run(context.Background(), opts); err != nil || !res.Published {
		t.Fatalf("second export: %+v %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, fx2)
}

func TestRsyncSameSizeChange(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	url := startDaemon(t, src)
	fx := writeSource(t, src, 1, true)
	s, err := rsyncsrc.New(url, "")
	if err != nil {
		t.Fatal(err)
	}
	opts := mirrorsync.Options{Root: dst, Source: s, Keys: keys}
	if _, err := mirrorsync.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	// Re-publish the primary bundle in place with one byte changed, same
	// size, same mtime: size-and-time quick checks would miss it.
	bundle := filepath.Join(fx.Dir, filepath.FromSlash(export.BundlePath("primary")))
	fi, _ := os.Stat(bundle)
	data, _ := os.ReadFile(bundle)
	i := len(data) / 2
	for data[i] < 'a' || data[i] > 'y' {
		i++
	}
	data[i]++
	os.WriteFile(bundle, data, 0o644)
	os.Chtimes(bundle, fi.ModTime(), fi.ModTime())
	sig, err := jws.SignFile(bundle, testKey, fx.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(bundle+".jws", sig, 0o644)
	var ix export.Index
	ixPath := filepath.Join(fx.Dir, filepath.FromSlash(export.IndexPath))
	raw, _ := os.ReadFile(ixPath)
	ix2, err := export.ParseIndex(raw)
	if err != nil {
		t.Fatal(err)
	}
	ix = *ix2
	ix.Domain("primary").Bundle.Digest = export.Digest(data)
	ix.Domain("primary").Bundle.Signature.SignedAt = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	// The manifest must agree with the index.
	mPath := filepath.Join(fx.Dir, filepath.FromSlash(export.ManifestPath("primary")))
	mraw, _ := os.ReadFile(mPath)
	m, _ := export.ParseManifest(mraw)
	m.Bundle = ix.Domain("primary").Bundle
	mdata := mustJSON(t, m)
	os.WriteFile(mPath, mdata, 0o644)
	ix.Domain("primary").Manifest.Digest = export.Digest(mdata)
	ix.Domain("primary").Manifest.SizeBytes = int64(len(mdata))
	os.WriteFile(ixPath, mustJSON(t, ix), 0o644)

	res, err := mirrorsync.Run(context.Background(), opts)
	if err != nil || !res.Published {
		t.Fatalf("change not published: %+v %v", res, err)
	}
	got, _, _ := export.DigestFile(filepath.Join(dst, fx.ExportID, filepath.FromSlash(export.BundlePath("primary"))))
	if got != export.Digest(data) {
		t.Fatalf("published bundle %s, want the changed one", got)
	}
	if res.FilesReused == 0 || res.BytesDownloaded >= fx.TotalBytes() {
		t.Errorf("unchanged files were not reused: %+v (export %d bytes)", res, fx.TotalBytes())
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(data, '\n')
}

func TestConformance(t *testing.T) {
	sourcetest.Run(t, func(t *testing.T, root string) mirrorsync.Source {
		s, err := rsyncsrc.New(startDaemon(t, root), "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Package sourcetest is the conformance suite every mirrorsync.Source
// runs: it writes a signed fixture export root, lets the implementation
// expose it (a directory, an rsync daemon, an S3 bucket, an origin) and
// checks the Source contract against the fixture's own record of what it
// wrote.
package sourcetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// Run writes two exports into a fresh root (the newer one named by
// latest), calls expose to get a Source over that root, and checks:
// Resolve names the newest export; Open returns the exact bytes of every
// file; a missing file is fs.ErrNotExist; a RangeOpener returns the rest
// of a file from an offset (and readers that report a size report the
// whole file's); paths that leave the export are
// refused; ExcititorDomains lists every domain with an Excititor index.
func Run(t *testing.T, expose func(t *testing.T, root string) mirrorsync.Source) {
	t.Helper()
	root := t.TempDir()
	for seed := uint64(1); seed <= 2; seed++ {
		if _, err := fixture.Write(root, fixture.Options{Domains: []string{"primary", "community"},
			BundleSize: 16 << 10, VEXSize: 2 << 10, Seed: seed, Key: fixture.DerivedKey(3), SetLatest: true}); err != nil {
			t.Fatal(err)
		}
	}
	newest, err := os.Readlink(filepath.Join(root, export.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	src := expose(t, root)
	ctx := context.Background()

	t.Run("Resolve", func(t *testing.T) {
		id, err := src.Resolve(ctx)
		if err != nil || id != newest {
			t.Fatalf("Resolve: %q, %v; want %s", id, err, newest)
		}
	})
	t.Run("Open", func(t *testing.T) {
		dir := filepath.Join(root, newest)
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			want, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rc, err := src.Open(ctx, newest, filepath.ToSlash(rel))
			if err != nil {
				t.Errorf("Open %s: %v", rel, err)
				return nil
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("Open %s: %d bytes (%v), want the %d bytes on disk", rel, len(got), err, len(want))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		_, err := src.Open(ctx, newest, export.BundlePath("nosuchdomain"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open of a missing bundle: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("Escape", func(t *testing.T) {
		for _, rel := range []string{"../" + export.LatestLink, "/etc/passwd", "mirror/../../x"} {
			if rc, err := src.Open(ctx, newest, rel); err == nil {
				rc.Close()
				t.Errorf("Open %q succeeded", rel)
			}
		}
	})
	t.Run("OpenFrom", func(t *testing.T) {
		ro, ok := src.(mirrorsync.RangeOpener)
		if !ok {
			t.Skip("not a RangeOpener")
		}
		rel := export.BundlePath("primary")
		want, err := os.ReadFile(filepath.Join(root, newest, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		first, err := src.Open(ctx, newest, rel)
		if err != nil {
			t.Fatal(err)
		}
		validator := ""
		if v, ok := first.(mirrorsync.Validator); ok {
			validator = v.Validator()
		}
		if s, ok := first.(mirrorsync.Sizer); ok && s.Size() != int64(len(want)) {
			t.Errorf("Size() = %d, want %d", s.Size(), len(want))
		}
		first.Close()
		off := int64(len(want) / 3)
		rc, start, err := ro.OpenFrom(ctx, newest, rel, off, validator)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || start != off || !bytes.Equal(got, want[off:]) {
			t.Errorf("OpenFrom(%d): start %d, %d bytes (%v); want %d and the %d bytes from there", off, start, len(got), err, off, len(want)-int(off))
		}
		if s, ok := rc.(mirrorsync.Sizer); ok && s.Size() != int64(len(want)) {
			t.Errorf("Size() after OpenFrom = %d, want the whole file's %d", s.Size(), len(want))
		}
		if _, _, err := ro.OpenFrom(ctx, newest, export.BundlePath("nosuchdomain"), 10, ""); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("OpenFrom of a missing bundle: %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("ExcititorDomains", func(t *testing.T) {
		ds, err := src.ExcititorDomains(ctx, newest)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ds)
		if !slices.Equal(ds, []string{"community", "primary"}) {
			t.Errorf("ExcititorDomains: %v", ds)
		}
	})
}

// CheckPublished fails t unless dst/latest names the export fx wrote and
// every file of fx stands under dst/<exportId> with its digest and size.
// Tests of a Source run a sync from it into dst and then call it.
func CheckPublished(t testing.TB, dst string, fx *fixture.Result) {
	t.Helper()
	target, err := os.Readlink(filepath.Join(dst, export.LatestLink))
	if err != nil || target != fx.ExportID {
		t.Fatalf("latest -> %q (%v), want %s", target, err, fx.ExportID)
	}
	for _, f := range fx.Files {
		d, n, err := export.DigestFile(filepath.Join(dst, fx.ExportID, filepath.FromSlash(f.Path)))
		if err != nil || d != f.Digest || n != f.SizeBytes {
			t.Fatalf("%s: digest %s size %d (%v), want %s %d", f.Path, d, n, err, f.Digest, f.SizeBytes)
		}
	}
}

package mirrorsync_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/localsrc"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

func newLocal(t testing.TB, dir string) *localsrc.Dir {
	t.Helper()
	s, err := localsrc.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustRun(t testing.TB, opts mirrorsync.Options) *mirrorsync.Result {
	t.Helper()
	res, err := mirrorsync.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

func TestFirstSyncThenNoOp(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	opts := baseOptions(dst, newLocal(t, src))

	res := mustRun(t, opts)
	if !res.Published || res.Skipped || res.ExportID != fx.ExportID {
		t.Fatalf("first run: %+v", res)
	}
	sourcetest.CheckPublished(t, dst, fx)
	var payload int64
	for _, f := range fx.Files {
		if f.Path != export.IndexPath && !strings.HasPrefix(filepath.Base(f.Path), "index.json") {
			payload += f.SizeBytes
		}
	}
	if res.BytesDownloaded < payload || res.FilesReused != 0 {
		t.Errorf("first run downloaded %d bytes (want >= %d), reused %d", res.BytesDownloaded, payload, res.FilesReused)
	}

	res = mustRun(t, opts)
	if !res.Skipped || res.Published || res.BytesDownloaded != 0 || res.FilesDownloaded != 0 {
		t.Fatalf("second run is not a no-op: %+v", res)
	}
	sourcetest.CheckPublished(t, dst, fx)

	// --force re-verifies everything, still downloading nothing.
	opts.Force = true
	res = mustRun(t, opts)
	if res.Skipped || res.BytesDownloaded != 0 || res.FilesDownloaded != 0 || res.FilesReused == 0 {
		t.Fatalf("forced run: %+v", res)
	}
	sourcetest.CheckPublished(t, dst, fx)
}

func TestSameSizeChangeIsDetected(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	opts := baseOptions(dst, newLocal(t, src))
	mustRun(t, opts)

	before, _ := os.Stat(filepath.Join(src, fx.ExportID, filepath.FromSlash(export.BundlePath("primary"))))
	digest := mutateBundle(t, src, fx.ExportID, "primary")
	after, _ := os.Stat(filepath.Join(src, fx.ExportID, filepath.FromSlash(export.BundlePath("primary"))))
	if before.Size() != after.Size() {
		t.Fatalf("mutation changed the size")
	}
	res := mustRun(t, opts)
	if res.Skipped || !res.Published {
		t.Fatalf("change not detected: %+v", res)
	}
	got, n, err := export.DigestFile(filepath.Join(dst, fx.ExportID, filepath.FromSlash(export.BundlePath("primary"))))
	if err != nil || got != digest {
		t.Fatalf("published bundle %s (%v), want %s", got, err, digest)
	}
	// Only the changed bundle and its signature and manifest are fetched;
	// the other domain is hard-linked.
	sig, _ := os.Stat(filepath.Join(src, fx.ExportID, filepath.FromSlash(export.BundleSignaturePath("primary"))))
	man, _ := os.Stat(filepath.Join(src, fx.ExportID, filepath.FromSlash(export.ManifestPath("primary"))))
	if want := n + sig.Size() + man.Size(); res.BytesDownloaded != want {
		t.Errorf("downloaded %d bytes, want %d (bundle + signature + manifest)", res.BytesDownloaded, want)
	}
	if res.FilesDownloaded != 3 || res.FilesReused == 0 {
		t.Errorf("downloaded %d files, reused %d", res.FilesDownloaded, res.FilesReused)
	}
}

func TestVerificationFailurePublishesNothing(t *testing.T) {
	kid := ""
	tests := []struct {
		name     string
		tamper   func(t *testing.T, dir string)
		opts     func(o *mirrorsync.Options)
		wantPath string
		wantText string
	}{
		{
			name: "bundle byte flipped",
			tamper: func(t *testing.T, dir string) {
				p := filepath.Join(dir, filepath.FromSlash(export.BundlePath("community")))
				data, _ := os.ReadFile(p)
				data[100] ^= 1
				writeFile(t, p, data)
			},
			wantPath: export.BundlePath("community"), wantText: "the index declares",
		},
		{
			name: "signature by an untrusted key",
			tamper: func(t *testing.T, dir string) {
				p := filepath.Join(dir, filepath.FromSlash(export.BundlePath("primary")))
				sig, err := jws.SignFile(p, otherKey, kid)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, p+export.SignatureSuffix, sig)
			},
			wantPath: export.BundleSignaturePath("primary"), wantText: "does not verify",
		},
		{
			name: "excititor export truncated",
			tamper: func(t *testing.T, dir string) {
				matches, _ := filepath.Glob(filepath.Join(dir, "excititor", "primary", "exports", "*.jsonl"))
				if len(matches) == 0 {
					t.Fatal("no jsonl export")
				}
				data, _ := os.ReadFile(matches[0])
				writeFile(t, matches[0], data[:len(data)-1])
			},
			wantPath: "excititor/primary/exports/", wantText: "bytes, the index declares",
		},
		{
			// Signed by the trusted key, but under another kid than the
			// index declares (the key set has no ids, so jws.Verify
			// accepts it): only the kid check of verification refuses it.
			name: "signature kid differs from the index",
			tamper: func(t *testing.T, dir string) {
				p := filepath.Join(dir, filepath.FromSlash(export.BundlePath("primary")))
				sig, err := jws.SignFile(p, testKey, "another-kid")
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, p+export.SignatureSuffix, sig)
			},
			wantPath: export.BundleSignaturePath("primary"), wantText: `kid "another-kid", the index declares`,
		},
		{
			// The index and the manifest agree on an algorithm the JWS
			// does not use.
			name: "index declares another signature algorithm",
			tamper: func(t *testing.T, dir string) {
				rewriteManifest(t, dir, "primary", func(m map[string]any) {
					m["bundle"].(map[string]any)["signature"].(map[string]any)["algorithm"] = "ES256"
				})
				editIndexDomain(t, dir, "primary", func(d map[string]any) {
					d["bundle"].(map[string]any)["signature"].(map[string]any)["algorithm"] = "ES256"
				})
			},
			wantPath: export.BundleSignaturePath("primary"), wantText: "the index declares ES256",
		},
		{
			name:     "unexpected key id",
			tamper:   func(t *testing.T, dir string) {},
			opts:     func(o *mirrorsync.Options) { o.ExpectKeyID = "some-other-kid" },
			wantPath: ".jws", wantText: `configured signing key is "some-other-kid"`,
		},
		{
			name:     "unexpected provider",
			tamper:   func(t *testing.T, dir string) {},
			opts:     func(o *mirrorsync.Options) { o.ExpectProvider = "kms" },
			wantPath: ".jws", wantText: `configured provider is "kms"`,
		},
	}
	kid = testKID(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			old := writeSource(t, src, 1)
			mustRun(t, baseOptions(dst, newLocal(t, src)))
			fx := writeSource(t, src, 2)
			tc.tamper(t, fx.Dir)
			opts := baseOptions(dst, newLocal(t, src))
			if tc.opts != nil {
				tc.opts(&opts)
			}
			res, err := mirrorsync.Run(context.Background(), opts)
			var ve *mirrorsync.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("want a VerifyError, got %v", err)
			}
			if !strings.Contains(ve.Path, tc.wantPath) || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q: want path containing %q and text %q", err, tc.wantPath, tc.wantText)
			}
			if res.Published {
				t.Errorf("result says published")
			}
			if _, err := os.Stat(filepath.Join(dst, fx.ExportID)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the tampered export was published: %v", err)
			}
			sourcetest.CheckPublished(t, dst, old)
		})
	}
}

func TestLockedRun(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeSource(t, src, 1)
	// Another process's lock is simulated by this process holding an
	// flock on a second descriptor: flock locks belong to open files.
	f, err := os.OpenFile(filepath.Join(dst, mirrorsync.LockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, err = mirrorsync.Run(context.Background(), baseOptions(dst, newLocal(t, src)))
	if !errors.Is(err, mirrorsync.ErrLocked) {
		t.Fatalf("want ErrLocked, got %v", err)
	}
	if latestOf(dst) != "" {
		t.Errorf("a locked run published something")
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	mustRun(t, baseOptions(dst, newLocal(t, src)))
}

// failingSource fails every Open after the first n.
type failingSource struct {
	mirrorsync.Source
	n     int
	opens int
}

func (s *failingSource) Open(ctx context.Context, id, rel string) (io.ReadCloser, error) {
	s.opens++
	if s.opens > s.n {
		return nil, fmt.Errorf("injected failure opening %s", rel)
	}
	return s.Source.Open(ctx, id, rel)
}

func TestInterruptedRunResumes(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	old := writeSource(t, src, 1)
	mustRun(t, baseOptions(dst, newLocal(t, src)))
	fx := writeSource(t, src, 2)

	// Indexes (1 + 2 Excititor) and 4 files, then the source fails.
	fs := &failingSource{Source: newLocal(t, src), n: 7}
	if _, err := mirrorsync.Run(context.Background(), baseOptions(dst, fs)); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("want the injected failure, got %v", err)
	}
	sourcetest.CheckPublished(t, dst, old)

	res := mustRun(t, baseOptions(dst, newLocal(t, src)))
	if res.FilesResumed < 4 || !res.Published {
		t.Fatalf("resumed run: %+v", res)
	}
	sourcetest.CheckPublished(t, dst, fx)
	if _, err := os.Stat(filepath.Join(dst, export.StagingDir, fx.ExportID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging directory left behind: %v", err)
	}
}

// fullDisk fails writes with ENOSPC once limit bytes were written.
type fullDisk struct {
	w     io.Writer
	limit *int64
}

func (d fullDisk) Write(p []byte) (int, error) {
	if *d.limit < int64(len(p)) {
		return 0, syscall.ENOSPC
	}
	*d.limit -= int64(len(p))
	return d.w.Write(p)
}

func TestDiskFullKeepsPublishedExport(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	old := writeSource(t, src, 1)
	mustRun(t, baseOptions(dst, newLocal(t, src)))
	writeSource(t, src, 2)

	opts := baseOptions(dst, newLocal(t, src))
	limit := int64(30 << 10)
	mirrorsync.SetWriteHook(&opts, func(w io.Writer) io.Writer { return fullDisk{w: w, limit: &limit} })
	_, err := mirrorsync.Run(context.Background(), opts)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("want ENOSPC, got %v", err)
	}
	sourcetest.CheckPublished(t, dst, old)
}

func TestRetentionKeepsNewest(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	var ids []string
	for seed := uint64(1); seed <= 5; seed++ {
		fx := writeSource(t, src, seed, "primary")
		opts := baseOptions(dst, newLocal(t, src))
		opts.Keep = 3
		mustRun(t, opts)
		ids = append(ids, fx.ExportID)
	}
	for i, id := range ids {
		_, err := os.Stat(filepath.Join(dst, id))
		if kept := i >= 2; kept != (err == nil) {
			t.Errorf("export %d (%s): kept=%v, stat err %v", i, id, kept, err)
		}
	}
	if latestOf(dst) != ids[4] {
		t.Errorf("latest -> %s, want %s", latestOf(dst), ids[4])
	}
	if _, err := os.Stat(filepath.Join(dst, ".trash")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("trash not emptied: %v", err)
	}
}

func TestDomainFilter(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	opts := baseOptions(dst, newLocal(t, src))
	opts.Domains = []string{"community"}
	mustRun(t, opts)
	data, err := os.ReadFile(filepath.Join(dst, fx.ExportID, filepath.FromSlash(export.IndexPath)))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := export.ParseIndex(data)
	if err != nil || len(ix.Domains) != 1 || ix.Domains[0].DomainID != "community" {
		t.Fatalf("index %+v (%v)", ix, err)
	}
	for _, p := range []string{export.BundlePath("primary"), export.ExcititorIndexPath("primary")} {
		if _, err := os.Stat(filepath.Join(dst, fx.ExportID, filepath.FromSlash(p))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was synced: %v", p, err)
		}
	}
	opts.Domains = []string{"nope"}
	if _, err := mirrorsync.Run(context.Background(), opts); err == nil || !strings.Contains(err.Error(), `domain "nope"`) {
		t.Errorf("unknown domain: %v", err)
	}
}

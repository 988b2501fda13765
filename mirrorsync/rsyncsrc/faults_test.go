package rsyncsrc_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/rsyncsrc"
	"github.com/stella-ops/stella-mirror/mirrorsync/rsyncsrc/rsynctest"
)

// TestRsyncErrorsNameStatus runs sync against real rsync failures: each
// error names rsync's exit status, its documented meaning and rsync's own
// words, never carries an exit status a command could pass on, and never
// contains the daemon password.
func TestRsyncErrorsNameStatus(t *testing.T) {
	const password = "s3cret-daemon-pw"
	src := t.TempDir()
	writeSource(t, src, 1, true)
	open := rsynctest.Start(t, src, rsynctest.Options{})
	auth := rsynctest.Start(t, src, rsynctest.Options{User: "mirror", Password: password})
	noDaemon := fmt.Sprintf("rsync://127.0.0.1:%d/exports", rsynctest.FreePort(t))
	dangling := t.TempDir()
	os.Symlink("20300101T000000Z", filepath.Join(dangling, export.LatestLink))
	danglingURL := rsynctest.Start(t, dangling, rsynctest.Options{}).URL

	tests := []struct {
		name, url, env string
		code           int
		want           []string
		notExist       bool
	}{
		{"socket error", noDaemon, "", 10, []string{"rsync exit status 10 (error in socket I/O)", "Connection refused"}, false},
		{"auth failed", auth.URL, "wrong-" + password, 5, []string{"rsync exit status 5 (error starting client-server protocol)", "auth failed on module exports"}, false},
		{"unknown module", strings.TrimSuffix(open.URL, "/exports") + "/nosuchmodule", "", 5, []string{"rsync exit status 5", "Unknown module 'nosuchmodule'"}, false},
		{"latest names a missing export", danglingURL, "", 23, []string{"rsync exit status 23 (partial transfer due to error)", "20300101T000000Z", "No such file or directory"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RSYNC_PASSWORD", tc.env)
			s, err := rsyncsrc.New(tc.url, "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = mirrorsync.Run(context.Background(), mirrorsync.Options{Root: t.TempDir(), Source: s, Keys: keys})
			if err == nil {
				t.Fatal("sync succeeded")
			}
			var re *rsyncsrc.Error
			if !errors.As(err, &re) || re.Code != tc.code {
				t.Fatalf("error %v: want an *rsyncsrc.Error with code %d", err, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("the daemon password appears in the error: %v", err)
			}
			if errors.As(err, new(interface{ ExitCode() int })) {
				t.Errorf("the error carries an ExitCode method (a command would exit with rsync's status): %v", err)
			}
			if errors.Is(err, fs.ErrNotExist) != tc.notExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", !tc.notExist, tc.notExist)
			}
		})
	}
	t.Run("right password", func(t *testing.T) {
		t.Setenv("RSYNC_PASSWORD", password)
		s, _ := rsyncsrc.New(auth.URL, "")
		if res, err := mirrorsync.Run(context.Background(), mirrorsync.Options{Root: t.TempDir(), Source: s, Keys: keys}); err != nil || !res.Published {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

// newerExport publishes export seed 1 from src into a new root, then writes
// export seed 2 (latest) whose primary bundle the caller breaks.
func newerExport(t *testing.T) (src, dst string, s *rsyncsrc.Source, fx2 *fixture.Result) {
	t.Helper()
	src, dst = t.TempDir(), t.TempDir()
	url := startDaemon(t, src)
	writeSource(t, src, 1, true)
	var err error
	if s, err = rsyncsrc.New(url, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := mirrorsync.Run(context.Background(), mirrorsync.Options{Root: dst, Source: s, Keys: keys}); err != nil {
		t.Fatal(err)
	}
	return src, dst, s, writeSource(t, src, 2, true)
}

// TestOversizedFileRefusedBeforeTransfer: a 2 GiB (sparse) bundle where
// the index declares a few KiB is refused before anything is copied, with
// the file, the declared and the actual size; nothing large reaches staging.
func TestOversizedFileRefusedBeforeTransfer(t *testing.T) {
	_, dst, s, fx := newerExport(t)
	bundle := filepath.Join(fx.Dir, filepath.FromSlash(export.BundlePath("primary")))
	declared := fx.Domains[0].BundleBytes
	if err := os.Truncate(bundle, 2<<30); err != nil {
		t.Fatal(err)
	}
	res, err := mirrorsync.Run(context.Background(), mirrorsync.Options{Root: dst, Source: s, Keys: keys})
	var ve *mirrorsync.VerifyError
	if !errors.As(err, &ve) || ve.Path != export.BundlePath("primary") {
		t.Fatalf("error %v: want a VerifyError naming %s", err, export.BundlePath("primary"))
	}
	for _, w := range []string{fx.ExportID, export.BundlePath("primary"), fmt.Sprint(int64(2 << 30)), fmt.Sprintf("declares %d", declared), "not transferred"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if res.Skipped || res.Published || res.BytesDownloaded != 0 {
		t.Errorf("result %+v: want a failure with nothing downloaded", res)
	}
	filepath.WalkDir(filepath.Join(dst, export.StagingDir), func(p string, d fs.DirEntry, err error) error {
		if fi, err := os.Lstat(p); err == nil && fi.Size() > 1<<20 {
			t.Errorf("%s: %d bytes in staging", p, fi.Size())
		}
		return nil
	})
	// Open, the engine's fallback, does not transfer it either.
	if _, err := s.Open(context.Background(), fx.ExportID, export.BundlePath("primary")); !errors.As(err, &ve) || !strings.Contains(err.Error(), "not transferred") {
		t.Errorf("Open: %v, want a refusal naming the size", err)
	}
}

// TestMissingAndSymlinkedFilesRefused: a newer export with a missing
// bundle, or one whose file is a symbolic link, fails naming the export,
// the file and its rsync URL — never "nothing new", never the temporary
// copy.
func TestMissingAndSymlinkedFilesRefused(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, file string)
		want   []string
		is     error
	}{
		{"missing", func(t *testing.T, file string) { os.Remove(file) }, []string{"missing at the source"}, fs.ErrNotExist},
		{"symlink", func(t *testing.T, file string) {
			os.Rename(file, file+".real")
			os.Symlink(filepath.Base(file)+".real", file)
		}, []string{"is a symbolic link (-> bundle.json.real)", "regular files only"}, nil},
		{"symlinked directory", func(t *testing.T, file string) {
			dir := filepath.Dir(file)
			os.Rename(dir, dir+".real")
			os.Symlink(filepath.Base(dir)+".real", dir)
		}, []string{"/mirror/community is a symbolic link (-> community.real)", "regular files only"}, nil},
		{"symlink loop", func(t *testing.T, file string) {
			os.Remove(file)
			os.Symlink(filepath.Base(file), file) // bundle.json -> bundle.json
		}, []string{"is a symbolic link (-> bundle.json)", "regular files only"}, nil},
		{"symlink cycle", func(t *testing.T, file string) {
			os.Remove(file)
			os.Symlink("other", file)
			os.Symlink(filepath.Base(file), filepath.Join(filepath.Dir(file), "other")) // bundle.json -> other -> bundle.json
		}, []string{"is a symbolic link (-> other)", "regular files only"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, dst, s, fx := newerExport(t)
			rel := export.BundlePath("community")
			tc.break_(t, filepath.Join(fx.Dir, filepath.FromSlash(rel)))
			res, err := mirrorsync.Run(context.Background(), mirrorsync.Options{Root: dst, Source: s, Keys: keys})
			if err == nil || res.Skipped || res.Published {
				t.Fatalf("%+v %v: want a failure", res, err)
			}
			url := s.String() + "/" + fx.ExportID + "/" + rel
			if tc.name == "symlinked directory" {
				url = strings.TrimSuffix(url, "/bundle.json") // the link is named, once
				if n := strings.Count(err.Error(), "is a symbolic link"); n != 1 {
					t.Errorf("the link is named %d times: %v", n, err)
				}
			}
			for _, w := range append(tc.want, fx.ExportID, url) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), os.TempDir()) {
				t.Errorf("error names a temporary path: %v", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(err, %v) = false: %v", tc.is, err)
			}
			// Open names the source too (a linked directory in the path
			// is resolved by the daemon; only the listing shows it).
			if tc.name == "symlinked directory" {
				return
			}
			if _, err := s.Open(context.Background(), fx.ExportID, rel); err == nil || !strings.Contains(err.Error(), url) {
				t.Errorf("Open: %v, want an error naming %s", err, url)
			}
		})
	}
}

// TestUnchangedFilesReusedWhateverMtime: the second export shares its
// bundles, Excititor exports and signatures with the first, byte for byte,
// but every file has another mtime. After sync they are hard links of the
// published first export (same inode); only the files that differ take new
// blocks.
func TestUnchangedFilesReusedWhateverMtime(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	url := startDaemon(t, src)
	fx1 := writeSource(t, src, 1, true)
	s, err := rsyncsrc.New(url, "")
	if err != nil {
		t.Fatal(err)
	}
	opts := mirrorsync.Options{Root: dst, Source: s, Keys: keys}
	if _, err := mirrorsync.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	// Export 2: a copy of export 1 under a new id (every file rewritten,
	// so new mtimes); the indexes and manifests name the new id.
	id2 := "20260101T020000Z"
	dir2 := filepath.Join(src, id2)
	if err := os.CopyFS(dir2, os.DirFS(fx1.Dir)); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	filepath.WalkDir(dir2, func(p string, d fs.DirEntry, err error) error {
		return os.Chtimes(p, later, later)
	})
	renameExport(t, dir2, fx1.ExportID, id2)
	os.Remove(filepath.Join(src, export.LatestLink))
	os.Symlink(id2, filepath.Join(src, export.LatestLink))

	res, err := mirrorsync.Run(context.Background(), opts)
	if err != nil || !res.Published {
		t.Fatalf("%+v %v", res, err)
	}
	var shared, fresh, total int64
	for _, f := range fx1.Files {
		a, errA := os.Stat(filepath.Join(dst, fx1.ExportID, filepath.FromSlash(f.Path)))
		b, errB := os.Stat(filepath.Join(dst, id2, filepath.FromSlash(f.Path)))
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v %v", f.Path, errA, errB)
		}
		total += b.Size()
		if os.SameFile(a, b) {
			shared += b.Size()
		} else {
			fresh += b.Size()
			if strings.HasSuffix(f.Path, "bundle.json") || strings.Contains(f.Path, "/exports/") {
				t.Errorf("%s: not a hard link of the published copy (same bytes, other mtime)", f.Path)
			}
		}
	}
	t.Logf("export 2: %d of %d bytes hard-linked from export 1, %d bytes of new blocks; %d bytes transferred, %d files reused",
		shared, total, fresh, res.BytesDownloaded, res.FilesReused)
	if fresh >= total/4 || res.BytesDownloaded > fresh {
		t.Errorf("new blocks %d / transferred %d of %d bytes: unchanged files were copied", fresh, res.BytesDownloaded, total)
	}
}

// renameExport rewrites the indexes and manifests of the export in dir
// from export id old to id new (the bundles and Excititor exports, which do
// not name it, keep their bytes and signatures).
func renameExport(t *testing.T, dir, old, new string) {
	t.Helper()
	ixPath := filepath.Join(dir, filepath.FromSlash(export.IndexPath))
	raw, _ := os.ReadFile(ixPath)
	ix, err := export.ParseIndex(raw)
	if err != nil {
		t.Fatal(err)
	}
	ix.ExportID = new
	for i := range ix.Domains {
		d := &ix.Domains[i]
		mPath := filepath.Join(dir, filepath.FromSlash(d.Manifest.Path))
		mraw, _ := os.ReadFile(mPath)
		m, err := export.ParseManifest(mraw)
		if err != nil {
			t.Fatal(err)
		}
		m.ExportID = new
		mdata := mustJSON(t, m)
		os.WriteFile(mPath, mdata, 0o644)
		d.Manifest.Digest, d.Manifest.SizeBytes = export.Digest(mdata), int64(len(mdata))
	}
	os.WriteFile(ixPath, mustJSON(t, ix), 0o644)
	xdirs, _ := os.ReadDir(filepath.Join(dir, "excititor"))
	for _, xd := range xdirs {
		p := filepath.Join(dir, filepath.FromSlash(export.ExcititorIndexPath(xd.Name())))
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		xi, err := export.ParseExcititorIndex(raw)
		if err != nil {
			t.Fatal(err)
		}
		xi.ExportID = new
		os.WriteFile(p, mustJSON(t, xi), 0o644)
	}
	if raw, _ := os.ReadFile(ixPath); strings.Contains(string(raw), old) {
		t.Fatalf("index still names %s", old)
	}
}

// TestCancelKillsTheRsyncGroup: cancelling the context while rsync copies
// a (throttled) bundle kills rsync and the receiver it forked; none is
// left writing into staging.
func TestCancelKillsTheRsyncGroup(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	url := startDaemon(t, src)
	if _, err := fixture.Write(src, fixture.Options{Domains: []string{"primary"}, BundleSize: 4 << 20, VEXSize: 4 << 10,
		Seed: 1, Key: testKey, SetLatest: true}); err != nil {
		t.Fatal(err)
	}
	s, err := rsyncsrc.New(url, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Args = []string{"--bwlimit=32"} // 4 MiB at 32 KiB/s: two minutes
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := mirrorsync.Run(ctx, mirrorsync.Options{Root: dst, Source: s, Keys: keys})
		done <- err
	}()
	waitTransferring(t, dst, done)
	if len(rsynctest.Processes(t, dst)) == 0 {
		t.Fatal("no rsync is running for the staging directory")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want context.Canceled", err)
	}
	rsynctest.WaitGone(t, dst, 30*time.Second)
}

// waitTransferring waits until rsync's temporary file of the bundle appears
// in root's staging directory (or the run ends, which fails the test).
func waitTransferring(t *testing.T, root string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		found := false
		filepath.WalkDir(filepath.Join(root, export.StagingDir), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && strings.HasPrefix(d.Name(), ".bundle.json.") {
				found = true
			}
			return nil
		})
		if found {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the run ended before rsync copied the bundle: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("rsync did not start copying the bundle")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

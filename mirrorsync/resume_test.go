package mirrorsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/syncbuf"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

// TestResumePartialDownload interrupts a run in the middle of a bundle
// (local source: seek) and checks what the next run does with the partial
// file, by the bytes each run fetched: no byte is fetched twice unless the
// partial file is wrong.
func TestResumePartialDownload(t *testing.T) {
	src := t.TempDir()
	fx, err := fixture.Write(src, fixture.Options{Domains: []string{"primary"}, BundleSize: 2 << 20, VEXSize: 4 << 10,
		Seed: 1, Key: testKey, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	bundle := export.BundlePath("primary")
	var size int64
	for _, f := range fx.Files {
		if f.Path == bundle {
			size = f.SizeBytes
		}
	}
	full := mustRun(t, baseOptions(t.TempDir(), newLocal(t, src))).BytesDownloaded

	for _, tc := range []struct {
		name string
		cut  int64
		// spoil changes the partial file (and its record) between the runs.
		spoil func(t *testing.T, part string)
		// extra is what the second run fetches beyond the rest of the file.
		extra   int64
		resumed int64
		logged  string
	}{
		{name: "rest only", cut: size / 2, resumed: size / 2, logged: "resuming partial download"},
		{name: "complete part is renamed", cut: size, resumed: size},
		{name: "wrong prefix is fetched again in full", cut: size / 2, extra: size, resumed: 0,
			spoil: func(t *testing.T, part string) {
				f, err := os.OpenFile(part, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.WriteAt([]byte("\x00\x01"), 100)
				f.Close()
			}, logged: "resumed download failed verification; downloading the whole file again"},
		{name: "part of another version is discarded", cut: size / 2, extra: size / 2,
			spoil: func(t *testing.T, part string) {
				var info map[string]any
				data, _ := os.ReadFile(part + ".info")
				if err := json.Unmarshal(data, &info); err != nil {
					t.Fatalf("partial-file record: %v", err)
				}
				info["digest"] = "sha256:" + strings.Repeat("0", 64)
				data, _ = json.Marshal(info)
				os.WriteFile(part+".info", data, 0o644)
			}, logged: "discarding partial download"},
		{name: "part without a record is discarded", cut: size / 2, extra: size / 2,
			spoil: func(t *testing.T, part string) {
				if err := os.Remove(part + ".info"); err != nil {
					t.Fatal(err)
				}
			}, logged: "discarding partial download"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := t.TempDir()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opts := baseOptions(dst, sourcetest.Interrupt(newLocal(t, src), bundle, tc.cut, cancel))
			first, err := mirrorsync.Run(ctx, opts)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted run: %v", err)
			}
			part := filepath.Join(dst, export.StagingDir, fx.ExportID, "mirror", "primary", ".bundle.json.part")
			if fi, err := os.Stat(part); err != nil || fi.Size() != tc.cut {
				t.Fatalf("partial file: %v %v, want %d bytes", fi, err, tc.cut)
			}
			if tc.spoil != nil {
				tc.spoil(t, part)
			}
			var logs syncbuf.Buffer
			opts = baseOptions(dst, newLocal(t, src))
			opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			second := mustRun(t, opts)
			if !second.Published {
				t.Fatalf("second run: %+v", second)
			}
			sourcetest.CheckPublished(t, dst, fx)
			if got, want := first.BytesDownloaded+second.BytesDownloaded, full+tc.extra; got != want {
				t.Errorf("fetched %d + %d = %d bytes over both runs, want %d (one full run: %d)",
					first.BytesDownloaded, second.BytesDownloaded, got, want, full)
			}
			if second.BytesResumed != tc.resumed {
				t.Errorf("BytesResumed %d, want %d", second.BytesResumed, tc.resumed)
			}
			if !strings.Contains(logs.String(), tc.logged) {
				t.Errorf("log lacks %q:\n%s", tc.logged, logs.String())
			}
			if _, err := os.Stat(part); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("partial file left after the run: %v", err)
			}
		})
	}
}

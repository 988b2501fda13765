package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/flock"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// lastResult reads the result label set to 1 in a metrics textfile ("" when
// the file is missing).
func lastResult(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	mf := mfs["stella_mirror_sync_last_result"]
	if mf == nil {
		t.Fatalf("%s has no stella_mirror_sync_last_result", path)
	}
	got := ""
	for _, m := range mf.Metric {
		if m.GetGauge().GetValue() == 1 {
			if got != "" {
				t.Fatalf("%s: two results set", path)
			}
			got = m.Label[0].GetValue()
		}
	}
	return got
}

// TestSyncExitCodes runs `sync` over every kind of outcome: its exit status
// is exactly 0, 1, 2 or 75, and the metrics textfile records each outcome
// the configuration lets it name.
func TestSyncExitCodes(t *testing.T) {
	type env struct{ src, id, pub, dst, prom string }
	// fakeRsync is an "rsync" that fails with rsync's status 23: a child's
	// exit status must not leak as sync's.
	fakeRsync := filepath.Join(t.TempDir(), "rsync")
	if err := os.WriteFile(fakeRsync, []byte("#!/bin/sh\necho 'rsync: some files could not be transferred' >&2\nexit 23\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// setup prepares the case and returns sync's arguments after
		// "sync" (the metrics textfile is added).
		setup      func(t *testing.T, e env) []string
		code       int
		result     string // the textfile's result; "" for no file
		wantStderr string
	}{
		{"published", func(t *testing.T, e env) []string {
			return []string{"--source", e.src, "--dest", e.dst, "--public-key", e.pub}
		}, 0, mirrorsync.ResultPublished, ""},
		{"nothing new", func(t *testing.T, e env) []string {
			args := []string{"--source", e.src, "--dest", e.dst, "--public-key", e.pub}
			if code := run(append([]string{"sync"}, args...), &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
				t.Fatalf("first run: exit %d", code)
			}
			return args
		}, 0, mirrorsync.ResultUnchanged, ""},
		{"verification failure", func(t *testing.T, e env) []string {
			p := filepath.Join(e.src, e.id, filepath.FromSlash(export.BundlePath("primary")))
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)/2] ^= 1
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--source", e.src, "--dest", e.dst, "--public-key", e.pub}
		}, 1, mirrorsync.ResultVerify, "verification failed: mirror/primary/bundle.json"},
		{"missing source directory", func(t *testing.T, e env) []string {
			return []string{"--source", filepath.Join(e.src, "gone"), "--dest", e.dst, "--public-key", e.pub}
		}, 1, mirrorsync.ResultFailed, "source directory"},
		{"rsync exits 23", func(t *testing.T, e env) []string {
			return []string{"--source", "rsync://127.0.0.1:1/exports", "--rsync", fakeRsync, "--dest", e.dst, "--public-key", e.pub}
		}, 1, mirrorsync.ResultFailed, "rsync"},
		{"lock held", func(t *testing.T, e env) []string {
			if err := os.MkdirAll(e.dst, 0o755); err != nil {
				t.Fatal(err)
			}
			release, err := flock.TryLock(filepath.Join(e.dst, mirrorsync.LockName))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(release)
			return []string{"--source", e.src, "--dest", e.dst, "--public-key", e.pub}
		}, 75, mirrorsync.ResultLocked, "another sync run holds the lock"},
		{"unknown flag", func(t *testing.T, e env) []string {
			return []string{"--source", e.src, "--dest", e.dst, "--public-key", e.pub, "--no-such-flag"}
		}, 2, "", "flag provided but not defined"},
		{"keep below 2", func(t *testing.T, e env) []string {
			return []string{"--source", e.src, "--dest", e.dst, "--public-key", e.pub, "--keep", "1"}
		}, 2, mirrorsync.ResultFailed, "SYNC__KEEP (--keep): 1"},
		{"unknown scheme", func(t *testing.T, e env) []string {
			return []string{"--source", "ftp://host/x", "--dest", e.dst, "--public-key", e.pub}
		}, 2, "", `source "ftp://host/x": unknown scheme`},
		{"metrics directory missing", func(t *testing.T, e env) []string {
			return []string{"--source", e.src, "--dest", e.dst, "--public-key", e.pub, "--metrics-textfile", filepath.Join(e.dst, "no", "x.prom")}
		}, 2, "", "its directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, id, pub := syncFixture(t)
			e := env{src: src, id: id, pub: pub, dst: filepath.Join(t.TempDir(), "root"), prom: filepath.Join(t.TempDir(), "sync.prom")}
			args := append([]string{"sync", "--metrics-textfile", e.prom}, tc.setup(t, e)...)
			var out, errb bytes.Buffer
			code := run(args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.wantStderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantStderr, errb.String())
			}
			if got := lastResult(t, e.prom); got != tc.result {
				t.Errorf("metrics textfile result %q, want %q", got, tc.result)
			}
		})
	}
}

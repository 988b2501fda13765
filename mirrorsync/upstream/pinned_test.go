package upstream_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
	"github.com/stella-ops/stella-mirror/mirrorsync/upstream"
)

// switchingUpstream serves root: the unversioned URLs through our origin
// (whatever root/latest names) and, when pinned is set, the export-pinned
// URLs /concelier/exports/{id}/… from root/{id} itself (so the test does
// not depend on the origin's own pinned routes); without pinned they
// answer 404, as an upstream without pinned URLs does. With pinned, an
// Excititor export or signature is served from any export of root that
// holds its key (an exportKey's bytes never change across exports, so its
// URL is pinned by the key). The first request
// for a manifest (pinned or not) calls onFirstManifest.
type switchingUpstream struct {
	root            string
	pinned          bool
	origin          http.Handler
	onFirstManifest func()

	once sync.Once
	mu   sync.Mutex
	seen []string // request paths
}

func (u *switchingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	u.mu.Lock()
	u.seen = append(u.seen, p)
	u.mu.Unlock()
	if strings.HasSuffix(p, "/"+export.ManifestName) && u.onFirstManifest != nil {
		u.once.Do(u.onFirstManifest)
	}
	if x, ok := strings.CutPrefix(p, "/excititor/mirror/"); ok && u.pinned && strings.Contains(x, "/export/") {
		u.serveKey(w, r, x)
		return
	}
	rest, ok := strings.CutPrefix(p, "/concelier/exports/")
	id, rel, _ := strings.Cut(rest, "/")
	if !ok || id == "mirror" || id == "index.json" {
		u.origin.ServeHTTP(w, r)
		return
	}
	if !u.pinned {
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	if rel == "index.json" {
		rel = export.IndexPath
	}
	if !export.ValidExportID(id) || export.ValidateRelPath(rel) != nil {
		http.Error(w, `{"error":"bad path"}`, http.StatusNotFound)
		return
	}
	data, err := os.ReadFile(filepath.Join(u.root, id, filepath.FromSlash(rel)))
	if err != nil {
		http.Error(w, `{"error":"unknown export"}`, http.StatusNotFound)
		return
	}
	w.Header().Set(upstream.ExportIDHeader, id)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Write(data)
}

// serveKey serves /excititor/mirror/{x} ({domain}/export/{key}[/signature])
// from the newest export of root that holds the key.
func (u *switchingUpstream) serveKey(w http.ResponseWriter, r *http.Request, x string) {
	domain, key, _ := strings.Cut(x, "/export/")
	key, sig := strings.CutSuffix(key, "/signature")
	if !export.ValidDomainID(domain) || !export.ValidExportKey(key) {
		http.NotFound(w, r)
		return
	}
	rel := export.ExcititorExportPath(domain, key)
	if sig {
		rel = export.ExcititorSignaturePath(domain, key)
	}
	entries, _ := os.ReadDir(u.root)
	for i := len(entries) - 1; i >= 0; i-- {
		if id := entries[i].Name(); entries[i].IsDir() && export.ValidExportID(id) {
			if data, err := os.ReadFile(filepath.Join(u.root, id, filepath.FromSlash(rel))); err == nil {
				w.Write(data)
				return
			}
		}
	}
	http.NotFound(w, r)
}

// paths returns the request paths seen so far.
func (u *switchingUpstream) paths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// pointLatest points root/latest at id with one rename.
func pointLatest(t testing.TB, root, id string) {
	t.Helper()
	tmp := filepath.Join(root, ".latest.tmp")
	os.Remove(tmp)
	if err := os.Symlink(id, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(root, export.LatestLink)); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects log lines (concurrency-safe).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSwitchMidSync: the upstream switches its unversioned URLs from
// export A to export B right after the first manifest request of a run.
// With pinned URLs the run completes export A, consistent, and never asks
// for an unversioned Concelier file after the index; without pinned URLs
// the same switch fails the run (it never publishes a mix), and nothing
// is published.
func TestSwitchMidSync(t *testing.T) {
	src := t.TempDir()
	a := writeSource(t, src, 1)
	b := writeSource(t, src, 2)
	if a.ExportID == b.ExportID {
		t.Fatal("the two exports must differ")
	}
	o := newOrigin(t, src)
	for _, pinned := range []bool{true, false} {
		name := map[bool]string{true: "pinned", false: "unversioned fallback"}[pinned]
		t.Run(name, func(t *testing.T) {
			pointLatest(t, src, a.ExportID)
			var switched atomic.Bool
			u := &switchingUpstream{root: src, pinned: pinned, origin: o.Handler(), onFirstManifest: func() {
				pointLatest(t, src, b.ExportID)
				switched.Store(true)
			}}
			up := httptest.NewServer(u)
			defer up.Close()
			var logs logBuffer
			s := newSource(t, up.URL, func(opts *upstream.Options) {
				opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			dst := t.TempDir()
			res, err := run(t, dst, s)
			if !switched.Load() {
				t.Fatal("the upstream never switched during the run")
			}
			if pinned {
				if err != nil {
					t.Fatalf("sync across a switch with pinned URLs: %v", err)
				}
				if res.ExportID != a.ExportID || !s.Pinned() {
					t.Fatalf("synced %s (pinned %v), want %s by pinned URLs", res.ExportID, s.Pinned(), a.ExportID)
				}
				sourcetest.CheckPublished(t, dst, a)
				for _, p := range u.paths() {
					if strings.HasPrefix(p, "/concelier/exports/mirror/") {
						t.Errorf("unversioned Concelier file requested: %s", p)
					}
				}
				if strings.Contains(logs.String(), "no export-pinned URLs") {
					t.Errorf("fallback warning with pinned URLs:\n%s", logs.String())
				}
				return
			}
			if err == nil {
				t.Fatalf("a run across a switch without pinned URLs succeeded with %s; it cannot be consistent", res.ExportID)
			}
			if !strings.Contains(err.Error(), b.ExportID) {
				t.Errorf("error %q does not name the export the upstream switched to (%s)", err, b.ExportID)
			}
			if _, err := os.Lstat(filepath.Join(dst, export.LatestLink)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("something was published after a failed run: %v", err)
			}
		})
	}
}

// TestFallbackWithoutPinnedURLs: an upstream whose pinned index answers
// 404 is synced from the unversioned URLs, with exactly one warning line.
func TestFallbackWithoutPinnedURLs(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	u := &switchingUpstream{root: src, origin: newOrigin(t, src).Handler()}
	up := httptest.NewServer(u)
	defer up.Close()
	var logs logBuffer
	s := newSource(t, up.URL, func(opts *upstream.Options) {
		opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	res, err := run(t, dst, s)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Published || s.Pinned() {
		t.Fatalf("result %+v, pinned %v", res, s.Pinned())
	}
	sourcetest.CheckPublished(t, dst, fx)
	if n := strings.Count(logs.String(), "no export-pinned URLs"); n != 1 {
		t.Errorf("%d fallback warnings, want 1:\n%s", n, logs.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, "no export-pinned URLs") && !strings.Contains(line, "level=WARN") {
			t.Errorf("fallback logged below warning level: %s", line)
		}
	}
	var pinnedAsked, unversioned bool
	for _, p := range u.paths() {
		pinnedAsked = pinnedAsked || p == upstream.PinnedIndexPath(fx.ExportID)
		unversioned = unversioned || p == "/concelier/exports/"+export.BundlePath("primary")
	}
	if !pinnedAsked || !unversioned {
		t.Errorf("pinned index asked %v, unversioned bundle fetched %v: %v", pinnedAsked, unversioned, u.paths())
	}
}

// TestPinnedIndexNamingAnotherExportFails: a pinned index that names
// another export than the one asked for is an error, not a silent mix.
func TestPinnedIndexNamingAnotherExportFails(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	a := writeSource(t, src, 1)
	b := writeSource(t, src, 2)
	pointLatest(t, src, a.ExportID)
	o := newOrigin(t, src)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == upstream.PinnedIndexPath(a.ExportID) {
			http.ServeFile(w, r, filepath.Join(src, b.ExportID, filepath.FromSlash(export.IndexPath)))
			return
		}
		o.Handler().ServeHTTP(w, r)
	}))
	defer up.Close()
	_, err := run(t, dst, newSource(t, up.URL, nil))
	if err == nil || !strings.Contains(err.Error(), b.ExportID) || !strings.Contains(err.Error(), "pinned index") {
		t.Fatalf("want an error naming the pinned index and export %s, got %v", b.ExportID, err)
	}
}

// TestSyncFromOriginUsesPinnedURLs: against our origin (which serves
// export-pinned URLs) every Concelier file after the unversioned index is
// fetched by its pinned URL, and no fallback warning is logged.
func TestSyncFromOriginUsesPinnedURLs(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	o := newOrigin(t, src)
	var mu sync.Mutex
	var paths []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		o.Handler().ServeHTTP(w, r)
	}))
	defer up.Close()
	var logs logBuffer
	s := newSource(t, up.URL, func(opts *upstream.Options) {
		opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if _, err := run(t, dst, s); err != nil {
		t.Fatal(err)
	}
	sourcetest.CheckPublished(t, dst, fx)
	if !s.Pinned() || strings.Contains(logs.String(), "no export-pinned URLs") {
		t.Fatalf("pinned %v; logs:\n%s", s.Pinned(), logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	pinned := 0
	for _, p := range paths {
		switch {
		case strings.HasPrefix(p, "/concelier/exports/mirror/"):
			t.Errorf("unversioned Concelier file fetched: %s", p)
		case strings.HasPrefix(p, "/concelier/exports/"+fx.ExportID+"/"):
			pinned++
		}
	}
	// The pinned index and, per domain, manifest, bundle and signature.
	if want := 1 + 3*len(fx.Domains); pinned != want {
		t.Errorf("%d pinned requests, want %d: %v", pinned, want, paths)
	}
}

// TestSwitchMidSyncAtOrigin: our origin switches exports (latest moves
// from A to B) at the first manifest request of a run, after the run has
// read A's index and fetched A's Excititor exports (which the origin serves
// for its active export only): the run completes A, by pinned URLs.
func TestSwitchMidSyncAtOrigin(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	a := writeSource(t, src, 1)
	b := writeSource(t, src, 2)
	pointLatest(t, src, a.ExportID)
	o := newOrigin(t, src)
	var once sync.Once
	var switched atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/"+export.ManifestName) {
			once.Do(func() {
				pointLatest(t, src, b.ExportID)
				switched.Store(true)
			})
		}
		o.Handler().ServeHTTP(w, r)
	}))
	defer up.Close()
	s := newSource(t, up.URL, nil)
	res, err := run(t, dst, s)
	if !switched.Load() {
		t.Fatal("the origin never switched during the run")
	}
	if err != nil {
		t.Fatalf("sync across a switch at the origin: %v", err)
	}
	if res.ExportID != a.ExportID || !s.Pinned() {
		t.Fatalf("synced %s (pinned %v), want %s", res.ExportID, s.Pinned(), a.ExportID)
	}
	sourcetest.CheckPublished(t, dst, a)
	// The next run picks up B.
	if res, err := run(t, dst, s); err != nil || res.ExportID != b.ExportID {
		t.Fatalf("next run: %+v, %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, b)
}

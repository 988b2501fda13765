package origin

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
)

// productPaths are each product's index path, whose X-Stella-Export-Id
// shows which export it resolved.
var productPaths = map[string]string{
	"concelier": "/concelier/exports/index.json",
	"excititor": "/excititor/mirror/primary/index",
}

func TestResolution(t *testing.T) {
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	newer := old.Add(time.Hour)
	newest := old.Add(2 * time.Hour)
	type env struct {
		t    *testing.T
		root string
		cfg  *Config
	}
	// export writes a complete export with its markers at mt.
	mk := func(e env, id string, mt time.Time) {
		setMarkerTimes(e.t, writeExport(e.t, e.root, id, treeOpts{}), mt)
	}
	cases := []struct {
		name   string
		setup  func(e env)
		want   string // served export id; "" means 503 / not ready
		logHas string // for want == "": the log must explain
	}{
		{name: "pinned id wins over latest and newest", setup: func(e env) {
			mk(e, "a", old)
			mk(e, "b", newest)
			pointLatest(e.t, e.root, "b")
			e.cfg.Concelier.Mirror.ActiveExportID = "a"
			e.cfg.Excititor.Mirror.ActiveExportID = "a"
		}, want: "a"},
		{name: "latest wins over newest", setup: func(e env) {
			mk(e, "a", old)
			mk(e, "b", newest)
			pointLatest(e.t, e.root, "a")
		}, want: "a"},
		{name: "no latest: newest complete", setup: func(e env) {
			mk(e, "a", old)
			mk(e, "c", newest)
			mk(e, "b", newer)
		}, want: "c"},
		{name: "no latest: mtime tie broken by name", setup: func(e env) {
			mk(e, "20260101T000000Z", newer)
			mk(e, "20260102T000000Z", newer)
		}, want: "20260102T000000Z"},
		{name: "hidden, staging, incomplete and symlinked dirs never count", setup: func(e env) {
			mk(e, "a", old)
			stagingRoot := filepath.Join(e.root, export.StagingDir)
			setMarkerTimes(e.t, writeExport(e.t, stagingRoot, "z", treeOpts{}), newest)
			mk(e, ".hidden", newest)
			incomplete := writeExport(e.t, e.root, "incomplete", treeOpts{})
			for _, rel := range []string{export.IndexPath, export.ExcititorIndexPath("primary"), export.ExcititorIndexPath("community")} {
				if err := os.Remove(filepath.Join(incomplete.dir, filepath.FromSlash(rel))); err != nil {
					e.t.Fatal(err)
				}
			}
			// What is left of it is the newest content of the root.
			if err := os.Chtimes(filepath.Join(incomplete.dir, filepath.FromSlash(export.ManifestPath("primary"))), newest, newest); err != nil {
				e.t.Fatal(err)
			}
			outside := filepath.Join(e.t.TempDir(), "out")
			setMarkerTimes(e.t, writeExport(e.t, filepath.Dir(outside), "out", treeOpts{}), newest)
			if err := os.Symlink(outside, filepath.Join(e.root, "zz-symlinked")); err != nil {
				e.t.Fatal(err)
			}
			os.WriteFile(filepath.Join(e.root, "zz-file"), []byte("x"), 0o644)
		}, want: "a"},
		{name: "latest pointing to ../x", setup: func(e env) {
			mk(e, "a", old)
			writeExport(e.t, filepath.Dir(e.root), "x", treeOpts{})
			pointLatest(e.t, e.root, "../x")
		}, want: "", logHas: `points to \"../x\"`},
		{name: "latest pointing to an absolute path", setup: func(e env) {
			mk(e, "a", old)
			pointLatest(e.t, e.root, filepath.Join(e.root, "a"))
		}, want: "", logHas: "is not the name of an export directory"},
		{name: "latest pointing to a missing dir", setup: func(e env) {
			mk(e, "a", old)
			pointLatest(e.t, e.root, "gone")
		}, want: "", logHas: "does not exist"},
		{name: "latest pointing to a hidden dir", setup: func(e env) {
			mk(e, ".staging-x", old)
			pointLatest(e.t, e.root, ".staging-x")
		}, want: "", logHas: "is not the name of an export directory"},
		{name: "latest is not a symlink", setup: func(e env) {
			mk(e, "a", old)
			os.WriteFile(filepath.Join(e.root, export.LatestLink), []byte("a"), 0o644)
		}, want: "", logHas: "reading"},
		{name: "latest pointing to a symlinked export", setup: func(e env) {
			writeExport(e.t, filepath.Dir(e.root), "real", treeOpts{})
			if err := os.Symlink(filepath.Join(filepath.Dir(e.root), "real"), filepath.Join(e.root, "a")); err != nil {
				e.t.Fatal(err)
			}
			pointLatest(e.t, e.root, "a")
		}, want: "", logHas: "symlinked exports are not served"},
		{name: "no complete export", setup: func(e env) {
			os.MkdirAll(filepath.Join(e.root, "empty"), 0o755)
		}, want: "", logHas: "no complete"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "exports")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(root)
			tc.setup(env{t, root, &cfg})
			h := newHarness(t, cfg, options{})
			for product, path := range productPaths {
				r := h.get(t, path)
				if tc.want != "" {
					if r.status != http.StatusOK || r.header.Get("X-Stella-Export-Id") != tc.want {
						t.Errorf("%s: status %d export %q, want 200 from %q; body %s", product, r.status, r.header.Get("X-Stella-Export-Id"), tc.want, r.body)
					}
					continue
				}
				if r.status != http.StatusServiceUnavailable {
					t.Errorf("%s: status %d, want 503", product, r.status)
				} else if code := errorCode(t, r); code != "export_unavailable" {
					t.Errorf("%s: error %q", product, code)
				}
				if strings.Contains(string(r.body), root) {
					t.Errorf("%s: the error body reveals the export root: %s", product, r.body)
				}
			}
			err := h.o.Ready()
			if (err == nil) != (tc.want != "") {
				t.Errorf("Ready() = %v, want ready=%v", err, tc.want != "")
			}
			if tc.logHas != "" && !strings.Contains(h.logs.String(), tc.logHas) {
				t.Errorf("log does not mention %q:\n%s", tc.logHas, h.logs.String())
			}
		})
	}
}

// TestLatestSwitchWithoutRestart: flipping latest changes the served export
// on the next request, and back again.
func TestLatestSwitchWithoutRestart(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "a", treeOpts{})
	writeExport(t, root, "b", treeOpts{})
	pointLatest(t, root, "a")
	h := newHarness(t, testConfig(root), options{})
	for i, want := range []string{"a", "b", "a", "b"} {
		pointLatest(t, root, want)
		for product, path := range productPaths {
			r := h.get(t, path)
			if got := r.header.Get("X-Stella-Export-Id"); r.status != 200 || got != want {
				t.Fatalf("step %d %s: status %d export %q, want %q", i, product, r.status, got, want)
			}
		}
		if g := gaugeExports(t, h, "concelier"); len(g) != 1 || g[0] != want {
			t.Errorf("step %d: active_export_info = %v, want [%s]", i, g, want)
		}
	}
	if n := len(h.logs.lines(t, "active export")); n < 4 {
		t.Errorf("%d \"active export\" log lines, want a line per switch", n)
	}
}

// TestNewExportPickedUpWithoutLatest: with no latest link, a newly
// published export is served as soon as it appears (the root's mtime
// changes).
func TestNewExportPickedUpWithoutLatest(t *testing.T) {
	root := t.TempDir()
	setMarkerTimes(t, writeExport(t, root, "a", treeOpts{}), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	h := newHarness(t, testConfig(root), options{})
	if got := h.get(t, productPaths["concelier"]).header.Get("X-Stella-Export-Id"); got != "a" {
		t.Fatalf("served %q, want a", got)
	}
	// Publish b the way sync does: build in staging, rename into place.
	staging := filepath.Join(root, export.StagingDir)
	te := writeExport(t, staging, "b", treeOpts{})
	setMarkerTimes(t, te, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	if err := os.Rename(te.dir, filepath.Join(root, "b")); err != nil {
		t.Fatal(err)
	}
	bumpMtime(t, root)
	if got := h.get(t, productPaths["concelier"]).header.Get("X-Stella-Export-Id"); got != "b" {
		t.Fatalf("after publishing b: served %q, want b", got)
	}
}

// bumpMtime moves a directory's mtime forward so coarse file-system clocks
// cannot hide a change from the mtime-keyed scan cache.
func bumpMtime(t *testing.T, dir string) {
	t.Helper()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	mt := fi.ModTime().Add(time.Second)
	if err := os.Chtimes(dir, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// TestScanCached: the root is not rescanned while its mtime is unchanged.
func TestScanCached(t *testing.T) {
	root := t.TempDir()
	setMarkerTimes(t, writeExport(t, root, "a", treeOpts{}), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	clock := newFakeClock()
	h := newHarness(t, testConfig(root), options{now: clock.Now})
	p := h.o.products[0]
	first := p.scan.Load()
	if first == nil || first.id != "a" {
		t.Fatalf("no scan cached after start-up: %+v", first)
	}
	for range 3 {
		if r := h.get(t, productPaths["concelier"]); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	if p.scan.Load() != first {
		t.Fatalf("the root was rescanned although its mtime did not change")
	}
	clock.Advance(rescanAfter)
	h.get(t, productPaths["concelier"])
	if p.scan.Load() == first {
		t.Fatalf("the scan was not refreshed after rescanAfter")
	}
}

// TestExportReplacedUnderSameID: an export directory replaced under the
// same name is reopened once the revalidation interval passes.
func TestExportReplacedUnderSameID(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "a", treeOpts{})
	pointLatest(t, root, "a")
	clock := newFakeClock()
	h := newHarness(t, testConfig(root), options{now: clock.Now})
	before := h.get(t, productPaths["concelier"])

	aside := filepath.Join(t.TempDir(), "old")
	if err := os.Rename(filepath.Join(root, "a"), aside); err != nil {
		t.Fatal(err)
	}
	te := writeExport(t, root, "a", treeOpts{domains: []string{"third"}})
	clock.Advance(revalidateAfter)
	after := h.get(t, productPaths["concelier"])
	if after.status != 200 || string(after.body) != string(te.files[export.IndexPath]) {
		t.Fatalf("after replacement: status %d, body is the old index: %v", after.status, string(after.body) == string(before.body))
	}
	if r := h.get(t, "/concelier/exports/mirror/third/manifest.json"); r.status != 200 {
		t.Fatalf("new domain: status %d", r.status)
	}
}

// TestExportCacheBoundedAndRefcounted: at most maxCachedExports stay open;
// an evicted export stays readable until its last request releases it.
func TestExportCacheBoundedAndRefcounted(t *testing.T) {
	root := t.TempDir()
	ids := make([]string, maxCachedExports+3)
	for i := range ids {
		ids[i] = fmt.Sprintf("e%d", i)
		writeExport(t, root, ids[i], treeOpts{pad: 64})
	}
	pointLatest(t, root, ids[0])
	h := newHarness(t, testConfig(root), options{smallFileMax: 16})
	p := h.o.products[0]

	held, err := p.acquire() // an in-flight request on ids[0]
	if err != nil {
		t.Fatal(err)
	}
	var states []*exportState
	for _, id := range ids[1:] {
		pointLatest(t, root, id)
		st, err := p.acquire()
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, st)
		st.release()
	}
	p.mu.Lock()
	n := len(p.cached)
	p.mu.Unlock()
	if n > maxCachedExports {
		t.Fatalf("%d exports cached, want at most %d", n, maxCachedExports)
	}
	if got := held.refs.Load(); got != 1 {
		t.Fatalf("evicted export held by a request: refs %d, want 1", got)
	}
	// The evicted export still serves its files (the root is open).
	fd, err := held.file(held.concelier["primary"].bundle)
	if err != nil {
		t.Fatalf("reading from an evicted export still in use: %v", err)
	}
	f, err := held.openLarge(held.concelier["primary"].bundle, fd)
	if err != nil {
		t.Fatalf("opening from an evicted export still in use: %v", err)
	}
	f.Close()
	held.release()
	if got := held.refs.Load(); got != 0 {
		t.Fatalf("after the last release refs = %d, want 0", got)
	}
	if _, err := held.root.Stat("."); err == nil {
		t.Fatalf("the evicted export's root is still open after the last release")
	}
	if held.tryAcquire() {
		t.Fatalf("a closed export could be acquired again")
	}
	// The oldest of the later exports were evicted and closed too.
	if got := states[0].refs.Load(); got != 0 {
		t.Errorf("evicted %s: refs %d, want 0", states[0].id, got)
	}
	h.o.Close()
	last := states[len(states)-1]
	if got := last.refs.Load(); got != 0 {
		t.Errorf("after Close: refs of %s = %d, want 0", last.id, got)
	}
}

// TestRootNotConfigured: an unset export root logs exactly "Mirror export
// root is not configured", a missing one "Mirror export root does not
// exist" with its path, at start-up and when readiness
// is checked (at most once a minute), and the origin stays not-ready.
func TestRootNotConfigured(t *testing.T) {
	cases := []struct {
		name string
		root func(t *testing.T) string
		msg  string
	}{
		{"unset", func(*testing.T) string { return "" }, "Mirror export root is not configured"},
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, "Mirror export root does not exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Concelier.Mirror.Enabled = true
			cfg.Concelier.Mirror.ExportRoot = tc.root(t)
			clock := newFakeClock()
			h := newHarness(t, cfg, options{now: clock.Now})
			count := func() int {
				n := 0
				for _, rec := range h.logs.lines(t, tc.msg) {
					if rec["product"] != "concelier" || rec["key"] != "CONCELIER__MIRROR__EXPORTROOT" {
						t.Errorf("log line attributes: %v", rec)
					}
					if root := cfg.Concelier.Mirror.ExportRoot; root != "" && (rec["root"] != root || rec["error"] == nil) {
						t.Errorf("log line %v does not name the missing root %s and the error", rec, root)
					}
					n++
				}
				return n
			}
			if n := count(); n != 1 {
				t.Fatalf("%d start-up lines, want 1:\n%s", n, h.logs.String())
			}
			for _, srv := range []string{h.public.URL, h.admin.URL} {
				r := do(t, h.public.Client(), http.MethodGet, srv+"/health/ready", nil)
				if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "CONCELIER__MIRROR__EXPORTROOT") {
					t.Errorf("%s/health/ready: %d %s, want 503 naming the key", srv, r.status, r.body)
				}
			}
			if n := count(); n != 1 {
				t.Errorf("%d lines within a minute, want the repeat rate-limited to 1", n)
			}
			clock.Advance(rootLogInterval)
			if err := h.o.Ready(); err == nil {
				t.Fatalf("Ready() = nil without an export root")
			}
			if n := count(); n != 2 {
				t.Errorf("%d lines after a minute, want 2", n)
			}
			if r := h.get(t, productPaths["concelier"]); r.status != http.StatusServiceUnavailable {
				t.Errorf("index: status %d, want 503", r.status)
			}
		})
	}
}

// gaugeExports returns the export ids the active-export gauge reports for
// product.
func gaugeExports(t *testing.T, h *harness, product string) []string {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, mf := range mfs {
		if mf.GetName() != "stella_mirror_origin_active_export_info" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var p, id string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "product":
					p = l.GetValue()
				case "export_id":
					id = l.GetValue()
				}
			}
			if p == product && m.GetGauge().GetValue() == 1 {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// TestLatestRecheckInterval: in production the target of latest is reused
// for activeRecheck, so a switch is seen once that interval has passed —
// and not a request before; a broken latest is never remembered.
func TestLatestRecheckInterval(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "a", treeOpts{})
	writeExport(t, root, "b", treeOpts{})
	pointLatest(t, root, "a")
	clock := newFakeClock()
	h := newHarness(t, testConfig(root), options{now: clock.Now, recheck: activeRecheck})
	served := func() string {
		t.Helper()
		r := h.get(t, productPaths["concelier"])
		return r.header.Get("X-Stella-Export-Id")
	}
	if got := served(); got != "a" {
		t.Fatalf("served %q, want a", got)
	}
	pointLatest(t, root, "b")
	clock.Advance(activeRecheck - time.Millisecond)
	if got := served(); got != "a" {
		t.Fatalf("within the recheck interval: served %q, want a (latest not read again)", got)
	}
	clock.Advance(time.Millisecond)
	if got := served(); got != "b" {
		t.Fatalf("after the recheck interval: served %q, want b", got)
	}
	pointLatest(t, root, "../escape")
	clock.Advance(activeRecheck)
	if r := h.get(t, productPaths["concelier"]); r.status != http.StatusServiceUnavailable {
		t.Fatalf("latest -> ../escape: status %d, want 503", r.status)
	}
	pointLatest(t, root, "a")
	if got := served(); got != "a" {
		t.Fatalf("after repairing latest: served %q, want a at once (errors are not cached)", got)
	}
}

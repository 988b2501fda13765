package mirrorsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

// rewriteManifest changes one field of a domain's manifest in the source
// export at dir and updates the index's digest and size of that manifest,
// so that the file passes the digest check of staging and only the
// manifest-vs-index checks of verification can refuse it.
func rewriteManifest(t *testing.T, dir, domain string, edit func(m map[string]any)) {
	t.Helper()
	mp := filepath.Join(dir, filepath.FromSlash(export.ManifestPath(domain)))
	var m map[string]any
	data, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, err = json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, mp, data)
	editIndexDomain(t, dir, domain, func(d map[string]any) {
		ref := d["manifest"].(map[string]any)
		ref["digest"] = export.Digest(data)
		ref["sizeBytes"] = len(data)
	})
}

// editIndexDomain applies edit to a domain's entry of the source export's
// Concelier index at dir.
func editIndexDomain(t *testing.T, dir, domain string, edit func(d map[string]any)) {
	t.Helper()
	ip := filepath.Join(dir, filepath.FromSlash(export.IndexPath))
	var ix map[string]any
	raw, err := os.ReadFile(ip)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &ix); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range ix["domains"].([]any) {
		d := d.(map[string]any)
		if d["domainId"] == domain {
			edit(d)
			found = true
		}
	}
	if !found {
		t.Fatalf("no domain %s in the index", domain)
	}
	idata, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, ip, idata)
}

// TestManifestMustMatchIndex: a Concelier manifest whose digest the index
// declares (so staging accepts it) but which describes something else than
// the index does — another export (a replayed manifest), another domain, a
// bundle of another digest or size, other signature metadata — fails
// verification naming the manifest, and nothing is published. Before, the
// mutations sync-manifest-export-id and sync-manifest-domain (each check
// dropped) survived every mirrorsync test.
func TestManifestMustMatchIndex(t *testing.T) {
	tests := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"names another export", func(m map[string]any) { m["exportId"] = "20200101T000000Z" }, `names export "20200101T000000Z"`},
		{"names another domain", func(m map[string]any) {
			m["domainId"] = "community"
			b := m["bundle"].(map[string]any)
			b["path"] = export.BundlePath("community")
			if sig, ok := b["signature"].(map[string]any); ok {
				sig["path"] = export.BundleSignaturePath("community")
			}
		}, `names domain "community"`},
		{"declares another bundle digest", func(m map[string]any) {
			m["bundle"].(map[string]any)["digest"] = export.Digest([]byte("another bundle"))
		}, "declares bundle"},
		{"declares another bundle size", func(m map[string]any) {
			b := m["bundle"].(map[string]any)
			b["sizeBytes"] = b["sizeBytes"].(float64) + 1
		}, "declares bundle"},
		{"declares another signing key", func(m map[string]any) {
			m["bundle"].(map[string]any)["signature"].(map[string]any)["keyId"] = "another-kid"
		}, "signature metadata differs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			old := writeSource(t, src, 1)
			mustRun(t, baseOptions(dst, newLocal(t, src)))
			fx := writeSource(t, src, 2)
			rewriteManifest(t, fx.Dir, "primary", tc.edit)
			res, err := mirrorsync.Run(context.Background(), baseOptions(dst, newLocal(t, src)))
			var ve *mirrorsync.VerifyError
			if !errors.As(err, &ve) || ve.Path != export.ManifestPath("primary") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want a VerifyError for %s saying %q", err, export.ManifestPath("primary"), tc.want)
			}
			if res.Published {
				t.Error("result says published")
			}
			if _, err := os.Stat(filepath.Join(dst, fx.ExportID)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the export was published: %v", err)
			}
			sourcetest.CheckPublished(t, dst, old)
		})
	}
}

// TestStagingLeftoversNotPublished: files an interrupted run left in the
// staging directory of the same export id, which the export does not list
// (a stray file, one at a path the source has since dropped), are not
// published with the export: what is published is exactly what the
// index lists and verification checked. Before, the mutation
// sync-keeps-extra-files (removeExtra keeping everything) survived every
// mirrorsync test.
func TestStagingLeftoversNotPublished(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	staging := filepath.Join(dst, export.StagingDir, fx.ExportID)
	leftovers := []string{"stray.txt", "mirror/primary/old-bundle.json", "excititor/primary/exports/gone.jsonl"}
	for _, rel := range leftovers {
		p := filepath.Join(staging, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, p, []byte("left by an interrupted run\n"))
	}
	res := mustRun(t, baseOptions(dst, newLocal(t, src)))
	if !res.Published {
		t.Fatal("not published")
	}
	for _, rel := range leftovers {
		if _, err := os.Lstat(filepath.Join(dst, fx.ExportID, filepath.FromSlash(rel))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s, left in staging and not in the export, was published (%v)", rel, err)
		}
	}
	sourcetest.CheckPublished(t, dst, fx)
}

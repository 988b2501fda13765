package smoke_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/deploy/smoke"
	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
)

// pinnedSite serves two exports of root: the unversioned Concelier URLs
// from active, the pinned ones (/concelier/exports/{id}/…) from root/{id}
// unless noPinned; swap, when set, rewrites which file a pinned request
// gets (to simulate a broken site).
type pinnedSite struct {
	root, active string
	noPinned     bool
	cacheControl string
	// swap rewrites the file a pinned request gets; the answer keeps the
	// requested export's X-Stella-Export-Id (a front that mixed bodies).
	swap func(id, rel string) (string, string)
	// labelAs, when set, is the X-Stella-Export-Id of every pinned answer.
	labelAs string
}

func (s *pinnedSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/concelier/exports/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	id, rel := s.active, rest
	cc := "public, max-age=300, immutable"
	label := ""
	if rest == "index.json" {
		rel, cc = export.IndexPath, "public, max-age=60"
	} else if first, tail, _ := strings.Cut(rest, "/"); first != "mirror" {
		if s.noPinned {
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
			return
		}
		id, rel, cc = first, tail, "public, max-age=31536000, immutable"
		if rel == "index.json" {
			rel = export.IndexPath
		}
		if s.cacheControl != "" {
			cc = s.cacheControl
		}
		label = id
		if s.labelAs != "" {
			label = s.labelAs
		}
		if s.swap != nil {
			id, rel = s.swap(id, rel)
		}
	}
	if !export.ValidExportID(id) || export.ValidateRelPath(rel) != nil {
		http.NotFound(w, r)
		return
	}
	data, err := os.ReadFile(filepath.Join(s.root, id, filepath.FromSlash(rel)))
	if err != nil {
		http.Error(w, `{"error":"unknown export"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", cc)
	if label == "" {
		label = id
	}
	w.Header().Set("X-Stella-Export-Id", label)
	w.Write(data)
}

// TestCoherence runs the coherence check against a site with pinned URLs
// (PASS), without (SKIP with the reason), and against broken sites that
// mix two exports or drop the immutable header (FAIL).
func TestCoherence(t *testing.T) {
	root := t.TempDir()
	key := fixture.DerivedKey(7)
	var ids []string
	for seed := uint64(1); seed <= 2; seed++ {
		fx, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 16 << 10, VEXSize: 2 << 10, Seed: seed, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fx.ExportID)
	}
	old, cur := ids[0], ids[1]
	keys := []jws.PublicKey{{Key: key.Public()}}
	other := func(want string) func(id, rel string) (string, string) {
		return func(id, rel string) (string, string) {
			if rel == want {
				return old, rel
			}
			return id, rel
		}
	}
	tests := []struct {
		name string
		site pinnedSite
		st   smoke.Status
		want string
	}{
		{"pinned URLs: one chain", pinnedSite{}, smoke.Pass, "export " + cur + " by pinned URLs"},
		{"no pinned URLs", pinnedSite{noPinned: true}, smoke.Skip, "no export-pinned URLs"},
		{"manifest of another export", pinnedSite{swap: other(export.ManifestPath("primary"))}, smoke.Fail, "the index names"},
		{"bundle of another export", pinnedSite{swap: other(export.BundlePath("primary"))}, smoke.Fail, "signature invalid"},
		{"signature of another export", pinnedSite{swap: other(export.BundleSignaturePath("primary"))}, smoke.Fail, "signature invalid"},
		{"pinned index of another export", pinnedSite{swap: other(export.IndexPath)}, smoke.Fail, "names export " + old},
		{"pinned answers labelled with another export", pinnedSite{labelAs: old}, smoke.Fail, "X-Stella-Export-Id \"" + old + "\""},
		{"short-lived pinned answers", pinnedSite{cacheControl: "public, max-age=300, immutable"}, smoke.Fail, "max-age=31536000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			site := tt.site
			site.root, site.active = root, cur
			srv := httptest.NewServer(&site)
			defer srv.Close()
			for _, skipIndex := range []bool{false, true} {
				opts := smoke.Options{Base: srv.URL, Domain: "primary", PublicKeys: keys}
				if skipIndex {
					// Without the index check's exportId, coherence reads the index itself.
					opts.Skip = []string{smoke.CheckIndex}
				}
				rep, err := smoke.Run(context.Background(), opts, nil)
				if err != nil {
					t.Fatal(err)
				}
				var got smoke.Result
				for _, r := range rep.Results {
					if r.Name == smoke.CheckCoherence {
						got = r
					}
				}
				if got.Status != tt.st || !strings.Contains(got.Detail, tt.want) {
					t.Errorf("skip index %v: %s, want %s with %q", skipIndex, got, tt.st, tt.want)
				}
			}
		})
	}
}

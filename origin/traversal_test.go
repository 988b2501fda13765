package origin

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
)

// secretMarker is the content of files planted outside the export; it must
// never appear in a response.
const secretMarker = "TOP-SECRET-OUTSIDE-THE-EXPORT"

// TestTraversal sends every traversal form verbatim on the wire (no client
// cleaning) and expects 404 without a byte of the planted files.
func TestTraversal(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "exports")
	te := writeExport(t, root, "e1", treeOpts{})
	pointLatest(t, root, te.id)
	// Plant secrets next to the root, in the root and next to the export's
	// files, under the names traversal would reach.
	secret := []byte(secretMarker + "\n")
	for _, p := range []string{
		filepath.Join(base, "secret.txt"),
		filepath.Join(base, "secret", "manifest.json"),
		filepath.Join(base, "secret", "bundle.json"),
		filepath.Join(root, "secret.txt"),
		filepath.Join(root, "secret", "manifest.json"),
		filepath.Join(te.dir, "secret.txt"),
		filepath.Join(te.dir, "mirror", "secret", "manifest.json"),
		filepath.Join(te.dir, "excititor", "primary", "secret.txt"),
		filepath.Join(te.dir, "excititor", "primary", "exports", "secret.txt"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, secret, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := newHarness(t, testConfig(root), options{})
	addr := strings.TrimPrefix(h.public.URL, "http://")
	targets := []string{
		"/concelier/exports/mirror/../../../secret/manifest.json",
		"/concelier/exports/mirror/primary/../../../../secret.txt",
		"/concelier/exports/../../secret.txt",
		"/concelier/exports/mirror/../index.json",
		"/concelier/exports/mirror/%2e%2e/manifest.json",
		"/concelier/exports/mirror/%2E%2E/manifest.json",
		"/concelier/exports/mirror/%2e%2e%2f%2e%2e%2fsecret/manifest.json",
		"/concelier/exports/mirror/..%2f..%2f..%2fsecret/bundle.json",
		"/concelier/exports/mirror/..%2F..%2F..%2Fsecret/bundle.json",
		"/concelier/exports/mirror/..%5c..%5c..%5csecret/bundle.json",
		"/concelier/exports/mirror/..\\..\\..\\secret/bundle.json",
		"/concelier/exports/mirror/%252e%252e/manifest.json",
		"/concelier/exports/mirror/%252e%252e%252f%252e%252e%252fsecret/manifest.json",
		"/concelier/exports/mirror/secret/manifest.json",
		"/concelier/exports/mirror/primary%2f..%2f..%2f..%2fsecret/manifest.json",
		"/concelier/exports/mirror/./manifest.json",
		"/concelier/exports/mirror/primary/./bundle.json",
		"/concelier/exports/mirror//manifest.json",
		"/excititor/mirror/../../secret.txt",
		"/excititor/mirror/%2e%2e/index",
		"/excititor/mirror/primary/export/..%2f..%2fsecret.txt",
		"/excititor/mirror/primary/export/..%2fsecret.txt",
		"/excititor/mirror/primary/export/%2e%2e%2fsecret.txt",
		"/excititor/mirror/primary/export/%2e%2e/signature",
		"/excititor/mirror/primary/export/%252e%252e%252fsecret.txt",
		"/excititor/mirror/primary/export/..%5csecret.txt",
		"/excititor/mirror/primary/export/secret.txt",
		"/excititor/mirror/primary/export/../../../../../secret.txt",
		"/excititor/mirror/primary/export/" + keyOpenVEX + "%2f..%2f..%2fsecret.txt",
		"/excititor/mirror/primary%00/index",
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			r := rawGet(t, addr, target)
			if strings.Contains(string(r.body), secretMarker) {
				t.Fatalf("%s leaked the planted file: %s", target, r.body)
			}
			// A plain 404: never a redirect to a cleaned path, never a 200.
			if r.status != http.StatusNotFound {
				t.Fatalf("%s: status %d, want 404; body %s", target, r.status, r.body)
			}
			if loc := r.header.Get("Location"); loc != "" {
				t.Fatalf("%s: redirected to %s", target, loc)
			}
		})
	}
}

// TestSymlinkOutOfExport: a file or directory of the export that is a
// symlink leading outside it is refused with 404, even when the index
// declares the outside file's exact digest and size.
func TestSymlinkOutOfExport(t *testing.T) {
	secret := []byte(`{"advisories":"` + secretMarker + `"}` + "\n")
	type plant func(t *testing.T, te *testExport, outside string)
	link := func(t *testing.T, target, at string) {
		t.Helper()
		if err := os.RemoveAll(at); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, at); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		path  string
		plant plant
	}{
		{"bundle absolute symlink", "/concelier/exports/mirror/primary/bundle.json", func(t *testing.T, te *testExport, outside string) {
			link(t, filepath.Join(outside, "secret.json"), filepath.Join(te.dir, filepath.FromSlash(export.BundlePath("primary"))))
		}},
		{"bundle relative symlink", "/concelier/exports/mirror/primary/bundle.json", func(t *testing.T, te *testExport, outside string) {
			rel, err := filepath.Rel(filepath.Join(te.dir, "mirror", "primary"), filepath.Join(outside, "secret.json"))
			if err != nil {
				t.Fatal(err)
			}
			link(t, rel, filepath.Join(te.dir, filepath.FromSlash(export.BundlePath("primary"))))
		}},
		{"signature symlink", "/concelier/exports/mirror/primary/bundle.json.jws", func(t *testing.T, te *testExport, outside string) {
			link(t, filepath.Join(outside, "secret.json"), filepath.Join(te.dir, filepath.FromSlash(export.BundleSignaturePath("primary"))))
		}},
		{"domain directory symlink", "/concelier/exports/mirror/primary/manifest.json", func(t *testing.T, te *testExport, outside string) {
			link(t, outside, filepath.Join(te.dir, "mirror", "primary"))
		}},
		{"excititor export symlink", "/excititor/mirror/primary/export/" + keyOpenVEX, func(t *testing.T, te *testExport, outside string) {
			link(t, filepath.Join(outside, "secret.json"), filepath.Join(te.dir, filepath.FromSlash(export.ExcititorExportPath("primary", keyOpenVEX))))
		}},
		{"excititor exports directory symlink", "/excititor/mirror/primary/export/" + keyOpenVEX + "/signature", func(t *testing.T, te *testExport, outside string) {
			link(t, outside, filepath.Join(te.dir, "excititor", "primary", "exports"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			if err := os.MkdirAll(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			// Outside files under every name the export uses, holding the secret.
			for _, name := range []string{"secret.json", export.ManifestName, export.BundleName, export.BundleSignatureName, keyOpenVEX, keyOpenVEX + export.SignatureSuffix} {
				if err := os.WriteFile(filepath.Join(outside, name), secret, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			root := filepath.Join(base, "exports")
			te := writeExportDeclaring(t, root, secret)
			tc.plant(t, te, outside)
			h := newHarness(t, testConfig(root), options{})
			r := h.get(t, tc.path)
			if strings.Contains(string(r.body), secretMarker) {
				t.Fatalf("served the file outside the export: %s", r.body)
			}
			if r.status != http.StatusNotFound {
				t.Fatalf("status %d, want 404; body %s", r.status, r.body)
			}
			var warned bool
			for _, rec := range h.logs.lines(t, "not found") {
				if rec["level"] == "WARN" {
					warned = true
				}
			}
			if !warned {
				t.Errorf("no warning logged for the refused symlink:\n%s", h.logs.String())
			}
		})
	}
}

// writeExportDeclaring writes export e1 whose index and manifests declare
// the digest and size of secret for every bundle and export, so only the
// os.Root confinement (not the digest check) stands between a symlink and
// the outside file.
func writeExportDeclaring(t *testing.T, root string, secret []byte) *testExport {
	t.Helper()
	te := writeExport(t, root, "e1", treeOpts{domains: []string{"primary"}})
	digest, size := export.Digest(secret), int64(len(secret))
	ix, err := export.ParseIndex(te.files[export.IndexPath])
	if err != nil {
		t.Fatal(err)
	}
	for i := range ix.Domains {
		ix.Domains[i].Bundle.Digest, ix.Domains[i].Bundle.SizeBytes = digest, size
		ix.Domains[i].Manifest.Digest, ix.Domains[i].Manifest.SizeBytes = digest, size
	}
	rewriteJSON(t, te, export.IndexPath, ix)
	xi, err := export.ParseExcititorIndex(te.files[export.ExcititorIndexPath("primary")])
	if err != nil {
		t.Fatal(err)
	}
	for i := range xi.Exports {
		xi.Exports[i].Digest, xi.Exports[i].SizeBytes = digest, size
	}
	rewriteJSON(t, te, export.ExcititorIndexPath("primary"), xi)
	pointLatest(t, root, te.id)
	return te
}

package validate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/deploy/validate"
	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
)

// TestActiveExportVerifiesWithConfiguredKey: sync's configured public key
// must verify the active export of its export root; a key from another
// seed (fixture --seed N writes a new signing key) is an error naming the
// key setting, the key file and the export.
func TestActiveExportVerifiesWithConfiguredKey(t *testing.T) {
	root := t.TempDir()
	res, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 8 << 10, VEXSize: 2 << 10, SetLatest: true, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := fixture.Write(t.TempDir(), fixture.Options{Domains: []string{"primary"}, BundleSize: 8 << 10, VEXSize: 2 << 10, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	good, stale := filepath.Join(keys, "good.pub.pem"), filepath.Join(keys, "stale.pub.pem")
	os.WriteFile(good, res.PublicKeyPEM, 0o644)
	os.WriteFile(stale, other.PublicKeyPEM, 0o644)

	tests := []struct {
		name    string
		key     string
		wantErr bool
	}{
		{"matching key", good, false},
		{"key of another seed", stale, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := filepath.Join(t.TempDir(), "sync.env")
			os.WriteFile(env, []byte("SYNC__SOURCE=https://upstream.example\nSYNC__DEST="+root+"\nSYNC__PUBLICKEYS__0="+tt.key+"\n"), 0o644)
			rep, err := validate.Profile(t.Context(), validate.Options{EnvFiles: []string{env}})
			if err != nil {
				t.Fatal(err)
			}
			var found string
			for _, f := range rep.Errors() {
				if strings.Contains(f.Message, "does not verify") {
					found = f.String()
				}
			}
			t.Log(found)
			if (found != "") != tt.wantErr {
				t.Fatalf("verify error %q, want one: %v (findings %v)", found, tt.wantErr, rep.Findings)
			}
			if tt.wantErr {
				for _, w := range []string{res.ExportID, "SYNC__PUBLICKEYS__0=" + tt.key, "SYNC__DEST"} {
					if !strings.Contains(found, w) {
						t.Errorf("error lacks %q: %s", w, found)
					}
				}
				return
			}
			ok := false
			for _, c := range rep.Checked {
				ok = ok || strings.Contains(c, "active export "+res.ExportID+" verifies")
			}
			if !ok {
				t.Errorf("no verified line: %v", rep.Checked)
			}
		})
	}
}

// TestActiveExportWithoutLatestVerifiesWithConfiguredKey: an export root
// without a latest symlink is served from its newest complete export (the
// origin's own resolution); the key check must follow that resolution, not
// skip the root. Before, a stale key passed unnoticed there.
func TestActiveExportWithoutLatestVerifiesWithConfiguredKey(t *testing.T) {
	root := t.TempDir()
	res, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 8 << 10, VEXSize: 2 << 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "latest")); err == nil {
		t.Fatal("set-up: the fixture wrote a latest symlink")
	}
	other, err := fixture.Write(t.TempDir(), fixture.Options{Domains: []string{"primary"}, BundleSize: 8 << 10, VEXSize: 2 << 10, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(t.TempDir(), "stale.pub.pem")
	os.WriteFile(stale, other.PublicKeyPEM, 0o644)
	for _, tc := range []struct{ name, originRoot string }{
		{"origin root is the sync dest", root},
		{"origin root elsewhere", root},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := root
			if tc.name == "origin root elsewhere" {
				dest = t.TempDir()
			}
			env := filepath.Join(t.TempDir(), "mirror.env")
			os.WriteFile(env, []byte("CONCELIER__MIRROR__ENABLED=true\nCONCELIER__MIRROR__EXPORTROOT="+tc.originRoot+
				"\nSYNC__SOURCE=https://upstream.example\nSYNC__DEST="+dest+"\nSYNC__PUBLICKEYS__0="+stale+"\n"), 0o644)
			rep, err := validate.Profile(t.Context(), validate.Options{EnvFiles: []string{env}})
			if err != nil {
				t.Fatal(err)
			}
			var found string
			for _, f := range rep.Errors() {
				if strings.Contains(f.Message, "does not verify") {
					found = f.String()
				}
			}
			if found == "" || !strings.Contains(found, res.ExportID) {
				t.Fatalf("no error naming export %s and the key: %q (findings %v)", res.ExportID, found, rep.Findings)
			}
		})
	}
}

// TestExcititorSignaturesVerifyWithConfiguredKey: the key check covers
// Excititor exports as sync does (each export's detached JWS under its
// domain's index), not only Concelier bundles. Before, an Excititor export
// signed by another key passed, and an Excititor export root (the origin's
// EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT, without a Concelier index) was
// skipped without a word.
func TestExcititorSignaturesVerifyWithConfiguredKey(t *testing.T) {
	opts := func(seed uint64) fixture.Options {
		return fixture.Options{Domains: []string{"primary"}, BundleSize: 8 << 10, VEXSize: 2 << 10, SetLatest: true, Seed: seed}
	}
	verifyErrors := func(t *testing.T, env string) []string {
		t.Helper()
		rep, err := validate.Profile(t.Context(), validate.Options{EnvFiles: []string{env}})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range rep.Errors() {
			if strings.Contains(f.Message, "does not verify") {
				out = append(out, f.String())
			}
		}
		return out
	}

	t.Run("an Excititor export signed by another key", func(t *testing.T) {
		root := t.TempDir()
		res, err := fixture.Write(root, opts(1))
		if err != nil {
			t.Fatal(err)
		}
		other, err := fixture.Write(t.TempDir(), opts(2))
		if err != nil {
			t.Fatal(err)
		}
		key := res.Domains[0].ExportKeys[0]
		sig := export.ExcititorSignaturePath("primary", key)
		forged, err := os.ReadFile(filepath.Join(other.Dir, filepath.FromSlash(export.ExcititorSignaturePath("primary", other.Domains[0].ExportKeys[0]))))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(res.Dir, filepath.FromSlash(sig)), forged, 0o644); err != nil {
			t.Fatal(err)
		}
		pub := filepath.Join(t.TempDir(), "good.pub.pem")
		os.WriteFile(pub, res.PublicKeyPEM, 0o644)
		env := filepath.Join(t.TempDir(), "sync.env")
		os.WriteFile(env, []byte("SYNC__SOURCE=https://upstream.example\nSYNC__DEST="+root+"\nSYNC__PUBLICKEYS__0="+pub+"\n"), 0o644)
		errs := verifyErrors(t, env)
		if len(errs) != 1 || !strings.Contains(errs[0], sig) || !strings.Contains(errs[0], res.ExportID) {
			t.Fatalf("want one error naming %s of export %s, got %q", sig, res.ExportID, errs)
		}
	})

	t.Run("the origin's Excititor root signed by another key", func(t *testing.T) {
		dest, vexRoot := t.TempDir(), t.TempDir()
		res, err := fixture.Write(dest, opts(1))
		if err != nil {
			t.Fatal(err)
		}
		other, err := fixture.Write(vexRoot, opts(2))
		if err != nil {
			t.Fatal(err)
		}
		// An Excititor export root: no Concelier files at all.
		if err := os.RemoveAll(filepath.Join(other.Dir, "mirror")); err != nil {
			t.Fatal(err)
		}
		pub := filepath.Join(t.TempDir(), "good.pub.pem")
		os.WriteFile(pub, res.PublicKeyPEM, 0o644)
		env := filepath.Join(t.TempDir(), "mirror.env")
		os.WriteFile(env, []byte("EXCITITOR__MIRROR__ENABLED=true\nEXCITITOR__ARTIFACTS__FILESYSTEM__ROOT="+vexRoot+
			"\nCONCELIER__MIRROR__ENABLED=true\nCONCELIER__MIRROR__EXPORTROOT="+dest+
			"\nSYNC__SOURCE=https://upstream.example\nSYNC__DEST="+dest+"\nSYNC__PUBLICKEYS__0="+pub+"\n"), 0o644)
		errs := verifyErrors(t, env)
		if len(errs) != 1 || !strings.Contains(errs[0], "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT") || !strings.Contains(errs[0], other.ExportID) {
			t.Fatalf("want one error naming EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT and export %s, got %q", other.ExportID, errs)
		}
	})
}

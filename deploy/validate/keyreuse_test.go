package validate_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/deploy/validate"
	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
)

// TestExcititorKeyReuse: an export root where a newer export lists an
// exportKey of an older one with other bytes is an error naming the key
// and both exports (from the origin's Excititor root and from SYNC__DEST);
// the same root without the reuse passes the rule.
func TestExcititorKeyReuse(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(map[bool]string{false: "distinct keys pass", true: "reused key fails"}[reuse], func(t *testing.T) {
			root := t.TempDir()
			var fxs []*fixture.Result
			for seed := uint64(1); seed <= 2; seed++ {
				fx, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 16 << 10, VEXSize: 4 << 10, Seed: seed, SetLatest: true})
				if err != nil {
					t.Fatal(err)
				}
				fxs = append(fxs, fx)
			}
			key := fxs[0].Domains[0].ExportKeys[0]
			if reuse {
				// The newer export's first VEX export, renamed to the older one's key.
				dir := filepath.Join(root, fxs[1].ExportID)
				ixPath := filepath.Join(dir, filepath.FromSlash(export.ExcititorIndexPath("primary")))
				data, err := os.ReadFile(ixPath)
				if err != nil {
					t.Fatal(err)
				}
				var ix export.ExcititorIndex
				if err := json.Unmarshal(data, &ix); err != nil {
					t.Fatal(err)
				}
				e := &ix.Exports[0]
				for _, pair := range [][2]string{
					{export.ExcititorExportPath("primary", e.ExportKey), export.ExcititorExportPath("primary", key)},
					{export.ExcititorSignaturePath("primary", e.ExportKey), export.ExcititorSignaturePath("primary", key)},
				} {
					if err := os.Rename(filepath.Join(dir, filepath.FromSlash(pair[0])), filepath.Join(dir, filepath.FromSlash(pair[1]))); err != nil {
						t.Fatal(err)
					}
				}
				e.ExportKey = key
				e.ExportPath = export.ExcititorExportURL("primary", key)
				e.SignaturePath = e.ExportPath + "/signature"
				e.Signature.Path = export.ExcititorSignaturePath("primary", key)
				if data, err = json.MarshalIndent(ix, "", "  "); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(ixPath, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			oy := filepath.Join(dir, "origin.yaml")
			os.WriteFile(oy, []byte("concelier:\n  mirror:\n    enabled: true\n    exportRoot: "+root+"\nexcititor:\n  mirror:\n    enabled: true\n  artifacts:\n    fileSystem:\n      root: "+root+"\n"), 0o644)
			pub := filepath.Join(dir, "signing.pub.pem")
			os.WriteFile(pub, fxs[1].PublicKeyPEM, 0o644)
			sy := filepath.Join(dir, "sync.yaml")
			os.WriteFile(sy, []byte("sync:\n  source: https://mirror.example.org\n  dest: "+root+"\n  publicKeys: ["+pub+"]\n"), 0o644)
			for _, tc := range []struct {
				name, key string
				opts      validate.Options
			}{
				{"origin", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT", validate.Options{OriginConfig: oy}},
				{"sync", "SYNC__DEST", validate.Options{SyncConfig: sy}},
			} {
				rep, err := validate.Profile(context.Background(), tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				var found bool
				for _, f := range rep.Errors() {
					if f.Key == tc.key && strings.Contains(f.Message, key) {
						found = true
						for _, want := range []string{fxs[0].ExportID, fxs[1].ExportID, "never change"} {
							if !strings.Contains(f.Message, want) {
								t.Errorf("%s: %q does not name %s", tc.name, f.Message, want)
							}
						}
					}
				}
				if found != reuse {
					t.Errorf("%s: key reuse error found %v, want %v; findings %v", tc.name, found, reuse, rep.Findings)
				}
				if !reuse && !strings.Contains(strings.Join(rep.Checked, "\n"), "no exportKey reused") {
					t.Errorf("%s: the key rule is not in the checked list: %v", tc.name, rep.Checked)
				}
			}
		})
	}
}

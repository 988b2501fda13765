package mirrorsync_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

// reuseKey makes export newID of root list key (an exportKey of export
// oldID) in domain: with sameBytes, a copy of oldID's file, signature and
// index entry; otherwise newID's own first export renamed to key (its own
// bytes and signature, under the old key).
func reuseKey(t *testing.T, root, oldID, newID, domain, key string, sameBytes bool) {
	t.Helper()
	newDir := filepath.Join(root, newID)
	ixPath := filepath.Join(newDir, filepath.FromSlash(export.ExcititorIndexPath(domain)))
	var ix export.ExcititorIndex
	readJSON(t, ixPath, &ix)
	if sameBytes {
		var old export.ExcititorIndex
		readJSON(t, filepath.Join(root, oldID, filepath.FromSlash(export.ExcititorIndexPath(domain))), &old)
		for _, rel := range []string{export.ExcititorExportPath(domain, key), export.ExcititorSignaturePath(domain, key)} {
			data, err := os.ReadFile(filepath.Join(root, oldID, filepath.FromSlash(rel)))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(newDir, filepath.FromSlash(rel)), data)
		}
		ix.Exports = append(ix.Exports, *old.Export(key))
	} else {
		e := &ix.Exports[0]
		for _, pair := range [][2]string{
			{export.ExcititorExportPath(domain, e.ExportKey), export.ExcititorExportPath(domain, key)},
			{export.ExcititorSignaturePath(domain, e.ExportKey), export.ExcititorSignaturePath(domain, key)},
		} {
			if err := os.Rename(filepath.Join(newDir, filepath.FromSlash(pair[0])), filepath.Join(newDir, filepath.FromSlash(pair[1]))); err != nil {
				t.Fatal(err)
			}
		}
		e.ExportKey = key
		e.ExportPath = export.ExcititorExportURL(domain, key)
		e.SignaturePath = e.ExportPath + "/signature"
		e.Signature.Path = export.ExcititorSignaturePath(domain, key)
	}
	writeJSON(t, ixPath, ix)
}

// TestExcititorKeyReuse: an export that lists an exportKey of a kept
// export with other bytes is refused, naming the key and both exports,
// and nothing is published; the same key with the same bytes is fine.
func TestExcititorKeyReuse(t *testing.T) {
	for _, same := range []bool{false, true} {
		name := map[bool]string{false: "other bytes are refused", true: "same bytes are accepted"}[same]
		t.Run(name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			a := writeSource(t, src, 1)
			mustRun(t, baseOptions(dst, newLocal(t, src)))
			b := writeSource(t, src, 2)
			key := a.Domains[0].ExportKeys[0]
			reuseKey(t, src, a.ExportID, b.ExportID, "primary", key, same)

			res, err := mirrorsync.Run(context.Background(), baseOptions(dst, newLocal(t, src)))
			if same {
				if err != nil {
					t.Fatalf("same bytes under a kept key: %v", err)
				}
				if latestOf(dst) != b.ExportID {
					t.Fatalf("latest -> %s, want %s", latestOf(dst), b.ExportID)
				}
				return
			}
			var kr *export.KeyReuseError
			var ve *mirrorsync.VerifyError
			if !errors.As(err, &kr) || !errors.As(err, &ve) {
				t.Fatalf("want a verification error with a key reuse, got %v", err)
			}
			for _, want := range []string{key, a.ExportID, b.ExportID, "primary"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %s", err, want)
				}
			}
			if kr.ExportID != b.ExportID || kr.EarlierExportID != a.ExportID {
				t.Errorf("blamed %s (earlier %s), want %s (earlier %s)", kr.ExportID, kr.EarlierExportID, b.ExportID, a.ExportID)
			}
			if res.Published {
				t.Errorf("published after a key reuse")
			}
			sourcetest.CheckPublished(t, dst, a)
		})
	}
}

// TestKeepMinimum: Keep below 2 is refused before any work, naming the
// value; 0 means the default.
func TestKeepMinimum(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeSource(t, src, 1)
	opts := baseOptions(dst, newLocal(t, src))
	opts.Keep = 1
	_, err := mirrorsync.Run(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "keep 1") || !strings.Contains(err.Error(), "at least 2") {
		t.Fatalf("Keep 1: %v, want an error naming 1 and the minimum 2", err)
	}
	if latestOf(dst) != "" {
		t.Errorf("published with Keep 1")
	}
	tests := []struct {
		keep    string
		wantErr bool
	}{{"-1", true}, {"0", true}, {"1", true}, {"2", false}, {"", false}}
	for _, tt := range tests {
		t.Run("SYNC__KEEP="+tt.keep, func(t *testing.T) {
			env := []string{"SYNC__SOURCE=/src", "SYNC__DEST=/dst", "SYNC__PUBLICKEYS__0=/k.pem"}
			if tt.keep != "" {
				env = append(env, "SYNC__KEEP="+tt.keep)
			}
			cfg, err := mirrorsync.LoadConfig("", env)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate()
			if tt.wantErr != (err != nil) {
				t.Fatalf("Validate: %v, want error %v", err, tt.wantErr)
			}
			if err != nil && (!strings.Contains(err.Error(), "SYNC__KEEP") || !strings.Contains(err.Error(), tt.keep) || !strings.Contains(err.Error(), "at least 2")) {
				t.Errorf("error %q does not name SYNC__KEEP, the value %s and the minimum", err, tt.keep)
			}
			if tt.keep == "" && cfg.Sync.Keep != mirrorsync.DefaultKeep {
				t.Errorf("default keep %d, want %d", cfg.Sync.Keep, mirrorsync.DefaultKeep)
			}
		})
	}
}

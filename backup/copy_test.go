package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCopyStable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rewrites int // in-place rewrites, one per attempt
		want     string
		err      string
	}{
		{"unchanged", 0, "v0", ""},
		{"rewritten in place once is copied again", 1, "v1 longer", ""},
		{"rewritten every time gives up", maxCopyAttempts, "", "kept changing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
			putFile(t, src, []byte("v0"), 0o640)
			content := []string{"v1 longer", "v2 longer still", "v3 is longer again", "v4 is the longest one yet", "v5 ..........................."}
			c, err := copyStableHook(src, dst, func(attempt int) {
				if attempt < tc.rewrites {
					// In place (same inode), growing, so the size always tells.
					f, err := os.OpenFile(src, os.O_WRONLY|os.O_TRUNC, 0)
					if err != nil {
						t.Error(err)
						return
					}
					f.WriteString(content[attempt])
					f.Close()
				}
			})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(dst)
			if string(got) != tc.want || c.size != int64(len(tc.want)) || c.mode.Perm() != 0o640 {
				t.Errorf("copied %q (size %d, mode %v), want %q", got, c.size, c.mode, tc.want)
			}
			if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o600 {
				t.Errorf("staged copy has mode %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}

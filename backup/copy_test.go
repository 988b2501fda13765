package backup

import (
	"context"
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
			src := filepath.Join(dir, "src")
			putFile(t, src, []byte("v0"), 0o640)
			content := []string{"v1 longer", "v2 longer still", "v3 is longer again", "v4 is the longest one yet", "v5 ..........................."}
			c, err := copyStableHook(context.Background(), src, func(attempt int) {
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
			if string(c.data) != tc.want || c.size != int64(len(tc.want)) || c.mode.Perm() != 0o640 {
				t.Errorf("copied %q (size %d, mode %v), want %q", c.data, c.size, c.mode, tc.want)
			}
			// Nothing was written beside the source: the copy is in memory.
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("%d files in the source folder, want 1", len(ents))
			}
		})
	}
}

func TestCopyStableCancelled(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	putFile(t, src, []byte("data"), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := copyStable(ctx, src); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("err = %v, want context canceled", err)
	}
}

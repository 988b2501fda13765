//go:build linux

package backup

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/smallfs"
)

// TestBackupOnFullDiskLeavesNothing: a backup whose output folder fills up
// while it streams fails with ENOSPC and leaves no partial archive to take
// the space the next run needs.
func TestBackupOnFullDiskLeavesNothing(t *testing.T) {
	p := newProfile(t)
	out := smallfs.Mount(t, 1<<20)
	smallfs.Ballast(t, filepath.Join(out, "ballast"), 8<<10)
	_, err := testBackup(Options{Configs: p.configs, OutDir: out, IncludeExports: true})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("backup onto a full disk: %v, want ENOSPC", err)
	}
	t.Log(err)
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "ballast" {
			t.Errorf("left in the output folder: %s", e.Name())
		}
	}
}

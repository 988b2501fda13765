//go:build linux

package mirrorsync_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

// TestDiskFullOnTmpfs fills a real, small tmpfs: the second export does
// not fit, the run fails with ENOSPC, and the first export is still
// published, complete and served. Skipped where tmpfs cannot be mounted
// (not root, or no CAP_SYS_ADMIN in the container); the injected-writer
// variant (TestDiskFullKeepsPublishedExport) runs everywhere.
func TestDiskFullOnTmpfs(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	if err := syscall.Mount("tmpfs", dst, "tmpfs", 0, "size=4m,mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); the injected disk-full test covers the logic", err)
	}
	t.Cleanup(func() { syscall.Unmount(dst, 0) })
	old := writeSource(t, src, 1)
	mustRun(t, baseOptions(dst, newLocal(t, src)))
	// Shrink the file system to what one export uses plus half of it:
	// a second export (nothing in common with the first) cannot fit.
	var st syscall.Statfs_t
	if err := syscall.Statfs(dst, &st); err != nil {
		t.Fatal(err)
	}
	used := (st.Blocks - st.Bfree) * uint64(st.Bsize)
	if err := syscall.Mount("tmpfs", dst, "tmpfs", syscall.MS_REMOUNT, fmt.Sprintf("size=%d", used+used/2)); err != nil {
		t.Fatalf("shrinking the tmpfs: %v", err)
	}
	srv := newTestOrigin(t, dst)

	writeSource(t, src, 2)
	_, err := mirrorsync.Run(context.Background(), baseOptions(dst, newLocal(t, src)))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("want ENOSPC, got %v", err)
	}
	sourcetest.CheckPublished(t, dst, old)
	if id, err := getServed(t, srv.Client(), srv.URL, dst); err != nil || id != old.ExportID {
		t.Fatalf("origin serves %q (%v), want %s", id, err, old.ExportID)
	}
	// No temporary file is left behind to eat the remaining space.
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".part") {
			t.Errorf("leftover %s", p)
		}
		return nil
	})
}

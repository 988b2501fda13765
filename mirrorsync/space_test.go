package mirrorsync_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// TestPruneUnderPressureRules checks which exports a run short of space
// prunes, with a simulated file system whose free space is its capacity
// less 1 MiB per published export (the exports themselves are small), so
// the rules run everywhere, without mounting anything.
func TestPruneUnderPressureRules(t *testing.T) {
	const perExport = 1 << 20
	tests := []struct {
		name     string
		n, keep  int
		capacity uint64 // in units of perExport, times 10
		pruned   []int  // seeds pruned
		fail     bool
	}{
		{"enough space: nothing pruned", 3, 3, 50, nil, false},
		{"beyond keep once published", 3, 3, 33, []int{1}, false},
		{"oldest kept, not active or previous", 3, 4, 33, []int{1}, false},
		{"two beyond keep, one is enough", 4, 2, 43, []int{1}, false},
		{"two beyond keep, both needed", 4, 2, 32, []int{1, 2}, false},
		{"only active and previous: fail", 2, 3, 23, nil, true},
		{"keep 2 never prunes the previous", 3, 2, 23, []int{1}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			ids := map[int]string{}
			opts := baseOptions(dst, newLocal(t, src))
			opts.Keep = 10
			for i := 1; i <= tc.n; i++ {
				ids[i] = writeSource(t, src, uint64(i)).ExportID
				mustRun(t, opts)
			}
			fx := writeSource(t, src, uint64(tc.n+1))
			opts.Keep = tc.keep
			mirrorsync.SetStatfs(&opts, func(dir string) (uint64, uint64, error) {
				used := uint64(len(published(t, dir))) * perExport
				capacity := tc.capacity * perExport / 10
				if used > capacity {
					return 0, 4096, nil
				}
				return capacity - used, 4096, nil
			})
			res, err := mirrorsync.Run(context.Background(), opts)
			var want []string
			for _, s := range tc.pruned {
				want = append(want, ids[s])
			}
			if !slices.Equal(res.Pruned, want) {
				t.Errorf("pruned %v, want %v", res.Pruned, want)
			}
			for _, id := range want {
				if _, err := os.Stat(filepath.Join(dst, id)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("pruned export %s still there (%v)", id, err)
				}
			}
			// The active and the previous export are never pruned (after a
			// publish, retention may remove the previous one: the old
			// active export is the previous then).
			keptSeeds := []int{tc.n, tc.n - 1}
			if !tc.fail {
				keptSeeds = keptSeeds[:1]
			}
			for _, s := range keptSeeds {
				if _, err := os.Stat(filepath.Join(dst, ids[s])); err != nil {
					t.Errorf("export %s (seed %d): %v", ids[s], s, err)
				}
			}
			var se *mirrorsync.SpaceError
			if tc.fail {
				if !errors.As(err, &se) || !strings.Contains(err.Error(), "no space left") || res.BytesDownloaded != 0 {
					t.Fatalf("want a SpaceError before any download, got %v (downloaded %d)", err, res.BytesDownloaded)
				}
				if latestOf(dst) != ids[tc.n] {
					t.Errorf("latest -> %s, want %s", latestOf(dst), ids[tc.n])
				}
				return
			}
			if err != nil || latestOf(dst) != fx.ExportID {
				t.Fatalf("run: %v, latest %s, want %s", err, latestOf(dst), fx.ExportID)
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := mirrorsync.HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

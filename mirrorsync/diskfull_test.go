//go:build linux

package mirrorsync_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/smallfs"
	"github.com/stella-ops/stella-mirror/internal/syncbuf"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/localsrc"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

// TestDiskFullOnTmpfs fills a real, small file system: the second export
// does not fit, the run fails with ENOSPC before downloading anything, and
// the first export is still published, complete and served.
func TestDiskFullOnTmpfs(t *testing.T) {
	src, mnt := t.TempDir(), smallfs.Mount(t, 8<<20)
	dst := filepath.Join(mnt, "root")
	old := writeSource(t, src, 1)
	before := smallfs.Used(t, mnt)
	mustRun(t, baseOptions(dst, newLocal(t, src)))
	// Leave half of what one export uses: a second export (nothing in
	// common with the first) cannot fit.
	used := smallfs.Used(t, mnt) - before
	smallfs.Ballast(t, filepath.Join(mnt, "ballast"), used/2)
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

// bigSource writes an export whose bundles dominate its size, so block
// rounding and metadata are small beside it.
func bigSource(t testing.TB, root string, seed uint64) *fixture.Result {
	t.Helper()
	res, err := fixture.Write(root, fixture.Options{
		Domains: []string{"primary", "community"}, BundleSize: 384 << 10, VEXSize: 8 << 10, Seed: seed,
		Key: testKey, SetLatest: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// smallDisk is an export root on a small file system whose free space the
// test controls, with the run's log captured.
type smallDisk struct {
	src, mnt, dst string
	perExport     int64 // bytes one published export uses
	log           *syncbuf.Buffer
}

// newSmallDisk publishes n exports (seeds 1..n) into a fresh root on a
// small file system with the given keep, then shrinks the free space to
// leave×perExport.
func newSmallDisk(t *testing.T, n, keep int, leave float64) *smallDisk {
	t.Helper()
	fd := &smallDisk{src: t.TempDir(), mnt: smallfs.Mount(t, 24<<20), log: &syncbuf.Buffer{}}
	fd.dst = filepath.Join(fd.mnt, "root")
	for i := 1; i <= n; i++ {
		before := smallfs.Used(t, fd.mnt)
		bigSource(t, fd.src, uint64(i))
		mustRun(t, fd.options(keep))
		if i == 1 {
			fd.perExport = smallfs.Used(t, fd.mnt) - before
		}
	}
	smallfs.Ballast(t, filepath.Join(fd.mnt, "ballast"), int64(leave*float64(fd.perExport)))
	return fd
}

func (fd *smallDisk) options(keep int) mirrorsync.Options {
	s, err := localsrc.New(fd.src)
	if err != nil {
		panic(err)
	}
	o := baseOptions(fd.dst, s)
	o.Keep = keep
	o.Logger = slog.New(slog.NewTextHandler(fd.log, nil))
	return o
}

// published lists the export directories of root.
func published(t testing.TB, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// TestFullDiskRecoversByPruningBeyondKeep is the case: keep=3 on a
// file system that holds three exports and a half. Every run after the
// third publish used to fail with ENOSPC forever, since retention ran only
// after a publish. Now the export that retention would remove after the
// publish anyway is pruned before the download, the run says so, and every
// later run recovers by itself.
func TestFullDiskRecoversByPruningBeyondKeep(t *testing.T) {
	fd := newSmallDisk(t, 3, 3, 0.5)
	ids := published(t, fd.dst) // oldest first: fixture ids sort by time
	if len(ids) != 3 {
		t.Fatalf("exports %v, want 3", ids)
	}
	for seed := uint64(4); seed <= 6; seed++ {
		fx := bigSource(t, fd.src, seed)
		res, err := mirrorsync.Run(context.Background(), fd.options(3))
		if err != nil {
			t.Fatalf("run %d: %v\n%s", seed, err, fd.log.String())
		}
		if !res.Published {
			t.Fatalf("run %d published nothing: %+v", seed, res)
		}
		sourcetest.CheckPublished(t, fd.dst, fx)
		gone := ids[0]
		if !slices.Contains(res.Pruned, gone) {
			t.Fatalf("run %d pruned %v, want %s (beyond keep once %s is published)", seed, res.Pruned, gone, fx.ExportID)
		}
		ids = append(ids[1:], fx.ExportID)
		if got := published(t, fd.dst); !equalSets(got, ids) {
			t.Fatalf("run %d: exports %v, want %v", seed, got, ids)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`level=WARN msg="not enough free space; pruning an export before downloading" export_id=\S+ reason="beyond keep=3 once \S+ is published"`),
		regexp.MustCompile(`need="[0-9.]+ [KMG]iB" free="[0-9.]+ [KMG]iB"`),
	} {
		if !want.MatchString(fd.log.String()) {
			t.Errorf("log lacks %s:\n%s", want, fd.log.String())
		}
	}
}

// TestFullDiskPrunesOldestKept: keep=4 on a file system that holds three
// exports and a half. Nothing is beyond keep, so the oldest kept export
// that is neither the active nor the previous one goes.
func TestFullDiskPrunesOldestKept(t *testing.T) {
	fd := newSmallDisk(t, 3, 4, 0.5)
	ids := published(t, fd.dst)
	fx := bigSource(t, fd.src, 4)
	res, err := mirrorsync.Run(context.Background(), fd.options(4))
	if err != nil {
		t.Fatalf("%v\n%s", err, fd.log.String())
	}
	sourcetest.CheckPublished(t, fd.dst, fx)
	if len(res.Pruned) != 1 || res.Pruned[0] != ids[0] {
		t.Fatalf("pruned %v, want [%s]", res.Pruned, ids[0])
	}
	if got, want := published(t, fd.dst), []string{ids[1], ids[2], fx.ExportID}; !equalSets(got, want) {
		t.Fatalf("exports %v, want %v", got, want)
	}
	if !strings.Contains(fd.log.String(), `reason="oldest kept export other than the active and the previous one"`) {
		t.Errorf("log lacks the reason:\n%s", fd.log.String())
	}
}

// TestFullDiskNeverPrunesActiveOrPrevious: keep=3 on a file system that
// holds two exports and a half. Only the active and the previous export
// exist, so nothing may go: the run fails before downloading, with the
// bytes needed and free in human units, and both exports stay.
func TestFullDiskNeverPrunesActiveOrPrevious(t *testing.T) {
	fd := newSmallDisk(t, 2, 3, 0.5)
	ids := published(t, fd.dst)
	active := latestOf(fd.dst)
	free := smallfs.Free(t, fd.mnt)
	bigSource(t, fd.src, 3)
	res, err := mirrorsync.Run(context.Background(), fd.options(3))
	var se *mirrorsync.SpaceError
	if !errors.As(err, &se) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("want a *SpaceError, got %v", err)
	}
	if se.Need <= se.Free || se.Free > uint64(free) {
		t.Errorf("need %d free %d (statfs said %d)", se.Need, se.Free, free)
	}
	for _, want := range []string{se.Root, "needs ", " MiB", "free", "keep=3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if len(res.Pruned) != 0 || res.BytesDownloaded != 0 {
		t.Errorf("pruned %v, downloaded %d bytes", res.Pruned, res.BytesDownloaded)
	}
	if got := published(t, fd.dst); !equalSets(got, ids) || latestOf(fd.dst) != active {
		t.Fatalf("exports %v latest %s, want %v latest %s", got, latestOf(fd.dst), ids, active)
	}
}

// TestNothingNewOnFullDisk: a run that finds nothing new succeeds on a
// file system without a free block (it used to fail rewriting
// .sync-state.json).
func TestNothingNewOnFullDisk(t *testing.T) {
	fd := newSmallDisk(t, 1, 3, 0)
	if free := smallfs.Free(t, fd.mnt); free > 4096 {
		t.Fatalf("%d bytes still free", free)
	}
	res, err := mirrorsync.Run(context.Background(), fd.options(3))
	if err != nil || !res.Skipped {
		t.Fatalf("nothing-new run on a full disk: %+v, %v\n%s", res, err, fd.log.String())
	}
}

func equalSets(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}

// TestInodesRunOutAtEveryStep: a file system whose inodes run out (a
// tmpfs whose inode count allows one more file per case) never leaves
// latest naming anything but a complete export: the run either publishes
// the new export or fails with ENOSPC and the old one is still served;
// and once room is back the next run publishes the new export by itself.
// Before the space check counted inodes, the cases ran out at every step
// of the run — creating staging, a downloaded file, a folder, the new
// latest symlink in publish — and held the same; now the check stops
// them before staging, with a margin.
func TestInodesRunOutAtEveryStep(t *testing.T) {
	src1, src12 := t.TempDir(), t.TempDir()
	old := writeSource(t, src1, 1)
	writeSource(t, src12, 1)
	next := writeSource(t, src12, 2)
	failed, published := 0, false
	// last is the last failure: the step just before the run would publish.
	var last error
	// Bounded: an export is ~40 files and folders.
	for extra := uint64(0); extra < 200 && !published; extra++ {
		mnt := smallfs.MountInodes(t, 64<<20)
		dst := filepath.Join(mnt, "root")
		mustRun(t, baseOptions(dst, newLocal(t, src1)))
		smallfs.LimitInodes(t, mnt, smallfs.InodesUsed(t, mnt)+extra)
		_, err := mirrorsync.Run(context.Background(), baseOptions(dst, newLocal(t, src12)))
		switch {
		case err == nil:
			published = true
			sourcetest.CheckPublished(t, dst, next)
		case errors.Is(err, syscall.ENOSPC):
			failed++
			last = err
			sourcetest.CheckPublished(t, dst, old)
		default:
			t.Fatalf("%d inodes more: %v, want ENOSPC or success", extra, err)
		}
		if err != nil && extra%8 == 0 || published {
			t.Logf("%d inodes more: %v", extra, err)
		}
		smallfs.LimitInodes(t, mnt, 1<<20)
		if _, err := mirrorsync.Run(context.Background(), baseOptions(dst, newLocal(t, src12))); err != nil {
			t.Fatalf("%d inodes more, then room again: %v", extra, err)
		}
		sourcetest.CheckPublished(t, dst, next)
		unix.Unmount(mnt, unix.MNT_DETACH)
	}
	if !published || failed == 0 {
		t.Fatalf("%d runs failed, published %v: the sweep did not cross the run", failed, published)
	}
	t.Logf("%d runs ran out of inodes at successive steps, each recovered; the last one: %v", failed, last)
}

// TestInodesShortPrunesBeyondKeep: with keep=3 on a file system whose
// inodes (not bytes) run short — three exports published, room for a few
// more files only — the fourth export used to fail with ENOSPC on every
// run, forever: the space check counted bytes only, so it never pruned the
// export retention would remove anyway. Now the check counts the files
// and folders the export needs against the free inodes, prunes beyond
// keep first, and the run publishes.
func TestInodesShortPrunesBeyondKeep(t *testing.T) {
	src := t.TempDir()
	mnt := smallfs.MountInodes(t, 64<<20)
	dst := filepath.Join(mnt, "root")
	var ids []string
	for seed := uint64(1); seed <= 3; seed++ {
		ids = append(ids, writeSource(t, src, seed).ExportID)
		mustRun(t, baseOptions(dst, newLocal(t, src)))
	}
	smallfs.LimitInodes(t, mnt, smallfs.InodesUsed(t, mnt)+12)
	next := writeSource(t, src, 4)
	var logs syncbuf.Buffer
	opts := baseOptions(dst, newLocal(t, src))
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	res, err := mirrorsync.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("run with inodes short: %v\n%s", err, logs.String())
	}
	sourcetest.CheckPublished(t, dst, next)
	if !slices.Contains(res.Pruned, ids[0]) {
		t.Errorf("pruned %v, want the export beyond keep %s", res.Pruned, ids[0])
	}
	if !strings.Contains(logs.String(), "inodes") {
		t.Errorf("the pruning is not explained with inodes:\n%s", logs.String())
	}
	for _, id := range ids[1:] {
		if _, err := os.Stat(filepath.Join(dst, id)); err != nil {
			t.Errorf("kept export %s: %v", id, err)
		}
	}
}

// TestDiskFillsDuringDownloadNoRetry: when the disk fills during a
// download anyway (another writer; here the space check is told there is
// room), the run stops at the first ENOSPC: it used to retry the fetch
// (three attempts), downloading the same bytes again onto a full disk.
func TestDiskFillsDuringDownloadNoRetry(t *testing.T) {
	src, mnt := t.TempDir(), smallfs.Mount(t, 8<<20)
	dst := filepath.Join(mnt, "root")
	old := writeSource(t, src, 1)
	mustRun(t, baseOptions(dst, newLocal(t, src)))
	smallfs.Ballast(t, filepath.Join(mnt, "ballast"), 64<<10)
	writeSource(t, src, 2)
	var logs syncbuf.Buffer
	opts := baseOptions(dst, newLocal(t, src))
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	mirrorsync.SetStatfs(&opts, func(string) (uint64, uint64, error) { return 1 << 40, 4096, nil })
	_, err := mirrorsync.Run(context.Background(), opts)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("want ENOSPC, got %v", err)
	}
	if strings.Contains(logs.String(), "retrying") {
		t.Errorf("a fetch that hit ENOSPC was retried:\n%s", logs.String())
	}
	sourcetest.CheckPublished(t, dst, old)
}

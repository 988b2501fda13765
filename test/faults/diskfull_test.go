//go:build linux

package faults

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/smallfs"
)

// fullDiskOpts make exports of about 6.1 MiB: three fit on the 20 MiB
// file system, a fourth does not.
var fullDiskOpts = fixture.Options{BundleSize: 2560 << 10, VEXSize: 256 << 10}

// TestFullDiskRecovers runs sync with --keep 3 into a 20 MiB tmpfs as the
// source publishes export after export (issue 16 item 3). Every run must
// publish the newest export: when staging would not fit, sync prunes
// beyond keep (never the active or the previous export) before it
// downloads, instead of failing with ENOSPC forever. Then, with the disk
// filled to the last byte: a run with a newer export too large to fit
// beside the active and previous exports exits 1, says failed, and keeps
// the served export whole; once space is freed and the source has an
// export of the usual size again, the next run publishes it by itself.
func TestFullDiskRecovers(t *testing.T) {
	dest := smallFS(t)
	metrics := filepath.Join(t.TempDir(), "sync.prom") // on another file system, as with node_exporter
	src, newest := newSource(t, "local", fullDiskOpts, plain)
	rd := newReader(dest)
	rd.add(newest)

	run := func(want int) string {
		t.Helper()
		cmd := src.command(dest, "--keep", "3", "--metrics-textfile", metrics)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if code := exitCode(cmd.Run()); code != want {
			t.Fatalf("sync exited %d, want %d; log:\n%s", code, want, stderr.String())
		}
		rd.once()
		if b := rd.bad.Load(); b > 0 {
			t.Fatalf("latest names a bad set: %s", rd.firstBad())
		}
		m, _ := os.ReadFile(metrics)
		return string(m)
	}

	n := iterations(8)
	for i := 1; i <= max(n, 5); i++ {
		if i > 1 {
			newest = src.write(t, uint64(i), fullDiskOpts)
			rd.add(newest)
		}
		m := run(0)
		if !resultIs(m, "published") {
			t.Fatalf("publish %d: metrics do not say published:\n%s", i, m)
		}
		if target, _ := os.Readlink(filepath.Join(dest, "latest")); target != newest.ExportID {
			t.Fatalf("publish %d: latest -> %q, want %s", i, target, newest.ExportID)
		}
	}

	// Fill what is left to the last byte.
	filler := filepath.Join(dest, "filler")
	fill(t, filler)
	t.Run("newer export that cannot fit", func(t *testing.T) {
		// About 11 MiB: beside the active and previous exports (about 12
		// MiB, never pruned) it cannot fit in 20 MiB whatever is pruned.
		big := fullDiskOpts
		big.BundleSize = 5 << 20
		newest = src.write(t, 100, big)
		rd.add(newest)
		before, _ := os.Readlink(filepath.Join(dest, "latest"))
		m := run(1)
		if !resultIs(m, "no_space") {
			t.Fatalf("metrics do not say no_space:\n%s", m)
		}
		if after, _ := os.Readlink(filepath.Join(dest, "latest")); after != before {
			t.Fatalf("latest moved from %s to %s on a failed run", before, after)
		}
	})
	t.Run("recovers once space is freed", func(t *testing.T) {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		// The source moves on to an export of the usual size.
		newest = src.write(t, 101, fullDiskOpts)
		rd.add(newest)
		m := run(0)
		if !resultIs(m, "published") {
			t.Fatalf("metrics do not say published:\n%s", m)
		}
		if target, _ := os.Readlink(filepath.Join(dest, "latest")); target != newest.ExportID {
			t.Fatalf("latest -> %q, want %s", target, newest.ExportID)
		}
	})
}

// TestFullDiskNothingNewSucceeds: with one export published and the disk
// then filled to the last byte, a run that finds nothing new exits 0 and
// the metrics textfile says unchanged (issue 16 item 3: today it exits 1,
// unable to write .sync-state.json, and the metrics still say what the
// previous run did).
func TestFullDiskNothingNewSucceeds(t *testing.T) {
	dest := smallFS(t)
	metrics := filepath.Join(t.TempDir(), "sync.prom")
	src, first := newSource(t, "local", fullDiskOpts, plain)
	for _, seed := range []uint64{0, 2} {
		if seed > 0 {
			first = src.write(t, seed, fullDiskOpts)
		}
		if out, err := src.command(dest, "--keep", "3", "--metrics-textfile", metrics).CombinedOutput(); err != nil {
			t.Fatalf("sync: %v\n%s", err, out)
		}
	}
	fill(t, filepath.Join(dest, "filler"))
	// The metrics say published now; a nothing-new run must change that.
	cmd := src.command(dest, "--keep", "3", "--metrics-textfile", metrics)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if code := exitCode(cmd.Run()); code != 0 {
		t.Errorf("nothing-new run on a full disk exited %d, want 0; log:\n%s", code, stderr.String())
	}
	if m, _ := os.ReadFile(metrics); !resultIs(string(m), "unchanged") {
		t.Errorf("metrics do not say unchanged:\n%s", m)
	}
	if target, _ := os.Readlink(filepath.Join(dest, "latest")); target != first.ExportID {
		t.Errorf("latest -> %q, want %s", target, first.ExportID)
	}
}

// smallFS mounts a 20 MiB file system for the test (a tmpfs, else a
// loop-mounted ext4: internal/smallfs) and returns its path; where neither
// can be mounted the test skips, or fails under CI.
func smallFS(t *testing.T) string {
	t.Helper()
	return smallfs.Mount(t, 20<<20)
}

// fill writes zeros into path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	// The last partial block too.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

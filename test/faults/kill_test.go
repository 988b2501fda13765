package faults

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export/fixture"
)

// killOpts are the exports the kill test writes: big enough that a run
// takes a while (kills land mid-transfer), small enough for 30 per kind.
var killOpts = fixture.Options{BundleSize: 1 << 20, VEXSize: 64 << 10}

// TestSyncSIGKILL SIGKILLs 30 syncs (3 in the quick run) per source kind
// at points it observes in ROOT/.staging — on even iterations after the
// Nth new file appeared there, on odd ones after N×192 KiB more were
// written there (mid-file); N varies deterministically per iteration, 0
// meaning as soon as the staging folder exists — while a reader verifies
// every set ROOT/latest names. Runs go on until 30 were killed mid-run
// (at most 90); the source gets a newer export after every run that
// finished and every fifth kill. After each kill: no process of the run is left
// (scanned in /proc), the lock is free, and the next run takes it (never
// 75). The final run completes and publishes the newest export. Issue 16
// acceptance; the rsync source's orphans depend on item 1 (children die
// with sync).
func TestSyncSIGKILL(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) { testSyncSIGKILL(t, kind) })
	}
}

func testSyncSIGKILL(t *testing.T, kind string) {
	n := iterations(30)
	src, first := newSource(t, kind, killOpts, forKills)
	dest := filepath.Join(t.TempDir(), "exports")
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	rd := newReader(dest)
	rd.add(first)
	stop, done := make(chan struct{}), make(chan struct{})
	go rd.run(stop, done)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
	}()

	newest := first
	seed := uint64(1)
	killed, finished, outlived := 0, 0, 0
	needNew := true
	// Until n runs were killed mid-run; bounded: 3n runs.
	for i := 0; killed < n && i < 3*n; i++ {
		// A newer export when the last run published (so that this one has
		// work) and every fifth kill (so that a newer export meets the
		// leftovers of a killed run).
		if needNew || (killed%5 == 4) {
			seed++
			newest = src.write(t, seed, killOpts)
			rd.add(newest)
			src.publish(t, newest.ExportID)
		}
		// Files (even i) or 192 KiB steps (odd i) staged before the kill;
		// 0: as soon as the staging folder exists.
		point := killPoint{n: (i * 5) % 7, bytes: i%2 == 1}
		cmd := src.command(dest, "--keep", "3")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		err, ok := killAt(cmd.Process.Pid, filepath.Join(dest, ".staging"), point, exited)
		if c := exitCode(err); ok && c == -1 {
			killed++
			needNew = false
		} else if ok && c != 0 {
			t.Fatalf("run %d: sync killed at %v exited %d, not by the signal; stderr:\n%s", i, point, c, stderr.String())
		} else {
			finished++
			needNew = true
			if c := exitCode(err); c != 0 {
				t.Fatalf("run %d: sync exited %d before the kill point; stderr:\n%s", i, c, stderr.String())
			}
		}
		left, seen := orphans(dest)
		outlived += seen
		if len(left) > 0 {
			t.Errorf("run %d (kill at %v): processes of the killed run still alive 1 s later:\n%s",
				i, point, strings.Join(left, "\n"))
		}
		if err := lockFree(dest); err != nil {
			t.Fatalf("run %d: the lock is still held after the run ended: %v", i, err)
		}
	}
	// The final run completes: the newest export is published.
	cmd := src.command(dest, "--keep", "3")
	out, err := cmd.CombinedOutput()
	close(stop)
	<-done
	if c := exitCode(err); c != 0 {
		t.Fatalf("final run exited %d:\n%s", c, out)
	}
	target, err := os.Readlink(filepath.Join(dest, "latest"))
	if err != nil || target != newest.ExportID {
		t.Fatalf("after the final run latest -> %q (%v), want %s", target, err, newest.ExportID)
	}
	rd.once()
	t.Logf("%s: %d runs killed, %d finished before their kill point, %d child processes seen right after a kill; reader: %d sets verified, %d reads before the first publish, %d sets pruned while read, %d bad",
		kind, killed, finished, outlived, rd.sets.Load(), rd.empty.Load(), rd.gone.Load(), rd.bad.Load())
	if b := rd.bad.Load(); b > 0 {
		t.Errorf("%d unverified or mixed sets read through latest; the first: %s", b, rd.firstBad())
	}
	if rd.sets.Load() == 0 {
		t.Error("the reader verified no set at all")
	}
	if killed < n {
		t.Errorf("only %d of %d runs were killed before they finished: the kill points did not come", killed, n)
	}
}

// killPoint is where in a run the kill comes: once n more files (or, with
// bytes, n×192 KiB more) are in the staging folder than when the run
// started; n 0 means as soon as the staging folder exists.
type killPoint struct {
	n     int
	bytes bool
}

func (k killPoint) String() string {
	if k.bytes {
		return fmt.Sprintf("%d KiB staged", k.n*192)
	}
	return fmt.Sprintf("%d files staged", k.n)
}

// reached reports whether staging (files, size; files -1 when it does not
// exist) is at the point, from base (what an earlier killed run left).
func (k killPoint) reached(files int, size int64, baseFiles int, baseSize int64) bool {
	if files < 0 {
		return false
	}
	if k.bytes {
		return size >= baseSize+int64(k.n)*192<<10
	}
	return files >= baseFiles+k.n
}

// killAt polls staging (the run's staging folder: observed, not timed)
// until the run reaches point, then SIGKILLs pid — that process only, as
// the OOM killer or kill -9 would; its children must die with it. It
// reports the run's exit and whether the kill happened before the run
// ended by itself.
func killAt(pid int, staging string, point killPoint, exited <-chan error) (error, bool) {
	// Bounded: a run that neither reaches the point nor ends in 2 minutes
	// is killed anyway (and reported as killed).
	deadline := time.Now().Add(2 * time.Minute)
	baseFiles, baseSize := stagedFiles(staging)
	baseFiles = max(baseFiles, 0)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return err, false
		case <-tick.C:
		}
		if n, size := stagedFiles(staging); point.reached(n, size, baseFiles, baseSize) || time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			return <-exited, true
		}
	}
}

// stagedFiles counts the regular files under staging and their bytes
// (files -1 when staging does not exist yet).
func stagedFiles(staging string) (files int, size int64) {
	err := filepath.WalkDir(staging, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == staging {
				return err
			}
			return nil // removed while walking
		}
		if d.Type().IsRegular() {
			files++
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		return -1, 0
	}
	return files, size
}

//go:build linux

// Package smallfs gives tests a real, small file system to fill: a tmpfs
// where one can be mounted, else a loop-mounted ext4 image. Tests use it to
// run the full-disk cases against the kernel's own ENOSPC instead of an
// injected writer.
package smallfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// Mount mounts a new file system of size bytes on a fresh directory and
// returns it; it is unmounted when the test ends. It tries a tmpfs first,
// then an ext4 image on a loop device (mkfs.ext4 -m 0: no blocks reserved
// for root, so free space is what a writer gets). When neither works (not
// root, no CAP_SYS_ADMIN, no e2fsprogs) the test is skipped, or fails when
// the environment variable CI is set. STELLA_SMALLFS=ext4 skips the tmpfs
// (to exercise the fallback).
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	tmpfsErr := errors.New("skipped (STELLA_SMALLFS=ext4)")
	if os.Getenv("STELLA_SMALLFS") != "ext4" {
		tmpfsErr = unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)+",mode=0755")
	}
	if tmpfsErr == nil {
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		return dir
	}
	loopErr := mountLoopExt4(t, dir, size)
	if loopErr == nil {
		return dir
	}
	msg := fmt.Sprintf("cannot mount a small file system here: tmpfs: %v; loop ext4: %v", tmpfsErr, loopErr)
	testenv.Missing(t, "%s (needs root with CAP_SYS_ADMIN, or e2fsprogs and loop devices)", msg)
	return ""
}

// mountLoopExt4 makes an ext4 image of size bytes and loop-mounts it on dir.
func mountLoopExt4(t testing.TB, dir string, size int64) error {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return err
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		return err
	}
	if err := os.Truncate(img, size); err != nil {
		return err
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		return fmt.Errorf("mount -o loop: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return nil
}

// Free returns the bytes available to an unprivileged writer in dir's file
// system.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Frsize
}

// Used returns the bytes in use in dir's file system.
func Used(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Frsize
}

// Ballast shrinks the free space of dir's file system to about leave bytes
// (never more than that) by growing the file path (which must be on it).
// leave 0 fills the file system completely: the file is written until the
// kernel answers ENOSPC. It returns the file's size.
func Ballast(t testing.TB, path string, leave int64) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for i := 0; i < 1<<16; i++ { // bounded: 4 GiB at most
		want := Free(t, filepath.Dir(path)) - leave
		if want <= 0 {
			break
		}
		n := int64(len(chunk))
		if want < n {
			n = want
		}
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, unix.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
		if leave > 0 {
			if err := f.Sync(); err != nil && !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
		}
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// MountInodes mounts a new tmpfs of size bytes whose inode count can be
// limited later (LimitInodes): file creation then fails with ENOSPC at a
// chosen step, however little data it writes (a symlink, a directory, a
// state file). Only a tmpfs can change its inode count while mounted, so
// there is no ext4 fallback: without tmpfs the test is skipped, or fails
// when CI is set. It is unmounted when the test ends.
func MountInodes(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)+",mode=0755"); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs here: %v (needs root with CAP_SYS_ADMIN)", err)
		return ""
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// InodesUsed returns the inodes in use in dir's file system.
func InodesUsed(t testing.TB, dir string) uint64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Files - st.Ffree
}

// LimitInodes remounts the tmpfs dir (from MountInodes) with room for n
// inodes in all (at least the ones in use).
func LimitInodes(t testing.TB, dir string, n uint64) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_REMOUNT, "nr_inodes="+strconv.FormatUint(n, 10)); err != nil {
		t.Fatalf("remounting %s with nr_inodes=%d: %v", dir, n, err)
	}
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/internal/flock"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/rsyncsrc/rsynctest"
)

var rsyncTestKey = fixture.DerivedKey(11)

// rsyncExport writes export seed (signed with rsyncTestKey, latest) into
// root and returns it and the public key's PEM file.
func rsyncExport(t *testing.T, root string, seed uint64, bundleSize int64) (*fixture.Result, string) {
	t.Helper()
	fx, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: bundleSize, VEXSize: 2 << 10,
		Seed: seed, Key: rsyncTestKey, SetLatest: true, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	pem, err := jws.MarshalPublicKeyPEM(rsyncTestKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(t.TempDir(), "signing.pub.pem")
	if err := os.WriteFile(pub, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return fx, pub
}

// TestSyncRsyncExitStatus: rsync's failures (exit 10, 5, 23 from a real
// daemon) make sync exit 1 with rsync's status, meaning and words in the
// message and without the daemon password; a run that finds the lock held
// exits 75 before it calls rsync.
func TestSyncRsyncExitStatus(t *testing.T) {
	const password = "daemon-pw-4711"
	src := t.TempDir()
	_, pub := rsyncExport(t, src, 1, 8<<10)
	auth := rsynctest.Start(t, src, rsynctest.Options{User: "mirror", Password: password})
	dangling := t.TempDir()
	os.Symlink("20300101T000000Z", filepath.Join(dangling, export.LatestLink))
	missing := rsynctest.Start(t, dangling, rsynctest.Options{})
	lockedRoot := t.TempDir()
	release, err := flock.TryLock(filepath.Join(lockedRoot, mirrorsync.LockName))
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	tests := []struct {
		name, url, dest, password string
		exit                      int
		want                      []string
	}{
		{"socket error", fmt.Sprintf("rsync://127.0.0.1:%d/exports", rsynctest.FreePort(t)), "", "", 1,
			[]string{"rsync exit status 10 (error in socket I/O)", "Connection refused"}},
		{"auth failed", auth.URL, "", "wrong-" + password, 1,
			[]string{"rsync exit status 5 (error starting client-server protocol)", "@ERROR: auth failed on module exports"}},
		{"missing export", missing.URL, "", "", 1,
			[]string{"rsync exit status 23 (partial transfer due to error)", "20300101T000000Z"}},
		{"lock held", auth.URL, lockedRoot, "wrong-" + password, exitLocked,
			[]string{"another sync run holds the lock"}},
		{"right password", auth.URL, "", password, 0, []string{"sync done"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RSYNC_PASSWORD", tc.password)
			dest := tc.dest
			if dest == "" {
				dest = t.TempDir()
			}
			var out, errb bytes.Buffer
			code := run([]string{"sync", "--source", tc.url, "--dest", dest, "--public-key", pub}, &out, &errb)
			if code != tc.exit {
				t.Errorf("exit %d, want %d: %s", code, tc.exit, errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q: %s", w, errb.String())
				}
			}
			if strings.Contains(errb.String(), password) {
				t.Errorf("the daemon password appears on stderr: %s", errb.String())
			}
		})
	}
}

// TestSyncRsyncNewerExportBroken: a newer export whose bundle is missing
// or far larger than declared (a sparse 2 GiB file) fails the run: exit 1,
// one error line naming the export and the file, never "nothing new", and
// the published export stays.
func TestSyncRsyncNewerExportBroken(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(file string) error
		want   []string
	}{
		{"missing", os.Remove, []string{"missing at the source"}},
		{"oversized", func(file string) error { return os.Truncate(file, 2<<30) }, []string{"2147483648 bytes at rsync://", "not transferred"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			fx1, pub := rsyncExport(t, src, 1, 8<<10)
			d := rsynctest.Start(t, src, rsynctest.Options{})
			args := []string{"sync", "--source", d.URL, "--dest", dst, "--public-key", pub, "--log-format", "text"}
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code != 0 {
				t.Fatalf("first export: exit %d: %s", code, errb.String())
			}
			fx2, _ := rsyncExport(t, src, 2, 8<<10)
			rel := export.BundlePath("primary")
			if err := tc.break_(filepath.Join(fx2.Dir, filepath.FromSlash(rel))); err != nil {
				t.Fatal(err)
			}
			errb.Reset()
			if code := run(args, &out, &errb); code != 1 {
				t.Errorf("exit %d, want 1: %s", code, errb.String())
			}
			var failed []string
			for _, l := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
				if strings.Contains(l, "level=ERROR") || strings.HasPrefix(l, "stella-mirror sync:") {
					failed = append(failed, l)
				}
				if strings.Contains(l, "nothing new") {
					t.Errorf("logged %q", l)
				}
			}
			if len(failed) == 0 || !strings.Contains(failed[0], "level=ERROR") {
				t.Fatalf("no error log line: %s", errb.String())
			}
			t.Log(failed[0])
			for _, w := range append(tc.want, "export_id="+fx2.ExportID, rel) {
				if !strings.Contains(failed[0], w) {
					t.Errorf("error line lacks %q: %s", w, failed[0])
				}
			}
			if target, _ := os.Readlink(filepath.Join(dst, export.LatestLink)); target != fx1.ExportID {
				t.Errorf("latest -> %q, want the first export %s", target, fx1.ExportID)
			}
		})
	}
}

// TestSyncRsyncSIGKILLLeavesNoRsync SIGKILLs a sync process while rsync
// copies a throttled bundle: no process that names the export root (rsync,
// its forked receiver, the reaper) survives it, and the next run takes the
// lock and publishes.
func TestSyncRsyncSIGKILLLeavesNoRsync(t *testing.T) {
	bin := rsynctest.Binary(t)
	src, dst := t.TempDir(), t.TempDir()
	fx, pub := rsyncExport(t, src, 1, 4<<20)
	d := rsynctest.Start(t, src, rsynctest.Options{})
	slow := filepath.Join(t.TempDir(), "slow-rsync")
	// 4 MiB at 32 KiB/s: two minutes, far longer than the test waits.
	if err := os.WriteFile(slow, []byte("#!/bin/sh\nexec "+bin+" --bwlimit=32 \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "sync", "--source", d.URL, "--dest", dst, "--public-key", pub, "--rsync", slow)
	cmd.Env = []string{"STELLA_MIRROR_TEST_RUN_MAIN=1", "PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Wait until rsync writes the bundle's temporary file into staging.
	deadline := time.Now().Add(60 * time.Second)
	for !copyingBundle(dst) {
		select {
		case err := <-exited:
			t.Fatalf("sync ended before rsync copied the bundle: %v: %s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("rsync did not start copying the bundle: %s", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(rsynctest.Processes(t, dst)); n < 2 {
		t.Fatalf("%d processes name the root, want the reaper, rsync and its receiver", n)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("sync: %v, want killed", err)
	}
	rsynctest.WaitGone(t, dst, 30*time.Second)

	var out, errb2 bytes.Buffer
	if code := run([]string{"sync", "--source", d.URL, "--dest", dst, "--public-key", pub}, &out, &errb2); code != 0 {
		t.Fatalf("next run: exit %d: %s", code, errb2.String())
	}
	if target, _ := os.Readlink(filepath.Join(dst, export.LatestLink)); target != fx.ExportID {
		t.Fatalf("latest -> %q, want %s", target, fx.ExportID)
	}
}

// copyingBundle reports whether rsync's temporary file of a bundle is in
// root's staging directory.
func copyingBundle(root string) bool {
	found := false
	filepath.WalkDir(filepath.Join(root, export.StagingDir), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasPrefix(d.Name(), ".bundle.json.") {
			found = true
		}
		return nil
	})
	return found
}

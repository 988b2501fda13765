package backup

import (
	"context"
	"errors"
	bprofile "github.com/stella-ops/stella-mirror/backup/profile"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestStaleOutputRemovedAndReported: the plaintext staging folder of an
// earlier version, its temporary archive and a partial archive, all left
// by killed runs, are removed by the next run and listed; other files stay.
func TestStaleOutputRemovedAndReported(t *testing.T) {
	p := newProfile(t)
	out := filepath.Join(t.TempDir(), "out")
	stale := []string{
		filepath.Join(out, ".staging-2026-12-01T020000Z-1234"),
		filepath.Join(out, ".2026-12-01T020000Z.tar.gz.age.tmp-5678"),
		filepath.Join(out, PartialPrefix+"2026-12-02T020000Z.tar.gz.age-9012"),
	}
	putFile(t, filepath.Join(stale[0], "2026-12-01T020000Z", "files", "etc", "upstream-token"), []byte("s3cr3t-token\n"), 0o600)
	putFile(t, stale[1], []byte("x"), 0o600)
	putFile(t, stale[2], []byte("x"), 0o600)
	putFile(t, filepath.Join(out, "notes.txt"), []byte("mine"), 0o600)
	res, err := testBackup(Options{Configs: p.configs, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(stale)
	sort.Strings(res.Stale)
	if strings.Join(res.Stale, "\n") != strings.Join(stale, "\n") {
		t.Errorf("reported %v, want %v", res.Stale, stale)
	}
	for _, s := range stale {
		if _, err := os.Lstat(s); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it removed", s, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "notes.txt")); err != nil {
		t.Errorf("notes.txt: %v", err)
	}
}

// TestBackupLocksItsFolder: a second run into a folder another run holds
// is refused and removes nothing of the first's.
func TestBackupLocksItsFolder(t *testing.T) {
	p := newProfile(t)
	out := t.TempDir()
	partial := filepath.Join(out, PartialPrefix+"x.tar.gz-1")
	putFile(t, partial, []byte("being written"), 0o600)
	unlock, err := lockDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := testBackup(Options{Configs: p.configs, OutDir: out}); err == nil || !strings.Contains(err.Error(), "another backup is writing to "+out) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(partial); err != nil {
		t.Errorf("the running backup's partial archive: %v", err)
	}
}

// TestBackupCancelledRemovesPartial: a cancelled context (SIGTERM in the
// command) stops the run, which removes its partial archive.
func TestBackupCancelledRemovesPartial(t *testing.T) {
	p := newProfile(t)
	out := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var partial string
	_, err := Backup(ctx, Options{Configs: p.configs, Load: bprofile.LoadInventory, OutDir: out, Started: func(name string) {
		partial = name
		cancel()
	}})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("err = %v", err)
	}
	if partial == "" {
		t.Fatal("Started was not called")
	}
	emptyDir(t, out)
}

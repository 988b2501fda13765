package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/stella-ops/stella-mirror/backup/backuptest"
	bprofile "github.com/stella-ops/stella-mirror/backup/profile"
)

// tarMember is one member of an archive's tar stream, as written.
type tarMember = backuptest.Member

// readMembers reads every member of the plain archive name's tar stream.
func readMembers(t *testing.T, name string) []tarMember { return backuptest.Read(t, name, nil) }

// retar rewrites the tar stream of the plain archive name through change,
// as an attacker with write access to the backup folder could.
func retar(t *testing.T, name string, change func([]tarMember) []tarMember) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(name))
	backuptest.Write(t, out, nil, change(readMembers(t, name)))
	return out
}

// memberOf returns the index of the first member whose name ends in suffix.
func memberOf(t *testing.T, ms []tarMember, suffix string) int {
	t.Helper()
	for i, m := range ms {
		if strings.HasSuffix(m.Header.Name, suffix) {
			return i
		}
	}
	t.Fatalf("no member ending in %s", suffix)
	return -1
}

// TestForgedTarMembersRefused: archives whose tar stream carries what the
// backup never writes — hard links, devices, FIFOs, duplicate or
// traversing member names, a declared size larger than the stream, a
// signature taken from another (validly signed) archive — are refused
// before anything is written under the restore root.
func TestForgedTarMembersRefused(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// A second, validly signed archive of another profile: its signature
	// verifies, but over another manifest.
	other, err := testBackup(Options{Configs: newProfile(t).configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var otherSig []byte
	retar(t, other.Archive, func(ms []tarMember) []tarMember {
		otherSig = ms[memberOf(t, ms, "/"+SignatureName)].Body
		return ms
	})
	token := member(filepath.Join(p.dir, "etc", "stella-mirror", "credentials", "upstream-token"))
	for _, tc := range []struct {
		name   string
		change func([]tarMember) []tarMember
		is     error
		want   string
	}{
		{"a hard link to /etc/shadow in place of a secret", func(ms []tarMember) []tarMember {
			i := memberOf(t, ms, token)
			ms[i].Header.Typeflag, ms[i].Header.Linkname, ms[i].Header.Size, ms[i].Body = tar.TypeLink, "/etc/shadow", 0, nil
			return ms
		}, ErrCorrupt, "is not a regular file"},
		{"a character device in place of a secret", func(ms []tarMember) []tarMember {
			i := memberOf(t, ms, token)
			ms[i].Header.Typeflag, ms[i].Header.Devmajor, ms[i].Header.Devminor, ms[i].Header.Size, ms[i].Body = tar.TypeChar, 1, 3, 0, nil
			return ms
		}, ErrCorrupt, "is not a regular file"},
		{"a FIFO added", func(ms []tarMember) []tarMember {
			h := ms[memberOf(t, ms, token)].Header
			h.Name, h.Typeflag, h.Size = h.Name+".fifo", tar.TypeFifo, 0
			return append([]tarMember{{Header: h}}, ms...)
		}, ErrCorrupt, "is not a regular file"},
		{"a symlink member", func(ms []tarMember) []tarMember {
			i := memberOf(t, ms, token)
			ms[i].Header.Typeflag, ms[i].Header.Linkname, ms[i].Header.Size, ms[i].Body = tar.TypeSymlink, "/etc/shadow", 0, nil
			return ms
		}, ErrCorrupt, "is not a regular file"},
		{"a duplicate member with other content", func(ms []tarMember) []tarMember {
			m := ms[memberOf(t, ms, token)]
			m.Body = []byte("attacker's token\n")
			m.Header.Size = int64(len(m.Body))
			return append([]tarMember{m}, ms...)
		}, ErrCorrupt, "appears twice"},
		{"a member traversing out of files/", func(ms []tarMember) []tarMember {
			h := ms[memberOf(t, ms, token)].Header
			top, _, _ := strings.Cut(h.Name, "/")
			h.Name = top + "/files/../../../../etc/cron.d/evil"
			body := []byte("* * * * * root id\n")
			h.Size = int64(len(body))
			return append(ms, tarMember{Header: h, Body: body})
		}, ErrCorrupt, "unexpected member"},
		{"a member outside the archive's folder", func(ms []tarMember) []tarMember {
			h := ms[memberOf(t, ms, token)].Header
			h.Name = "../etc/cron.d/evil"
			return append([]tarMember{{Header: h, Body: ms[memberOf(t, ms, token)].Body}}, ms...)
		}, ErrCorrupt, "unexpected member ../etc/cron.d/evil"},
		{"an empty member the manifest does not list", func(ms []tarMember) []tarMember {
			h := ms[memberOf(t, ms, token)].Header
			h.Name, h.Size = h.Name+"2", 0
			return append(ms, tarMember{Header: h})
		}, ErrCorrupt, "unexpected member"},
		{"a declared size far beyond the stream", func(ms []tarMember) []tarMember {
			i := memberOf(t, ms, token)
			ms[i].Header.Size, ms[i].Header.Format = 1<<40, tar.FormatPAX
			return ms[:i+1]
		}, ErrCorrupt, "unexpected EOF"},
		{"a huge declared MANIFEST.json", func(ms []tarMember) []tarMember {
			i := memberOf(t, ms, "/"+ManifestName)
			ms[i].Header.Size, ms[i].Header.Format = 1<<40, tar.FormatPAX
			return ms[:i+1]
		}, ErrCorrupt, "limit"},
		{"the valid signature of another archive", func(ms []tarMember) []tarMember {
			i := memberOf(t, ms, "/"+SignatureName)
			ms[i].Body, ms[i].Header.Size = otherSig, int64(len(otherSig))
			return ms
		}, ErrSignature, "does not verify against any --verify-key"},
		{"a signature member twice", func(ms []tarMember) []tarMember {
			i := memberOf(t, ms, "/"+SignatureName)
			m := ms[i]
			m.Body, m.Header.Size = otherSig, int64(len(otherSig))
			return append(ms, m)
		}, ErrCorrupt, "appears twice"},
		{"a malformed signature", func(ms []tarMember) []tarMember {
			i := memberOf(t, ms, "/"+SignatureName)
			ms[i].Body = []byte(`{"alg":"none","kid":"x","sig":""}`)
			ms[i].Header.Size = int64(len(ms[i].Body))
			return ms
		}, ErrSignature, "want Ed25519"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			archive := retar(t, res.Archive, tc.change)
			root := filepath.Join(t.TempDir(), "root")
			_, err := testRestore(RestoreOptions{Archive: archive, Root: root, Force: true})
			if err == nil || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant %v mentioning %q", err, tc.is, tc.want)
			}
			t.Log(err)
			emptyDir(t, root)
		})
	}
}

// TestForgedSignatureKeyIDIgnored: the key id in MANIFEST.sig is only a
// hint; a signature by an untrusted key that names a trusted key's id is
// refused, and the id reported is the one of the key that verified.
func TestForgedSignatureKeyIDIgnored(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// Re-signed with another key, the trusted key's id in the kid field.
	fg := unpack(t, res.Archive)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	archive := fg.write(t, otherKey, nil)
	archive = retar(t, archive, func(ms []tarMember) []tarMember {
		i := memberOf(t, ms, "/"+SignatureName)
		s, err := parseSignature(ms[i].Body)
		if err != nil {
			t.Fatal(err)
		}
		ms[i].Body = bytes.Replace(ms[i].Body, []byte(s.KeyID), []byte(KeyID(testVerifyKey)), 1)
		ms[i].Header.Size = int64(len(ms[i].Body))
		return ms
	})
	root := filepath.Join(t.TempDir(), "root")
	_, err = testRestore(RestoreOptions{Archive: archive, Root: root})
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("err = %v, want %v", err, ErrSignature)
	}
	emptyDir(t, root)
}

// TestRestoreIntoRootWithEscapingLinks: a restore root that is not empty
// and holds symlinks leading out of it (a folder on the way, or the file
// itself, absolute or by "..") is restored with --force without a byte
// written outside the root; a folder link that leaves the root fails the
// restore and leaves the root as it was.
func TestRestoreIntoRootWithEscapingLinks(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	token := filepath.Join(p.dir, "etc", "stella-mirror", "credentials", "upstream-token")
	for _, tc := range []struct {
		name   string
		link   string // under the root
		target func(root, outside string) string
		fails  bool
	}{
		{"folder → absolute outside", filepath.Dir(token), func(_, outside string) string { return outside }, true},
		{"folder → .. outside", filepath.Dir(token), func(root, outside string) string {
			rel, _ := filepath.Rel(filepath.Join(root, filepath.Dir(filepath.Dir(token))), outside)
			return rel
		}, true},
		{"the file → absolute outside", token, func(_, outside string) string { return filepath.Join(outside, "upstream-token") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			outside := t.TempDir()
			victim := filepath.Join(outside, "upstream-token")
			if err := os.WriteFile(victim, []byte("outside"), 0o644); err != nil {
				t.Fatal(err)
			}
			l := filepath.Join(root, tc.link)
			if err := os.MkdirAll(filepath.Dir(l), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.target(root, outside), l); err != nil {
				t.Fatal(err)
			}
			before := listTree(t, root)
			_, err := testRestore(RestoreOptions{Archive: res.Archive, Root: root, Force: true})
			if tc.fails != (err != nil) {
				t.Fatalf("err = %v, want failure %v", err, tc.fails)
			}
			t.Log(err)
			if b, _ := os.ReadFile(victim); string(b) != "outside" {
				t.Errorf("the file outside the root is %q, want it untouched", b)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("%d entries outside the root, want 1", len(ents))
			}
			if tc.fails {
				if after := listTree(t, root); after != before {
					t.Errorf("root changed:\nbefore:\n%s\nafter:\n%s", before, after)
				}
				return
			}
			if b, _ := os.ReadFile(filepath.Join(root, token)); string(b) != "s3cr3t-token\n" {
				t.Errorf("restored token %q", b)
			}
		})
	}
}

// TestDamagedAgeMagicNamed: an encrypted archive whose first line (the age
// version line) is damaged is reported as a damaged age header, not as
// "not a stella-mirror backup" — the file is named .age and starts like
// one. A file that is neither (random bytes) still gets the generic error.
func TestDamagedAgeMagicNamed(t *testing.T) {
	p := newProfile(t)
	id, idFile := identity(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir(), Recipients: []age.Recipient{id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(res.Archive)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		is     error
		want   string
	}{
		{"version v1 → v2", func(b []byte) []byte {
			return bytes.Replace(b, []byte("age-encryption.org/v1"), []byte("age-encryption.org/v2"), 1)
		},
			ErrAgeHeader, "damaged age header"},
		{"first byte flipped", func(b []byte) []byte { b[0] ^= 0x20; return b }, ErrAgeHeader, "damaged age header"},
		{"newline of the first line lost", func(b []byte) []byte { b[len(ageMagic)-1] = ' '; return b }, ErrAgeHeader, "damaged age header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), filepath.Base(res.Archive))
			if err := os.WriteFile(name, tc.damage(bytes.Clone(good)), 0o600); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(t.TempDir(), "root")
			_, err := testRestore(RestoreOptions{Archive: name, Root: root, Identities: []age.Identity{id}, IdentityFile: idFile})
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant %v mentioning %q", err, tc.is, tc.want)
			}
			t.Log(err)
			emptyDir(t, root)
		})
	}
}

// TestForgedStateFileNames: entries named like the documented state files
// but with traversal, or in a folder no configuration names as an export
// root, are refused (signed archives; nothing written).
func TestForgedStateFileNames(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		is         error
		want       string
	}{
		{"traversal after the state file", p.exports + "/.sync-state.json/../../../../etc/cron.d/x", ErrCorrupt, "not a clean absolute path"},
		{"traversal into the export root", p.exports + "/../../etc/cron.d/.sync-state.json", ErrCorrupt, "not a clean absolute path"},
		{"a state file name where no export root is", "/etc/cron.d/.sync-state.json", ErrRefused, "/etc/cron.d/.sync-state.json"},
		{"a state file name beside the export root", p.exports + "-evil/.sync-state.json", ErrRefused, "-evil/.sync-state.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fg := unpack(t, res.Archive)
			fg.add(tc.path, "0644", "state", []byte("* * * * * root id\n"))
			root := filepath.Join(t.TempDir(), "root")
			_, err := testRestore(RestoreOptions{Archive: fg.write(t, testSigningKey, nil), Root: root})
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant %v mentioning %q", err, tc.is, tc.want)
			}
			emptyDir(t, root)
		})
	}
}

// TestNothingWrittenBeforeTheRules: the configuration files an archive
// names are read to decide which entries it may restore — but nothing,
// not even those files, is written under the restore root before the
// rules accepted every entry. A forged configuration (here an unsigned
// archive restored with --allow-unsigned naming /etc/cron.d/evil as a
// configuration) used to be written to ROOT/etc/cron.d/evil first and
// only removed when loading it failed: on a live host cron acts the
// moment it exists.
func TestNothingWrittenBeforeTheRules(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	forged := func() string {
		fg := unpack(t, res.Archive)
		fg.add("/etc/cron.d/evil", "0644", "config", []byte("* * * * * root id\n"))
		fg.m.Configs = append(fg.m.Configs, ConfigRef{Path: "/etc/cron.d/evil", Format: "env"})
		return fg.write(t, nil, nil)
	}
	for _, tc := range []struct {
		name     string
		archive  func() string
		unsigned bool
		fails    bool
	}{
		{"genuine", func() string { return res.Archive }, false, false},
		{"a forged configuration", forged, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			var early []string
			refs := func(ctx context.Context, r string, configs []string, maps []PathMapping) ([]Reference, error) {
				filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
					if err == nil && !d.IsDir() {
						early = append(early, p)
					}
					return nil
				})
				return bprofile.References(ctx, r, configs, maps)
			}
			_, err := testRestore(RestoreOptions{Archive: tc.archive(), Root: root, AllowUnsigned: tc.unsigned, References: refs})
			if tc.fails != (err != nil) {
				t.Fatalf("err = %v, want failure %v", err, tc.fails)
			}
			t.Log(err)
			if len(early) > 0 {
				t.Errorf("written under the root before the rules accepted the archive: %v", early)
			}
			if tc.fails {
				emptyDir(t, root)
			}
		})
	}
}

// TestDryRunAppliesTheRules: restore --dry-run checks the restore rules
// too (the configurations are read from a private temporary folder, so it
// still writes nothing): a signed archive with a path no configuration
// references is refused by the dry run, not only by the real restore. It
// used to pass the dry run.
func TestDryRunAppliesTheRules(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fg := unpack(t, res.Archive)
	fg.add("/etc/cron.d/evil", "0644", "config", []byte("* * * * * root id\n"))
	root := filepath.Join(t.TempDir(), "root")
	_, err = testRestore(RestoreOptions{Archive: fg.write(t, testSigningKey, nil), Root: root, DryRun: true})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "/etc/cron.d/evil") {
		t.Fatalf("dry run: %v, want %v naming /etc/cron.d/evil", err, ErrRefused)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dry run created %s: %v", root, err)
	}
}

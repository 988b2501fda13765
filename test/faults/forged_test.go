package faults

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/stella-ops/stella-mirror/backup/backuptest"
)

// member is one member of a backup archive's tar stream.
type member = backuptest.Member

// readArchive decrypts and decompresses an archive written by backup.
func readArchive(t *testing.T, file string, id age.Identity) []member {
	return backuptest.Read(t, file, id)
}

// writeArchive writes members as a tar.gz encrypted to r: what anyone who
// can write to the backup folder can do, the recipient being public. Each
// header declares its body's length.
func writeArchive(t *testing.T, file string, r age.Recipient, ms []member) {
	for i := range ms {
		ms[i].Header.Size = int64(len(ms[i].Body))
	}
	backuptest.Write(t, file, r, ms)
}

// forgery rewrites a genuine archive's manifest (decoded generically, so
// that fields this test does not know survive) and may add file members;
// forge then makes SHA256SUMS consistent again, as a forger would.
type forgery func(manifest map[string]any, add func(abs string, body []byte, mode int64) map[string]any)

// forge applies f to the members of a genuine archive.
func forge(t *testing.T, ms []member, f forgery) []member {
	t.Helper()
	// The metadata members (SHA256SUMS, MANIFEST.json, MANIFEST.sig) may
	// come before or after the files; they are found by name and moved to
	// the front, as a forger may write them.
	sumsAt, manAt, sigAt := -1, -1, -1
	for i, m := range ms {
		switch path.Base(m.Header.Name) {
		case "SHA256SUMS":
			sumsAt = i
		case "MANIFEST.json":
			manAt = i
		case "MANIFEST.sig":
			sigAt = i
		}
	}
	if sumsAt < 0 || manAt < 0 {
		t.Fatalf("unexpected archive layout: no SHA256SUMS or MANIFEST.json member")
	}
	top := path.Dir(ms[sumsAt].Header.Name)
	out := []member{ms[sumsAt], ms[manAt]}
	if sigAt >= 0 {
		// The genuine signature stays: the forger cannot make a new one.
		out = append(out, ms[sigAt])
	}
	for i, m := range ms {
		if i != sumsAt && i != manAt && i != sigAt {
			out = append(out, m)
		}
	}
	ms = out
	out = append([]member(nil), ms...)
	var manifest map[string]any
	if err := json.Unmarshal(ms[1].Body, &manifest); err != nil {
		t.Fatal(err)
	}
	add := func(abs string, body []byte, mode int64) map[string]any {
		sum := sha256.Sum256(body)
		e := map[string]any{"path": abs, "type": "file", "mode": fmt.Sprintf("%04o", mode), "uid": 0, "gid": 0,
			"size": len(body), "sha256": hex.EncodeToString(sum[:]), "kind": "config"}
		manifest["entries"] = append(manifest["entries"].([]any), e)
		out = append(out, member{Header: tar.Header{Name: top + "/files" + abs, Mode: mode, Typeflag: tar.TypeReg,
			ModTime: ms[1].Header.ModTime, Format: tar.FormatPAX}, Body: body})
		return e
	}
	f(manifest, add)
	entries := manifest["entries"].([]any)
	sort.Slice(entries, func(i, j int) bool {
		return entries[i].(map[string]any)["path"].(string) < entries[j].(map[string]any)["path"].(string)
	})
	// Tar modes follow the manifest's, so the archive agrees with itself.
	modes := map[string]int64{}
	for _, e := range entries {
		e := e.(map[string]any)
		if e["type"] == "file" {
			var m int64
			fmt.Sscanf(e["mode"].(string), "%o", &m)
			modes[top+"/files"+e["path"].(string)] = m
		}
	}
	mb, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out[1] = member{Header: ms[1].Header, Body: append(mb, '\n')}
	var sums []string
	for i := 1; i < len(out); i++ {
		m := out[i]
		if m.Header.Typeflag != tar.TypeReg || path.Base(m.Header.Name) == "MANIFEST.sig" {
			continue
		}
		if mode, ok := modes[m.Header.Name]; ok {
			out[i].Header.Mode = mode
		}
		sum := sha256.Sum256(m.Body)
		sums = append(sums, hex.EncodeToString(sum[:])+"  "+strings.TrimPrefix(m.Header.Name, top+"/"))
	}
	sort.Strings(sums)
	out[0] = member{Header: ms[0].Header, Body: []byte(strings.Join(sums, "\n") + "\n")}
	return out
}

// TestForgedArchivesRefused forges archives from a genuine one, as anyone
// who can write to the backup folder can (age gives confidentiality, not
// authenticity, and the recipient is public): a symlink chain that
// resolves outside the restore root, a file at an absolute path no
// configuration references, secrets marked 0644. Issue 16 item 6: restore
// refuses each (exit non-zero) and writes nothing — unsigned, and, with
// --allow-unsigned, by its path and symlink rules (exit 1, not a usage
// error); forced 0600/0640 modes are accepted instead of a refusal for the
// 0644 secrets. The drill refuses the symlink chain too.
func TestForgedArchivesRefused(t *testing.T) {
	p := newProfile(t, 0)
	out := filepath.Join(t.TempDir(), "backups")
	if text, err := p.backupCommand(out, t.TempDir()).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, text)
	}
	arch := archives(out)
	if len(arch) != 1 {
		t.Fatalf("backup wrote %v", arch)
	}
	genuine := readArchive(t, filepath.Join(out, arch[0]), p.identity)

	cases := []struct {
		name string
		f    forgery
		// modesOnly: a restore that succeeds is acceptable when every
		// secret it wrote is at most 0640.
		modesOnly bool
	}{
		{name: "symlink chain out of the root", f: func(m map[string]any, _ func(string, []byte, int64) map[string]any) {
			link := func(p, target string) map[string]any {
				return map[string]any{"path": p, "type": "symlink", "mode": "0777", "uid": 0, "gid": 0, "target": target, "kind": "include"}
			}
			m["entries"] = append(m["entries"].([]any),
				link("/L", "."),
				map[string]any{"path": "/a", "type": "dir", "mode": "0755", "uid": 0, "gid": 0, "kind": "include"},
				link("/a/L", "."),
				link("/a/evil", "L/../L/../outside"))
		}},
		{name: "absolute path no configuration references", f: func(_ map[string]any, add func(string, []byte, int64) map[string]any) {
			add("/etc/cron.d/stella-mirror-forged", []byte("* * * * * root touch /tmp/stella-mirror-forged\n"), 0o644)
		}},
		{name: "secrets 0644", modesOnly: true, f: func(m map[string]any, _ func(string, []byte, int64) map[string]any) {
			n := 0
			for _, e := range m["entries"].([]any) {
				if e := e.(map[string]any); e["secret"] == true {
					e["mode"] = "0644"
					n++
				}
			}
			if n == 0 {
				panic("the genuine archive has no secret entries")
			}
		}},
	}
	t.Run("genuine archive restores with --verify-key", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "root")
		text, err := restore(filepath.Join(out, arch[0]), p.identityFile, root, "--verify-key", p.verifyKey)
		if err != nil {
			t.Fatalf("restore: %v\n%s", err, text)
		}
	})
	for _, tc := range cases {
		forged := filepath.Join(t.TempDir(), arch[0])
		writeArchive(t, forged, p.identity.Recipient(), forge(t, genuine, tc.f))
		for _, mode := range []struct {
			name  string
			extra []string
		}{{"verify-key", []string{"--verify-key", p.verifyKey}}, {"allow-unsigned", []string{"--allow-unsigned"}}} {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				base := t.TempDir()
				root := filepath.Join(base, "root")
				text, err := restore(forged, p.identityFile, root, mode.extra...)
				code := exitCode(err)
				t.Logf("restore: exit %d\n%s", code, text)
				if _, err := os.Lstat(filepath.Join(base, "outside")); err == nil {
					t.Errorf("the restore wrote %s, outside its root", filepath.Join(base, "outside"))
				}
				if tc.modesOnly && code == 0 {
					for _, f := range loose(t, root) {
						t.Errorf("secret restored with a loose mode: %s", f)
					}
					return
				}
				if code == 0 {
					t.Errorf("the forged archive was restored (exit 0)")
				}
				if code != 1 {
					t.Errorf("exit %d, want 1 (refused by the restore rules, not a usage error)", code)
				}
				if w := written(root); len(w) > 0 {
					t.Errorf("a refused restore left %d paths behind, e.g. %s", len(w), w[0])
				}
			})
		}
	}
	forged := filepath.Join(t.TempDir(), arch[0])
	writeArchive(t, forged, p.identity.Recipient(), forge(t, genuine, cases[0].f))
	for _, extra := range [][]string{{"--verify-key", p.verifyKey}, {"--allow-unsigned"}} {
		t.Run(fmt.Sprintf("drill refuses the symlink chain %v", extra), func(t *testing.T) {
			args := append([]string{"restore", "--drill", "--from", forged, "--identity", p.identityFile}, extra...)
			text, err := exec.Command(bin, args...).CombinedOutput()
			code := exitCode(err)
			if code == 0 {
				t.Errorf("the drill passed a forged archive\n%s", text)
			}
			if code != 1 {
				t.Errorf("drill of a forged archive: exit %d, want 1\n%s", code, text)
			}
		})
	}
}

// restore runs `stella-mirror restore` of archive into root.
func restore(archive, identity, root string, extra ...string) ([]byte, error) {
	args := append([]string{"restore", "--from", archive, "--identity", identity, "--to", root}, extra...)
	return exec.Command(bin, args...).CombinedOutput()
}

// written lists the paths under root (root itself not counted; none when
// it does not exist).
func written(root string) []string {
	var found []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root {
			found = append(found, p)
		}
		return nil
	})
	return found
}

// loose lists the files under root that a secret must not be: group-
// writable or readable by others. Only secrets are expected under a
// restore of the profile's credentials, keys and htpasswd files; the
// configuration file (gateway.yaml) is not a secret and is skipped.
func loose(t *testing.T, root string) []string {
	t.Helper()
	var found []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".crt") {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Mode().Perm()&0o027 != 0 {
			found = append(found, fmt.Sprintf("%s %04o", p, fi.Mode().Perm()))
		}
		return nil
	})
	return found
}

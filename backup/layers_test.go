package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// layers is an archive's content before it is written: each integrity
// layer on its own, so that a test can make exactly one of them wrong and
// leave every other consistent (the signature, when there is one, is made
// over whatever manifest and SHA256SUMS end up in the archive, so it holds).
type layers struct {
	top   string
	files map[string][]byte // member (files/…) → bytes in the archive
	mb    []byte            // MANIFEST.json
	sb    []byte            // SHA256SUMS
}

// consistentLayers takes a real archive apart and returns its layers, all
// consistent with each other.
func consistentLayers(t *testing.T, archive string) *layers {
	t.Helper()
	fg := unpack(t, archive)
	for i := range fg.m.Entries {
		e := &fg.m.Entries[i]
		if e.Type == TypeFile {
			sum := sha256.Sum256(fg.files[member(e.Path)])
			e.SHA256, e.Size = hex.EncodeToString(sum[:]), int64(len(fg.files[member(e.Path)]))
		}
	}
	mb, err := encodeManifest(fg.m)
	if err != nil {
		t.Fatal(err)
	}
	l := &layers{top: fg.m.Name, files: fg.files, mb: mb}
	sums := map[string]string{}
	for mem, b := range l.files {
		sums[mem] = hexSum(b)
	}
	sums[ManifestName] = hexSum(mb)
	l.sb = sumsBytes(sums)
	return l
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sumsBytes(sums map[string]string) []byte {
	var sb strings.Builder
	writeSums(&sb, sums)
	return []byte(sb.String())
}

// firstMember is the alphabetically first member with content.
func (l *layers) firstMember(t *testing.T) string {
	t.Helper()
	var mems []string
	for mem, b := range l.files {
		if len(b) > 0 {
			mems = append(mems, mem)
		}
	}
	if len(mems) == 0 {
		t.Fatal("no file member with content")
	}
	sort.Strings(mems)
	return mems[0]
}

// tarBytes is the uncompressed tar stream of l (signed with key unless nil).
func (l *layers) tarBytes(t *testing.T, key ed25519.PrivateKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: l.top + "/" + name, Mode: 0o600, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	mems := make([]string, 0, len(l.files))
	for mem := range l.files {
		mems = append(mems, mem)
	}
	sort.Strings(mems)
	for _, mem := range mems {
		put(mem, l.files[mem])
	}
	put(SumsName, l.sb)
	put(ManifestName, l.mb)
	if key != nil {
		sig, err := signArchive(key, l.mb, l.sb)
		if err != nil {
			t.Fatal(err)
		}
		put(SignatureName, sig)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// TestOneLayerWrong builds archives in which exactly one integrity layer is
// wrong — a member's bytes, the manifest, a SHA256SUMS line, the set of
// members, a tar header, the gzip header or trailer — deterministically
// (no random flips), signed by the trusted key and unsigned. Each is
// refused as corrupt, naming the layer, and nothing is written. The same
// archive with no layer changed restores, so each refusal is the layer's.
func TestOneLayerWrong(t *testing.T) {
	p := newProfile(t)
	res, err := testBackup(Options{Configs: p.configs, OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, at int) []byte {
		b = bytes.Clone(b)
		b[at] ^= 0x40
		return b
	}
	tests := []struct {
		name string
		// edit changes one layer; archive turns the tar stream into the
		// file's bytes (nil: gzip).
		edit    func(t *testing.T, l *layers)
		archive func(tarb []byte) []byte
		want    string // "" for the unchanged archive, which restores
		notOurs bool   // refused as not a backup at all, rather than ErrCorrupt
	}{
		{name: "nothing changed"},
		{name: "a member's bytes differ from SHA256SUMS and the manifest", edit: func(t *testing.T, l *layers) {
			mem := l.firstMember(t)
			l.files[mem] = flip(l.files[mem], len(l.files[mem])/2)
		}, want: "has sha256"},
		{name: "a member's last byte differs", edit: func(t *testing.T, l *layers) {
			mem := l.firstMember(t)
			l.files[mem] = flip(l.files[mem], len(l.files[mem])-1)
		}, want: "has sha256"},
		{name: "a member is one byte longer", edit: func(t *testing.T, l *layers) {
			mem := l.firstMember(t)
			l.files[mem] = append(bytes.Clone(l.files[mem]), 'x')
		}, want: "the manifest says"},
		{name: "the manifest differs from its SHA256SUMS line", edit: func(t *testing.T, l *layers) {
			changed := bytes.Replace(l.mb, []byte(`"mode": "0600"`), []byte(`"mode": "0644"`), 1)
			if bytes.Equal(changed, l.mb) {
				t.Fatal("no 0600 entry in the manifest")
			}
			l.mb = changed
		}, want: ManifestName + " does not match its checksum"},
		{name: "a SHA256SUMS line differs from the manifest", edit: func(t *testing.T, l *layers) {
			mem := l.firstMember(t)
			sums, err := parseSums(l.sb)
			if err != nil {
				t.Fatal(err)
			}
			sums[mem] = hexSum([]byte("other content"))
			l.sb = sumsBytes(sums)
		}, want: "SHA256SUMS and the manifest disagree"},
		{name: "SHA256SUMS lists a file the manifest has not", edit: func(t *testing.T, l *layers) {
			sums, err := parseSums(l.sb)
			if err != nil {
				t.Fatal(err)
			}
			sums[filesDir+"/extra"] = hexSum([]byte("extra"))
			l.sb = sumsBytes(sums)
		}, want: "lists"},
		{name: "a member neither lists", edit: func(t *testing.T, l *layers) {
			l.files[filesDir+"/etc/extra"] = []byte("extra")
		}, want: "unexpected member"},
		{name: "a member listed everywhere is missing", edit: func(t *testing.T, l *layers) {
			delete(l.files, l.firstMember(t))
		}, want: "missing from the archive"},
		{name: "the archive's folder differs from the manifest's name", edit: func(t *testing.T, l *layers) {
			l.top += "-renamed" // every member moves; the signed manifest still names the original
		}, want: "manifest names"},
		{name: "a tar header's name damaged", archive: func(tarb []byte) []byte {
			return gzipBytes(flip(tarb, 2)) // the first header's name; its checksum no longer matches
		}, want: "invalid tar header"},
		{name: "a tar header's size damaged", archive: func(tarb []byte) []byte {
			return gzipBytes(flip(tarb, 124+5)) // the size field of the first header
		}, want: "tar"},
		{name: "gzip header magic damaged", archive: func(tarb []byte) []byte {
			return flip(gzipBytes(tarb), 1)
		}, want: "neither age-encrypted nor gzip", notOurs: true},
		{name: "gzip header method damaged", archive: func(tarb []byte) []byte {
			return flip(gzipBytes(tarb), 2) // CM, 8 (deflate)
		}, want: "gzip: invalid header"},
		{name: "gzip trailer CRC damaged", archive: func(tarb []byte) []byte {
			gz := gzipBytes(tarb)
			return flip(gz, len(gz)-6)
		}, want: "checksum"},
		{name: "gzip trailer size damaged", archive: func(tarb []byte) []byte {
			gz := gzipBytes(tarb)
			return flip(gz, len(gz)-2)
		}, want: "checksum"},
	}
	for _, signed := range []bool{true, false} {
		for _, tc := range tests {
			name := tc.name + map[bool]string{true: " (signed)", false: " (unsigned)"}[signed]
			t.Run(name, func(t *testing.T) {
				l := consistentLayers(t, res.Archive)
				if tc.edit != nil {
					tc.edit(t, l)
				}
				key := testSigningKey
				o := RestoreOptions{}
				if !signed {
					key = nil
					o.AllowUnsigned = true
				}
				tarb := l.tarBytes(t, key)
				data := gzipBytes(tarb)
				if tc.archive != nil {
					data = tc.archive(tarb)
				}
				o.Archive = filepath.Join(t.TempDir(), l.top+".tar.gz")
				if err := os.WriteFile(o.Archive, data, 0o600); err != nil {
					t.Fatal(err)
				}
				o.Root = filepath.Join(t.TempDir(), "root")
				_, err := testRestore(o)
				if tc.want == "" {
					if err != nil {
						t.Fatalf("the consistent archive: %v", err)
					}
					return
				}
				if err == nil || errors.Is(err, ErrCorrupt) == tc.notOurs || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v\nwant ErrCorrupt (unless not a backup at all: %v) mentioning %q", err, tc.notOurs, tc.want)
				}
				t.Log(err)
				emptyDir(t, o.Root)
			})
		}
	}
}

package backup

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"testing"
)

// FuzzReadArchive feeds arbitrary decompressed archive streams (tar) to
// the verifier restore runs before writing anything: it must return an
// error or a verified archive whose every file entry is a member, never
// panic or read without bound.
func FuzzReadArchive(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, o := range []verifyOptions{{allowUnsigned: true}, {verifyKeys: []ed25519.PublicKey{testVerifyKey}}} {
			v, err := readArchive("fuzz", tar.NewReader(bytes.NewReader(data)), o)
			if err != nil {
				continue
			}
			if o.verifyKeys != nil && v.keyID == "" {
				t.Fatal("verified with a key but no key id")
			}
			if err := v.manifest.validate(); err != nil {
				t.Fatalf("accepted a manifest that does not validate: %v", err)
			}
			for mem, e := range v.files {
				if member(e.Path) != mem {
					t.Fatalf("member %s maps to entry %s", mem, e.Path)
				}
			}
		}
	})
}

// FuzzParseManifest checks the manifest decoder and its rules (paths,
// symlink targets, modes) on arbitrary JSON.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"format":1,"name":"2026-01-01T000000Z","created":"2026-01-01T00:00:00Z","configs":[],"entries":[{"path":"/a","type":"symlink","mode":"0777","uid":0,"gid":0,"target":"b","kind":"include"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data)
		if err != nil {
			return
		}
		for _, e := range m.Entries {
			if e.Type == TypeSymlink && !plainRelative(e.Target) {
				t.Fatalf("accepted symlink target %q", e.Target)
			}
			if !cleanAbs(e.Path) {
				t.Fatalf("accepted path %q", e.Path)
			}
		}
		if _, err := encodeManifest(m); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseSums checks the SHA256SUMS parser.
func FuzzParseSums(f *testing.F) {
	f.Add([]byte("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  files/etc/x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sums, err := parseSums(data)
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := writeSums(&b, sums); err != nil {
			t.Fatal(err)
		}
		again, err := parseSums(b.Bytes())
		if err != nil || len(again) != len(sums) {
			t.Fatalf("round trip: %v, %d vs %d", err, len(again), len(sums))
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpus from real archives when
// STELLA_MIRROR_WRITE_FUZZ_SEEDS=1 (checked in under testdata/fuzz).
func TestWriteFuzzSeeds(t *testing.T) {
	if !writeSeeds {
		t.Skip("set STELLA_MIRROR_WRITE_FUZZ_SEEDS=1 to rewrite the seed corpus")
	}
	writeFuzzSeeds(t)
}

package backup

import (
	"bytes"
	"compress/gzip"
	"fmt"
	bprofile "github.com/stella-ops/stella-mirror/backup/profile"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var writeSeeds = os.Getenv("STELLA_MIRROR_WRITE_FUZZ_SEEDS") == "1"

// writeFuzzSeeds writes decompressed real archives (signed and unsigned,
// with a symlink) and their manifests as seeds.
func writeFuzzSeeds(t *testing.T) {
	p := newProfile(t)
	seed := func(target, name string, data []byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, signed := range []bool{true, false} {
		o := Options{Configs: p.configs, OutDir: t.TempDir(), Load: bprofile.LoadInventory}
		if !signed {
			res, err := Backup(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			writeSeed(t, seed, res.Archive, i)
			continue
		}
		res, err := testBackup(o)
		if err != nil {
			t.Fatal(err)
		}
		writeSeed(t, seed, res.Archive, i)
	}
}

func writeSeed(t *testing.T, seed func(target, name string, data []byte), archive string, i int) {
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.TrimRight(raw, "\x00") // the end-of-archive blocks: the tar reader accepts EOF there
	seed("FuzzReadArchive", fmt.Sprintf("archive-%d", i), raw)
	fg := unpack(t, archive)
	fg.link("/x/latest", "y")
	mb, err := encodeManifest(fg.m)
	if err != nil {
		t.Fatal(err)
	}
	seed("FuzzParseManifest", fmt.Sprintf("manifest-%d", i), mb)
	sums := map[string]string{}
	for _, e := range fg.m.Entries {
		if e.Type == TypeFile {
			sums[member(e.Path)] = e.SHA256
		}
	}
	var sb bytes.Buffer
	writeSums(&sb, sums)
	seed("FuzzParseSums", fmt.Sprintf("sums-%d", i), sb.Bytes())
}

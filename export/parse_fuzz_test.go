package export_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
)

// The export parsers read bytes a mirror fetched from an upstream it does
// not control. These targets hold them to:
//   - never a panic;
//   - what parses re-encodes (json.Marshal) and re-parses to the same
//     value, compared as the encodings of both parses (an absent and an
//     empty list are the same value);
//   - every digest accepted is "sha256:" and 64 lower-case hex digits;
//   - every path accepted is the layout's own path for the domain (and
//     export key): relative, clean, no traversal.
// The seeds are a generated fixture export (small) plus hand-written
// hostile variants; testdata/fuzz/FuzzXxx holds the checked-in corpus.

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// fixtureFiles writes a small two-domain fixture export and returns its
// files by path relative to the export directory.
func fixtureFiles(f *testing.F) map[string][]byte {
	f.Helper()
	root := f.TempDir()
	res, err := fixture.Write(root, fixture.Options{BundleSize: 4 << 10, VEXSize: 2 << 10, Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	files := map[string][]byte{}
	for _, fl := range res.Files {
		if !strings.HasSuffix(fl.Path, ".json") && !strings.HasSuffix(fl.Path, "/index") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(res.Dir, fl.Path))
		if err != nil {
			f.Fatal(err)
		}
		files[fl.Path] = b
	}
	return files
}

// hostile returns variants of a valid document: digests and paths in
// other spellings, traversal, wrong types, duplicate members.
func hostile(valid []byte) [][]byte {
	s := string(valid)
	var out [][]byte
	for _, r := range [][2]string{
		{`"sha256:`, `"SHA256:`},
		{`"sha256:`, `"sha512:`},
		{`"sha256:`, `" sha256:`},
		{`"sha256:`, `"sha256:0`},
		{`"sha256:`, `"sha256:\u0030`},
		{`"mirror/`, `"mirror/../`},
		{`"mirror/`, `"/mirror/`},
		{`"mirror/`, `"mirror\\`},
		{`"excititor/`, `"excititor/../`},
		{`"/excititor/mirror/`, `"/excititor/mirror/%2e%2e/`},
		{`"primary"`, `"Primary"`},
		{`"primary"`, `"prim\u0000ary"`},
		{`"schemaVersion":1`, `"schemaVersion":1.5`},
		{`"schemaVersion":1`, `"schemaVersion":"1"`},
		{`"sizeBytes":`, `"sizeBytes":-`},
		{`"sizeBytes":`, `"sizeBytes":1e3,"sizeBytes":`},
		{`"digest":`, `"Digest":"sha256:x","digest":`},
		{`"generatedAt":"`, `"generatedAt":"0000-`},
		{`"signature":{`, `"signature":null,"x":{`},
		{`{`, `{"exportId":"latest",`},
	} {
		if v := strings.Replace(s, r[0], r[1], 1); v != s {
			out = append(out, []byte(v))
		}
	}
	return append(out, []byte("null"), []byte("{}"), []byte("[]"), []byte(s+s), []byte(s+"x"), valid[:len(valid)/2])
}

func addSeeds(f *testing.F, files map[string][]byte, match func(string) bool) {
	n := 0
	for p, b := range files {
		if !match(p) {
			continue
		}
		n++
		f.Add(b)
		for _, h := range hostile(b) {
			f.Add(h)
		}
	}
	if n == 0 {
		f.Fatal("no fixture file for the seeds")
	}
}

// reparse checks that v (what data parsed to) re-encodes and re-parses to
// the same encoding.
func reparse[T any](t *testing.T, data []byte, v *T, parse func([]byte) (*T, error)) {
	t.Helper()
	enc, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("parsed %q, but cannot re-encode it: %v", data, err)
	}
	v2, err := parse(enc)
	if err != nil {
		t.Fatalf("parsed %q, but its re-encoding %s does not parse: %v", data, enc, err)
	}
	enc2, err := json.Marshal(v2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("re-parse changed the value:\n\t%s\n\t%s", enc, enc2)
	}
}

func checkDigest(t *testing.T, at, d string) {
	t.Helper()
	if !digestRE.MatchString(d) {
		t.Fatalf("%s: digest %q accepted", at, d)
	}
}

func checkPath(t *testing.T, at, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: path %q accepted, the layout says %q", at, got, want)
	}
	if err := export.ValidateRelPath(got); err != nil {
		t.Fatalf("%s: path %q accepted: %v", at, got, err)
	}
}

func checkFileRef(t *testing.T, at string, r export.FileRef, want string) {
	t.Helper()
	checkDigest(t, at, r.Digest)
	checkPath(t, at, r.Path, want)
	if r.SizeBytes < 0 {
		t.Fatalf("%s: negative size %d accepted", at, r.SizeBytes)
	}
	if r.Signature != nil {
		checkPath(t, at+".signature", r.Signature.Path, want+export.SignatureSuffix)
	}
}

func FuzzParseIndex(f *testing.F) {
	addSeeds(f, fixtureFiles(f), func(p string) bool { return p == export.IndexPath })
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := export.ParseIndex(data)
		if err != nil {
			return
		}
		if !export.ValidExportID(ix.ExportID) || len(ix.Domains) == 0 {
			t.Fatalf("accepted index with export id %q and %d domains", ix.ExportID, len(ix.Domains))
		}
		seen := map[string]bool{}
		for _, d := range ix.Domains {
			if !export.ValidDomainID(d.DomainID) || seen[d.DomainID] {
				t.Fatalf("accepted domain id %q (duplicate: %v)", d.DomainID, seen[d.DomainID])
			}
			seen[d.DomainID] = true
			checkFileRef(t, d.DomainID+".manifest", d.Manifest, export.ManifestPath(d.DomainID))
			checkFileRef(t, d.DomainID+".bundle", d.Bundle, export.BundlePath(d.DomainID))
			if d.Bundle.Signature == nil {
				t.Fatalf("accepted an unsigned bundle for %q", d.DomainID)
			}
		}
		reparse(t, data, ix, export.ParseIndex)
	})
}

func FuzzParseManifest(f *testing.F) {
	addSeeds(f, fixtureFiles(f), func(p string) bool { return strings.HasSuffix(p, "/"+export.ManifestName) })
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := export.ParseManifest(data)
		if err != nil {
			return
		}
		if !export.ValidExportID(m.ExportID) || !export.ValidDomainID(m.DomainID) {
			t.Fatalf("accepted manifest with export id %q, domain %q", m.ExportID, m.DomainID)
		}
		checkFileRef(t, "bundle", m.Bundle, export.BundlePath(m.DomainID))
		if m.Bundle.Signature == nil {
			t.Fatal("accepted an unsigned bundle")
		}
		reparse(t, data, m, export.ParseManifest)
	})
}

func FuzzParseExcititorIndex(f *testing.F) {
	addSeeds(f, fixtureFiles(f), func(p string) bool { return strings.HasPrefix(p, "excititor/") && strings.HasSuffix(p, "/index.json") })
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := export.ParseExcititorIndex(data)
		if err != nil {
			return
		}
		if !export.ValidExportID(ix.ExportID) || !export.ValidDomainID(ix.DomainID) {
			t.Fatalf("accepted excititor index with export id %q, domain %q", ix.ExportID, ix.DomainID)
		}
		seen := map[string]bool{}
		for _, e := range ix.Exports {
			if !export.ValidExportKey(e.ExportKey) || seen[e.ExportKey] {
				t.Fatalf("accepted export key %q (duplicate: %v)", e.ExportKey, seen[e.ExportKey])
			}
			seen[e.ExportKey] = true
			if _, ok := export.Formats[e.Format]; !ok {
				t.Fatalf("accepted format %q", e.Format)
			}
			checkDigest(t, e.ExportKey, e.Digest)
			if e.Signature == nil {
				t.Fatalf("accepted unsigned export %q", e.ExportKey)
			}
			checkPath(t, e.ExportKey+".signature", e.Signature.Path, export.ExcititorSignaturePath(ix.DomainID, e.ExportKey))
			url := export.ExcititorExportURL(ix.DomainID, e.ExportKey)
			if e.ExportPath != url || e.SignaturePath != url+"/signature" {
				t.Fatalf("accepted URLs %q, %q for %q", e.ExportPath, e.SignaturePath, url)
			}
			if e.SizeBytes < 0 {
				t.Fatalf("accepted negative size %d", e.SizeBytes)
			}
		}
		reparse(t, data, ix, export.ParseExcititorIndex)
	})
}

func FuzzReadBundle(f *testing.F) {
	addSeeds(f, fixtureFiles(f), func(p string) bool { return strings.HasSuffix(p, "/"+export.BundleName) })
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := export.ReadBundle(bytes.NewReader(data))
		if err != nil {
			return
		}
		if !export.ValidDomainID(b.DomainID) || b.AdvisoryCount != len(b.Advisories) {
			t.Fatalf("accepted bundle for domain %q, count %d of %d", b.DomainID, b.AdvisoryCount, len(b.Advisories))
		}
		reparse(t, data, b, func(d []byte) (*export.Bundle, error) { return export.ReadBundle(bytes.NewReader(d)) })
	})
}

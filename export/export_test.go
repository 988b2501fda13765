package export

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func validIndex() *Index {
	return &Index{
		SchemaVersion: 1, ExportID: "20261122T000000Z", GeneratedAt: t0,
		Domains: []IndexDomain{{
			DomainID: "primary", AdvisoryCount: 1,
			Manifest: FileRef{Path: ManifestPath("primary"), SizeBytes: 10, Digest: Digest([]byte("m"))},
			Bundle: FileRef{Path: BundlePath("primary"), SizeBytes: 20, Digest: Digest([]byte("b")),
				Signature: &SignatureRef{Path: BundleSignaturePath("primary"), Algorithm: "ES256", KeyID: "k1", SignedAt: t0}},
		}},
	}
}

func TestParseIndex(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Index)
		wantErr string
	}{
		{"valid", func(*Index) {}, ""},
		{"schema", func(ix *Index) { ix.SchemaVersion = 2 }, "schemaVersion: want 1, have 2"},
		{"export id", func(ix *Index) { ix.ExportID = "../x" }, `exportId "../x": not a valid export id`},
		{"no domains", func(ix *Index) { ix.Domains = nil }, "domains: empty"},
		{"bad domain", func(ix *Index) { ix.Domains[0].DomainID = "Primary" }, `domainId "Primary": not a valid domain id`},
		{"duplicate domain", func(ix *Index) { ix.Domains = append(ix.Domains, ix.Domains[0]) }, `domains[1].domainId "primary": duplicate`},
		{"traversal path", func(ix *Index) { ix.Domains[0].Bundle.Path = "mirror/primary/../../etc/passwd" }, `want "mirror/primary/bundle.json"`},
		{"bad digest", func(ix *Index) { ix.Domains[0].Bundle.Digest = "sha256:XYZ" }, "want 64 hex digits"},
		{"md5 digest", func(ix *Index) { ix.Domains[0].Bundle.Digest = "md5:00" }, `want prefix "sha256:"`},
		{"unsigned bundle", func(ix *Index) { ix.Domains[0].Bundle.Signature = nil }, "bundle.signature: missing"},
		{"signature path", func(ix *Index) { ix.Domains[0].Bundle.Signature.Path = "x.jws" }, `signature.path "x.jws"`},
		{"negative size", func(ix *Index) { ix.Domains[0].Manifest.SizeBytes = -1 }, "sizeBytes: negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := validIndex()
			tt.mutate(ix)
			data, err := json.Marshal(ix)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseIndex(data)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if got.Domain("primary") == nil || got.Domain("other") != nil {
					t.Fatal("Domain lookup wrong")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	for _, bad := range []string{``, `{`, `[]`, `{"schemaVersion":"1"}`, `{} {}`} {
		if _, err := ParseIndex([]byte(bad)); err == nil {
			t.Errorf("ParseIndex(%q) succeeded", bad)
		}
	}
}

func TestParseManifestAndBundle(t *testing.T) {
	m := Manifest{SchemaVersion: 1, ExportID: "e1", GeneratedAt: t0, DomainID: "primary", AdvisoryCount: 1,
		Bundle: validIndex().Domains[0].Bundle}
	data, _ := json.Marshal(m)
	if _, err := ParseManifest(data); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	m.Bundle.Signature = nil
	data, _ = json.Marshal(m)
	if _, err := ParseManifest(data); err == nil || !strings.Contains(err.Error(), "signature: missing") {
		t.Fatalf("unsigned manifest: err = %v", err)
	}

	b := Bundle{SchemaVersion: 1, GeneratedAt: t0, DomainID: "primary", AdvisoryCount: 1,
		Advisories: []Advisory{{AdvisoryKey: "CVE-2026-0001"}}}
	data, _ = json.Marshal(b)
	if _, err := ReadBundle(strings.NewReader(string(data))); err != nil {
		t.Fatalf("valid bundle: %v", err)
	}
	if _, err := ReadBundle(strings.NewReader(string(data) + "{}")); err == nil {
		t.Fatal("trailing data accepted")
	}
	b.AdvisoryCount = 2
	data, _ = json.Marshal(b)
	if _, err := ReadBundle(strings.NewReader(string(data))); err == nil || !strings.Contains(err.Error(), "holds 1 advisories") {
		t.Fatalf("count mismatch: err = %v", err)
	}
}

func TestParseExcititorIndex(t *testing.T) {
	valid := func() *ExcititorIndex {
		return &ExcititorIndex{SchemaVersion: 1, ExportID: "e1", GeneratedAt: t0, DomainID: "primary",
			Exports: []ExcititorExport{{
				ExportKey: "openvex-e1", Format: "openvex", CreatedAt: t0, SizeBytes: 3, Digest: Digest([]byte("abc")),
				ExportPath: "/excititor/mirror/primary/export/openvex-e1", SignaturePath: "/excititor/mirror/primary/export/openvex-e1/signature",
				Signature: &SignatureRef{Path: ExcititorSignaturePath("primary", "openvex-e1"), Algorithm: "EdDSA", KeyID: "k", SignedAt: t0},
			}}}
	}
	tests := []struct {
		name    string
		mutate  func(*ExcititorIndex)
		wantErr string
	}{
		{"valid", func(*ExcititorIndex) {}, ""},
		{"bad key", func(ix *ExcititorIndex) { ix.Exports[0].ExportKey = "../x" }, "not a valid export key"},
		{"jws key", func(ix *ExcititorIndex) { ix.Exports[0].ExportKey = "a.jws" }, "not a valid export key"},
		{"format", func(ix *ExcititorIndex) { ix.Exports[0].Format = "pdf" }, `format "pdf": unknown`},
		{"url", func(ix *ExcititorIndex) { ix.Exports[0].ExportPath = "/x" }, `exportPath "/x"`},
		{"dup", func(ix *ExcititorIndex) { ix.Exports = append(ix.Exports, ix.Exports[0]) }, "duplicate"},
		{"unsigned", func(ix *ExcititorIndex) { ix.Exports[0].Signature = nil }, "signature: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix := valid()
			tt.mutate(ix)
			data, _ := json.Marshal(ix)
			got, err := ParseExcititorIndex(data)
			if tt.wantErr == "" {
				if err != nil || got.Export("openvex-e1") == nil {
					t.Fatalf("got %v, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNamesAndPaths(t *testing.T) {
	for _, tt := range []struct {
		fn   func(string) bool
		in   string
		want bool
	}{
		{ValidExportID, "20261122T000000Z", true},
		{ValidExportID, "latest", false},
		{ValidExportID, "mirror", false},
		{ValidExportID, "index.json", false},
		{ValidExportID, "mirror-2026", true},
		{ValidExportID, strings.Repeat("a", 128), true},
		{ValidExportID, strings.Repeat("a", 129), false},
		{ValidExportID, "%2e%2e", false},
		{ValidExportID, ".staging", false},
		{ValidExportID, "..", false},
		{ValidExportID, "a/b", false},
		{ValidExportID, "", false},
		{ValidDomainID, "primary", true},
		{ValidDomainID, "-x", false},
		{ValidDomainID, "a_b", false},
		{ValidDomainID, "A", false},
		{ValidExportKey, "openvex-1.json", true},
		{ValidExportKey, ".hidden", false},
		{ValidExportKey, "a%2f", false},
	} {
		if got := tt.fn(tt.in); got != tt.want {
			t.Errorf("valid(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	for p, ok := range map[string]bool{"mirror/index.json": true, "../x": false, "/abs": false, "a//b": false, "a/./b": false, `a\b`: false, "": false} {
		if err := ValidateRelPath(p); (err == nil) != ok {
			t.Errorf("ValidateRelPath(%q) = %v", p, err)
		}
	}
}

func TestDigest(t *testing.T) {
	const abc = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := Digest([]byte("abc")); got != abc {
		t.Fatalf("Digest = %s", got)
	}
	got, n, err := DigestReader(strings.NewReader("abc"))
	if err != nil || got != abc || n != 3 {
		t.Fatalf("DigestReader = %s %d %v", got, n, err)
	}
	if err := ValidateDigest(strings.ToUpper(abc)); err == nil {
		t.Fatal("upper-case digest accepted")
	}
}

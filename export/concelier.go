package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// SchemaVersion is the format version this package reads and writes.
const SchemaVersion = 1

// Index is the Concelier mirror index, `mirror/index.json`: every domain of
// one export, with references to its manifest and bundle. Served at
// GET /concelier/exports/index.json.
type Index struct {
	// SchemaVersion is always 1.
	SchemaVersion int `json:"schemaVersion"`
	// ExportID names the export directory this index belongs to.
	ExportID string `json:"exportId"`
	// GeneratedAt is when the exporter wrote the export (UTC).
	GeneratedAt time.Time `json:"generatedAt"`
	// TargetRepository is an optional free-form label of the exporter's target.
	TargetRepository string `json:"targetRepository,omitempty"`
	// Domains lists the export's domains, each at most once.
	Domains []IndexDomain `json:"domains"`
}

// IndexDomain is one domain's entry in the Index.
type IndexDomain struct {
	// DomainID is the domain's identifier (see ValidDomainID), e.g. "primary".
	DomainID string `json:"domainId"`
	// DisplayName is a human-readable name.
	DisplayName string `json:"displayName,omitempty"`
	// AdvisoryCount is the number of advisories in the bundle.
	AdvisoryCount int `json:"advisoryCount"`
	// Manifest references `mirror/<domain>/manifest.json`.
	Manifest FileRef `json:"manifest"`
	// Bundle references `mirror/<domain>/bundle.json` and its signature.
	Bundle FileRef `json:"bundle"`
	// Sources summarises the upstream sources merged into the bundle.
	Sources []SourceSummary `json:"sources,omitempty"`
}

// FileRef references one file of the export by path, size and digest of its
// exact bytes, and optionally its detached signature.
type FileRef struct {
	// Path is relative to the export directory (see ValidateRelPath).
	Path string `json:"path"`
	// SizeBytes is the file's length in bytes.
	SizeBytes int64 `json:"sizeBytes"`
	// Digest is `sha256:<hex>` of the file's bytes.
	Digest string `json:"digest"`
	// Signature describes the detached JWS over the file, if it is signed.
	Signature *SignatureRef `json:"signature,omitempty"`
}

// SignatureRef describes a detached JWS (RFC 7515 appendix F) over a file.
type SignatureRef struct {
	// Path of the `.jws` file, relative to the export directory.
	Path string `json:"path"`
	// Algorithm is the JWS `alg`: "ES256" or "EdDSA".
	Algorithm string `json:"algorithm"`
	// KeyID is the JWS `kid` the verifier selects its key by.
	KeyID string `json:"keyId"`
	// Provider names the signing provider (informational, e.g. "default").
	Provider string `json:"provider,omitempty"`
	// SignedAt is when the signature was made.
	SignedAt time.Time `json:"signedAt"`
}

// SourceSummary counts the advisories one upstream source contributed.
type SourceSummary struct {
	// Source is the upstream source name, e.g. "nvd", "ghsa", "osv".
	Source string `json:"source"`
	// AdvisoryCount is how many advisories came from it.
	AdvisoryCount int `json:"advisoryCount"`
	// FirstRecordedAt and LastRecordedAt bound when they were recorded.
	FirstRecordedAt time.Time `json:"firstRecordedAt"`
	LastRecordedAt  time.Time `json:"lastRecordedAt"`
}

// Manifest is one domain's manifest, `mirror/<domain>/manifest.json`.
type Manifest struct {
	// SchemaVersion is always 1.
	SchemaVersion int `json:"schemaVersion"`
	// ExportID names the export directory this manifest belongs to.
	ExportID string `json:"exportId"`
	// GeneratedAt is when the exporter wrote the export (UTC).
	GeneratedAt time.Time `json:"generatedAt"`
	// DomainID is the domain this manifest describes.
	DomainID string `json:"domainId"`
	// DisplayName is a human-readable name.
	DisplayName string `json:"displayName,omitempty"`
	// AdvisoryCount is the number of advisories in the bundle.
	AdvisoryCount int `json:"advisoryCount"`
	// Bundle references `mirror/<domain>/bundle.json`; its Signature is required.
	Bundle FileRef `json:"bundle"`
	// Sources summarises the upstream sources merged into the bundle.
	Sources []SourceSummary `json:"sources,omitempty"`
}

// Bundle is one domain's advisory bundle, `mirror/<domain>/bundle.json`.
type Bundle struct {
	// SchemaVersion is always 1.
	SchemaVersion int `json:"schemaVersion"`
	// GeneratedAt is when the exporter wrote the export (UTC).
	GeneratedAt time.Time `json:"generatedAt"`
	// DomainID is the domain of every advisory in the bundle.
	DomainID string `json:"domainId"`
	// DisplayName is a human-readable name.
	DisplayName string `json:"displayName,omitempty"`
	// AdvisoryCount equals len(Advisories).
	AdvisoryCount int `json:"advisoryCount"`
	// Advisories are the canonical advisory records.
	Advisories []Advisory `json:"advisories"`
}

// Advisory is one canonical advisory record.
type Advisory struct {
	// AdvisoryKey is the primary identifier, e.g. "CVE-2026-12345" or "GHSA-xxxx-xxxx-xxxx".
	AdvisoryKey string `json:"advisoryKey"`
	// Title and Summary describe the vulnerability.
	Title   string `json:"title"`
	Summary string `json:"summary,omitempty"`
	// Language of the text fields (BCP 47), e.g. "en".
	Language string `json:"language,omitempty"`
	// Published and Modified are the upstream timestamps (UTC).
	Published time.Time `json:"published"`
	Modified  time.Time `json:"modified"`
	// Severity is "critical", "high", "medium", "low" or "none".
	Severity string `json:"severity,omitempty"`
	// ExploitKnown is true when exploitation in the wild is known (KEV).
	ExploitKnown bool `json:"exploitKnown"`
	// Aliases lists other identifiers of the same advisory (CVE, GHSA, OSV…).
	Aliases []string `json:"aliases,omitempty"`
	// AffectedPackages lists the affected packages and version ranges.
	AffectedPackages []AffectedPackage `json:"affectedPackages,omitempty"`
	// CVSSMetrics lists CVSS scores from the sources.
	CVSSMetrics []CVSSMetric `json:"cvssMetrics,omitempty"`
	// References lists links to advisories, patches and reports.
	References []Reference `json:"references,omitempty"`
	// Provenance records which sources contributed the record and when.
	Provenance []Provenance `json:"provenance,omitempty"`
}

// AffectedPackage is one affected package, identified by package URL.
type AffectedPackage struct {
	// Type is the ecosystem's range semantics: "semver", "rpm", "deb", "apk", "maven", "pypi"…
	Type string `json:"type"`
	// Identifier is a package URL, e.g. "pkg:npm/lodash".
	Identifier string `json:"identifier"`
	// Platform optionally narrows the distribution, e.g. "debian:12".
	Platform string `json:"platform,omitempty"`
	// VersionRanges lists the affected ranges.
	VersionRanges []VersionRange `json:"versionRanges"`
}

// VersionRange is one affected range: introduced ≤ v < fixed (or ≤ lastAffected).
type VersionRange struct {
	// RangeKind repeats the package's range semantics.
	RangeKind string `json:"rangeKind"`
	// IntroducedVersion is the first affected version ("0" for all earlier).
	IntroducedVersion string `json:"introducedVersion,omitempty"`
	// FixedVersion is the first version with the fix.
	FixedVersion string `json:"fixedVersion,omitempty"`
	// LastAffectedVersion is used when no fixed version exists.
	LastAffectedVersion string `json:"lastAffectedVersion,omitempty"`
	// RangeExpression is the native expression, e.g. ">=1.2.0, <1.2.7".
	RangeExpression string `json:"rangeExpression,omitempty"`
}

// CVSSMetric is one CVSS score.
type CVSSMetric struct {
	// Version is "2.0", "3.0", "3.1" or "4.0".
	Version string `json:"version"`
	// Vector is the CVSS vector string.
	Vector string `json:"vector"`
	// BaseScore is 0.0 to 10.0.
	BaseScore float64 `json:"baseScore"`
	// BaseSeverity is the qualitative rating.
	BaseSeverity string `json:"baseSeverity"`
	// Source names who scored it.
	Source string `json:"source,omitempty"`
}

// Reference is a link about the advisory.
type Reference struct {
	// URL of the reference.
	URL string `json:"url"`
	// Kind is "advisory", "patch", "report", "exploit" or "web".
	Kind string `json:"kind,omitempty"`
	// SourceTag names the upstream that listed it.
	SourceTag string `json:"sourceTag,omitempty"`
}

// Provenance records one source's contribution to an advisory.
type Provenance struct {
	// Source is the upstream source name.
	Source string `json:"source"`
	// Kind is how it was obtained, e.g. "feed", "api", "mirror".
	Kind string `json:"kind"`
	// RecordedAt is when Concelier recorded it.
	RecordedAt time.Time `json:"recordedAt"`
}

// ParseIndex decodes and validates a Concelier mirror index.
func ParseIndex(data []byte) (*Index, error) {
	var ix Index
	if err := json.Unmarshal(data, &ix); err != nil {
		return nil, fmt.Errorf("parsing mirror index: %w", err)
	}
	if err := ix.Validate(); err != nil {
		return nil, fmt.Errorf("invalid mirror index: %w", err)
	}
	return &ix, nil
}

// ParseManifest decodes and validates a domain manifest.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parsing manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("invalid manifest: %w", err)
	}
	return &m, nil
}

// ReadBundle decodes and validates a whole advisory bundle from r. It holds
// the decoded bundle in memory; callers that only need integrity should
// check the digest and signature instead.
func ReadBundle(r io.Reader) (*Bundle, error) {
	var b Bundle
	dec := json.NewDecoder(r)
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("parsing bundle: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("parsing bundle: trailing data after the JSON document")
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("invalid bundle: %w", err)
	}
	return &b, nil
}

// Domain returns the index entry for id, or nil.
func (ix *Index) Domain(id string) *IndexDomain {
	for i := range ix.Domains {
		if ix.Domains[i].DomainID == id {
			return &ix.Domains[i]
		}
	}
	return nil
}

// Validate checks the index's invariants; it reports every problem found.
func (ix *Index) Validate() error {
	var errs []error
	if ix.SchemaVersion != SchemaVersion {
		errs = append(errs, fmt.Errorf("schemaVersion: want %d, have %d", SchemaVersion, ix.SchemaVersion))
	}
	if !ValidExportID(ix.ExportID) {
		errs = append(errs, fmt.Errorf("exportId %q: not a valid export id", ix.ExportID))
	}
	if len(ix.Domains) == 0 {
		errs = append(errs, errors.New("domains: empty"))
	}
	seen := map[string]bool{}
	for i, d := range ix.Domains {
		at := fmt.Sprintf("domains[%d]", i)
		if !ValidDomainID(d.DomainID) {
			errs = append(errs, fmt.Errorf("%s.domainId %q: not a valid domain id", at, d.DomainID))
			continue
		}
		if seen[d.DomainID] {
			errs = append(errs, fmt.Errorf("%s.domainId %q: duplicate", at, d.DomainID))
		}
		seen[d.DomainID] = true
		errs = append(errs,
			d.Manifest.validate(at+".manifest", ManifestPath(d.DomainID), false),
			d.Bundle.validate(at+".bundle", BundlePath(d.DomainID), true))
		if d.AdvisoryCount < 0 {
			errs = append(errs, fmt.Errorf("%s.advisoryCount: negative", at))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the manifest's invariants; it reports every problem found.
func (m *Manifest) Validate() error {
	var errs []error
	if m.SchemaVersion != SchemaVersion {
		errs = append(errs, fmt.Errorf("schemaVersion: want %d, have %d", SchemaVersion, m.SchemaVersion))
	}
	if !ValidExportID(m.ExportID) {
		errs = append(errs, fmt.Errorf("exportId %q: not a valid export id", m.ExportID))
	}
	if !ValidDomainID(m.DomainID) {
		errs = append(errs, fmt.Errorf("domainId %q: not a valid domain id", m.DomainID))
	} else {
		errs = append(errs, m.Bundle.validate("bundle", BundlePath(m.DomainID), true))
	}
	if m.AdvisoryCount < 0 {
		errs = append(errs, errors.New("advisoryCount: negative"))
	}
	return errors.Join(errs...)
}

// Validate checks the bundle's invariants.
func (b *Bundle) Validate() error {
	var errs []error
	if b.SchemaVersion != SchemaVersion {
		errs = append(errs, fmt.Errorf("schemaVersion: want %d, have %d", SchemaVersion, b.SchemaVersion))
	}
	if !ValidDomainID(b.DomainID) {
		errs = append(errs, fmt.Errorf("domainId %q: not a valid domain id", b.DomainID))
	}
	if b.AdvisoryCount != len(b.Advisories) {
		errs = append(errs, fmt.Errorf("advisoryCount: %d, but the bundle holds %d advisories", b.AdvisoryCount, len(b.Advisories)))
	}
	for i, a := range b.Advisories {
		if a.AdvisoryKey == "" {
			errs = append(errs, fmt.Errorf("advisories[%d].advisoryKey: empty", i))
		}
	}
	return errors.Join(errs...)
}

// validate checks a FileRef found at `at`; wantPath is where the layout puts
// the file, and signed says whether a signature is required.
func (f *FileRef) validate(at, wantPath string, signed bool) error {
	var errs []error
	if f.Path != wantPath {
		errs = append(errs, fmt.Errorf("%s.path %q: want %q", at, f.Path, wantPath))
	}
	if f.SizeBytes < 0 {
		errs = append(errs, fmt.Errorf("%s.sizeBytes: negative", at))
	}
	if err := ValidateDigest(f.Digest); err != nil {
		errs = append(errs, fmt.Errorf("%s.digest: %w", at, err))
	}
	switch {
	case f.Signature == nil && signed:
		errs = append(errs, fmt.Errorf("%s.signature: missing", at))
	case f.Signature != nil:
		if f.Signature.Path != wantPath+SignatureSuffix {
			errs = append(errs, fmt.Errorf("%s.signature.path %q: want %q", at, f.Signature.Path, wantPath+SignatureSuffix))
		}
		if f.Signature.Algorithm == "" || f.Signature.KeyID == "" {
			errs = append(errs, fmt.Errorf("%s.signature: algorithm and keyId are required", at))
		}
	}
	return errors.Join(errs...)
}

package export

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ExcititorIndex is one domain's Excititor index,
// `excititor/<domain>/index.json`: the VEX exports of that domain. Served at
// GET /excititor/mirror/{domain}/index.
type ExcititorIndex struct {
	// SchemaVersion is always 1.
	SchemaVersion int `json:"schemaVersion"`
	// ExportID names the export directory this index belongs to.
	ExportID string `json:"exportId"`
	// GeneratedAt is when the exporter wrote the export (UTC).
	GeneratedAt time.Time `json:"generatedAt"`
	// DomainID is the domain this index describes.
	DomainID string `json:"domainId"`
	// DisplayName is a human-readable name.
	DisplayName string `json:"displayName,omitempty"`
	// Exports lists the domain's exports, each exportKey at most once.
	Exports []ExcititorExport `json:"exports"`
}

// ExcititorExport is one VEX export of a domain.
type ExcititorExport struct {
	// ExportKey identifies the export (see ValidExportKey); its file is
	// `excititor/<domain>/exports/<exportKey>`.
	ExportKey string `json:"exportKey"`
	// Format is the document format: "openvex", "csaf", "cyclonedx" (JSON
	// documents) or "jsonl" (newline-delimited statements).
	Format string `json:"format"`
	// CreatedAt is when the export was produced (UTC).
	CreatedAt time.Time `json:"createdAt"`
	// SizeBytes is the export file's length.
	SizeBytes int64 `json:"sizeBytes"`
	// Digest is `sha256:<hex>` of the export file's bytes.
	Digest string `json:"digest"`
	// ExportPath is the URL path the export is served at:
	// `/excititor/mirror/<domain>/export/<exportKey>`.
	ExportPath string `json:"exportPath"`
	// SignaturePath is the URL path of its detached JWS:
	// `/excititor/mirror/<domain>/export/<exportKey>/signature`.
	SignaturePath string `json:"signaturePath"`
	// Signature describes the detached JWS; its Path is relative to the
	// export directory like every file path in the format.
	Signature *SignatureRef `json:"signature"`
}

// Formats maps each known Excititor export format to its Content-Type.
var Formats = map[string]string{
	"openvex":   "application/json",
	"csaf":      "application/json",
	"cyclonedx": "application/json",
	"jsonl":     "application/x-ndjson",
}

// ExcititorExportURL returns the URL path of an export.
func ExcititorExportURL(domain, exportKey string) string {
	return "/excititor/mirror/" + domain + "/export/" + exportKey
}

// ParseExcititorIndex decodes and validates an Excititor domain index.
func ParseExcititorIndex(data []byte) (*ExcititorIndex, error) {
	var ix ExcititorIndex
	if err := json.Unmarshal(data, &ix); err != nil {
		return nil, fmt.Errorf("parsing excititor index: %w", err)
	}
	if err := ix.Validate(); err != nil {
		return nil, fmt.Errorf("invalid excititor index: %w", err)
	}
	return &ix, nil
}

// Export returns the entry for exportKey, or nil.
func (ix *ExcititorIndex) Export(exportKey string) *ExcititorExport {
	for i := range ix.Exports {
		if ix.Exports[i].ExportKey == exportKey {
			return &ix.Exports[i]
		}
	}
	return nil
}

// Validate checks the index's invariants; it reports every problem found.
func (ix *ExcititorIndex) Validate() error {
	var errs []error
	if ix.SchemaVersion != SchemaVersion {
		errs = append(errs, fmt.Errorf("schemaVersion: want %d, have %d", SchemaVersion, ix.SchemaVersion))
	}
	if !ValidExportID(ix.ExportID) {
		errs = append(errs, fmt.Errorf("exportId %q: not a valid export id", ix.ExportID))
	}
	if !ValidDomainID(ix.DomainID) {
		return errors.Join(append(errs, fmt.Errorf("domainId %q: not a valid domain id", ix.DomainID))...)
	}
	seen := map[string]bool{}
	for i, e := range ix.Exports {
		at := fmt.Sprintf("exports[%d]", i)
		if !ValidExportKey(e.ExportKey) {
			errs = append(errs, fmt.Errorf("%s.exportKey %q: not a valid export key", at, e.ExportKey))
			continue
		}
		if seen[e.ExportKey] {
			errs = append(errs, fmt.Errorf("%s.exportKey %q: duplicate", at, e.ExportKey))
		}
		seen[e.ExportKey] = true
		if _, ok := Formats[e.Format]; !ok {
			errs = append(errs, fmt.Errorf("%s.format %q: unknown", at, e.Format))
		}
		if e.SizeBytes < 0 {
			errs = append(errs, fmt.Errorf("%s.sizeBytes: negative", at))
		}
		if err := ValidateDigest(e.Digest); err != nil {
			errs = append(errs, fmt.Errorf("%s.digest: %w", at, err))
		}
		url := ExcititorExportURL(ix.DomainID, e.ExportKey)
		if e.ExportPath != url {
			errs = append(errs, fmt.Errorf("%s.exportPath %q: want %q", at, e.ExportPath, url))
		}
		if e.SignaturePath != url+"/signature" {
			errs = append(errs, fmt.Errorf("%s.signaturePath %q: want %q", at, e.SignaturePath, url+"/signature"))
		}
		sigPath := ExcititorSignaturePath(ix.DomainID, e.ExportKey)
		switch {
		case e.Signature == nil:
			errs = append(errs, fmt.Errorf("%s.signature: missing", at))
		case e.Signature.Path != sigPath:
			errs = append(errs, fmt.Errorf("%s.signature.path %q: want %q", at, e.Signature.Path, sigPath))
		case e.Signature.Algorithm == "" || e.Signature.KeyID == "":
			errs = append(errs, fmt.Errorf("%s.signature: algorithm and keyId are required", at))
		}
	}
	return errors.Join(errs...)
}

// VEXDocument is an OpenVEX document, the payload of an "openvex" export.
type VEXDocument struct {
	Context    string         `json:"@context"`
	ID         string         `json:"@id"`
	Author     string         `json:"author"`
	Role       string         `json:"role,omitempty"`
	Timestamp  time.Time      `json:"timestamp"`
	Version    int            `json:"version"`
	Tooling    string         `json:"tooling,omitempty"`
	Statements []VEXStatement `json:"statements"`
}

// VEXStatement is one OpenVEX statement about a vulnerability and products.
type VEXStatement struct {
	Vulnerability   VEXVulnerability `json:"vulnerability"`
	Products        []VEXProduct     `json:"products"`
	Status          string           `json:"status"`
	Justification   string           `json:"justification,omitempty"`
	ImpactStatement string           `json:"impact_statement,omitempty"`
	ActionStatement string           `json:"action_statement,omitempty"`
	Timestamp       time.Time        `json:"timestamp"`
}

// VEXVulnerability names the vulnerability a statement is about.
type VEXVulnerability struct {
	Name    string   `json:"name"`
	Aliases []string `json:"aliases,omitempty"`
}

// VEXProduct identifies a product by package URL.
type VEXProduct struct {
	ID string `json:"@id"`
}

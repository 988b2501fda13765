package mirrorsync

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/stella-ops/stella-mirror/export"
)

// planFile is one file of the export to stage.
type planFile struct {
	rel    string // relative to the export directory
	digest string // declared sha256:<hex>; "" when none is declared
	size   int64  // declared size; -1 when none is declared
	data   []byte // the content, when already fetched (indexes)
	// sig is set for a detached JWS: what it signs and how.
	sig *sigCheck
}

// sigCheck is one detached JWS to verify.
type sigCheck struct {
	rel     string // the .jws file
	payload string // the file it signs
	digest  string // the payload's declared digest
	ref     export.SignatureRef
}

// plan is everything one run stages, derived from the source's indexes.
type plan struct {
	id          string
	generatedAt time.Time
	fingerprint string
	index       *export.Index
	files       []planFile // indexes last, so the origin's completeness marker comes last
	sigs        []sigCheck
	excititor   []*export.ExcititorIndex // the Excititor indexes kept
}

// excititorIndex is one fetched Excititor domain index.
type excititorIndex struct {
	domain string
	data   []byte
	ix     *export.ExcititorIndex
}

// newPlan builds the plan from the Concelier index bytes and the Excititor
// indexes. When domains is not empty only those domains are kept (and the
// index is rewritten to list only them).
func newPlan(id string, indexData []byte, excititor []excititorIndex, domains []string) (*plan, error) {
	ix, err := export.ParseIndex(indexData)
	if err != nil {
		return nil, &VerifyError{Path: export.IndexPath, Reason: err.Error()}
	}
	if ix.ExportID != id {
		return nil, &VerifyError{Path: export.IndexPath, Reason: fmt.Sprintf("names export %q, the source offered %q", ix.ExportID, id)}
	}
	if len(domains) > 0 {
		var kept []export.IndexDomain
		for _, want := range domains {
			d := ix.Domain(want)
			if d == nil {
				return nil, fmt.Errorf("domain %q: not in the source's export %s (it has %s)", want, id, domainList(ix))
			}
			kept = append(kept, *d)
		}
		if len(kept) != len(ix.Domains) {
			ix.Domains = kept
			if indexData, err = json.MarshalIndent(ix, "", "  "); err != nil {
				return nil, err
			}
			indexData = append(indexData, '\n')
		}
	}
	p := &plan{id: id, generatedAt: ix.GeneratedAt, index: ix}
	fp := sha256.New()
	fmt.Fprintf(fp, "%s\n%s\n", export.IndexPath, export.Digest(indexData))
	// Excititor exports first, Concelier files next, indexes last: an
	// upstream serves the Excititor exports of its active export only
	// (their URLs carry the key, not the export id), while the Concelier
	// files of the export being synced stay reachable by their pinned URLs
	// after a switch upstream, so the short Excititor fetches go first.
	var concelier []planFile
	for _, d := range ix.Domains {
		concelier = append(concelier,
			planFile{rel: d.Manifest.Path, digest: d.Manifest.Digest, size: d.Manifest.SizeBytes},
			planFile{rel: d.Bundle.Path, digest: d.Bundle.Digest, size: d.Bundle.SizeBytes})
		sc := sigCheck{rel: d.Bundle.Signature.Path, payload: d.Bundle.Path, digest: d.Bundle.Digest, ref: *d.Bundle.Signature}
		p.sigs = append(p.sigs, sc)
		concelier = append(concelier, planFile{rel: sc.rel, size: -1, sig: &sc})
	}
	var indexes []planFile
	for _, x := range excititor {
		if ix.Domain(x.domain) == nil && len(domains) > 0 {
			continue
		}
		if x.ix.ExportID != id {
			return nil, &VerifyError{Path: export.ExcititorIndexPath(x.domain), Reason: fmt.Sprintf("names export %q, expected %q", x.ix.ExportID, id)}
		}
		if x.ix.DomainID != x.domain {
			return nil, &VerifyError{Path: export.ExcititorIndexPath(x.domain), Reason: fmt.Sprintf("names domain %q", x.ix.DomainID)}
		}
		p.excititor = append(p.excititor, x.ix)
		fmt.Fprintf(fp, "%s\n%s\n", export.ExcititorIndexPath(x.domain), export.Digest(x.data))
		for _, e := range x.ix.Exports {
			rel := export.ExcititorExportPath(x.domain, e.ExportKey)
			p.files = append(p.files, planFile{rel: rel, digest: e.Digest, size: e.SizeBytes})
			sc := sigCheck{rel: e.Signature.Path, payload: rel, digest: e.Digest, ref: *e.Signature}
			p.sigs = append(p.sigs, sc)
			p.files = append(p.files, planFile{rel: sc.rel, size: -1, sig: &sc})
		}
		indexes = append(indexes, planFile{rel: export.ExcititorIndexPath(x.domain), digest: export.Digest(x.data), size: int64(len(x.data)), data: x.data})
	}
	p.fingerprint = hex.EncodeToString(fp.Sum(nil))
	indexes = append(indexes, planFile{rel: export.IndexPath, digest: export.Digest(indexData), size: int64(len(indexData)), data: indexData})
	p.files = append(append(p.files, concelier...), indexes...)
	seen := map[string]bool{}
	for _, f := range p.files {
		if err := export.ValidateRelPath(f.rel); err != nil {
			return nil, &VerifyError{Path: f.rel, Reason: err.Error()}
		}
		if seen[f.rel] {
			return nil, &VerifyError{Path: f.rel, Reason: "listed twice"}
		}
		seen[f.rel] = true
	}
	return p, nil
}

func domainList(ix *export.Index) string {
	var ids []string
	for _, d := range ix.Domains {
		ids = append(ids, d.DomainID)
	}
	slices.Sort(ids)
	return fmt.Sprint(ids)
}

// VerifyError is a file of the source's export that failed verification:
// a digest or size mismatch, a bad signature, a malformed index. Nothing
// is published when a run returns one.
type VerifyError struct {
	// Path is the file, relative to the export directory.
	Path string
	// Reason says what is wrong.
	Reason string
	// Err, when set, is the typed cause (e.g. *export.KeyReuseError).
	Err error
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("verification failed: %s: %s", e.Path, e.Reason)
}

// Unwrap returns the typed cause, if any.
func (e *VerifyError) Unwrap() error { return e.Err }

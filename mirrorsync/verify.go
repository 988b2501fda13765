package mirrorsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
)

// verify checks what staging cannot check by digest alone: every manifest
// against the index, and every detached JWS against the trusted keys and
// the signature metadata the index declares. Digests were checked when
// each file was staged.
func (r *run) verify(ctx context.Context, id string, p *plan) error {
	for _, d := range p.index.Domains {
		if err := r.verifyManifest(id, d); err != nil {
			return err
		}
	}
	if r.opts.SkipSignatures {
		r.log.Warn("signature verification is disabled; only digests were verified", "export_id", id)
		return nil
	}
	keys, err := r.opts.Keys(ctx)
	if err != nil {
		return fmt.Errorf("loading verification keys: %w", err)
	}
	if len(keys) == 0 {
		return fmt.Errorf("no verification keys available")
	}
	r.keys = keys
	errs := make([]error, len(p.sigs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range p.sigs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if ctx.Err() == nil {
				errs[i] = r.verifySig(&p.sigs[i])
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, err := range errs {
		if err == nil {
			continue
		}
		sc := &p.sigs[i]
		if r.sigVia[sc.rel] == viaDownload {
			return err
		}
		// A reused or resumed signature may be stale: fetch the source's.
		r.log.Info("signature from an earlier export does not verify; fetching it", "path", sc.rel)
		dst := filepath.Join(r.staging, filepath.FromSlash(sc.rel))
		if err := os.Remove(dst); err != nil {
			return err
		}
		if err := r.download(ctx, id, &planFile{rel: sc.rel, size: -1, sig: sc}, dst); err != nil {
			return err
		}
		r.res.FilesDownloaded++
		if err := r.verifySig(sc); err != nil {
			return err
		}
	}
	return nil
}

// verifyManifest checks that a staged manifest describes the bundle the
// index describes.
func (r *run) verifyManifest(id string, d export.IndexDomain) error {
	data, err := os.ReadFile(filepath.Join(r.staging, filepath.FromSlash(d.Manifest.Path)))
	if err != nil {
		return err
	}
	m, err := export.ParseManifest(data)
	if err != nil {
		return &VerifyError{Path: d.Manifest.Path, Reason: err.Error()}
	}
	switch {
	case m.ExportID != id:
		return &VerifyError{Path: d.Manifest.Path, Reason: fmt.Sprintf("names export %q, expected %q", m.ExportID, id)}
	case m.DomainID != d.DomainID:
		return &VerifyError{Path: d.Manifest.Path, Reason: fmt.Sprintf("names domain %q, expected %q", m.DomainID, d.DomainID)}
	case m.Bundle.Digest != d.Bundle.Digest || m.Bundle.SizeBytes != d.Bundle.SizeBytes:
		return &VerifyError{Path: d.Manifest.Path, Reason: fmt.Sprintf("declares bundle %s (%d bytes), the index declares %s (%d bytes)",
			m.Bundle.Digest, m.Bundle.SizeBytes, d.Bundle.Digest, d.Bundle.SizeBytes)}
	case m.Bundle.Signature.KeyID != d.Bundle.Signature.KeyID || m.Bundle.Signature.Algorithm != d.Bundle.Signature.Algorithm:
		return &VerifyError{Path: d.Manifest.Path, Reason: "its bundle signature metadata differs from the index"}
	}
	return nil
}

// verifySig verifies one staged detached JWS over its staged payload.
func (r *run) verifySig(sc *sigCheck) error {
	sigPath := filepath.Join(r.staging, filepath.FromSlash(sc.rel))
	h, err := jws.VerifyFile(sigPath, filepath.Join(r.staging, filepath.FromSlash(sc.payload)), r.keys)
	if err != nil {
		return &VerifyError{Path: sc.rel, Reason: fmt.Sprintf("signature over %s does not verify: %v", sc.payload, err)}
	}
	switch {
	case h.Alg != sc.ref.Algorithm:
		return &VerifyError{Path: sc.rel, Reason: fmt.Sprintf("alg %s, the index declares %s", h.Alg, sc.ref.Algorithm)}
	case h.Kid != sc.ref.KeyID:
		return &VerifyError{Path: sc.rel, Reason: fmt.Sprintf("kid %q, the index declares %q", h.Kid, sc.ref.KeyID)}
	case r.opts.ExpectKeyID != "" && h.Kid != r.opts.ExpectKeyID:
		return &VerifyError{Path: sc.rel, Reason: fmt.Sprintf("signed under kid %q, the configured signing key is %q", h.Kid, r.opts.ExpectKeyID)}
	case r.opts.ExpectProvider != "" && sc.ref.Provider != r.opts.ExpectProvider:
		return &VerifyError{Path: sc.rel, Reason: fmt.Sprintf("provider %q, the configured provider is %q", sc.ref.Provider, r.opts.ExpectProvider)}
	}
	return nil
}

package smoke

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
)

// exportIDHeader names the export a response came from.
const exportIDHeader = export.ExportIDHeader

// errNoPinned means the site answered 404 to the export-pinned index.
var errNoPinned = errors.New("no export-pinned URLs")

// pinnedURL returns the export-pinned URL of rel (relative to the export
// directory, e.g. mirror/primary/bundle.json) of export id; the index is
// /concelier/exports/{id}/index.json.
func (r *runner) pinnedURL(id, rel string) string {
	if rel == export.IndexPath {
		return r.siteURL(export.PinnedIndexURL(id))
	}
	return r.siteURL(export.ConcelierURLPrefix + id + "/" + rel)
}

// checkPinnedHeaders checks what every pinned answer carries: the
// long-lived immutable Cache-Control and, when present, the export id.
func checkPinnedHeaders(res *http.Response, rawURL, id string) error {
	if cc := res.Header.Get("Cache-Control"); cc != wantPinnedCacheControl {
		return fmt.Errorf("GET %s: Cache-Control %q, want %q", rawURL, cc, wantPinnedCacheControl)
	}
	if h := res.Header.Get(exportIDHeader); h != "" && h != id {
		return fmt.Errorf("GET %s: %s %q, want %q", rawURL, exportIDHeader, h, id)
	}
	return nil
}

// getPinnedJSON fetches a pinned JSON document of export id.
func (r *runner) getPinnedJSON(ctx context.Context, id, rel string) ([]byte, error) {
	u := r.pinnedURL(id, rel)
	body, res, err := r.getJSON(ctx, u)
	if res != nil && res.StatusCode == http.StatusNotFound && rel == export.IndexPath {
		return nil, fmt.Errorf("GET %s: HTTP 404: %w", u, errNoPinned)
	}
	if err != nil {
		return nil, err
	}
	return body, checkPinnedHeaders(res, u, id)
}

// checkCoherence fetches the index, manifest, bundle and JWS of one
// export by its pinned URLs and verifies them as one chain: the index
// names the manifest's digest, the manifest the bundle's, and the JWS
// verifies over the bundle with --public-key. A site without pinned URLs
// (404 on the pinned index) is a SKIP.
func (r *runner) checkCoherence(ctx context.Context) (Status, string) {
	id := r.exportID
	if id == "" {
		body, _, err := r.getJSON(ctx, r.siteURL("/concelier/exports/index.json"))
		if err != nil {
			return fail("%v", err)
		}
		ix, err := export.ParseIndex(body)
		if err != nil {
			return fail("index: %v", err)
		}
		id = ix.ExportID
	}
	if !export.ValidExportID(id) {
		return fail("the index names export %q, which is not a valid export id", id)
	}
	data, err := r.getPinnedJSON(ctx, id, export.IndexPath)
	if errors.Is(err, errNoPinned) {
		return Skip, fmt.Sprintf("the site has no export-pinned URLs (%v); clients of this site can only use the unversioned URLs", err)
	}
	if err != nil {
		return fail("%v", err)
	}
	ix, err := export.ParseIndex(data)
	if err != nil {
		return fail("pinned index of %s: %v", id, err)
	}
	if ix.ExportID != id {
		return fail("the pinned index of export %s names export %s", id, ix.ExportID)
	}
	d := ix.Domain(r.opts.Domain)
	if d == nil {
		return fail("the pinned index of export %s does not list domain %s", id, r.opts.Domain)
	}

	mdata, err := r.getPinnedJSON(ctx, id, export.ManifestPath(r.opts.Domain))
	if err != nil {
		return fail("%v", err)
	}
	if got := export.Digest(mdata); got != d.Manifest.Digest || int64(len(mdata)) != d.Manifest.SizeBytes {
		return fail("export %s: the manifest is %d bytes %s, the index names %d bytes %s", id, len(mdata), got, d.Manifest.SizeBytes, d.Manifest.Digest)
	}
	m, err := export.ParseManifest(mdata)
	if err != nil {
		return fail("export %s: manifest: %v", id, err)
	}
	if m.ExportID != id || m.Bundle.Digest != d.Bundle.Digest || m.Bundle.SizeBytes != d.Bundle.SizeBytes {
		return fail("export %s: the manifest (export %s, bundle %s) disagrees with the index (bundle %s)", id, m.ExportID, m.Bundle.Digest, d.Bundle.Digest)
	}

	sigURL := r.pinnedURL(id, export.BundleSignaturePath(r.opts.Domain))
	sig, err := r.fetchPinnedSignature(ctx, sigURL, id)
	if err != nil {
		return fail("%v", err)
	}
	bundleURL := r.pinnedURL(id, export.BundlePath(r.opts.Domain))
	hdr, digest, n, err := r.verifyPinnedStream(ctx, bundleURL, id, sig)
	if err != nil {
		return fail("export %s: %v", id, err)
	}
	if digest != m.Bundle.Digest || n != m.Bundle.SizeBytes {
		return fail("export %s: the signature verifies, but the bundle is %d bytes %s where the manifest names %d bytes %s", id, n, digest, m.Bundle.SizeBytes, m.Bundle.Digest)
	}
	return Pass, fmt.Sprintf("export %s by pinned URLs: index → manifest %s → bundle %s (%d bytes) → JWS verified (alg %s, kid %s)",
		id, d.Manifest.Digest, digest, n, hdr.Alg, hdr.Kid)
}

// fetchPinnedSignature is fetchSignature with the pinned headers checked.
func (r *runner) fetchPinnedSignature(ctx context.Context, rawURL, id string) ([]byte, error) {
	var hdrErr error
	r.onResponse = func(res *http.Response) { hdrErr = checkPinnedHeaders(res, rawURL, id) }
	defer func() { r.onResponse = nil }()
	sig, err := r.fetchSignature(ctx, rawURL)
	if err == nil {
		err = hdrErr
	}
	return sig, err
}

// verifyPinnedStream is verifyStream with the pinned headers checked.
func (r *runner) verifyPinnedStream(ctx context.Context, rawURL, id string, sig []byte) (h jws.Header, digest string, n int64, err error) {
	var hdrErr error
	r.onResponse = func(res *http.Response) { hdrErr = checkPinnedHeaders(res, rawURL, id) }
	defer func() { r.onResponse = nil }()
	h, digest, n, err = r.verifyStream(ctx, rawURL, sig)
	if err == nil && hdrErr != nil {
		err = hdrErr
	}
	return h, digest, n, err
}

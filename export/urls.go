package export

import "strings"

// URL paths of the Concelier mirror endpoints (see docs/formats.md, "URLs").
// The unversioned ones serve the active export; the export-pinned twins
// serve one export by its id, for as long as the origin holds it, and
// never change.
const (
	// IndexURL is the unversioned mirror index.
	IndexURL = "/concelier/exports/index.json"
	// ConcelierURLPrefix is the prefix of every Concelier mirror URL.
	ConcelierURLPrefix = "/concelier/exports/"
	// unversionedFilesPrefix is the prefix of the unversioned domain files.
	unversionedFilesPrefix = ConcelierURLPrefix + "mirror/"
)

// ExportIDHeader is the response field that names the export an answer
// of the origin comes from (every Concelier and Excititor export file, the
// indexes included).
const ExportIDHeader = "X-Stella-Export-Id"

// PinnedIndexURL returns `/concelier/exports/{exportId}/index.json`.
func PinnedIndexURL(exportID string) string {
	return ConcelierURLPrefix + exportID + "/index.json"
}

// PinnedFileURL returns `/concelier/exports/{exportId}/mirror/{domain}/{name}`
// (name: ManifestName, BundleName or BundleSignatureName).
func PinnedFileURL(exportID, domain, name string) string {
	return ConcelierURLPrefix + exportID + "/mirror/" + domain + "/" + name
}

// PinURL returns the export-pinned twin of an unversioned Concelier path
// (IndexURL or `/concelier/exports/mirror/{domain}/{file}`) for exportID,
// and false for any other path. It does not validate the domain or file;
// callers pass paths a policy has already admitted.
func PinURL(path, exportID string) (string, bool) {
	if path == IndexURL {
		return PinnedIndexURL(exportID), true
	}
	if rest, ok := strings.CutPrefix(path, unversionedFilesPrefix); ok && rest != "" {
		return ConcelierURLPrefix + exportID + "/mirror/" + rest, true
	}
	return "", false
}

// UnversionedFile reports whether path is an unversioned Concelier domain
// file, `/concelier/exports/mirror/{domain}/{manifest.json|bundle.json|bundle.json.jws}`:
// the URLs whose bytes change with every export (and so carry a CDN TTL
// no longer than the index's; docs/operations.md, "CDN integration").
func UnversionedFile(path string) bool {
	rest, ok := strings.CutPrefix(path, unversionedFilesPrefix)
	if !ok {
		return false
	}
	domain, name, ok := strings.Cut(rest, "/")
	return ok && domain != "" && (name == ManifestName || name == BundleName || name == BundleSignatureName)
}

// UnpinURL is PinURL's inverse: for an export-pinned Concelier path
// (`/concelier/exports/{exportId}/index.json` or
// `/concelier/exports/{exportId}/mirror/…`) with a valid export id it
// returns the unversioned twin and the id; for any other path, false.
func UnpinURL(path string) (unversioned, exportID string, ok bool) {
	rest, ok := strings.CutPrefix(path, ConcelierURLPrefix)
	if !ok {
		return "", "", false
	}
	id, tail, ok := strings.Cut(rest, "/")
	if !ok || !ValidExportID(id) {
		return "", "", false
	}
	if tail == "index.json" || strings.HasPrefix(tail, "mirror/") {
		return ConcelierURLPrefix + tail, id, true
	}
	return "", "", false
}

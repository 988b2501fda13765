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

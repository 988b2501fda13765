package export

import (
	"fmt"
	"path"
	"strings"
)

// On-disk layout of one export directory, `<root>/<exportId>/`. Every path
// in the format is relative to that directory and uses forward slashes.
//
//	mirror/index.json                          Concelier mirror index (Index)
//	mirror/<domain>/manifest.json              per-domain manifest (Manifest)
//	mirror/<domain>/bundle.json                advisory bundle (Bundle)
//	mirror/<domain>/bundle.json.jws            detached JWS over bundle.json
//	excititor/<domain>/index.json              Excititor per-domain index (ExcititorIndex)
//	excititor/<domain>/exports/<exportKey>     one VEX export
//	excititor/<domain>/exports/<exportKey>.jws detached JWS over that export
//
// `<root>/latest` may be a symlink to the active `<exportId>`. Names that begin
// with "." (such as `.staging`) are never exports.
const (
	// IndexPath is the Concelier mirror index, relative to the export directory.
	IndexPath = "mirror/index.json"
	// ManifestName, BundleName and BundleSignatureName are the fixed file
	// names inside a Concelier domain directory.
	ManifestName        = "manifest.json"
	BundleName          = "bundle.json"
	BundleSignatureName = "bundle.json.jws"
	// LatestLink is the optional symlink naming the active export.
	LatestLink = "latest"
	// StagingDir is where sync builds an export before publishing it.
	StagingDir = ".staging"
	// SignatureSuffix is appended to a file name to name its detached JWS.
	SignatureSuffix = ".jws"
)

// ConcelierDomainDir returns `mirror/<domain>`.
func ConcelierDomainDir(domain string) string { return "mirror/" + domain }

// ManifestPath returns `mirror/<domain>/manifest.json`.
func ManifestPath(domain string) string { return ConcelierDomainDir(domain) + "/" + ManifestName }

// BundlePath returns `mirror/<domain>/bundle.json`.
func BundlePath(domain string) string { return ConcelierDomainDir(domain) + "/" + BundleName }

// BundleSignaturePath returns `mirror/<domain>/bundle.json.jws`.
func BundleSignaturePath(domain string) string {
	return ConcelierDomainDir(domain) + "/" + BundleSignatureName
}

// ExcititorIndexPath returns `excititor/<domain>/index.json`.
func ExcititorIndexPath(domain string) string { return "excititor/" + domain + "/index.json" }

// ExcititorExportPath returns `excititor/<domain>/exports/<exportKey>`.
func ExcititorExportPath(domain, exportKey string) string {
	return "excititor/" + domain + "/exports/" + exportKey
}

// ExcititorSignaturePath returns `excititor/<domain>/exports/<exportKey>.jws`.
func ExcititorSignaturePath(domain, exportKey string) string {
	return ExcititorExportPath(domain, exportKey) + SignatureSuffix
}

// ReservedExportIDs are names that can never be export ids: "latest" (the
// symlink) and the two names that share the position of an export id in
// the export-pinned URLs, `/concelier/exports/{exportId}/…`, with the
// unversioned ones (`/concelier/exports/index.json`,
// `/concelier/exports/mirror/…`).
var ReservedExportIDs = []string{LatestLink, "mirror", "index.json"}

// ValidExportID reports whether id can name an export directory: 1 to 128
// characters of [A-Za-z0-9._-], not starting with "." and not one of
// ReservedExportIDs.
func ValidExportID(id string) bool {
	if id == "" || id[0] == '.' || len(id) > 128 {
		return false
	}
	for _, r := range ReservedExportIDs {
		if id == r {
			return false
		}
	}
	return validName(id, 128, true)
}

// ValidDomainID reports whether id can name a domain: 1 to 63 characters of
// [a-z0-9-], starting with a letter or digit.
func ValidDomainID(id string) bool {
	if !validName(id, 63, false) || id[0] == '-' {
		return false
	}
	return strings.IndexFunc(id, func(r rune) bool { return r >= 'A' && r <= 'Z' }) < 0
}

// ValidExportKey reports whether key can name an Excititor export: 1 to 128
// characters of [a-z0-9._-], starting with a letter or digit, and not ending
// in the signature suffix.
func ValidExportKey(key string) bool {
	if !validName(key, 128, true) || strings.HasSuffix(key, SignatureSuffix) {
		return false
	}
	c := key[0]
	if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
		return false
	}
	return strings.IndexFunc(key, func(r rune) bool { return r >= 'A' && r <= 'Z' }) < 0
}

func validName(s string, maxLen int, allowDotUnderscore bool) bool {
	if s == "" || len(s) > maxLen || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		case allowDotUnderscore && (c == '.' || c == '_'):
		default:
			return false
		}
	}
	return true
}

// ValidateRelPath checks that p is a clean, relative, slash-separated path
// that stays inside the export directory: no leading "/", no "." or ".."
// elements, no backslashes, no empty elements.
func ValidateRelPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("path is empty")
	case strings.ContainsAny(p, "\\\x00"):
		return fmt.Errorf("path %q: contains a backslash or NUL", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q: must be relative", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q: not clean", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." || el == "." || el == "" {
			return fmt.Errorf("path %q: element %q not allowed", p, el)
		}
	}
	return nil
}

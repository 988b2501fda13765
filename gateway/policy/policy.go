// Package policy decides which paths of the mirror contract a site may
// reach: the shared Concelier index and its own domains' paths, nothing else.
// The export-pinned twins of the Concelier paths,
// `/concelier/exports/{exportId}/index.json` and
// `/concelier/exports/{exportId}/mirror/{domain}/…`, are admitted on the same
// terms (the pinned index for every site, pinned files for the site's own
// domains) when the id is a valid export id (export.ValidExportID: no
// hidden or staging names, no reserved names, at most 128 characters).
//
// Paths are matched in canonical form only: a request path that contains a
// percent-escape, a "." or ".." segment, a doubled slash or a trailing slash
// is not canonical and is refused, so there is no second spelling of
// another domain's path for the origin to decode. The proxy forwards the
// exact path that was checked.
//
// It is not an authenticator; the gateway runs authentication first.
package policy

import (
	"strings"

	"github.com/stella-ops/stella-mirror/export"
)

// Kind classifies an allowed request for budgets.
type Kind int

// Request kinds.
const (
	// Refused: not a path the site may reach (answer 404).
	Refused Kind = iota
	// Index: the shared Concelier index or a domain's Excititor index.
	Index
	// Download: a manifest, bundle, signature or Excititor export.
	Download
)

// Decision is the outcome of Check.
type Decision struct {
	Kind Kind
	// Domain is the domain the path belongs to ("" for the shared index).
	Domain string
	// Export is the export id of an export-pinned path; "" for the
	// unversioned paths.
	Export string
}

// Policy holds a site's domains. The zero value refuses everything.
type Policy struct {
	domains map[string]bool
}

// New returns the policy of a site serving domains.
func New(domains []string) *Policy {
	p := &Policy{domains: make(map[string]bool, len(domains))}
	for _, d := range domains {
		p.domains[d] = true
	}
	return p
}

// Check classifies escapedPath (the request's path exactly as sent, i.e.
// url.URL.EscapedPath or RequestURI without the query).
func (p *Policy) Check(escapedPath string) Decision {
	if !canonical(escapedPath) {
		return Decision{}
	}
	if escapedPath == "/concelier/exports/index.json" {
		return Decision{Kind: Index}
	}
	if rest, ok := strings.CutPrefix(escapedPath, "/concelier/exports/mirror/"); ok {
		return p.concelierFile(rest)
	}
	if rest, ok := strings.CutPrefix(escapedPath, "/concelier/exports/"); ok {
		// An export-pinned path: {exportId}/index.json or
		// {exportId}/mirror/{domain}/{file}.
		id, tail, ok := strings.Cut(rest, "/")
		if !ok || !export.ValidExportID(id) {
			return Decision{}
		}
		if tail == "index.json" {
			return Decision{Kind: Index, Export: id}
		}
		rest, ok := strings.CutPrefix(tail, "mirror/")
		if !ok {
			return Decision{}
		}
		dec := p.concelierFile(rest)
		if dec.Kind != Refused {
			dec.Export = id
		}
		return dec
	}
	if rest, ok := strings.CutPrefix(escapedPath, "/excititor/mirror/"); ok {
		d, tail, ok := strings.Cut(rest, "/")
		if !ok || !p.domains[d] {
			return Decision{}
		}
		if tail == "index" {
			return Decision{Kind: Index, Domain: d}
		}
		key, ok := strings.CutPrefix(tail, "export/")
		if !ok {
			return Decision{}
		}
		key, sig, hasSig := strings.Cut(key, "/")
		if key == "" || (hasSig && sig != "signature") {
			return Decision{}
		}
		return Decision{Kind: Download, Domain: d}
	}
	return Decision{}
}

// concelierFile classifies rest, the part of a Concelier file path after
// `mirror/`: {domain}/{manifest.json|bundle.json|bundle.json.jws}.
func (p *Policy) concelierFile(rest string) Decision {
	d, file, ok := strings.Cut(rest, "/")
	if !ok || !p.domains[d] {
		return Decision{}
	}
	switch file {
	case export.ManifestName, export.BundleName, export.BundleSignatureName:
		return Decision{Kind: Download, Domain: d}
	}
	return Decision{}
}

// canonical reports whether path is absolute, free of escapes, empty, "."
// and ".." segments, and made only of characters the contract's paths use.
// It runs on every request and allocates nothing.
func canonical(path string) bool {
	if len(path) < 2 || path[0] != '/' || path[len(path)-1] == '/' {
		return false
	}
	seg := 1 // start of the current segment
	for i := 1; i <= len(path); i++ {
		if i < len(path) {
			c := path[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
				continue
			case c != '/':
				return false // '%', '\\', ';', control bytes, non-ASCII …
			}
		}
		switch path[seg:i] {
		case "", ".", "..":
			return false
		}
		seg = i + 1
	}
	return true
}

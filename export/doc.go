// Package export defines the Stella Ops mirror export format that sync writes
// and the origin serves: the Concelier mirror index, per-domain manifests and
// advisory bundles, and the Excititor per-domain index of VEX exports, with
// their on-disk layout and `sha256:` digests of exact bytes.
//
// The Go types here are the source of truth for docs/formats.md. Parsing is
// lenient about unknown JSON fields (upstream exporters may add fields) and
// strict about everything the mirror relies on: identifiers, relative paths
// that stay inside the export directory, digests and sizes (see Validate).
//
// What it is not: it does not sign or verify (package export/jws), write
// fixtures (package export/fixture) or choose the active export (package
// origin).
package export

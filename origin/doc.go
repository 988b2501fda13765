// Package origin serves Stella Ops export trees over HTTP: the Concelier
// mirror endpoints (/concelier/exports/index.json and each domain's
// manifest.json, bundle.json and bundle.json.jws) and the Excititor mirror
// endpoints (/excititor/mirror/{domain}/index, …/export/{exportKey} and its
// signature), with /health/live and /health/ready on both listeners and
// /metrics and the status page (/status, /status.json: status.go) on the
// admin listener only. Every route is listed once, in one
// gorilla/mux route table (handler.go), and both listeners are net/http's
// own server (internal/serve): the origin is minimal and sits behind the
// gateway and its cache.
//
// For each product it resolves the active export on every request (a pinned
// ACTIVEEXPORTID, else the `latest` symlink, else the newest complete export)
// and reads the whole response from that one export, opened as an os.Root so
// that no path, symlink or ".." leaves the export directory. Indexes are
// parsed once per export; small files are served from memory with prebuilt
// headers (http.ServeContent for conditional and Range requests), large
// ones by http.ServeContent from the open file, which net/http sends with
// sendfile. Every file is hashed once per export: the SHA-256 is the strong
// ETag and must match the digest the index declares, so a tampered or
// half-written file is answered 503, never served. The response names its
// export in X-Stella-Export-Id.
//
// Configuration uses the runbook's names (CONCELIER__MIRROR__…,
// EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT, …) through internal/config; see
// Config.
//
// Access control (access.go) runs before any export is touched: bypass
// networks matched against the TCP peer, OAuth2 bearer tokens validated by
// origin/authority (scope concelier.mirror.read or excititor.mirror.read),
// the anonymous fallback, and hourly request budgets per domain and client
// (internal/ratelimit). Authorizer is the seam; Config.Authorizer replaces
// the built-in policy.
//
// What it is not: it does not write, sync or verify signatures of exports
// (mirrorsync and export/jws do), and it does not terminate TLS or check
// Basic Auth (the gateway does, and forwards the user it authenticated in
// X-Stella-Forwarded-User from a bypass network).
package origin

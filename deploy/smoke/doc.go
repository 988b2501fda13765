// Package smoke runs the runbook's smoke tests against a live deployment
// (the Go gateway, the nginx front, or an origin directly): the mirror index
// with Basic Auth and its keys, a domain manifest's Cache-Control, the
// Excititor export keys, the bundle and one Excititor export verified against
// their detached JWS with a trusted public key, the gateway's and the
// origin's 401 challenges, X-Cache-Status, and (opt-in) the 429 + Retry-After
// budget probe. The coherence check fetches the index, manifest, bundle and
// JWS of the export the index names by its export-pinned URLs
// (/concelier/exports/{exportId}/…) and verifies them as one chain; a site
// without pinned URLs makes it a SKIP.
//
// Each check yields one Result (PASS, FAIL or SKIP with a detail); Run
// reports them as they finish. `stella-mirror smoke` prints them one per line
// and exits non-zero when any failed.
//
// What it is not: a load test (each check makes a handful of requests, the
// budget probe at most Options.ProbeLimit) or a monitoring probe with
// history; and it never sends the Basic Auth credentials anywhere but the
// base URL.
package smoke

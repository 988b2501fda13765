// Package gateway is the TLS edge in front of the origin: one site per
// hostname with its own certificate (PEM files reloaded on change, or ACME)
// and htpasswd file, Basic Auth before anything else touches a request, the
// host → domain policy, per-client budgets, and a reverse proxy to the
// origin. Operations: /health/live, /health/ready and /metrics on a
// separate admin listener, JSON access logs, reload on SIGHUP, graceful
// shutdown.
//
// Between the policy and the proxy sits a pass-through http.Handler seam
// (Options.Upstream) where the cache slots in.
//
// Sub-packages do one job each: basicauth (htpasswd + credential cache),
// tlsconf (certificates), policy (which paths a site reaches), proxy (the
// upstream exchange).
package gateway

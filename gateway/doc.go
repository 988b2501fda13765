// Package gateway is the TLS edge in front of the origin: one site per
// hostname with its own certificate (PEM files reloaded on change, or ACME)
// and htpasswd file, Basic Auth before anything else touches a request, the
// host → domain policy, per-client budgets, and a reverse proxy to the
// origin. Operations: /health/live, /health/ready, /metrics and the status
// page (/status, /status.json: monitoring.go) on a separate admin listener, JSON access logs, reload on SIGHUP, graceful
// shutdown.
//
// With GATEWAY__CACHE__DIR set, the shared cache (gateway/cache) is the
// proxies' transport: auth, policy and budgets run first, plain hits of
// the memory tier are answered without the proxy (cache.ServeHit), every
// proxied response carries X-Cache-Status, and the access log and the
// requests_total metric carry it as cache_status. The admin listener
// serves the cache purge behind a bearer token (GATEWAY__ADMINTOKENFILE).
// Options.Upstream remains a pass-through http.Handler seam in front of
// each site's proxy.
//
// The access log is written by internal/accesslog (batched JSON lines).
//
// Sub-packages do one job each: basicauth (htpasswd + credential cache),
// tlsconf (certificates), policy (which paths a site reaches), proxy (the
// upstream exchange).
package gateway

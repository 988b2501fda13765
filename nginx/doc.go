// Package nginx renders the nginx front of stella-mirror: an nginx
// configuration equivalent to the Go gateway (per-site server blocks with
// TLS and auth_basic, the shared proxy_cache with X-Cache-Status,
// proxy_cache_lock and proxy_cache_use_stale, limit_req budgets answering
// 429 with Retry-After, and the same path policy), from the gateway's own
// configuration. The template is mirror.conf.tmpl beside this file;
// `stella-mirror nginx-conf` is the command, README.md the operator's
// guide, including where nginx differs from the gateway.
//
// What it is not: it does not run or reload nginx, obtain certificates, or
// fetch OAuth2 tokens for the origin (nginx cannot; Render refuses such a
// configuration).
package nginx

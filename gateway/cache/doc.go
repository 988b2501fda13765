// Package cache is the gateway's shared HTTP cache (RFC 9111) for the
// export endpoints: an http.RoundTripper that answers GET and HEAD from a
// disk tier (with a small memory tier for hot, small objects) and fills
// itself from the origin, one upstream fetch per object at a time.
//
// # Wiring
//
// The cache is the Transport of the gateway's httputil.ReverseProxy, so
// adding it is one line; auth, policy and budgets run in the handlers in
// front of the proxy and the cache never sees an unauthorized request:
//
//	c, err := cache.New(cfg.Cache, upstreamTransport, cache.Options{Logger: log, Registerer: reg})
//	proxy := &httputil.ReverseProxy{
//		Rewrite:      rewrite,
//		Transport:    c,              // was: upstreamTransport
//		ErrorHandler: c.ErrorHandler, // 502/504 with X-Cache-Status
//	}
//	admin.Handle("/admin/cache/purge", requireAdmin(c.PurgeHandler()))
//	defer c.Close()
//
// Every response carries X-Cache-Status with nginx's words (HIT MISS
// EXPIRED STALE UPDATING REVALIDATED BYPASS); after the proxy has written
// the response, StatusOf(w.Header()) gives the value for the access log and
// the cache_status metric label.
//
// # Semantics
//
//   - Stored: responses to GET (a HEAD miss is fetched as GET, as nginx
//     does) with a status below 500 other than 206, 304, 428, 429 and 431
//     (only 200 for the export coherence files; 401, 403 and 407 only
//     with Options.StoreAuthErrors) that the origin allows: never no-store
//     or private, nor Vary: *. A response with Vary is stored per variant
//     of the listed request fields (at most MaxVariants per URL;
//     Accept-Encoding makes none; a response without Vary replaces the
//     URL's variants); Set-Cookie is dropped from what is
//     stored unless Options.KeepSetCookie. With
//     Options.HonourAuthorization, a request with Authorization only
//     stores public, s-maxage or must-revalidate responses (RFC 9111
//     section 3.5); the gateway authenticates first and leaves it off.
//     Freshness from s-maxage, max-age or Expires (a strict HTTP-date;
//     several lines or an invalid one mean expired), or, with
//     Options.CDNCacheControl, a valid CDN-Cache-Control (RFC 9213);
//     else heuristic freshness for heuristically cacheable statuses (a
//     tenth of the time since Last-Modified, at most
//     MaxHeuristicLifetime); a 404 or 410 under /concelier/exports/ at
//     most NegativeMaxAge, even without any, and never served stale. The
//     upstream's Age counts; no age exceeds 2^31 seconds.
//     The key is the path and query only, never who asked.
//   - Unsafe methods (anything but GET, HEAD, OPTIONS, TRACE) are passed
//     through (BYPASS); a success invalidates the URL and the same-origin
//     URLs of its Location and Content-Location.
//   - A request that joins a fill in progress is answered from it only
//     while the response is fresh and the same Vary variant; else it asks
//     upstream itself.
//   - Fresh: HIT, with Age. immutable responses are never revalidated while
//     fresh, whatever the client sends.
//   - Stale: a conditional request upstream (If-None-Match,
//     If-Modified-Since); 304 → REVALIDATED (metadata refreshed, the body
//     is not fetched again), 200 → EXPIRED (a new fill). Within the
//     response's stale-while-revalidate, UPDATING: the stale copy is
//     served at once while one background revalidation runs.
//   - Origin failure (connection error, timeout, 5xx): STALE within the
//     larger of Config.StaleIfErrorGrace and the response's
//     stale-if-error; never for must-revalidate, proxy-revalidate,
//     s-maxage or no-cache responses.
//   - Client Cache-Control (RFC 9111 section 5.2.1): ignored unless
//     Config.HonourClientNoCache, or the request's context is marked
//     WithClientCacheControl (the gateway's per-site switch); then
//     no-cache/max-age=0 revalidate, no-store bypasses, max-age,
//     min-fresh and max-stale bound the age accepted, and only-if-cached
//     gets a 504 rather than an upstream request.
//   - The cache answers conditional requests (304) and single byte Range
//     requests (206, 416; If-Range) from a stored object or a fill in
//     progress; multi-range requests get the whole 200.
//
// # Export coherence
//
// The unversioned Concelier files (/concelier/exports/mirror/{domain}/
// manifest.json, bundle.json, bundle.json.jws) are answered from one
// export generation at a time: the one whose X-Stella-Export-Id the
// stored /concelier/exports/index.json carries. They are stored under
// their export-pinned paths (/concelier/exports/{exportId}/mirror/…) and
// filled from those, so a miss never brings in a file newer than the
// index; the generation switches in one step, under the cache's lock,
// when the header of an index answer with a new export id arrives, before
// any of its bytes reach a client, and the old index and mappings are
// dropped at that moment. Before any index is known the cache fetches it
// first. Unversioned answers carry the runbook's Cache-Control and the CDN
// guidance (CDN-Cache-Control with Options.CDNMaxAge, Cache-Tag and
// Surrogate-Key naming the export id). An origin without pinned URLs (404)
// is asked the unversioned URL, whose answer is stored only when its
// export id is the generation's; an origin without export ids gets
// caching by path. See docs/cache.md, "Export coherence".
//
// # Fills
//
// The first request for an object (MISS) starts a fill: a goroutine
// streams the upstream body into a temporary file in the cache directory.
// Every request for the object while the fill runs joins it (HIT) and
// streams from the growing file as bytes arrive, through ReadAt on the
// shared file: no client waits for the whole object, and no body is held
// in memory. The fill outlives the request that started it for as long as
// any request waits for it: when the last of them goes away unsatisfied
// (its request context cancelled, or its body closed before the end), the
// upstream request is cancelled and nothing is stored; a fill with another
// waiter goes on and is stored. Clients that leave satisfied (a whole
// body, a range, a HEAD) never stop it, and background revalidations
// (UPDATING) have no waiters to lose. The fill is checked before the
// body's end is released to any client: length against Content-Length
// and, when the ETag is a quoted sha256 hex (as the origin sends), the
// digest. A fill that fails, is reset or truncated, or does not match is
// never stored, and its clients' body reads return the error, so the
// server aborts their connections rather than end a short 200. A verified
// fill is fsynced, renamed into place and committed by writing its
// metadata sidecar. Clients read fills from the disk, so a disk error
// during a fill (a full disk) fails that fill like an upstream error; the
// next request tries again.
//
// # Server engines
//
// The cache knows no server engine: it is an http.RoundTripper for the
// reverse proxy, and for the commonest request at an edge — a plain GET or
// HEAD of a fresh object — it offers LookupHit, which returns the stored
// response as plain data (fields, size, Age, and the body in memory or an
// open file) for an engine's own fast path to write. Hit.Release closes
// the file; an engine calls it once on every path, as soon as the body is
// no longer being sent. ServeHit is that fast path for net/http; the
// gateway's fasthttp one lives in package gateway.
//
// # Storage
//
// Config.Dir/v1 holds <stem>.body (the exact bytes) and <stem>.meta (JSON:
// key, size, sha256, headers, request and response times) per object. At
// start the index is rebuilt from the .meta files whose body has the
// recorded size; temporary files, orphans and superseded versions are
// deleted, so a crash never leaves a partial object that is served. The
// disk tier is bounded by Config.MaxSize, evicting least recently used
// objects; bodies up to Config.MemoryMaxObjectSize are also kept in memory
// up to Config.MemoryMaxSize.
//
// # Configuration
//
// The gateway's `cache:` section is Config (see docs/cache.md):
//
//	cache:
//	  dir: /var/cache/stella-mirror   # required
//	  maxSize: 10GiB                  # disk bound, LRU eviction
//	  maxObjectSize: 2560MiB          # default maxSize/4
//	  memoryMaxObjectSize: 256KiB
//	  memoryMaxSize: 64MiB
//	  staleIfErrorGrace: 24h
//	  honourClientNoCache: false
//	  upstreamTimeout: 10m
//
// # Metrics
//
// stella_mirror_cache_requests_total{cache_status},
// stella_mirror_cache_served_bytes_total{source="cache"|"upstream"},
// stella_mirror_cache_upstream_requests_total,
// stella_mirror_cache_stored_bytes, stella_mirror_cache_stored_objects,
// stella_mirror_cache_memory_bytes, stella_mirror_cache_memory_objects,
// stella_mirror_cache_evictions_total{tier}, stella_mirror_cache_fills_in_flight,
// stella_mirror_cache_fill_failures_total, stella_mirror_cache_fills_abandoned_total,
// stella_mirror_cache_generation_switches_total.
//
// # What it is not
//
// Not a general-purpose cache: no partial (206) storage, no storing of 5xx,
// request Cache-Control only when switched on (see above). RFCOptions
// select the generic shared cache's rules for the conformance harness
// (bench/cmd/cacheproxy; docs/cache.md, "HTTP caching conformance"). It
// does no authentication; the purge handler must be mounted behind the
// admin listener's auth.
package cache

package gateway

import (
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/gateway/cache"
	"github.com/stella-ops/stella-mirror/gateway/proxy"
	"github.com/stella-ops/stella-mirror/internal/fastserve"
)

// outcome is one answered request, for the access log and the metrics.
type outcome struct {
	st           *site // nil: unknown host
	user         string
	client       func() string
	method, path string
	status       int
	bytes        int64
	start        time.Time
	upstream     time.Duration
	cache        cache.Status
	aborted      bool
	ref          *refusal // the gateway's own answer, if any
}

// record logs o and counts it in the metrics.
func (g *Gateway) record(o outcome) {
	sm, name := g.unknown, "unknown"
	if o.st != nil {
		sm, name = o.st.metrics, o.st.name
	}
	d := time.Since(o.start)
	// The origin watch first: once a request's access line is written (or
	// counted), the watch has seen it, so that an answer recorded late
	// cannot be taken for news after a failure noted since.
	g.watch.served(o)
	sm.observe(o.status, o.cache, d, o.upstream)
	if g.access != nil {
		ln := g.access.Start("request").
			Str("site", name).Str("user", o.user).
			Str("client", o.client()).
			Str("method", o.method).Str("path", o.path).
			Int("status", int64(o.status)).Int("bytes", o.bytes).
			Millis("duration_ms", d).Millis("upstream_ms", o.upstream).
			Str("cache_status", string(o.cache)).Bool("aborted", o.aborted)
		if o.ref != nil && o.ref.authFailure != "" {
			// A 401: why, and for wrong credentials the name tried, so that
			// an unknown user is told apart from no credentials.
			ln = ln.Str("auth_failure", o.ref.authFailure)
			if o.ref.authFailure == "credentials" {
				ln = ln.Str("attempted_user", o.ref.attempted)
			}
		}
		g.access.Write(ln)
	}
}

// admitted marks a request Native admitted and then declined (a cache
// site's request that is no plain hit): Handler skips the admission, which
// already ran (and counted, and took from the budget) once.
type admitted struct {
	st   *site
	user string
}

type admittedKey struct{}

// Native is the hook fastserve offers each request (HTTP/1.1 or HTTP/2)
// before the net/http handler (fastserve.Config.Native). It takes the plain GET and
// HEAD requests (fastserve.Plain) of known sites: the same admission as
// Handler (admit), refusals answered here; then, on a site without a
// cache, proxy.ServeFast; on a cache site, serveHitFast for a fresh
// stored object, and anything else goes on to Handler marked as admitted.
// The log line and metrics are Handler's. Everything else it declines,
// untouched, to Handler.
func (g *Gateway) Native(fc *fasthttp.RequestCtx) bool {
	u, ok := fastserve.Plain(fc)
	if !ok {
		return false
	}
	host := string(fc.Request.Header.Host())
	st := g.sites[hostOnly(host)]
	if st == nil || (!st.native && !st.fastHit) {
		return false
	}
	start := time.Now()
	cs := fastserve.TLSState(fc)
	method := http.MethodGet
	if fc.IsHead() {
		method = http.MethodHead
	}
	path := u.EscapedPath()
	remote := fc.RemoteAddr().String()
	client := func() string {
		var xff []string
		for _, v := range fc.Request.Header.PeekAll("X-Forwarded-For") {
			xff = append(xff, string(v))
		}
		return proxy.ClientIPOf(remote, xff, g.trusted)
	}
	var authz []string
	for _, v := range fc.Request.Header.PeekAll("Authorization") {
		authz = append(authz, string(v))
	}
	st, user, ref := g.admit(inbound{host: host, tls: cs != nil, sni: tlsName(cs), method: method, path: path,
		authorization: authz, clientIP: client})
	// Strict-Transport-Security goes on last: what answers may reset the
	// response first (a 502), and a declined request must leave fc as it
	// was.
	hsts := func() {
		if g.hstsApplies(st, ref) {
			fc.Response.Header.Set("Strict-Transport-Security", g.hsts[0])
		}
	}
	switch {
	case ref != nil:
		for i := 0; i+1 < len(ref.header); i += 2 {
			fc.Response.Header.Set(ref.header[i], ref.header[i+1])
		}
		body := jsonError(ref.code, ref.msg)
		fc.Response.SetStatusCode(ref.status)
		for _, f := range errorFields {
			fc.Response.Header.Set(f[0], f[1])
		}
		if method == http.MethodHead {
			fc.Response.SkipBody = true
			fc.Response.Header.SetContentLength(len(body))
		} else {
			fc.Response.SetBodyString(body)
		}
		hsts()
		g.record(outcome{st: st, user: user, client: client, method: method, path: path,
			status: ref.status, bytes: int64(len(body)), start: start, ref: ref})
		return true
	case st.native:
		st.proxy.ServeFast(fc, proxy.FastRequest{Path: path, User: user, TLS: cs != nil}, func(res proxy.FastResult) {
			g.record(outcome{st: st, user: user, client: client, method: method, path: path,
				status: res.Status, bytes: res.Bytes, start: start, upstream: res.Upstream, aborted: res.Aborted})
		})
		hsts()
		return true
	}
	if st.cfg.HonourClientCacheControl && (fc.Request.Header.Peek("Cache-Control") != nil || fc.Request.Header.Peek("Pragma") != nil) {
		// The site answers by the client's Cache-Control: the cache decides.
		fastserve.WithContextValue(fc, admittedKey{}, &admitted{st: st, user: user})
		return false
	}
	if serveHitFast(g.cache, fc, path, func(n int64, aborted bool) {
		// The stored status (a negative-cached 404 too), set before the
		// body is sent; fasthttp closes a streamed body before it resets
		// the header.
		g.record(outcome{st: st, user: user, client: client, method: method, path: path,
			status: fc.Response.StatusCode(), bytes: n, start: start, cache: cache.StatusHit, aborted: aborted})
	}) {
		hsts()
		return true
	}
	fastserve.WithContextValue(fc, admittedKey{}, &admitted{st: st, user: user})
	return false
}

package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/oauth2"

	"github.com/stella-ops/stella-mirror/gateway/basicauth"
	"github.com/stella-ops/stella-mirror/gateway/cache"
	"github.com/stella-ops/stella-mirror/gateway/policy"
	"github.com/stella-ops/stella-mirror/gateway/proxy"
	"github.com/stella-ops/stella-mirror/gateway/tlsconf"
	"github.com/stella-ops/stella-mirror/internal/accesslog"
	"github.com/stella-ops/stella-mirror/internal/httprec"
	"github.com/stella-ops/stella-mirror/internal/logging"
	"github.com/stella-ops/stella-mirror/internal/pprofmux"
	"github.com/stella-ops/stella-mirror/internal/ratelimit"
	"github.com/stella-ops/stella-mirror/internal/statuspage"
)

// Options are what New takes besides Config. Zero values mean the defaults
// written beside them.
type Options struct {
	// Logger receives operational logs. Default: discard.
	Logger *slog.Logger
	// AccessLog receives one JSON line per request (fields: site, user,
	// client, method, path, status, bytes, duration_ms, upstream_ms,
	// cache_status, aborted). Default: nil, no access log.
	AccessLog *accesslog.Logger
	// Registerer receives the metrics; when it is also a Gatherer the admin
	// handler serves it at /metrics. Default: a private registry.
	Registerer prometheus.Registerer
	// Upstream wraps each site's proxy: a seam between policy and proxy
	// for tests and extensions (the cache itself is the proxy's transport,
	// GATEWAY__CACHE). It MUST pass every request it does not answer
	// itself to next. Default: nil (the proxy directly).
	Upstream func(site string, next http.Handler) http.Handler
	// Tokens supplies the bearer token for the origin. Default: built from
	// GATEWAY__AUTHORITY when enabled, else none.
	Tokens oauth2.TokenSource
	// Transport sends requests to the origin. Default: proxy.NewTransport
	// with the configured timeouts.
	Transport http.RoundTripper
	// Now is the clock for budgets. Default: time.Now.
	Now func() time.Time
	// Reloaded, if set, is called after every reload attempt of a
	// certificate ("certificate"), htpasswd file ("htpasswd") or the
	// origin peer token file ("peer_token", site "") with the site and the
	// error (nil on success). Default: nothing.
	Reloaded func(kind, site string, err error)

	// bcryptCompare replaces bcrypt.CompareHashAndPassword (tests count
	// and hold comparisons with it).
	bcryptCompare func(hash, password []byte) error
}

// site is one published hostname set.
type site struct {
	cfg       SiteConfig
	name      string
	challenge string // WWW-Authenticate value
	auth      *basicauth.File
	policy    *policy.Policy
	index     *ratelimit.Limiter
	download  *ratelimit.Limiter
	next      http.Handler
	metrics   *siteMetrics
	// fastHit: plain hits of the memory tier are answered without the
	// proxy (cache.ServeHit); the cache key is then the request's path,
	// as the origin URL has no path of its own. Off when Options.Upstream
	// wraps the proxy (every request must reach that handler).
	fastHit bool
	// native: the site has no cache nor Options.Upstream in front of its
	// proxy, which can serve fast (proxy.CanServeFast): Native answers its
	// plain HTTP/1.1 requests.
	native bool
	proxy  *proxy.Proxy
}

// Gateway serves the sites. Create it with New.
type Gateway struct {
	// noNative serves every request with Handler (tests compare the
	// native paths with it).
	noNative bool

	cfg      Settings
	logger   *slog.Logger
	access   *accesslog.Logger
	cache    *cache.Cache // nil: off
	admin    *adminToken  // nil: no admin token, no purge endpoint
	peer     *peerToken   // GATEWAY__ORIGINPEERTOKENFILE; nil: none sent
	metrics  *metrics
	reg      prometheus.Registerer // for the servers' connection metrics (Serve)
	gatherer prometheus.Gatherer
	sites    map[string]*site // lower-case host → site
	list     []*site
	unknown  *siteMetrics
	files    *tlsconf.FileStore
	acme     *tlsconf.ACME
	hsts     []string
	trusted  []netip.Prefix
	ready    *http.Client
	readyURL string
	tokens   oauth2.TokenSource
	// throttle counts failed credentials per client address
	// (GATEWAY__AUTHTHROTTLE); gate bounds the bcrypt comparisons of
	// every site; authLog rate-limits the log lines of failures.
	throttle *ratelimit.Limiter
	gate     *basicauth.Gate
	authLog  *logLimiter
	// mon: the status page and monitoring metrics (monitoring.go).
	mon *monitor
	// watch: origin reachability and stale serving (originwatch.go).
	watch *originWatch
}

// New validates cfg, loads every certificate file and htpasswd file (any
// failure is an error naming the file) and returns the gateway. ACME
// certificates are obtained by Run (or StartACME).
func New(cfg Config, o Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid gateway configuration: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := cfg.Gateway
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("registering gateway metrics: %w", err)
	}
	g := &Gateway{cfg: s, logger: o.Logger, access: o.AccessLog, metrics: m, reg: o.Registerer,
		sites: make(map[string]*site), unknown: m.forSite("unknown"), trusted: s.TrustedProxies}
	g.throttle = ratelimit.New(ratelimit.Config{Limit: s.AuthThrottle.MaxFailures, Period: s.AuthThrottle.Window,
		MaxKeys: throttleMaxKeys, Now: o.Now})
	g.gate = basicauth.NewGate(s.AuthThrottle.MaxConcurrentChecks)
	g.authLog = newLogLimiter(o.Now)
	if g.mon, err = newMonitor(g, o.Registerer, o.Now); err != nil {
		return nil, fmt.Errorf("registering gateway metrics: %w", err)
	}
	if gt, ok := o.Registerer.(prometheus.Gatherer); ok {
		g.gatherer = gt
	}
	if s.HSTSMaxAge > 0 {
		g.hsts = []string{"max-age=" + strconv.FormatInt(int64(s.HSTSMaxAge/time.Second), 10)}
	}

	// Upstream identity.
	g.tokens = o.Tokens
	if g.tokens == nil && s.Authority.Enabled {
		if g.tokens, err = newTokenSource(s.Authority); err != nil {
			return nil, err
		}
	}
	transport := o.Transport
	if transport == nil {
		t, err := proxy.NewTransport(proxy.Options{OriginCAFile: s.OriginCAFile,
			DialTimeout: s.UpstreamDialTimeout, HeaderTimeout: s.UpstreamHeaderTimeout, BodyIdleTimeout: s.UpstreamIdleTimeout})
		if err != nil {
			return nil, fmt.Errorf("GATEWAY__ORIGINCAFILE: %w", err)
		}
		transport = t
	}
	if g.watch, err = newOriginWatch(transport, o.Logger.With("component", "gateway"), o.Registerer, o.Now); err != nil {
		return nil, fmt.Errorf("registering gateway metrics: %w", err)
	}
	g.ready = &http.Client{Transport: g.watch, Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	g.readyURL = strings.TrimSuffix(s.Origin, "/") + "/health/ready"
	if g.admin, err = loadAdminToken(s.AdminTokenFile); err != nil {
		return nil, err
	}
	if g.peer, err = loadPeerToken(s.OriginPeerTokenFile, o.Logger, func(err error) {
		m.reloads.WithLabelValues("", "peer_token", result(err)).Inc()
		if o.Reloaded != nil {
			o.Reloaded("peer_token", "", err)
		}
	}); err != nil {
		return nil, err
	}
	var peerTok func() string // for the proxies; nil below the cache
	if g.peer != nil {
		peerTok = g.peer.current
	}

	// The cache is the proxies' transport: every site's requests reach it
	// after auth, policy and budgets, and only its fills reach the origin.
	siteTransport := transport
	var errorHeader func(http.Header, error)
	proxyTokens := g.tokens
	if s.CacheEnabled() {
		// The bearer token is added below the cache, to the cache's own
		// upstream requests: a hit needs no token, so a failing token
		// endpoint leaves stored objects served (HIT, STALE) like a
		// failing origin does.
		var upstream http.RoundTripper = g.watch
		if g.peer != nil {
			upstream = &peerTokenTransport{base: upstream, tok: g.peer.current}
			peerTok = nil
		}
		if g.tokens != nil {
			upstream = &oauth2.Transport{Source: g.tokens, Base: g.watch}
			proxyTokens = nil
		}
		g.cache, err = cache.New(s.Cache, upstream, cache.Options{Logger: o.Logger.With("component", "cache"), Registerer: o.Registerer, CDNMaxAge: s.CDNMaxAge, Now: o.Now})
		if err != nil {
			return nil, fmt.Errorf("GATEWAY__CACHE__DIR: %w", err)
		}
		siteTransport = g.cache
		g.watch.gen = g.cache.Generation
		errorHeader = func(h http.Header, err error) {
			h[cache.Header] = []string{string(cache.StatusOfError(err))}
		}
	}
	ok := false
	defer func() {
		if !ok && g.cache != nil {
			g.cache.Close()
		}
	}()

	// Certificates.
	var pairs []tlsconf.Pair
	var acmeNames []string
	for _, sc := range s.Sites {
		if sc.ACME {
			acmeNames = append(acmeNames, sc.Hosts...)
			continue
		}
		pairs = append(pairs, tlsconf.Pair{Site: sc.siteName(), Names: sc.Hosts, CertFile: sc.CertFile, KeyFile: sc.KeyFile})
	}
	g.files, err = tlsconf.NewFileStore(pairs, tlsconf.FileOptions{
		Logger: o.Logger,
		OnReload: func(site string, err error) {
			m.reloads.WithLabelValues(site, "certificate", result(err)).Inc()
			if o.Reloaded != nil {
				o.Reloaded("certificate", site, err)
			}
		},
		OnLoaded: func(site string, leaf *x509.Certificate) {
			m.certExpiry.WithLabelValues(site).Set(float64(leaf.NotAfter.Unix()))
		},
	})
	if err != nil {
		return nil, err
	}
	if len(acmeNames) > 0 {
		g.acme, err = tlsconf.NewACME(acmeNames, tlsconf.ACMEOptions{
			DirectoryURL: s.ACME.DirectoryURL, Email: s.ACME.Email, StorageDir: s.ACME.Storage,
			CARootFile: s.ACME.CARootFile, HTTPPort: s.ACME.HTTPPort,
			Logger: logging.Zap(o.Logger.With("component", "certmagic")), OnResult: g.acmeResult,
		})
		if err != nil {
			return nil, fmt.Errorf("GATEWAY__ACME: %w", err)
		}
	}

	// Sites.
	for i, sc := range s.Sites {
		st := &site{cfg: sc, name: sc.siteName(), policy: policy.New(sc.Domains)}
		st.metrics = m.forSite(st.name)
		m.initSite(g.mon, st.name)
		realm := sc.Realm
		if realm == "" {
			realm = st.name
		}
		st.challenge = `Basic realm="` + realm + `", charset="UTF-8"`
		if !sc.Anonymous {
			name := st.name
			checks, collapsed := m.authChecks.WithLabelValues(name), m.collapsed.WithLabelValues(name)
			st.auth, err = basicauth.Open(sc.HtpasswdFile, basicauth.Options{
				CacheTTL: s.CredentialCacheTTL, Logger: o.Logger.With("site", name),
				AllowLegacy: s.AllowLegacyHashes, Gate: g.gate, Compare: o.bcryptCompare,
				OnCheck: checks.Inc, OnCollapsed: collapsed.Inc,
				OnReload: func(err error) {
					m.reloads.WithLabelValues(name, "htpasswd", result(err)).Inc()
					if o.Reloaded != nil {
						o.Reloaded("htpasswd", name, err)
					}
				},
			})
			if err != nil {
				return nil, fmt.Errorf("GATEWAY__SITES__%d__HTPASSWDFILE: %w", i, err)
			}
		}
		st.index = ratelimit.New(ratelimit.Config{Limit: sc.MaxIndexRequestsPerHour, Now: o.Now})
		st.download = ratelimit.New(ratelimit.Config{Limit: sc.MaxDownloadRequestsPerHour, Now: o.Now})
		origin := s.Origin
		if sc.Origin != "" {
			origin = sc.Origin
		}
		u, _ := url.Parse(origin)
		name := st.name
		px, err := proxy.New(proxy.Options{
			Origin: u, Transport: siteTransport, BodyIdleTimeout: s.UpstreamIdleTimeout, ErrorHeader: errorHeader,
			TrustedProxies: s.TrustedProxies, Tokens: proxyTokens, PeerToken: peerTok, Logger: o.Logger.With("site", name), CDNMaxAge: s.CDNMaxAge,
			OnUpstreamError: func(_ *http.Request, reason string) {
				m.upstreamErrs.WithLabelValues(name, reason).Inc()
				if reason == "connect" || reason == "timeout" {
					// Sites without the cache reach the origin unwatched
					// (the native path needs the proxy's own transport).
					g.watch.failedReason(reason, "")
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("GATEWAY__SITES__%d__ORIGIN: %w", i, err)
		}
		st.next, st.proxy = px, px
		st.native = g.cache == nil && o.Upstream == nil && px.CanServeFast()
		st.fastHit = g.cache != nil && o.Upstream == nil && (u.Path == "" || u.Path == "/") && u.RawPath == ""
		if o.Upstream != nil {
			st.next = o.Upstream(name, px)
		}
		g.list = append(g.list, st)
		for _, h := range sc.Hosts {
			g.sites[strings.ToLower(h)] = st
		}
	}
	ok = true
	return g, nil
}

// Close releases the cache (its upstream fetches in progress end; stored
// objects stay for the next start). Serve calls it when it returns.
func (g *Gateway) Close() error {
	if g.cache != nil {
		return g.cache.Close()
	}
	return nil
}

// Cache returns the gateway's cache, or nil when GATEWAY__CACHE__DIR is unset.
func (g *Gateway) Cache() *cache.Cache { return g.cache }

func result(err error) string {
	if err != nil {
		return "failure"
	}
	return "success"
}

// TLSConfig returns the HTTPS listener's TLS configuration.
func (g *Gateway) TLSConfig() *tls.Config {
	return tlsconf.ServerConfig(g.getCertificate)
}

func (g *Gateway) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := g.files.Certificate(hello.ServerName); c != nil {
		return c, nil
	}
	if g.acme != nil && g.acme.Manages(hello.ServerName) {
		return g.acme.GetCertificate(hello)
	}
	g.unknownServerName(hello)
	return nil, fmt.Errorf("no certificate for server name %q", hello.ServerName)
}

// unknownServerName counts a handshake for a name no site serves and logs
// it at debug level with the SNI (quoted by the log encoder) and the peer;
// the client only sees a TLS internal_error alert.
func (g *Gateway) unknownServerName(hello *tls.ClientHelloInfo) {
	g.metrics.unknownSNI.Inc()
	if !g.logger.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	peer := ""
	if hello.Conn != nil {
		peer = hello.Conn.RemoteAddr().String()
	}
	g.logger.Debug("TLS handshake for an unknown server name", "sni", hello.ServerName, "remote", peer)
}

// StartACME obtains (or loads) the ACME sites' certificates and keeps them
// renewed until ctx ends. It does nothing when no site uses ACME.
func (g *Gateway) StartACME(ctx context.Context) error {
	if g.acme == nil {
		return nil
	}
	if err := g.acme.Manage(ctx); err != nil {
		return err
	}
	g.refreshACMEExpiry()
	go func() { <-ctx.Done(); g.acme.Stop() }()
	return nil
}

// refreshACMEExpiry sets the expiry gauge of ACME sites from the
// certificates in service (renewals happen in the background).
func (g *Gateway) refreshACMEExpiry() {
	if g.acme == nil {
		return
	}
	for _, st := range g.list {
		if st.cfg.ACME {
			if leaf := g.acme.Leaf(st.cfg.Hosts[0]); leaf != nil {
				g.metrics.certExpiry.WithLabelValues(st.name).Set(float64(leaf.NotAfter.Unix()))
			}
		}
	}
}

// Reload re-reads every certificate file and htpasswd file (what SIGHUP
// does). Files that fail to load keep what is in service; the errors are
// returned joined (and logged, and counted).
func (g *Gateway) Reload() error {
	errs := []error{g.files.Reload()}
	if g.admin != nil {
		errs = append(errs, g.admin.reload())
	}
	if g.peer != nil {
		errs = append(errs, g.peer.reload())
	}
	for _, st := range g.list {
		if st.auth != nil {
			errs = append(errs, st.auth.Reload())
		}
	}
	return errors.Join(errs...)
}

// WatchedFiles lists the files whose change triggers ReloadFile.
func (g *Gateway) WatchedFiles() []string {
	files := g.files.Files()
	if g.peer != nil {
		files = append(files, g.peer.path)
	}
	for _, st := range g.list {
		if st.auth != nil {
			files = append(files, st.auth.Path())
		}
	}
	return files
}

// ReloadFile reloads whatever uses path.
func (g *Gateway) ReloadFile(path string) {
	_ = g.files.ReloadFile(path)
	if g.peer != nil && g.peer.path == path {
		_ = g.peer.reload()
	}
	for _, st := range g.list {
		if st.auth != nil && st.auth.Path() == path {
			_ = st.auth.Reload()
		}
	}
}

// Handler returns the public (HTTPS) handler.
func (g *Gateway) Handler() http.Handler { return http.HandlerFunc(g.serve) }

func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &httprec.Recorder{ResponseWriter: w}
	path := r.URL.EscapedPath() // for the policy, the cache key and the log
	var info proxy.Info         // the user for the origin; the upstream time for the log
	var st *site
	aborted := true
	var ref *refusal
	defer func() {
		status := rec.Status
		if status == 0 {
			status = http.StatusOK
		}
		var cs cache.Status
		if g.cache != nil { // without the cache, a header from the origin is no label value
			cs = cache.StatusOf(rec.Header())
		}
		if cs == cache.StatusHit || cs == cache.StatusUpdating {
			info.Upstream = 0 // answered from the cache: the origin took no part
		}
		g.record(outcome{st: st, user: info.User, client: func() string { return proxy.ClientIP(r, g.trusted) },
			method: r.Method, path: path, status: status, bytes: rec.Bytes, start: start,
			upstream: info.Upstream, cache: cs, aborted: aborted, ref: ref})
	}()
	pre, _ := r.Context().Value(admittedKey{}).(*admitted)
	if pre != nil { // Native admitted it, and found no plain hit
		st, info.User = pre.st, pre.user
	} else {
		st, info.User, ref = g.admit(inbound{
			host: r.Host, tls: r.TLS != nil, sni: tlsName(r.TLS), method: r.Method, path: path,
			authorization: r.Header.Values("Authorization"), body: r.ContentLength != 0 || len(r.TransferEncoding) > 0,
			clientIP: func() string { return proxy.ClientIP(r, g.trusted) },
		})
	}
	if g.hstsApplies(st, ref) {
		rec.Header()["Strict-Transport-Security"] = g.hsts
	}
	if ref != nil {
		for i := 0; i+1 < len(ref.header); i += 2 {
			rec.Header().Set(ref.header[i], ref.header[i+1])
		}
		writeJSON(rec, ref.status, ref.code, ref.msg)
		aborted = false
		return
	}
	if st.fastHit && pre == nil && !(st.cfg.HonourClientCacheControl && (len(r.Header["Cache-Control"]) > 0 || len(r.Header["Pragma"]) > 0)) && g.cache.ServeHit(rec, r, path) {
		aborted = false
		return
	}
	// The context values only after the hit path, which needs none (no
	// allocation per hit).
	ctx := proxy.WithInfo(r.Context(), &info)
	if st.cfg.HonourClientCacheControl && g.cache != nil {
		ctx = cache.WithClientCacheControl(ctx)
	}
	st.next.ServeHTTP(rec, r.WithContext(ctx))
	aborted = false
}

// throttleMaxKeys bounds the client addresses the login throttle tracks
// (least recently used evicted first; ~200 bytes each).
const throttleMaxKeys = 16_384

// authenticate checks the Authorization fields of a request to site st.
// It returns the user, or the failure reason (missing, malformed,
// scheme, credentials; throttled with the wait before a retry) with ""
// as the user, except for "credentials", which returns the user name
// tried (for the log only: it was not authenticated). A client
// address (clientIP) that failed GATEWAY__AUTHTHROTTLE__MAXFAILURES times
// within the window is refused before anything is checked, verified
// credentials included (else the cache would check guesses for free);
// each check that would run bcrypt first takes one failure from the
// address's allowance, and gives it back when the credentials are good,
// so that concurrent guesses cannot overrun it.
func (g *Gateway) authenticate(st *site, h []string, clientIP func() string) (string, string, time.Duration) {
	if len(h) == 0 {
		return "", "missing", 0
	}
	if len(h) > 1 {
		return "", "malformed", 0
	}
	name, pass, err := basicauth.ParseBasic(h[0])
	switch {
	case errors.Is(err, basicauth.ErrScheme):
		return "", "scheme", 0
	case err != nil:
		return "", "malformed", 0
	}
	if !g.throttle.Enabled() {
		if !st.auth.Authenticate(name, pass) {
			g.logAuthFailure(st, clientIP(), name)
			return name, "credentials", 0
		}
		return name, "", 0
	}
	ip := clientIP()
	key := throttleKey(ip)
	if blocked, wait := g.throttle.Blocked(key); blocked {
		g.logThrottled(st, ip, wait)
		return "", "throttled", wait
	}
	if st.auth.Cached(name, pass) {
		return name, "", 0
	}
	ok, wait, giveBack := g.throttle.Take(key)
	if !ok {
		g.logThrottled(st, ip, wait)
		return "", "throttled", wait
	}
	if !st.auth.Authenticate(name, pass) {
		g.logAuthFailure(st, ip, name)
		return name, "credentials", 0
	}
	giveBack()
	return name, "", 0
}

// throttleKey is the login throttle's key of a client address: the
// address, or its /64 for IPv6 (one host commonly holds a whole /64).
func throttleKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	switch {
	case err != nil, a.Is4():
		return ip
	case a.Is4In6():
		return a.Unmap().String()
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// errorFields are the fixed fields of the gateway's own error answers.
var errorFields = [...][2]string{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}, {"X-Content-Type-Options", "nosniff"}}

// hstsApplies reports whether an answer for site st (nil: no such host),
// refused with ref or not (nil), carries Strict-Transport-Security.
func (g *Gateway) hstsApplies(st *site, ref *refusal) bool {
	return st != nil && g.hsts != nil && (ref == nil || ref.hsts)
}

func writeJSON(w http.ResponseWriter, status int, code, msg string) {
	h := w.Header()
	for _, f := range errorFields {
		h.Set(f[0], f[1])
	}
	w.WriteHeader(status)
	io.WriteString(w, jsonError(code, msg))
}

// jsonError is the body of the gateway's own error answers.
func jsonError(code, msg string) string {
	return `{"error":"` + code + `","message":"` + msg + `"}` + "\n"
}

// AdminHandler serves /health/live, /health/ready and /metrics, and, when
// the cache is on and GATEWAY__ADMINTOKENFILE is set, the purge endpoint
// /admin/cache/purge (POST ?path=/… or ?all=true, with the admin bearer
// token; 401 without it). With GATEWAY__ADMINPPROF it also serves
// /debug/pprof/, behind the admin token when one is set.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/live", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"live"}`+"\n")
	})
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, r *http.Request) {
		if err := g.Ready(r.Context()); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"status":"not_ready","reason":%q}`+"\n", err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ready"}`+"\n")
	})
	status := statuspage.Handler(g.Status)
	mux.Handle("GET /status", status)
	mux.Handle("GET /status.json", status)
	if g.cache != nil && g.admin != nil {
		mux.Handle("/admin/cache/purge", g.admin.requireAdmin(g.cache.PurgeHandler()))
	}
	if g.gatherer != nil {
		metrics := promhttp.HandlerFor(g.gatherer, promhttp.HandlerOpts{})
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			g.refreshACMEExpiry()
			metrics.ServeHTTP(w, r)
		})
	}
	if g.cfg.AdminPprof {
		// Behind the admin token when there is one, like the purge
		// endpoint: profiles show argv and stacks, and a CPU profile or
		// trace costs the server while it runs.
		if g.admin != nil {
			mux.Handle(pprofmux.Prefix, g.admin.requireAdmin(pprofmux.Handler()))
		} else {
			mux.Handle(pprofmux.Prefix, pprofmux.Handler())
		}
	}
	return mux
}

// Ready reports nil when the origin answers its /health/ready with 200.
func (g *Gateway) Ready(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.readyURL, nil)
	if err != nil {
		return err
	}
	if g.tokens != nil {
		if tok, err := g.tokens.Token(); err == nil {
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		}
	}
	if g.peer != nil {
		req.Header[proxy.PeerTokenHeader] = []string{g.peer.current()}
	}
	resp, err := g.ready.Do(req)
	if err != nil {
		return errors.New("origin unreachable")
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("origin not ready (status %d)", resp.StatusCode)
	}
	return nil
}

// RedirectHandler is the plain-HTTP handler: ACME HTTP-01 challenges, and
// a permanent redirect to HTTPS for the sites' hosts (404 for others).
// httpsPort is the public HTTPS port ("" or "443" for none in the URL).
func (g *Gateway) RedirectHandler(httpsPort string) http.Handler {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if g.sites[host] == nil {
			writeJSON(w, http.StatusNotFound, "not_found", "no such site")
			return
		}
		target := "https://" + host
		if httpsPort != "" && httpsPort != "443" {
			target += ":" + httpsPort
		}
		target += r.URL.EscapedPath()
		w.Header().Set("Location", target)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
	if g.acme != nil {
		h = g.acme.HTTPChallengeHandler(h)
	}
	return h
}

package smoke

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/internal/loopname"
)

// Status is the outcome of one check.
type Status string

// The three outcomes. A SKIP is not a failure: the check did not apply
// (an opt-in probe not asked for, no --origin given, no cache header seen
// without ExpectCache).
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Result is the outcome of one check.
type Result struct {
	// Name identifies the check (index, manifest, bundle-jws, …).
	Name string
	// Status is PASS, FAIL or SKIP.
	Status Status
	// Detail says what was seen (PASS), why it failed (FAIL) or why the
	// check did not run (SKIP). It never contains credentials.
	Detail string
}

// String renders the result as the command prints it: "PASS name detail".
func (r Result) String() string {
	if r.Detail == "" {
		return string(r.Status) + " " + r.Name
	}
	return string(r.Status) + " " + r.Name + " " + r.Detail
}

// Report is every check's result, in the order they ran.
type Report struct {
	Results []Result
}

// Failed returns the results that failed.
func (r *Report) Failed() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Status == Fail {
			out = append(out, res)
		}
	}
	return out
}

// Check names, in the order Run runs them.
const (
	CheckGatewayAuth       = "gateway-auth"
	CheckIndex             = "index"
	CheckIndexCache        = "index-cache-control"
	CheckManifest          = "manifest"
	CheckBundleJWS         = "bundle-jws"
	CheckCoherence         = "coherence"
	CheckExcititor         = "excititor"
	CheckExcititorJWS      = "excititor-jws"
	CheckCacheStatus       = "cache-status"
	CheckOriginAuth        = "origin-auth"
	CheckBudget            = "budget"
	defaultTimeout         = 2 * time.Minute
	defaultProbeLimit      = 200
	maxJSONBytes           = 32 << 20
	wantIndexCacheControl  = "public, max-age=60"
	wantFileCacheControl   = "public, max-age=300, immutable"
	wantPinnedCacheControl = "public, max-age=31536000, immutable"
)

// Checks lists every check name in the order Run runs them.
var Checks = []string{CheckGatewayAuth, CheckIndex, CheckIndexCache, CheckManifest, CheckBundleJWS,
	CheckCoherence, CheckExcititor, CheckExcititorJWS, CheckCacheStatus, CheckOriginAuth, CheckBudget}

// Options configure a smoke run. Base, Domain and PublicKeys are required.
type Options struct {
	// Base is the site's base URL, e.g. https://mirror-primary.example.org
	// (a path prefix is kept). Required.
	Base string
	// Domain is the mirror domain the site serves, e.g. primary. Required.
	Domain string
	// User and Password are the site's Basic Auth credentials, sent to Base
	// only. Empty User: the site is anonymous (gateway-auth is skipped).
	User, Password string
	// RootCAs verifies Base's (and an https Origin's) certificate.
	// Default (nil): the system roots.
	RootCAs *x509.CertPool
	// PublicKeys are the trusted keys for the detached JWS. Required.
	PublicKeys []jws.PublicKey
	// Origin is the origin's base URL; when set, origin-auth checks that it
	// answers 401 with a Bearer challenge to a request without credentials
	// (set it only where the origin requires authentication). Default:
	// unset (origin-auth is skipped).
	Origin string
	// ProbeBudget runs the budget check: index requests until a 429 with
	// Retry-After, at most ProbeLimit of them. It spends the user's index
	// budget (for up to an hour). Default: false.
	ProbeBudget bool
	// ProbeLimit bounds the budget probe's requests. Default: 200.
	ProbeLimit int
	// ExpectCache makes cache-status fail when X-Cache-Status is absent or
	// a repeated request is not served from the cache. Default: false (the
	// check reports what it saw and SKIPs when the header is absent).
	ExpectCache bool
	// ConnectTo, "host:port", is dialled instead of Base's host and port
	// (like curl --connect-to): the TLS server name and Host header stay
	// Base's. Default: unset.
	ConnectTo string
	// Timeout bounds each request, body included. Default: 2m.
	Timeout time.Duration
	// Skip names checks not to run (reported as SKIP).
	Skip []string
	// Client, if set, replaces the HTTP client built from RootCAs,
	// ConnectTo and Timeout (tests).
	Client *http.Client
}

// runner holds one run's state.
type runner struct {
	opts   Options
	base   *url.URL
	client *http.Client
	report func(Result)
	out    Report

	// Filled by earlier checks for later ones.
	manifest    *export.Manifest
	exportID    string   // the exportId the index check read
	cacheStatus []string // X-Cache-Status values seen on the manifest
	// refused names the check whose credentials the site refused (401);
	// later checks that need them are not run.
	refused string
	current string // the check running
	// onResponse, when set, sees every response get receives (the
	// coherence check inspects the headers of pinned answers with it).
	onResponse func(*http.Response)
}

// needsAuth are the checks that send the site's credentials.
var needsAuth = []string{CheckIndex, CheckIndexCache, CheckManifest, CheckBundleJWS, CheckCoherence,
	CheckExcititor, CheckExcititorJWS, CheckCacheStatus, CheckBudget}

// Run runs every check against the deployment and returns the report; it
// calls report (if not nil) with each result as it finishes. The error is
// for unusable options only: a failed check is a Result, not an error.
func Run(ctx context.Context, opts Options, report func(Result)) (Report, error) {
	base, err := opts.validate()
	if err != nil {
		return Report{}, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.ProbeLimit <= 0 {
		opts.ProbeLimit = defaultProbeLimit
	}
	r := &runner{opts: opts, base: base, client: opts.Client, report: report}
	if r.client == nil {
		r.client = newClient(opts, base)
	}
	r.run(ctx, CheckGatewayAuth, r.checkGatewayAuth)
	r.run(ctx, CheckIndex, r.checkIndex)
	r.run(ctx, CheckIndexCache, r.checkIndexCache)
	r.run(ctx, CheckManifest, r.checkManifest)
	r.run(ctx, CheckBundleJWS, r.checkBundle)
	r.run(ctx, CheckCoherence, r.checkCoherence)
	var exports *export.ExcititorIndex
	r.run(ctx, CheckExcititor, func(ctx context.Context) (Status, string) {
		var st Status
		var detail string
		exports, st, detail = r.checkExcititor(ctx)
		return st, detail
	})
	r.run(ctx, CheckExcititorJWS, func(ctx context.Context) (Status, string) { return r.checkExcititorJWS(ctx, exports) })
	r.run(ctx, CheckCacheStatus, r.checkCacheStatus)
	r.run(ctx, CheckOriginAuth, r.checkOriginAuth)
	r.run(ctx, CheckBudget, r.checkBudget)
	return r.out, nil
}

func (o *Options) validate() (*url.URL, error) {
	var errs []error
	base, err := url.Parse(strings.TrimSuffix(o.Base, "/"))
	if err != nil || base.Host == "" || (base.Scheme != "https" && base.Scheme != "http") || base.RawQuery != "" {
		errs = append(errs, fmt.Errorf("--base %q: not an absolute http(s) URL without a query", o.Base))
	}
	if !export.ValidDomainID(o.Domain) {
		errs = append(errs, fmt.Errorf("--domain %q: not a valid domain id", o.Domain))
	}
	if len(o.PublicKeys) == 0 {
		errs = append(errs, errors.New("--public-key: required (the key that verifies the detached JWS)"))
	}
	if o.Origin != "" {
		if u, err := url.Parse(o.Origin); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			errs = append(errs, fmt.Errorf("--origin %q: not an absolute http(s) URL", o.Origin))
		}
	}
	if o.ConnectTo != "" {
		if _, port, err := net.SplitHostPort(o.ConnectTo); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("--connect-to %q: not host:port", o.ConnectTo))
		}
	}
	for _, s := range o.Skip {
		if !slices.Contains(Checks, s) {
			errs = append(errs, fmt.Errorf("--skip %q: no such check (have %s)", s, strings.Join(Checks, ", ")))
		}
	}
	if o.User != "" && strings.Contains(o.User, ":") {
		errs = append(errs, errors.New("--user: may not contain ':'"))
	}
	return base, errors.Join(errs...)
}

// newClient returns a client with timeouts, the custom roots and the
// --connect-to dial override. It ignores proxy environment variables: the
// smoke test is about the deployment, not the path through a proxy.
func newClient(opts Options, base *url.URL) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	baseAddr := base.Host
	if base.Port() == "" {
		port := "443"
		if base.Scheme == "http" {
			port = "80"
		}
		baseAddr = net.JoinHostPort(base.Hostname(), port)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if opts.ConnectTo != "" && strings.EqualFold(addr, baseAddr) {
				addr = opts.ConnectTo
			}
			// *.localhost names dial loopback (RFC 6761 §6.3).
			return loopname.Wrap(dialer.DialContext)(ctx, network, addr)
		},
		TLSClientConfig:       &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: opts.Timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   opts.Timeout,
		// A redirect is an answer to report, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// run runs one check unless it is skipped, and records its result.
func (r *runner) run(ctx context.Context, name string, check func(context.Context) (Status, string)) {
	var res Result
	switch {
	case slices.Contains(r.opts.Skip, name):
		res = Result{Name: name, Status: Skip, Detail: "skipped by --skip"}
	case ctx.Err() != nil:
		res = Result{Name: name, Status: Fail, Detail: "not run: " + ctx.Err().Error()}
	case r.refused != "" && slices.Contains(needsAuth, name):
		res = Result{Name: name, Status: Skip, Detail: "not run: the site refused the credentials (see " + r.refused + ")"}
	default:
		r.current = name
		st, detail := check(ctx)
		res = Result{Name: name, Status: st, Detail: detail}
	}
	r.out.Results = append(r.out.Results, res)
	if r.report != nil {
		r.report(res)
	}
}

func fail(format string, args ...any) (Status, string) { return Fail, fmt.Sprintf(format, args...) }

// siteURL returns the base URL joined with path.
func (r *runner) siteURL(path string) string {
	u := *r.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String()
}

// get sends a GET to the site, with credentials when auth is set.
func (r *runner) get(ctx context.Context, rawURL string, auth bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "stella-mirror-smoke")
	if auth && r.opts.User != "" {
		req.SetBasicAuth(r.opts.User, r.opts.Password)
	}
	res, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	if auth && r.opts.User != "" && res.StatusCode == http.StatusUnauthorized && r.refused == "" {
		r.refused = r.current
	}
	if r.onResponse != nil {
		r.onResponse(res)
	}
	return res, nil
}

// getJSON fetches rawURL with credentials and returns the body of a 200
// (bounded), the response (body closed) or an error that says what came
// back instead.
func (r *runner) getJSON(ctx context.Context, rawURL string) ([]byte, *http.Response, error) {
	res, err := r.get(ctx, rawURL, true)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, res, fmt.Errorf("GET %s: HTTP %d%s", rawURL, res.StatusCode, statusHint(res.StatusCode))
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxJSONBytes+1))
	if err != nil {
		return nil, res, fmt.Errorf("GET %s: reading body: %w", rawURL, err)
	}
	if len(body) > maxJSONBytes {
		return nil, res, fmt.Errorf("GET %s: body larger than %d bytes", rawURL, maxJSONBytes)
	}
	return body, res, nil
}

// statusHint explains the statuses operators meet most.
func statusHint(code int) string {
	switch code {
	case http.StatusUnauthorized:
		return " (credentials refused: wrong user or password, or the user is in another site's htpasswd)"
	case http.StatusNotFound:
		return " (not found: wrong domain for this site, or the domain is not in the active export)"
	case http.StatusTooManyRequests:
		return " (budget exhausted: wait for Retry-After or raise MAX…REQUESTSPERHOUR)"
	case http.StatusServiceUnavailable:
		return " (the origin has no servable export, or a file does not match its digest)"
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return " (the front cannot reach the origin)"
	}
	return ""
}

func (r *runner) checkGatewayAuth(ctx context.Context) (Status, string) {
	if r.opts.User == "" {
		return Skip, "no --user: the site is expected to be anonymous"
	}
	res, err := r.get(ctx, r.siteURL("/concelier/exports/index.json"), false)
	if err != nil {
		return fail("%v", err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	ch := res.Header.Get("WWW-Authenticate")
	if res.StatusCode != http.StatusUnauthorized {
		return fail("without credentials: HTTP %d, want 401 (the site serves the index to anyone)", res.StatusCode)
	}
	if !strings.HasPrefix(strings.ToLower(ch), "basic ") {
		return fail("401 without a Basic challenge (WWW-Authenticate: %q)", ch)
	}
	return Pass, fmt.Sprintf("401 without credentials, WWW-Authenticate: %s", ch)
}

// indexKeys are the keys the runbook's `jq 'keys'` must show.
var indexKeys = []string{"domains", "exportId", "generatedAt", "schemaVersion"}

func (r *runner) checkIndex(ctx context.Context) (Status, string) {
	body, res, err := r.getJSON(ctx, r.siteURL("/concelier/exports/index.json"))
	if err != nil {
		return fail("%v", err)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fail("Content-Type %q, want application/json", ct)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return fail("index is not a JSON object: %v", err)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range indexKeys {
		if _, ok := raw[k]; !ok {
			return fail("index keys %v lack %q", keys, k)
		}
	}
	ix, err := export.ParseIndex(body)
	if err != nil {
		return fail("%v", err)
	}
	if ix.Domain(r.opts.Domain) == nil {
		ids := make([]string, len(ix.Domains))
		for i, d := range ix.Domains {
			ids[i] = d.DomainID
		}
		return fail("domain %q is not in the index (has %s)", r.opts.Domain, strings.Join(ids, ", "))
	}
	r.exportID = ix.ExportID
	return Pass, fmt.Sprintf("keys=%s exportId=%s, domain %s listed", strings.Join(keys, ","), ix.ExportID, r.opts.Domain)
}

func (r *runner) checkIndexCache(ctx context.Context) (Status, string) {
	res, err := r.get(ctx, r.siteURL("/concelier/exports/index.json"), true)
	if err != nil {
		return fail("%v", err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, io.LimitReader(res.Body, maxJSONBytes))
	if res.StatusCode != http.StatusOK {
		return fail("HTTP %d%s", res.StatusCode, statusHint(res.StatusCode))
	}
	if cc := res.Header.Get("Cache-Control"); cc != wantIndexCacheControl {
		return fail("Cache-Control %q, want %q", cc, wantIndexCacheControl)
	}
	return Pass, "Cache-Control: " + wantIndexCacheControl
}

func (r *runner) manifestURL() string {
	return r.siteURL("/concelier/exports/" + export.ManifestPath(r.opts.Domain))
}

func (r *runner) checkManifest(ctx context.Context) (Status, string) {
	body, res, err := r.getJSON(ctx, r.manifestURL())
	if res != nil {
		r.cacheStatus = append(r.cacheStatus, res.Header.Get("X-Cache-Status"))
	}
	if err != nil {
		return fail("%v", err)
	}
	if cc := res.Header.Get("Cache-Control"); cc != wantFileCacheControl {
		return fail("Cache-Control %q, want %q", cc, wantFileCacheControl)
	}
	m, err := export.ParseManifest(body)
	if err != nil {
		return fail("%v", err)
	}
	if m.DomainID != r.opts.Domain {
		return fail("manifest names domain %q, want %q", m.DomainID, r.opts.Domain)
	}
	r.manifest = m
	return Pass, fmt.Sprintf("Cache-Control: %s, exportId=%s, bundle %d bytes %s", wantFileCacheControl, m.ExportID, m.Bundle.SizeBytes, m.Bundle.Digest)
}

// fetchSignature returns a detached JWS (bounded by jws.MaxSignatureSize).
func (r *runner) fetchSignature(ctx context.Context, rawURL string) ([]byte, error) {
	res, err := r.get(ctx, rawURL, true)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d%s", rawURL, res.StatusCode, statusHint(res.StatusCode))
	}
	sig, err := io.ReadAll(io.LimitReader(res.Body, jws.MaxSignatureSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", rawURL, err)
	}
	if len(sig) > jws.MaxSignatureSize {
		return nil, fmt.Errorf("GET %s: signature larger than %d bytes", rawURL, jws.MaxSignatureSize)
	}
	return sig, nil
}

// verifyStream fetches rawURL and verifies sig over its body while hashing
// it, in one pass and bounded memory; it returns the header, the body's
// digest and size.
func (r *runner) verifyStream(ctx context.Context, rawURL string, sig []byte) (jws.Header, string, int64, error) {
	res, err := r.get(ctx, rawURL, true)
	if err != nil {
		return jws.Header{}, "", 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return jws.Header{}, "", 0, fmt.Errorf("GET %s: HTTP %d%s", rawURL, res.StatusCode, statusHint(res.StatusCode))
	}
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(res.Body, h)}
	hdr, err := jws.Verify(sig, cr, r.opts.PublicKeys)
	if err != nil {
		return jws.Header{}, "", cr.n, fmt.Errorf("%s: %w", rawURL, err)
	}
	return hdr, export.DigestPrefix + hex.EncodeToString(h.Sum(nil)), cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (r *runner) checkBundle(ctx context.Context) (Status, string) {
	base := r.siteURL("/concelier/exports/" + export.BundlePath(r.opts.Domain))
	sig, err := r.fetchSignature(ctx, base+export.SignatureSuffix)
	if err != nil {
		return fail("%v", err)
	}
	hdr, digest, n, err := r.verifyStream(ctx, base, sig)
	if err != nil {
		return fail("%v", err)
	}
	detail := fmt.Sprintf("verified (alg %s, kid %s), %d bytes", hdr.Alg, hdr.Kid, n)
	if m := r.manifest; m != nil {
		if m.Bundle.Digest != digest || m.Bundle.SizeBytes != n {
			return fail("signature verifies, but the bundle (%d bytes, %s) is not the one the manifest names (%d bytes, %s)", n, digest, m.Bundle.SizeBytes, m.Bundle.Digest)
		}
		detail += ", digest matches the manifest"
	}
	return Pass, detail
}

func (r *runner) checkExcititor(ctx context.Context) (*export.ExcititorIndex, Status, string) {
	body, _, err := r.getJSON(ctx, r.siteURL("/excititor/mirror/"+r.opts.Domain+"/index"))
	if err != nil {
		st, d := fail("%v", err)
		return nil, st, d
	}
	ix, err := export.ParseExcititorIndex(body)
	if err != nil {
		st, d := fail("%v", err)
		return nil, st, d
	}
	if len(ix.Exports) == 0 {
		st, d := fail("the index lists no exports (.exports is empty)")
		return nil, st, d
	}
	keys := make([]string, len(ix.Exports))
	for i, e := range ix.Exports {
		keys[i] = e.ExportKey
	}
	return ix, Pass, fmt.Sprintf("%d exports: %s", len(keys), strings.Join(keys, " "))
}

func (r *runner) checkExcititorJWS(ctx context.Context, ix *export.ExcititorIndex) (Status, string) {
	if ix == nil {
		return Skip, "no Excititor index (see the excititor check)"
	}
	// The smallest export keeps the check cheap.
	e := ix.Exports[0]
	for _, x := range ix.Exports[1:] {
		if x.SizeBytes < e.SizeBytes {
			e = x
		}
	}
	sig, err := r.fetchSignature(ctx, r.siteURL(e.SignaturePath))
	if err != nil {
		return fail("%v", err)
	}
	hdr, digest, n, err := r.verifyStream(ctx, r.siteURL(e.ExportPath), sig)
	if err != nil {
		return fail("%v", err)
	}
	if digest != e.Digest || n != e.SizeBytes {
		return fail("export %s verifies, but it is %d bytes %s where the index says %d bytes %s", e.ExportKey, n, digest, e.SizeBytes, e.Digest)
	}
	return Pass, fmt.Sprintf("%s verified (alg %s, kid %s), %d bytes, digest matches the index", e.ExportKey, hdr.Alg, hdr.Kid, n)
}

// cacheWords are nginx's $upstream_cache_status values, which the gateway
// cache reports too.
var cacheWords = []string{"HIT", "MISS", "EXPIRED", "STALE", "UPDATING", "REVALIDATED", "BYPASS"}

// servedFromCache are the values that mean the cache answered.
var servedFromCache = []string{"HIT", "STALE", "UPDATING", "REVALIDATED"}

func (r *runner) checkCacheStatus(ctx context.Context) (Status, string) {
	// Fetch the manifest once more: a cache in front answers it from
	// storage now (it is public and immutable).
	res, err := r.get(ctx, r.manifestURL(), true)
	if err != nil {
		return fail("%v", err)
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, maxJSONBytes))
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fail("manifest: HTTP %d%s", res.StatusCode, statusHint(res.StatusCode))
	}
	seen := append(r.cacheStatus, res.Header.Get("X-Cache-Status"))
	last := seen[len(seen)-1]
	if last == "" {
		if r.opts.ExpectCache {
			return fail("no X-Cache-Status header on the manifest (is the cache enabled in front of the origin?)")
		}
		return Skip, "no X-Cache-Status header (no cache in front; --expect-cache makes this a failure)"
	}
	for _, v := range seen {
		if v != "" && !slices.Contains(cacheWords, v) {
			return fail("X-Cache-Status %q is not one of %s", v, strings.Join(cacheWords, " "))
		}
	}
	detail := "X-Cache-Status on the manifest: " + strings.Join(seen, " then ")
	if r.opts.ExpectCache && !slices.Contains(servedFromCache, last) {
		return fail("%s; a repeated request for a public, immutable file should be a HIT", detail)
	}
	return Pass, detail
}

func (r *runner) checkOriginAuth(ctx context.Context) (Status, string) {
	if r.opts.Origin == "" {
		return Skip, "no --origin given"
	}
	u := strings.TrimSuffix(r.opts.Origin, "/") + "/concelier/exports/index.json"
	res, err := r.get(ctx, u, false) // never the site's credentials
	if err != nil {
		return fail("%v", err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	ch := res.Header.Get("WWW-Authenticate")
	if res.StatusCode != http.StatusUnauthorized {
		return fail("origin without credentials: HTTP %d, want 401 (is CONCELIER__MIRROR__REQUIREAUTHENTICATION=true, and is this host outside the bypass networks?)", res.StatusCode)
	}
	if !strings.HasPrefix(strings.ToLower(ch), "bearer") {
		return fail("origin 401 without a Bearer challenge (WWW-Authenticate: %q)", ch)
	}
	return Pass, "401 without credentials, WWW-Authenticate: " + ch
}

func (r *runner) checkBudget(ctx context.Context) (Status, string) {
	if !r.opts.ProbeBudget {
		return Skip, "opt-in: --probe-budget (it spends the user's index budget)"
	}
	u := r.siteURL("/concelier/exports/index.json")
	for i := 1; i <= r.opts.ProbeLimit; i++ {
		res, err := r.get(ctx, u, true)
		if err != nil {
			return fail("request %d: %v", i, err)
		}
		io.Copy(io.Discard, io.LimitReader(res.Body, maxJSONBytes))
		res.Body.Close()
		switch res.StatusCode {
		case http.StatusOK:
			continue
		case http.StatusTooManyRequests:
			ra := res.Header.Get("Retry-After")
			secs, err := strconv.Atoi(ra)
			if err != nil || secs <= 0 {
				return fail("429 after %d requests, but Retry-After is %q (want a positive number of seconds)", i, ra)
			}
			return Pass, fmt.Sprintf("429 after %d requests, Retry-After: %d", i, secs)
		default:
			return fail("request %d: HTTP %d%s", i, res.StatusCode, statusHint(res.StatusCode))
		}
	}
	return fail("no 429 after %d index requests (is MAXINDEXREQUESTSPERHOUR set, and at most %d?)", r.opts.ProbeLimit, r.opts.ProbeLimit-1)
}

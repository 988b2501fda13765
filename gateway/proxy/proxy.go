// Package proxy forwards allowed requests to the origin: connection reuse,
// a timeout on every phase (dial, response headers, each body read), the
// forwarding headers the origin trusts, and no client credentials.
//
// Towards the origin it strips hop-by-hop headers, the client's
// Authorization and Cookie, any X-Stella-Peer-Token (always, whoever sent
// it), and incoming X-Forwarded-*, Forwarded and X-Stella-Forwarded-User
// unless the TCP peer is a configured trusted proxy; it sets
// X-Forwarded-For/Proto/Host and X-Stella-Forwarded-User (the user the
// gateway authenticated), and optionally a bearer token and the gateway's
// own peer token.
//
// A failure before the response starts is a 502 (504 on a timeout); a
// failure in the middle of a body aborts the client connection, so a client
// never mistakes a truncated body for a complete 200.
//
// It is not a cache and does not decide what may be fetched.
package proxy

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
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/peertoken"
)

// UserHeader carries the authenticated user to the origin.
const UserHeader = "X-Stella-Forwarded-User"

// PeerTokenHeader carries the gateway's peer token to the origin
// (GATEWAY__ORIGINPEERTOKENFILE). A client's copy is always removed.
const PeerTokenHeader = peertoken.Header

// Defaults of Options.
const (
	DefaultDialTimeout     = 5 * time.Second
	DefaultHeaderTimeout   = 30 * time.Second
	DefaultBodyIdleTimeout = 60 * time.Second
	DefaultMaxIdleConns    = 256
)

// Options configure a Proxy. Zero values mean the defaults beside them.
type Options struct {
	// Origin is the upstream base URL (http or https). Required.
	Origin *url.URL
	// Transport sends the requests. Default: one built from the timeouts
	// below, with DefaultMaxIdleConns kept-alive connections.
	Transport http.RoundTripper
	// OriginCAFile is a PEM bundle trusted for an https origin. Default:
	// the system roots. Ignored when Transport is set.
	OriginCAFile string
	// DialTimeout bounds connecting to the origin. Default: DefaultDialTimeout.
	DialTimeout time.Duration
	// HeaderTimeout bounds waiting for the origin's response headers.
	// Default: DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// BodyIdleTimeout bounds the wait for each read from the origin
	// (response headers and body): an origin that stalls mid-body is cut
	// off. Enforced by the transport NewTransport builds (not by a Transport
	// given here). Default: DefaultBodyIdleTimeout.
	BodyIdleTimeout time.Duration
	// TrustedProxies are the TCP peers whose X-Forwarded-*, Forwarded and
	// X-Stella-Forwarded-User headers are kept (e.g. a CDN). Default: none.
	TrustedProxies []netip.Prefix
	// Tokens, if set, supplies the bearer token sent to the origin
	// (OAuth2 client credentials); it must refresh before expiry (an
	// oauth2.ReuseTokenSource does). Default: no token (the origin trusts
	// the gateway's network).
	Tokens oauth2.TokenSource
	// PeerToken, if set, returns the peer token sent to the origin in
	// PeerTokenHeader on every request ("" sends none); it is called once
	// per request and MUST be safe for concurrent use. The header a client
	// sends is removed whether or not this is set. Default: nil, none.
	PeerToken func() string
	// Logger receives upstream failures. Default: discard.
	Logger *slog.Logger
	// OnUpstreamError is called once per failed upstream exchange with a
	// reason: "connect", "timeout", "token", "body" or "other"; r is nil
	// for an exchange of ServeFast. Default: nothing.
	OnUpstreamError func(r *http.Request, reason string)
	// ErrorHeader, if set, may add headers to the 502/504 answer of a
	// failed exchange (err is what the Transport returned); the cache sets
	// X-Cache-Status from it. Default: nothing.
	ErrorHeader func(h http.Header, err error)
	// CDNMaxAge, when positive, adds the CDN guidance to an answer for an
	// unversioned Concelier file (export.UnversionedFile) that names its
	// export (X-Stella-Export-Id) and carries none yet:
	// "CDN-Cache-Control: public, max-age=N" (RFC 9213) and the export id
	// as Cache-Tag and Surrogate-Key. The gateway's cache adds the same
	// to what it answers, so this covers a gateway without a cache.
	// Default: 0, none.
	CDNMaxAge time.Duration
	// Transparent forwards what the gateway strips: every method with its
	// request body, the query, Authorization and Cookie, and the origin's
	// Set-Cookie. It exists for the HTTP caching conformance harness
	// (bench/cmd/cacheproxy), which shows the cache's RFC 9111 behaviour
	// with the gateway's admission replaced by pass-through; the gateway
	// never sets it (no configuration key reaches it). Default: false.
	Transparent bool
}

// Proxy is an http.Handler forwarding to the origin.
type Proxy struct {
	opts Options
	rp   *httputil.ReverseProxy
	cdn  string // the CDN-Cache-Control value; "" without Options.CDNMaxAge
}

// cdnPath reports whether an answer for the client path path gets the CDN
// guidance (Options.CDNMaxAge): only unversioned Concelier files, so that
// every other answer pays one string compare and nothing else.
func (p *Proxy) cdnPath(path string) bool {
	return p.cdn != "" && export.UnversionedFile(path)
}

// NewTransport returns the transport New uses by default (see Transport).
func NewTransport(o Options) (*Transport, error) {
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.HeaderTimeout == 0 {
		o.HeaderTimeout = DefaultHeaderTimeout
	}
	if o.BodyIdleTimeout == 0 {
		o.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	t := &Transport{
		dialer:        &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second},
		tlsConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
		headerTimeout: o.HeaderTimeout,
		idleTimeout:   o.BodyIdleTimeout,
		keepIdle:      90 * time.Second,
		maxIdle:       DefaultMaxIdleConns,
		idle:          make(map[string][]*persistConn),
	}
	if o.OriginCAFile != "" {
		data, err := os.ReadFile(o.OriginCAFile)
		if err != nil {
			return nil, fmt.Errorf("origin CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("origin CA file %s: no PEM certificate found", o.OriginCAFile)
		}
		t.tlsConfig.RootCAs = pool
	}
	return t, nil
}

// New returns a Proxy for o.
func New(o Options) (*Proxy, error) {
	if o.Origin == nil || o.Origin.Host == "" || (o.Origin.Scheme != "http" && o.Origin.Scheme != "https") {
		return nil, errors.New("proxy: origin must be an absolute http(s) URL")
	}
	if o.BodyIdleTimeout == 0 {
		o.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Transport == nil {
		t, err := NewTransport(o)
		if err != nil {
			return nil, err
		}
		o.Transport = t
	}
	p := &Proxy{opts: o}
	if o.CDNMaxAge > 0 {
		p.cdn = "public, max-age=" + strconv.FormatInt(int64(o.CDNMaxAge/time.Second), 10)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      o.Transport,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		// 0: responses go out through net/http's buffered writer, flushed as
		// it fills (bodies still stream); -1 would flush every write, one TLS
		// record and syscall per write, halving small-response throughput.
		FlushInterval: 0,
		BufferPool:    bufferPool{},
	}
	return p, nil
}

// Info is one request's state shared by the gateway and the proxy: the
// gateway sets User, the proxy fills in Upstream. It travels in the request
// context (WithInfo), so a handler between them (the cache) passes it on
// untouched.
type Info struct {
	// User is the authenticated user sent to the origin in UserHeader;
	// "" for anonymous requests.
	User string
	// Upstream is how long the origin took to send response headers; zero
	// when no response arrived.
	Upstream time.Duration

	start    time.Time
	token    string
	reported bool
	flusher  http.Flusher // the client's ResponseWriter, if it flushes
}

type infoKey struct{}

// WithInfo returns ctx carrying info.
func WithInfo(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, infoKey{}, info)
}

// InfoFrom returns the Info WithInfo stored, or nil.
func InfoFrom(ctx context.Context) *Info {
	i, _ := ctx.Value(infoKey{}).(*Info)
	return i
}

// ServeHTTP forwards r (GET or HEAD; any request body is dropped).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	info := InfoFrom(r.Context())
	if info == nil {
		info = &Info{}
		r = r.WithContext(WithInfo(r.Context(), info))
	}
	info.start = time.Now()
	info.flusher, _ = w.(http.Flusher)
	if p.opts.Tokens != nil {
		tok, err := p.opts.Tokens.Token()
		if err != nil {
			p.opts.Logger.Error("cannot obtain the upstream token", "error", err.Error())
			p.report(r, info, "token")
			if p.opts.ErrorHeader != nil {
				p.opts.ErrorHeader(w.Header(), err)
			}
			writeError(w, http.StatusBadGateway)
			return
		}
		info.token = tok.AccessToken
	}
	p.rp.ServeHTTP(w, r)
}

// report counts the first failure of an exchange (all hooks run on the
// request's goroutine).
func (p *Proxy) report(r *http.Request, info *Info, reason string) {
	if info.reported {
		return
	}
	info.reported = true
	if p.opts.OnUpstreamError != nil {
		p.opts.OnUpstreamError(r, reason)
	}
}

// Trusted reports whether the TCP peer of r is a trusted proxy.
func (p *Proxy) Trusted(r *http.Request) bool { return Trusted(r, p.opts.TrustedProxies) }

// Trusted reports whether r's TCP peer is within one of prefixes.
func Trusted(r *http.Request, prefixes []netip.Prefix) bool {
	return TrustedAddr(r.RemoteAddr, prefixes)
}

// TrustedAddr reports whether remoteAddr (host:port) is within one of
// prefixes.
func TrustedAddr(remoteAddr string, prefixes []netip.Prefix) bool {
	if len(prefixes) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, pf := range prefixes {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP is the client's address for budgets and logs: the TCP peer, or,
// when the peer is a trusted proxy, the last address in X-Forwarded-For
// that is not itself a trusted proxy.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	return ClientIPOf(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
}

// ClientIPOf is ClientIP for a request whose TCP peer is remoteAddr and
// whose X-Forwarded-For values are xff.
func ClientIPOf(remoteAddr string, xff []string, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if !TrustedAddr(remoteAddr, trusted) {
		return host
	}
	var hops []string
	for _, v := range xff {
		for _, h := range splitComma(v) {
			hops = append(hops, h)
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			return host // garbage: fall back to the peer
		}
		isTrusted := false
		for _, pf := range trusted {
			if pf.Contains(a.Unmap()) {
				isTrusted = true
				break
			}
		}
		if !isTrusted {
			return a.Unmap().String()
		}
	}
	return host
}

func splitComma(s string) []string {
	var out []string
	for len(s) > 0 {
		var part string
		part, s, _ = cut(s, ',')
		if part = trimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func cut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// rewrite builds the outbound request. ReverseProxy has already removed
// hop-by-hop headers and X-Forwarded-For/Host/Proto from pr.Out.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	info := InfoFrom(pr.In.Context())
	trusted := p.Trusted(pr.In)
	pr.SetURL(p.opts.Origin)
	if !p.opts.Transparent {
		pr.Out.URL.RawQuery = ""
		pr.Out.Body = nil // GET/HEAD: nothing to forward
		pr.Out.ContentLength = 0
		pr.Out.TransferEncoding = nil
	}
	h := pr.Out.Header
	if trusted {
		for _, k := range []string{"X-Forwarded-For", "Forwarded"} {
			if v := pr.In.Header[k]; len(v) > 0 {
				h[k] = append([]string(nil), v...)
			}
		}
	} else {
		h.Del("Forwarded")
	}
	pr.SetXForwarded()
	if trusted {
		if v := pr.In.Header.Get("X-Forwarded-Proto"); v != "" {
			h.Set("X-Forwarded-Proto", v)
		}
		if v := pr.In.Header.Get("X-Forwarded-Host"); v != "" {
			h.Set("X-Forwarded-Host", v)
		}
	}
	for k := range h { // any other X-Forwarded-* from an untrusted peer
		if !trusted && len(k) > 12 && k[:12] == "X-Forwarded-" && k != "X-Forwarded-For" && k != "X-Forwarded-Host" && k != "X-Forwarded-Proto" {
			delete(h, k)
		}
	}
	switch {
	case info.User != "":
		h.Set(UserHeader, info.User)
	case !trusted:
		h.Del(UserHeader)
	}
	if !p.opts.Transparent {
		h.Del("Authorization")
		h.Del("Cookie")
	}
	delete(h, PeerTokenHeader) // never a client's, not even with Transparent
	if info.token != "" {
		h.Set("Authorization", "Bearer "+info.token)
	}
	if p.opts.PeerToken != nil {
		if tok := p.opts.PeerToken(); tok != "" {
			h[PeerTokenHeader] = []string{tok}
		}
	}
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	info := InfoFrom(resp.Request.Context())
	info.Upstream = time.Since(info.start)
	if !p.opts.Transparent {
		resp.Header.Del("Set-Cookie")
	}
	if p.cdnPath(strings.TrimPrefix(resp.Request.URL.Path, strings.TrimSuffix(p.opts.Origin.Path, "/"))) &&
		resp.Header["Cdn-Cache-Control"] == nil {
		if id := resp.Header.Get(export.ExportIDHeader); export.ValidExportID(id) {
			resp.Header["Cdn-Cache-Control"] = []string{p.cdn}
			resp.Header["Cache-Tag"] = []string{id}
			resp.Header["Surrogate-Key"] = []string{id}
		}
	}
	if resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &watchedBody{rc: resp.Body, p: p, r: resp.Request, info: info}
	}
	return nil
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	info := InfoFrom(r.Context())
	if r.Context().Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		// The client went away; nobody reads an answer.
		return
	}
	status, reason := classify(err)
	p.opts.Logger.Warn("origin request failed", "path", r.URL.Path, "reason", reason, "error", err.Error())
	p.report(r, info, reason)
	if p.opts.ErrorHeader != nil {
		p.opts.ErrorHeader(w.Header(), err)
	}
	writeError(w, status)
}

// classify maps a failed exchange to the answer (504 for a timeout, else
// 502) and the reason counted in OnUpstreamError.
func classify(err error) (status int, reason string) {
	var oe *net.OpError
	switch {
	case isTimeout(err), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout"
	case errors.As(err, &oe) && oe.Op == "dial":
		return http.StatusBadGateway, "connect"
	}
	return http.StatusBadGateway, "other"
}

func writeError(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	io.WriteString(w, errorBody(status))
}

// errorBody is the JSON body of a 502 or 504 answer.
func errorBody(status int) string {
	if status == http.StatusGatewayTimeout {
		return `{"error":"upstream_timeout","message":"the origin did not answer in time"}` + "\n"
	}
	return `{"error":"upstream_unavailable","message":"the origin could not be reached"}` + "\n"
}

// bufferPool lends ReverseProxy its 32 KiB copy buffers, which it would
// otherwise allocate (and zero) for every response.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }

// watchedBody reports the first read error of an origin response body
// other than io.EOF (a reset, or the idle deadline of deadlineConn). It
// also flushes what the proxy has written before every read but the
// first: the client gets the response headers and each chunk before the
// next one is waited for (a fill streaming from a slow origin reaches its
// clients as it arrives), while a body that is all there (a cache hit)
// costs no extra write, as the proxy writes it in one piece anyway.
type watchedBody struct {
	rc   io.ReadCloser
	p    *Proxy
	r    *http.Request
	info *Info
	read bool
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.read && b.info.flusher != nil {
		b.info.flusher.Flush()
	}
	b.read = true
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF && !b.info.reported {
		b.p.opts.Logger.Warn("origin response body failed", "path", b.r.URL.Path, "error", err.Error())
		b.p.report(b.r, b.info, "body")
	}
	return n, err
}

func (b *watchedBody) Close() error { return b.rc.Close() }

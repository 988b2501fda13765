// Package upstream is the mirrorsync source for an upstream Stella Ops
// mirror over HTTPS: another stella-mirror origin or gateway, or any
// server honouring the mirror contract. It reads the Concelier index
// (/concelier/exports/index.json, or the configured path), each domain's
// manifest, bundle and bundle.json.jws, and each domain's Excititor index,
// exports and signatures.
//
// Export-pinned URLs: the unversioned index names the export the upstream
// serves now (its exportId); every Concelier file of the run is then
// fetched by its pinned URL, /concelier/exports/{exportId}/index.json and
// /concelier/exports/{exportId}/mirror/{domain}/…, so a switch upstream in
// the middle of a run cannot mix two exports: the run completes the export
// whose index it read. The pinned index is read right after the unversioned
// one and is the index the run uses (it is the one that describes the
// pinned files; the two differ only when the export was replaced in place
// between the two requests). Excititor exports are pinned by their
// exportKey already (its bytes never change across exports).
//
// An upstream without pinned URLs (the pinned index answers 404) is synced
// from the unversioned URLs as before, with one warning per run; a switch
// upstream during such a run fails it (X-Stella-Export-Id or a digest
// disagrees) and the next run picks the new export up.
//
// Requests go through go-retryablehttp: connection errors, 429 and 5xx are
// retried with exponential backoff, and a Retry-After on 429 or 503 is
// honoured (capped by Options.RetryAfterMax). Every request has a
// per-request timeout for the response headers and for any stall of the
// body; a large bundle may take as long as it needs while bytes flow.
//
// An interrupted download resumes (mirrorsync.RangeOpener) with a Range
// request guarded by If-Range with the first response's strong ETag (else
// its Last-Modified): a 206 must start where asked (Content-Range is
// checked), a 200 (a server ignoring Range, or a file changed since)
// restarts from 0. Readers report the
// file's size (Content-Length, Content-Range), so a file larger than the
// index declares is refused before its body is read.
//
// Credentials (Basic from a user:password file, or a bearer token from a
// file) are sent on every request and never logged. http:// is accepted
// only for loopback addresses (labs and tests).
//
// What it is not: it does not verify anything (the engine does) and does
// not follow exports the upstream no longer serves: it syncs the export the
// upstream's index names when the run starts.
package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/httprange"
	"github.com/stella-ops/stella-mirror/internal/loopname"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

var (
	_ mirrorsync.Source      = (*Source)(nil)
	_ mirrorsync.RangeOpener = (*Source)(nil)
)

// Defaults of Options.
const (
	DefaultIndexPath     = "/concelier/exports/index.json"
	DefaultTimeout       = 30 * time.Second
	DefaultRetryMax      = 4
	DefaultRetryWaitMin  = time.Second
	DefaultRetryWaitMax  = 30 * time.Second
	DefaultRetryAfterMax = 2 * time.Minute
)

// ExportIDHeader names the export a response came from.
const ExportIDHeader = export.ExportIDHeader

// concelierPrefix is where the Concelier files are served, unversioned
// (prefix + rel) and pinned (prefix + exportId + "/" + rel).
const concelierPrefix = export.ConcelierURLPrefix

// PinnedIndexPath returns the export-pinned URL path of export id's index.
func PinnedIndexPath(id string) string { return export.PinnedIndexURL(id) }

// Options configure a Source. The zero value of every field means the
// default written beside it.
type Options struct {
	// BaseURL is the upstream mirror, e.g. https://mirror.example.org.
	// Required; http:// only for loopback hosts.
	BaseURL string
	// IndexPath is the path of the Concelier index. Default:
	// /concelier/exports/index.json.
	IndexPath string
	// Timeout bounds waiting for response headers and any stall while
	// reading a body. Default: 30s.
	Timeout time.Duration
	// BasicAuthFile holds "user:password" for Basic authentication.
	// Default: none.
	BasicAuthFile string
	// BearerTokenFile holds a bearer token. Default: none. At most one of
	// BasicAuthFile and BearerTokenFile may be set.
	BearerTokenFile string
	// CAFile is a PEM bundle of extra trusted CA certificates. Default:
	// the system roots only.
	CAFile string
	// RetryMax is how many times a failed request is retried. Default: 4.
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound the exponential backoff.
	// Defaults: 1s and 30s.
	RetryWaitMin, RetryWaitMax time.Duration
	// RetryAfterMax caps how long a Retry-After is honoured. Default: 2m.
	RetryAfterMax time.Duration
	// Logger receives retry messages; nil discards them.
	Logger *slog.Logger
}

// Source reads exports from an upstream mirror.
type Source struct {
	base      *url.URL
	indexPath string
	timeout   time.Duration
	auth      string // Authorization header value; "" for none
	client    *retryablehttp.Client

	log *slog.Logger

	mu      sync.Mutex
	indexID string
	index   []byte
	domains []string
	// pinned is true when the upstream serves indexID by pinned URLs.
	pinned bool
}

// New validates opts and returns the source.
func New(opts Options) (*Source, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("upstream URL %q: not an absolute URL", opts.BaseURL)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return nil, fmt.Errorf("upstream URL %q: http:// is accepted only for loopback hosts; use https://", opts.BaseURL)
	default:
		return nil, fmt.Errorf("upstream URL %q: scheme must be https", opts.BaseURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("upstream URL: put credentials in a file (--basic-auth-file), not in the URL")
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	s := &Source{base: u, indexPath: opts.IndexPath, timeout: opts.Timeout, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.indexPath == "" {
		s.indexPath = DefaultIndexPath
	}
	if !strings.HasPrefix(s.indexPath, "/") {
		return nil, fmt.Errorf("index path %q: must start with /", s.indexPath)
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.auth, err = authHeader(opts.BasicAuthFile, opts.BearerTokenFile); err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates found", opts.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: s.timeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                 loopname.NoProxy(http.ProxyFromEnvironment),
		DialContext:           loopname.Wrap(dialer.DialContext), // *.localhost is loopback (RFC 6761)
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   s.timeout,
		ResponseHeaderTimeout: s.timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Transport: transport, CheckRedirect: CheckRedirect}
	c.RetryMax = orInt(opts.RetryMax, DefaultRetryMax)
	c.RetryWaitMin = orDur(opts.RetryWaitMin, DefaultRetryWaitMin)
	c.RetryWaitMax = orDur(opts.RetryWaitMax, DefaultRetryWaitMax)
	after := orDur(opts.RetryAfterMax, DefaultRetryAfterMax)
	c.Backoff = func(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
		return Backoff(min, max, after, attempt, resp)
	}
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	if opts.Logger != nil {
		c.Logger = retryLogger{opts.Logger}
	} else {
		c.Logger = nil
	}
	s.client = c
	return s, nil
}

// CheckRedirect is the redirect policy of the clients sync uses (the
// upstream mirror and the key registry), for http.Client.CheckRedirect:
// at most 10 redirects, followed only to https://, or to http:// on a
// loopback host from an http:// loopback URL. A downgrade would send the
// credentials (Go keeps Authorization for the same host whatever the
// scheme), the data or the trusted keys in clear text, and bypass the
// loopback-only rule of http:// URLs.
func CheckRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	switch {
	case req.URL.Scheme == "https":
	case req.URL.Scheme == "http" && isLoopback(req.URL.Hostname()) && via[0].URL.Scheme == "http":
	default:
		return fmt.Errorf("refusing the redirect from %s to %s: redirects are followed to https:// only, or to http:// between loopback hosts (credentials and data would travel in clear text)",
			via[len(via)-1].URL.Redacted(), req.URL.Redacted())
	}
	return nil
}

// Backoff is the wait before retry attempt: the Retry-After of a 429 or
// 503 (capped at afterMax), else exponential between min and max.
func Backoff(min, max, afterMax time.Duration, attempt int, resp *http.Response) time.Duration {
	d := retryablehttp.DefaultBackoff(min, max, attempt, resp)
	if resp != nil && resp.Header.Get("Retry-After") != "" && d > afterMax {
		d = afterMax
	}
	return d
}

// retryLogger adapts slog to retryablehttp, at debug level except errors.
type retryLogger struct{ l *slog.Logger }

func (r retryLogger) Error(msg string, kv ...any) { r.l.Warn("upstream: "+msg, kv...) }
func (r retryLogger) Info(msg string, kv ...any)  { r.l.Debug("upstream: "+msg, kv...) }
func (r retryLogger) Debug(msg string, kv ...any) { r.l.Debug("upstream: "+msg, kv...) }
func (r retryLogger) Warn(msg string, kv ...any)  { r.l.Info("upstream: "+msg, kv...) }

func orInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

func orDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

func isLoopback(host string) bool {
	if loopname.Is(host) { // localhost and *.localhost: dialled on loopback only
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authHeader builds the Authorization value from the credential files.
func authHeader(basicFile, bearerFile string) (string, error) {
	switch {
	case basicFile != "" && bearerFile != "":
		return "", errors.New("give either a Basic credentials file or a bearer token file, not both")
	case basicFile != "":
		data, err := os.ReadFile(basicFile)
		if err != nil {
			return "", fmt.Errorf("basic auth file: %w", err)
		}
		cred := strings.TrimRight(string(data), "\r\n")
		if !strings.Contains(cred, ":") || strings.ContainsAny(cred, "\r\n") {
			return "", fmt.Errorf("basic auth file %s: want one line user:password", basicFile)
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(cred)), nil
	case bearerFile != "":
		data, err := os.ReadFile(bearerFile)
		if err != nil {
			return "", fmt.Errorf("bearer token file: %w", err)
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			return "", fmt.Errorf("bearer token file %s: want one token on one line", bearerFile)
		}
		return "Bearer " + tok, nil
	}
	return "", nil
}

// String returns the base URL (credentials never appear in it).
func (s *Source) String() string { return s.base.String() }

// Resolve fetches the index, then the pinned index of the export it names,
// and returns that export. Without pinned URLs upstream (404) the run
// falls back to the unversioned URLs, with one warning.
func (s *Source) Resolve(ctx context.Context) (string, error) {
	data, hdrID, err := s.get(ctx, s.indexPath)
	if err != nil {
		return "", err
	}
	ix, err := export.ParseIndex(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.indexPath, err)
	}
	if hdrID != "" && hdrID != ix.ExportID {
		return "", fmt.Errorf("%s: %s is %q but the index names %q", s.indexPath, ExportIDHeader, hdrID, ix.ExportID)
	}
	id := ix.ExportID
	if !export.ValidExportID(id) {
		return "", fmt.Errorf("%s: exportId %q is not a valid export id", s.indexPath, id)
	}
	pinned := false
	pp := PinnedIndexPath(id)
	pdata, phdr, err := s.get(ctx, pp)
	switch {
	case err == nil:
		pix, err := export.ParseIndex(pdata)
		if err != nil {
			return "", fmt.Errorf("%s: %w", pp, err)
		}
		if pix.ExportID != id || phdr != "" && phdr != id {
			return "", fmt.Errorf("%s: the pinned index of export %q names export %q (%s %q)", pp, id, pix.ExportID, ExportIDHeader, phdr)
		}
		if !bytes.Equal(pdata, data) {
			s.log.Info("upstream: the pinned index differs from the unversioned one (export replaced in place); using the pinned one",
				"export_id", id)
		}
		data, ix, pinned = pdata, pix, true
	case errors.Is(err, fs.ErrNotExist):
		s.log.Warn("upstream has no export-pinned URLs; fetching the unversioned URLs (a switch upstream during this run fails it, and the next run retries)",
			"upstream", s.base.Redacted(), "export_id", id, "pinned_index", pp)
	default:
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.indexID, s.index, s.pinned = id, data, pinned
	s.domains = s.domains[:0]
	for _, d := range ix.Domains {
		s.domains = append(s.domains, d.DomainID)
	}
	return id, nil
}

// Pinned reports whether the last Resolve found export-pinned URLs.
func (s *Source) Pinned() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pinned
}

// get fetches a small document whole.
func (s *Source) get(ctx context.Context, p string) ([]byte, string, error) {
	body, id, err := s.open(ctx, p)
	if err != nil {
		return nil, "", err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, 32<<20))
	return data, id, err
}

// CloseIdleConnections closes the idle keep-alive connections of the
// source's HTTP client, so a process that builds a source per run (sync
// --every) holds no connection of a finished run.
func (s *Source) CloseIdleConnections() { s.client.HTTPClient.CloseIdleConnections() }

// Open fetches file rel of export id.
func (s *Source) Open(ctx context.Context, id, rel string) (io.ReadCloser, error) {
	if rel == export.IndexPath {
		s.mu.Lock()
		data, ixID := s.index, s.indexID
		s.mu.Unlock()
		if ixID == id {
			return io.NopCloser(strings.NewReader(string(data))), nil
		}
		return nil, fmt.Errorf("the upstream serves export %q, not %q", ixID, id)
	}
	p, err := s.filePath(id, rel)
	if err != nil {
		return nil, err
	}
	resp, err := s.do(ctx, p, nil)
	if err != nil {
		return nil, err
	}
	if err := checkExportID(p, resp, id); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp.Body, nil
}

// OpenFrom fetches file rel of export id from offset on with a Range
// request. validator, the strong ETag or Last-Modified of the first
// transfer, goes in If-Range: a
// file changed since then comes whole (200), as from a server that
// ignores Range; start is then 0. A 206 whose Content-Range does not
// start at offset is an error. A 416 (the file is shorter than offset
// now) is answered by fetching the whole file.
func (s *Source) OpenFrom(ctx context.Context, id, rel string, offset int64, validator string) (io.ReadCloser, int64, error) {
	if rel == export.IndexPath || offset <= 0 {
		rc, err := s.Open(ctx, id, rel)
		return rc, 0, err
	}
	p, err := s.filePath(id, rel)
	if err != nil {
		return nil, 0, err
	}
	h := http.Header{"Range": {fmt.Sprintf("bytes=%d-", offset)}}
	if _, err := http.ParseTime(validator); err == nil || isStrongETag(validator) {
		h.Set("If-Range", validator)
	}
	resp, err := s.do(ctx, p, h)
	var rs *statusError
	if errors.As(err, &rs) && rs.code == http.StatusRequestedRangeNotSatisfiable {
		rc, err := s.Open(ctx, id, rel)
		return rc, 0, err
	}
	if err != nil {
		return nil, 0, err
	}
	if err := checkExportID(p, resp, id); err != nil {
		resp.Body.Close()
		return nil, 0, err
	}
	if resp.status == http.StatusOK {
		return resp.Body, 0, nil
	}
	cr, err := httprange.Parse(resp.contentRange)
	if err == nil && cr.First != offset {
		err = fmt.Errorf("asked for the bytes from %d on, got Content-Range %q", offset, resp.contentRange)
	}
	if err != nil {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("GET %s: 206: %w (%w)", p, err, mirrorsync.ErrBadRange)
	}
	resp.Body.size = cr.Complete
	return resp.Body, cr.First, nil
}

// filePath is the URL path of file rel of export id: pinned when the
// upstream serves pinned URLs for the resolved export.
func (s *Source) filePath(id, rel string) (string, error) {
	s.mu.Lock()
	pinned := s.pinned && s.indexID == id
	s.mu.Unlock()
	p, err := urlPath(rel)
	if err != nil {
		return "", err
	}
	if pinned && strings.HasPrefix(p, concelierPrefix) {
		if !export.ValidExportID(id) {
			return "", fmt.Errorf("export %q: not a valid export id", id)
		}
		p = concelierPrefix + id + "/" + rel
	}
	return p, nil
}

// checkExportID refuses a response from another export than id.
func checkExportID(p string, resp *response, id string) error {
	if resp.exportID != "" && resp.exportID != id {
		return fmt.Errorf("%s: the upstream switched to export %q during the run (syncing %q); the next run picks it up", p, resp.exportID, id)
	}
	return nil
}

// isStrongETag reports whether v is a strong entity tag, the only kind
// If-Range accepts.
func isStrongETag(v string) bool {
	return len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"'
}

// ExcititorDomains returns the domains of the upstream's index; a domain
// without Excititor data answers 404 and is skipped.
func (s *Source) ExcititorDomains(ctx context.Context, id string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.indexID != id {
		return nil, fmt.Errorf("the upstream serves export %q, not %q", s.indexID, id)
	}
	return append([]string(nil), s.domains...), nil
}

// urlPath maps a path of the export layout to the mirror contract's URL.
func urlPath(rel string) (string, error) {
	if err := export.ValidateRelPath(rel); err != nil {
		return "", err
	}
	parts := strings.Split(rel, "/")
	switch {
	case len(parts) == 3 && parts[0] == "mirror" &&
		(parts[2] == export.ManifestName || parts[2] == export.BundleName || parts[2] == export.BundleSignatureName):
		return concelierPrefix + rel, nil
	case len(parts) == 3 && parts[0] == "excititor" && parts[2] == "index.json":
		return "/excititor/mirror/" + parts[1] + "/index", nil
	case len(parts) == 4 && parts[0] == "excititor" && parts[2] == "exports":
		if key, ok := strings.CutSuffix(parts[3], export.SignatureSuffix); ok {
			return "/excititor/mirror/" + parts[1] + "/export/" + key + "/signature", nil
		}
		return "/excititor/mirror/" + parts[1] + "/export/" + parts[3], nil
	}
	return "", fmt.Errorf("%s: no upstream URL for this path", rel)
}

// open issues a GET for p and returns its body, guarded by the stall
// timeout, and the response's export id header.
func (s *Source) open(ctx context.Context, p string) (io.ReadCloser, string, error) {
	resp, err := s.do(ctx, p, nil)
	if err != nil {
		return nil, "", err
	}
	return resp.Body, resp.exportID, nil
}

// response is what do returns of a successful GET.
type response struct {
	Body         *stallReader
	status       int
	exportID     string
	contentRange string
}

// statusError is the error of a request answered with a status do does
// not accept.
type statusError struct {
	url  string
	code int
	text string
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s: %s", e.url, e.text) }

// do issues a GET for p with the extra headers hdr. 200 is accepted, and
// 206 when hdr asks for a range; 404 is fs.ErrNotExist.
func (s *Source) do(ctx context.Context, p string, hdr http.Header) (*response, error) {
	u := *s.base
	u.Path = s.base.Path + p
	ctx, cancel := context.WithCancel(ctx)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusPartialContent && hdr.Get("Range") != "":
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET %s: 404: %w", u.Redacted(), fs.ErrNotExist)
	default:
		resp.Body.Close()
		cancel()
		return nil, &statusError{url: u.Redacted(), code: resp.StatusCode, text: resp.Status}
	}
	body := newStallReader(resp.Body, s.timeout, cancel)
	body.size = resp.ContentLength
	if resp.StatusCode == http.StatusOK && resp.Uncompressed {
		body.size = -1
	}
	// The validator If-Range takes: a strong ETag, else Last-Modified.
	if body.etag = resp.Header.Get("ETag"); !isStrongETag(body.etag) {
		body.etag = resp.Header.Get("Last-Modified")
	}
	return &response{Body: body, status: resp.StatusCode, exportID: resp.Header.Get(ExportIDHeader),
		contentRange: resp.Header.Get("Content-Range")}, nil
}

// stallReader cancels its request when no byte arrives for timeout.
type stallReader struct {
	body    io.ReadCloser
	timeout time.Duration
	timer   *time.Timer
	cancel  context.CancelFunc
	// size is the whole file's size (Content-Length of a 200, the
	// complete length of a 206's Content-Range); -1 when unknown.
	size int64
	etag string
}

// Size returns the file's size at the upstream, -1 when unknown
// (mirrorsync.Sizer).
func (r *stallReader) Size() int64 { return r.size }

// Validator returns the response's strong ETag, else its Last-Modified
// (mirrorsync.Validator); "" when it had neither.
func (r *stallReader) Validator() string { return r.etag }

func newStallReader(body io.ReadCloser, timeout time.Duration, cancel context.CancelFunc) *stallReader {
	return &stallReader{body: body, timeout: timeout, cancel: cancel, timer: time.AfterFunc(timeout, cancel)}
}

func (r *stallReader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if n > 0 {
		r.timer.Reset(r.timeout)
	}
	return n, err
}

func (r *stallReader) Close() error {
	r.timer.Stop()
	err := r.body.Close()
	r.cancel()
	return err
}

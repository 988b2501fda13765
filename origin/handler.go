package origin

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/httprec"
)

// Shared header values. Handlers assign these slices directly to header
// maps (canonical keys) so the hot path builds no strings; net/http never
// modifies them.
var (
	hdrJSON         = []string{"application/json"}
	hdrJOSE         = []string{"application/jose"}
	hdrNoSniff      = []string{"nosniff"}
	hdrCacheIndex   = []string{"public, max-age=60"}
	hdrCacheImmut   = []string{"public, max-age=300, immutable"}
	hdrNoStore      = []string{"no-store"}
	hdrAcceptRanges = []string{"bytes"}
	hdrAllow        = []string{"GET, HEAD"}
)

// httpError carries the status and JSON body a failure is answered with to
// the handler boundary. msg is shown to the client; err (the detail, with
// paths) only to the log.
type httpError struct {
	status int
	code   string // JSON "error"
	msg    string // JSON "message"
	err    error  // detail for the log
	warn   bool   // log a 404 at warn level (refused traversal)
	// exportID is the JSON "exportId": the (sanitized) id of a pinned URL
	// that names no export held here.
	exportID string
	header   http.Header
}

func (e *httpError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *httpError) Unwrap() error { return e.err }

func notFound(msg string, err error) *httpError {
	return &httpError{status: http.StatusNotFound, code: "not_found", msg: msg, err: err}
}

func unavailable(msg string, err error) *httpError {
	return &httpError{status: http.StatusServiceUnavailable, code: "export_unavailable", msg: msg, err: err}
}

func internalError(err error) *httpError {
	return &httpError{status: http.StatusInternalServerError, code: "internal", msg: "internal error", err: err}
}

var errMethod = &httpError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
	msg: "only GET and HEAD are allowed", header: http.Header{"Allow": hdrAllow}}

// recorder is the origin's response recorder: status and body size (with
// ReadFrom passed through for sendfile) plus the client identity from the
// Authorizer, for the access log.
type recorder struct {
	httprec.Recorder
	client string // identity from the Authorizer, for the access log
}

// listeners says which listeners serve a route.
type listeners uint8

const (
	onPublic listeners = 1 << iota // the public listener (Handler)
	onAdmin                        // the admin listener (AdminHandler)
)

// route is one row of the origin's route table.
type route struct {
	path    string // gorilla/mux template, matched on the encoded path
	handler http.Handler
	on      listeners
}

// routeTable lists every route of both listeners once: the export routes
// (unversioned and export-pinned) on the public listener, health on both,
// metrics on the admin listener only. No two export routes match the same
// path: a pinned path has one more segment than its unversioned twin, and
// the ids that would make `/concelier/exports/mirror/…` or
// `/concelier/exports/index.json/…` ambiguous are reserved
// (export.ReservedExportIDs).
func (o *Origin) routeTable() []route {
	c, x := o.products[0], o.products[1]
	table := []route{
		{"/concelier/exports/index.json", o.exportRoute(c, "concelier", epIndex), onPublic},
		{"/concelier/exports/mirror/{domain}/manifest.json", o.exportRoute(c, "concelier", epManifest), onPublic},
		{"/concelier/exports/mirror/{domain}/bundle.json", o.exportRoute(c, "concelier", epBundle), onPublic},
		{"/concelier/exports/mirror/{domain}/bundle.json.jws", o.exportRoute(c, "concelier", epBundleSignature), onPublic},
		{"/concelier/exports/{exportId}/index.json", o.exportRoute(c, "concelier", epPinnedIndex), onPublic},
		{"/concelier/exports/{exportId}/mirror/{domain}/manifest.json", o.exportRoute(c, "concelier", epPinnedManifest), onPublic},
		{"/concelier/exports/{exportId}/mirror/{domain}/bundle.json", o.exportRoute(c, "concelier", epPinnedBundle), onPublic},
		{"/concelier/exports/{exportId}/mirror/{domain}/bundle.json.jws", o.exportRoute(c, "concelier", epPinnedBundleSignature), onPublic},
		{"/excititor/mirror/{domain}/index", o.exportRoute(x, "excititor", epExcititorIndex), onPublic},
		{"/excititor/mirror/{domain}/export/{exportKey}", o.exportRoute(x, "excititor", epExcititorExport), onPublic},
		{"/excititor/mirror/{domain}/export/{exportKey}/signature", o.exportRoute(x, "excititor", epExcititorSignature), onPublic},
		{"/health/live", o.plainRoute(epLive, o.serveLive), onPublic | onAdmin},
		{"/health/ready", o.plainRoute(epReady, o.serveReady), onPublic | onAdmin},
	}
	if o.gatherer != nil {
		ph := promhttp.HandlerFor(o.gatherer, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(o.logger.Handler(), slog.LevelError),
			ErrorHandling: promhttp.ContinueOnError,
		})
		table = append(table, route{"/metrics", o.plainRoute(epMetrics, func(w http.ResponseWriter, r *http.Request) error {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				return errMethod
			}
			ph.ServeHTTP(w, r)
			return nil
		}), onAdmin})
	}
	return table
}

// routes builds the public and admin routers from the route table.
func (o *Origin) routes() (public, admin http.Handler) {
	table := o.routeTable()
	unmatched := o.plainRoute(epUnmatched, func(http.ResponseWriter, *http.Request) error {
		return notFound("not found", nil)
	})
	build := func(on listeners) http.Handler {
		m := mux.NewRouter()
		// Match on the encoded path and never "clean" it: mux's 301
		// redirect to a cleaned path must not turn ../ or %2e%2e into a
		// different request. Variables therefore stay percent-encoded and
		// any '%' fails the id checks.
		m.UseEncodedPath()
		m.SkipClean(true)
		for _, rt := range table {
			if rt.on&on != 0 {
				m.Handle(rt.path, rt.handler)
			}
		}
		m.NotFoundHandler = unmatched
		return m
	}
	return build(onPublic), build(onAdmin)
}

// exportRoute is the handler of one export-backed endpoint. p is nil when
// the product is disabled.
type exportRoute struct {
	o       *Origin
	p       *product
	name    string   // product name
	ep      endpoint // the file served, the authorization and budget: an unversioned endpoint
	pinned  bool     // the export is named by the path's {exportId}, not the active one
	label   endpoint // metrics and logs: ep, or its pinned twin
	cc      []string // Cache-Control of the pinned files; nil: by file
	metrics *endpointMetrics
}

func (o *Origin) exportRoute(p *product, name string, ep endpoint) *exportRoute {
	h := &exportRoute{o: o, p: p, name: name, ep: ep.twin(), pinned: ep.pinned(), label: ep,
		metrics: o.metrics.forEndpoint(name, ep)}
	if h.pinned {
		h.cc = hdrCachePinned
	}
	return h
}

func (h *exportRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{Recorder: httprec.Recorder{ResponseWriter: w}}
	var exportID string
	if err := h.serve(rec, r, &exportID); err != nil {
		h.o.writeError(rec, r, err, h.name, h.label, exportID)
	}
	h.o.finish(rec, r, start, h.metrics, exportID, slog.LevelInfo)
}

// serve answers one request from exactly one export: resolved once, every
// byte read through that export's root.
func (h *exportRoute) serve(w http.ResponseWriter, r *http.Request, exportID *string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod
	}
	if h.p == nil {
		return notFound("not found", errors.New("the "+h.name+" mirror is not enabled"))
	}
	var domain, key, pinnedID string
	var vars map[string]string
	if h.pinned || h.ep != epIndex {
		vars = mux.Vars(r)
	}
	if h.pinned {
		// Still percent-encoded (the router matches the encoded path), so
		// an encoded traversal fails here like a plain one; so do hidden
		// and staging directories and the reserved ids.
		pinnedID = vars["exportId"]
		if !export.ValidExportID(pinnedID) {
			return exportNotFound(pinnedID, errors.New("invalid export id "+strconv.Quote(pinnedID)))
		}
	}
	if h.ep != epIndex {
		domain = vars["domain"]
		if !export.ValidDomainID(domain) {
			return notFound("not found", errors.New("invalid domain id "+strconv.Quote(domain)))
		}
		if h.ep == epExcititorExport || h.ep == epExcititorSignature {
			key = vars["exportKey"]
			if !export.ValidExportKey(key) {
				return notFound("not found", errors.New("invalid export key "+strconv.Quote(key)))
			}
		}
	}
	a := h.access(domain)
	a.ExportID = pinnedID
	if d := h.o.authorize(w, r, a); d != nil {
		return &httpError{status: d.Status, code: d.Code, msg: d.Message, header: d.Header}
	}
	if domain != "" && !h.p.configured(domain) {
		return notFound("unknown domain", errors.New("domain "+strconv.Quote(domain)+" is not configured"))
	}
	var st *exportState
	var err error
	if h.pinned {
		st, err = h.p.held(pinnedID)
	} else {
		st, err = h.p.acquire()
	}
	if err != nil {
		return err
	}
	defer st.release()
	*exportID = st.id
	w.Header()[export.ExportIDHeader] = st.idHeader
	f, err := h.file(st, domain, key)
	if err != nil {
		return err
	}
	if h.cc != nil {
		f.cc = h.cc
	}
	if f.data != nil {
		serveSmall(w, r, f.data, f.ct, f.cc)
		return nil
	}
	return st.serveEntry(w, r, f.entry, f.ct, f.cc)
}

// access is what the Authorizer is asked for a request of this route.
func (h *exportRoute) access(domain string) Access {
	return Access{Product: h.name, Endpoint: h.ep.String(), Domain: domain,
		RequireAuthentication: h.p.requiresAuth(domain)}
}

// routeFile is the file a request names in an export: data for the
// indexes (always in memory), entry for the other files.
type routeFile struct {
	data   *fileData
	entry  *fileEntry
	ct, cc []string // Content-Type, Cache-Control
}

// file finds the file of this route for domain (and key) in st.
func (h *exportRoute) file(st *exportState, domain, key string) (routeFile, error) {
	switch h.ep {
	case epIndex:
		return routeFile{data: st.index, ct: hdrJSON, cc: hdrCacheIndex}, nil
	case epManifest, epBundle, epBundleSignature:
		d := st.concelier[domain]
		if d == nil {
			return routeFile{}, notFound("unknown domain", errors.New("domain "+strconv.Quote(domain)+" is not in export "+st.id))
		}
		switch h.ep {
		case epManifest:
			return routeFile{entry: d.manifest, ct: hdrJSON, cc: hdrCacheImmut}, nil
		case epBundle:
			return routeFile{entry: d.bundle, ct: hdrJSON, cc: hdrCacheImmut}, nil
		default:
			return routeFile{entry: d.signature, ct: hdrJOSE, cc: hdrCacheImmut}, nil
		}
	default:
		d := st.excititor[domain]
		if d == nil {
			return routeFile{}, notFound("unknown domain", errors.New("domain "+strconv.Quote(domain)+" is not in export "+st.id))
		}
		if d.err != nil {
			return routeFile{}, unavailable("the domain's index is malformed", d.err)
		}
		if h.ep == epExcititorIndex {
			return routeFile{data: d.index, ct: hdrJSON, cc: hdrCacheIndex}, nil
		}
		x := d.exports[key]
		if x == nil {
			return routeFile{}, notFound("unknown export key", errors.New("export key "+strconv.Quote(key)+" is not in domain "+domain+" of export "+st.id))
		}
		if h.ep == epExcititorExport {
			return routeFile{entry: x.file, ct: x.contentType, cc: hdrCacheImmut}, nil
		}
		return routeFile{entry: x.sig, ct: hdrJOSE, cc: hdrCacheImmut}, nil
	}
}

// serveEntry serves a file of the export: small files from memory, large
// ones from the *os.File (http.ServeContent → io.Copy → sendfile).
func (st *exportState) serveEntry(w http.ResponseWriter, r *http.Request, e *fileEntry, ct, cc []string) error {
	fd, err := st.file(e)
	if err != nil {
		return err
	}
	if fd.body != nil {
		serveSmall(w, r, fd, ct, cc)
		return nil
	}
	f, err := st.openLarge(e, fd)
	if err != nil {
		return err
	}
	defer f.Close()
	setContentHeaders(w.Header(), fd, ct, cc)
	http.ServeContent(w, r, "", fd.modTime, f)
	return nil
}

func setContentHeaders(h http.Header, fd *fileData, ct, cc []string) {
	h["Content-Type"] = ct
	h["Cache-Control"] = cc
	h["Etag"] = fd.etag
	h["X-Content-Type-Options"] = hdrNoSniff
}

// serveSmall serves an in-memory file. A plain GET or HEAD (no validators,
// no Range) is answered directly with prebuilt headers; everything else
// goes through http.ServeContent for RFC 9110 conditionals and ranges.
func serveSmall(w http.ResponseWriter, r *http.Request, fd *fileData, ct, cc []string) {
	h := w.Header()
	setContentHeaders(h, fd, ct, cc)
	if isPlain(r.Header) {
		h["Last-Modified"] = fd.lastModified
		h["Content-Length"] = fd.contentLength
		h["Accept-Ranges"] = hdrAcceptRanges
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(fd.body)
		}
		return
	}
	http.ServeContent(w, r, "", fd.modTime, bytes.NewReader(fd.body))
}

// conditional are the request fields that need http.ServeContent
// (RFC 9110 conditionals and ranges; If-Range means nothing without Range).
var conditional = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "Range"}

// isPlain reports whether a request carries none of the conditional fields.
func isPlain(h http.Header) bool {
	for _, k := range conditional {
		if len(h[k]) > 0 {
			return false
		}
	}
	return true
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	// ExportID names the export a pinned URL asked for when this origin
	// does not hold it (error "export_not_found").
	ExportID string `json:"exportId,omitempty"`
}

// writeError answers err as JSON and logs it.
func (o *Origin) writeError(w http.ResponseWriter, r *http.Request, err error, product string, ep endpoint, exportID string) {
	var he *httpError
	if !errors.As(err, &he) {
		he = internalError(err)
	}
	level, msg := slog.LevelInfo, "request failed"
	switch {
	case he.status >= 500:
		level = slog.LevelError
		if he.code == "export_unavailable" {
			msg = "export unavailable"
		}
	case he.status == http.StatusNotFound:
		msg = "not found"
		if he.warn {
			level = slog.LevelWarn
		}
	case he.status == http.StatusUnauthorized || he.status == http.StatusForbidden || he.status == http.StatusTooManyRequests:
		msg = "request denied"
	case he.status == http.StatusMethodNotAllowed:
		msg = "method not allowed"
	}
	if o.logger.Enabled(r.Context(), level) {
		attrs := []slog.Attr{
			slog.Int("status", he.status),
			slog.String("product", product),
			slog.String("endpoint", ep.String()),
			slog.String("method", r.Method),
			slog.String("path", r.URL.EscapedPath()),
			slog.String("reason", he.msg),
		}
		if exportID != "" {
			attrs = append(attrs, slog.String("export_id", exportID))
		}
		if he.err != nil {
			attrs = append(attrs, slog.String("error", he.err.Error()))
		}
		o.logger.LogAttrs(r.Context(), level, msg, attrs...)
	}
	body, _ := json.Marshal(errorBody{Error: he.code, Message: he.msg, ExportID: he.exportID})
	body = append(body, '\n')
	h := w.Header()
	for k, v := range he.header {
		h[k] = v
	}
	h["Content-Type"] = hdrJSON
	h["X-Content-Type-Options"] = hdrNoSniff
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(he.status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// finish records metrics and the access log line of a request. Health and
// metrics requests log at debug so probes do not flood the log.
func (o *Origin) finish(rec *recorder, r *http.Request, start time.Time, m *endpointMetrics, exportID string, level slog.Level) {
	status := rec.Status
	if status == 0 {
		status = http.StatusOK
	}
	o.record(served{method: r.Method, path: r.URL.EscapedPath(), remote: r.RemoteAddr, userAgent: r.UserAgent(),
		client: rec.client, exportID: exportID, status: status, bytes: rec.Bytes}, start, m, level)
}

// served is one answered request, for the access log and the metrics.
type served struct {
	method, path, remote, userAgent string
	client, exportID                string
	status                          int
	bytes                           int64
}

// record counts s in m and writes its access log line (at level Info and
// above).
func (o *Origin) record(s served, start time.Time, m *endpointMetrics, level slog.Level) {
	d := time.Since(start)
	m.observe(s.status, s.bytes, d)
	if o.access == nil || level < slog.LevelInfo {
		return
	}
	ln := o.access.Start("request").
		Str("method", s.method).
		Str("path", s.path).
		Int("status", int64(s.status)).
		Int("bytes", s.bytes).
		Millis("duration_ms", d).
		Str("remote", s.remote)
	if s.client != "" {
		ln.Str("client", s.client)
	}
	if s.exportID != "" {
		ln.Str("export_id", s.exportID)
	}
	o.access.Write(ln.
		Str("product", m.product).
		Str("endpoint", m.endpoint).
		Str("user_agent", s.userAgent))
}

// plainRoute wraps a handler that is not export-backed (health, metrics,
// unmatched paths) with metrics and the access log.
func (o *Origin) plainRoute(ep endpoint, fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	m := o.metrics.forEndpoint(productNone, ep)
	level := slog.LevelDebug
	if ep == epUnmatched {
		level = slog.LevelInfo
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{Recorder: httprec.Recorder{ResponseWriter: w}}
		if err := fn(rec, r); err != nil {
			o.writeError(rec, r, err, productNone, ep, "")
		}
		o.finish(rec, r, start, m, "", level)
	})
}

var liveBody = []byte(`{"status":"live"}` + "\n")

func (o *Origin) serveLive(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod
	}
	writeJSON(w, r, http.StatusOK, liveBody)
	return nil
}

// readyBody is the /health/ready answer.
type readyBody struct {
	Status  string   `json:"status"`
	Reasons []string `json:"reasons,omitempty"`
}

func (o *Origin) serveReady(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod
	}
	reasons := o.notReady()
	status, body := http.StatusOK, readyBody{Status: "ready"}
	if len(reasons) > 0 {
		status, body = http.StatusServiceUnavailable, readyBody{Status: "not_ready", Reasons: reasons}
	}
	data, _ := json.Marshal(body)
	writeJSON(w, r, status, append(data, '\n'))
	return nil
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	h["X-Content-Type-Options"] = hdrNoSniff
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

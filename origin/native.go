package origin

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/fastserve"
)

// authorized marks a request Native authorized and then declined: the
// handler uses this outcome instead of asking the Authorizer again (which
// would count the request twice and spend its budget twice).
type authorized struct {
	client string
	denial *Denial
}

type authorizedKey struct{}

// nativeRoutes are the export routes Native serves, with their own
// metrics handles (the same series as the handler's).
type nativeRoutes struct {
	index, manifest, bundle, signature *exportRoute
	vexIndex, vexExport, vexSignature  *exportRoute
}

func (o *Origin) newNativeRoutes() *nativeRoutes {
	c, x := o.products[0], o.products[1]
	return &nativeRoutes{
		index:        o.exportRoute(c, "concelier", epIndex),
		manifest:     o.exportRoute(c, "concelier", epManifest),
		bundle:       o.exportRoute(c, "concelier", epBundle),
		signature:    o.exportRoute(c, "concelier", epBundleSignature),
		vexIndex:     o.exportRoute(x, "excititor", epExcititorIndex),
		vexExport:    o.exportRoute(x, "excititor", epExcititorExport),
		vexSignature: o.exportRoute(x, "excititor", epExcititorSignature),
	}
}

// route matches path (decoded, from a target without escapes) to an export
// route as the handler's router does; ok is false for anything else, and
// for a domain or export key the handler would refuse.
func (n *nativeRoutes) route(path string) (h *exportRoute, domain, key string, ok bool) {
	const concelier, excititor = "/concelier/exports/mirror/", "/excititor/mirror/"
	switch {
	case path == "/concelier/exports/index.json":
		return n.index, "", "", true
	case strings.HasPrefix(path, concelier):
		var file string
		domain, file, _ = strings.Cut(path[len(concelier):], "/")
		switch file {
		case "manifest.json":
			h = n.manifest
		case "bundle.json":
			h = n.bundle
		case "bundle.json.jws":
			h = n.signature
		}
	case strings.HasPrefix(path, excititor):
		var rest string
		domain, rest, _ = strings.Cut(path[len(excititor):], "/")
		if rest == "index" {
			h = n.vexIndex
			break
		}
		if k, ok := strings.CutPrefix(rest, "export/"); ok {
			var sub string
			var hasSub bool
			key, sub, hasSub = strings.Cut(k, "/")
			switch {
			case !hasSub:
				h = n.vexExport
			case sub == "signature":
				h = n.vexSignature
			}
			if !export.ValidExportKey(key) {
				return nil, "", "", false
			}
		}
	}
	if h == nil || !export.ValidDomainID(domain) {
		return nil, "", "", false
	}
	return h, domain, key, true
}

// Native is the hook fastserve offers each request (HTTP/1.1, or HTTP/2
// over TLS) of the public listener first (fastserve.Config.Native). It answers a plain GET or HEAD
// (fastserve.Plain, no conditional or Range field) of an export file held
// in memory (the indexes, manifests, signatures, small exports) on the
// connection's goroutine: the same route matching, export resolution,
// authorization (the built-in access control only), headers, log line
// and metrics as Handler, without net/http's request and response values
// or the hand-off to a handler goroutine. Everything else it declines to
// Handler: before authorization untouched, after it (a denial) marked so
// that the request is not counted or charged twice.
func (o *Origin) Native(fc *fasthttp.RequestCtx) bool {
	ac, ok := o.auth.(*accessControl)
	if !ok || o.native == nil {
		return false // another Authorizer may read anything from the request
	}
	u, ok := fastserve.Plain(fc)
	if !ok || u.RawPath != "" {
		return false
	}
	rh := &fc.Request.Header
	for _, k := range conditional { // what serveSmall sends to ServeContent
		if rh.Peek(k) != nil {
			return false
		}
	}
	h, domain, key, ok := o.native.route(u.Path)
	if !ok || h.p == nil || (domain != "" && !h.p.configured(domain)) {
		return false
	}
	start := time.Now()
	st, err := h.p.acquire()
	if err != nil {
		return false
	}
	defer st.release()
	f, err := h.file(st, domain, key)
	if err != nil {
		return false
	}
	fd := f.data
	if fd == nil {
		// Only a file already loaded (and verified): loading reads and
		// hashes it, which is work the handler does after authorization,
		// and an error answer (a tampered file) is the handler's to give.
		if fd = f.entry.data.Load(); fd == nil || fd.body == nil {
			return false // not loaded yet, or streamed from disk
		}
	}
	// What the built-in access control reads: the peer, Authorization and
	// the gateway's user header.
	remote := fc.RemoteAddr().String()
	hdr := http.Header{}
	for _, k := range []string{"Authorization", ForwardedUserHeader} {
		for _, v := range rh.PeekAll(k) {
			hdr[k] = append(hdr[k], string(v))
		}
	}
	method := http.MethodGet
	if fc.IsHead() {
		method = http.MethodHead
	}
	r := &http.Request{Method: method, URL: u, Header: hdr, RemoteAddr: remote, Host: string(rh.Host())}
	client, d := ac.Authorize(r, h.access(domain))
	if d != nil {
		fastserve.WithContextValue(fc, authorizedKey{}, &authorized{client: client, denial: d})
		return false
	}
	resp := &fc.Response
	rsh := &resp.Header
	rsh.SetContentType(f.ct[0])
	rsh.Set("Cache-Control", f.cc[0])
	rsh.Set("Etag", fd.etag[0])
	rsh.Set("X-Content-Type-Options", hdrNoSniff[0])
	rsh.Set("Last-Modified", fd.lastModified[0])
	rsh.Set("Accept-Ranges", hdrAcceptRanges[0])
	rsh.Set("X-Stella-Export-Id", st.id)
	var n int64
	if method == http.MethodHead {
		resp.SkipBody = true
		rsh.SetContentLength(len(fd.body))
	} else {
		resp.SetBodyRaw(fd.body) // never modified: a new export gets new slices
		n = int64(len(fd.body))
	}
	o.record(served{method: method, path: u.EscapedPath(), remote: remote, userAgent: string(rh.UserAgent()),
		client: client, exportID: st.id, status: http.StatusOK, bytes: n}, start, h.metrics, slog.LevelInfo)
	return true
}

package fastserve

import (
	"bytes"
	"net/url"
	"unsafe"

	"github.com/valyala/fasthttp"
	"golang.org/x/net/http/httpguts"
)

// Plain reports whether fc's request is one a Config.Native hook may
// answer without the adapter's checks, and returns its parsed target: a
// GET or HEAD over HTTP/1.1 in origin form ("/path"), every header field
// valid, exactly one valid Host, and none of the fields that frame a body
// or ask for more than a plain answer (Content-Length, Transfer-Encoding,
// Expect, Trailer). For anything else it returns false, and the hook
// should decline: the adapter then answers exactly as net/http would,
// errors included.
func Plain(fc *fasthttp.RequestCtx) (*url.URL, bool) {
	rh := &fc.Request.Header
	if !rh.IsGet() && !rh.IsHead() {
		return nil, false
	}
	if string(rh.Protocol()) != "HTTP/1.1" {
		return nil, false
	}
	uri := rh.RequestURI()
	if len(uri) == 0 || uri[0] != '/' {
		return nil, false
	}
	// fasthttp's AllInOrder joins an obs-fold in place in the raw header
	// buffer it scans, so a second scan (the adapter's, the native proxy's)
	// would read the first one's leftovers ("a b" becomes "a b b"): a
	// folded request is never plain, and the adapter's one scan is the
	// only one (FuzzHTTP1 found this).
	if raw := rh.RawHeaders(); bytes.Contains(raw, []byte("\n ")) || bytes.Contains(raw, []byte("\n\t")) {
		return nil, false
	}
	hosts := 0
	var host []byte
	for k, v := range rh.AllInOrder() {
		if !httpguts.ValidHeaderFieldName(view(k)) || !httpguts.ValidHeaderFieldValue(view(v)) {
			return nil, false
		}
		switch {
		case bytes.EqualFold(k, []byte("Host")):
			hosts++
			host = v
		case bytes.EqualFold(k, []byte("Content-Length")), bytes.EqualFold(k, []byte("Transfer-Encoding")),
			bytes.EqualFold(k, []byte("Expect")), bytes.EqualFold(k, []byte("Trailer")):
			return nil, false
		}
	}
	if hosts != 1 || !httpguts.ValidHostHeader(view(host)) || len(fc.Request.Body()) > 0 {
		return nil, false
	}
	u, err := url.ParseRequestURI(string(uri))
	if err != nil {
		return nil, false
	}
	return u, true
}

// view is b as a string without a copy, for calls that do not keep it.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// ctxValueKey is the fasthttp user value WithContextValue sets.
type ctxValueKey struct{}

type ctxValue struct{ key, val any }

// WithContextValue is for a Native hook that declines fc after it has done
// part of the work: the Handler's request context will carry val under
// key (as context.WithValue), so the handler can skip what is done. Only
// code in the process can set it; the value lives for this request only.
func WithContextValue(fc *fasthttp.RequestCtx, key, val any) {
	fc.SetUserValue(ctxValueKey{}, ctxValue{key: key, val: val})
}

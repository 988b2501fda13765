package fastserve

import (
	"bytes"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Date. fasthttp keeps the Date field for itself: Set, Add and
// SetCanonical drop it ("managed automatically"), and without the
// server's NoDefaultDate its clock's Date replaces any other. A cache hit
// must carry the stored response's Date (RFC 9111 section 4), so the
// server runs with NoDefaultDate, answers that set a Date use SetDate,
// and serve gives every other answer the current one (setDate).

var dateKey = []byte("Date")

// SetDate sets the Date field of a response fasthttp will send. fasthttp
// stores a field whose name is a declared trailer as it is given, so Date
// is declared a trailer for the one call and the declaration restored at
// once: the field stays in the header section (TestSetDate checks this
// against the fasthttp in use).
func SetDate(h *fasthttp.ResponseHeader, v []byte) {
	var saved []byte
	if keys := h.PeekTrailerKeys(); len(keys) > 0 {
		saved = bytes.Join(keys, []byte(", "))
	}
	h.Del("Date")
	if err := h.SetTrailerBytes(dateKey); err != nil {
		return
	}
	h.SetCanonical(dateKey, v)
	_ = h.SetTrailerBytes(saved)
}

type dateValue struct {
	sec int64
	val []byte
}

var currentDate atomic.Pointer[dateValue]

// now is the current Date value, formatted once per second.
func nowDate() []byte {
	now := time.Now()
	d := currentDate.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateValue{sec: now.Unix(), val: []byte(now.UTC().Format(http.TimeFormat))}
		currentDate.Store(d)
	}
	return d.val
}

// setDate gives fc's response the current Date unless it has one.
func setDate(fc *fasthttp.RequestCtx) {
	if len(fc.Response.Header.Peek("Date")) == 0 {
		SetDate(&fc.Response.Header, nowDate())
	}
}

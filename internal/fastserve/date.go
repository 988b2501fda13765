package fastserve

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The server runs with fasthttp's NoDefaultDate, whose default Date would
// replace the one a handler set (a cache hit's stored Date, RFC 9111
// section 4): setDate gives every response without a Date the current
// one, formatted once per second.

type dateValue struct {
	sec int64
	val []byte
}

var currentDate atomic.Pointer[dateValue]

// setDate adds Date to fc's response unless it has one.
func setDate(fc *fasthttp.RequestCtx) {
	h := &fc.Response.Header
	if len(h.Peek("Date")) > 0 {
		return
	}
	now := time.Now()
	d := currentDate.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateValue{sec: now.Unix(), val: []byte(now.UTC().Format(http.TimeFormat))}
		currentDate.Store(d)
	}
	h.SetCanonical([]byte("Date"), d.val)
}

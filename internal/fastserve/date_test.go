package fastserve

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestSetDate: a Date a handler (net/http's or Native) sets is sent as
// set, exactly once and in the header section, streamed or buffered; an
// answer without one gets the current Date. fasthttp on its own replaces
// or drops a handler's Date (a cache hit then carried the wrong one).
func TestSetDate(t *testing.T) {
	const stored = "Mon, 30 Nov 2026 12:00:00 GMT"
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stored":
			w.Header().Set("Date", stored)
			w.Write([]byte("body"))
		case "/stream":
			w.Header().Set("Date", stored)
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
			w.Write([]byte("b"))
		default:
			w.Write([]byte("plain"))
		}
	})
	native := func(fc *fasthttp.RequestCtx) bool {
		if string(fc.Path()) != "/native" {
			return false
		}
		SetDate(&fc.Response.Header, []byte(stored))
		fc.Response.SetBodyStream(strings.NewReader("native"), 6)
		return true
	}
	base, _ := startServer(t, Config{Handler: h, Native: native, ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 10 * time.Second})
	addr := strings.TrimPrefix(base, "http://")
	for _, path := range []string{"/stored", "/stream", "/native", "/plain"} {
		out := raw(t, addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		head, _, _ := strings.Cut(out, "\r\n\r\n")
		var dates []string
		for _, line := range strings.Split(head, "\r\n") {
			if k, v, ok := strings.Cut(line, ": "); ok && strings.EqualFold(k, "Date") {
				dates = append(dates, v)
			}
		}
		if strings.Count(out, "Date:") != 1 || len(dates) != 1 {
			t.Errorf("%s: Date lines %q in\n%s", path, dates, out)
			continue
		}
		if path == "/plain" {
			if d, err := http.ParseTime(dates[0]); err != nil || time.Since(d) > time.Hour || time.Until(d) > time.Hour {
				t.Errorf("%s: Date %q is not the clock's", path, dates[0])
			}
		} else if dates[0] != stored {
			t.Errorf("%s: Date %q, want the handler's %q", path, dates[0], stored)
		}
	}
}

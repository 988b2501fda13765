package cache

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestServeHitFast: ServeHitFast answers what ServeHit answers, with the
// same status, fields and body as they go on the wire, declines what
// ServeHit declines (leaving the response untouched), reports the outcome
// once, and cuts off a body whose file was truncated.
func TestServeHitFast(t *testing.T) {
	c, clk, body, big := warmHits(t)
	type outcome struct {
		bytes   int64
		aborted bool
		calls   int
	}
	// serve runs ServeHitFast and writes the response as fasthttp would;
	// wire is nil when the write failed (the connection would be cut).
	serve := func(method, key string, hdr ...string) (ok bool, wire *http.Response, wireBody []byte, out *outcome, fc *fasthttp.RequestCtx) {
		fc = &fasthttp.RequestCtx{}
		fc.Request.Header.SetMethod(method)
		fc.Request.SetRequestURI(key)
		for i := 0; i+1 < len(hdr); i += 2 {
			fc.Request.Header.Set(hdr[i], hdr[i+1])
		}
		out = &outcome{}
		ok = c.ServeHitFast(fc, key, func(n int64, aborted bool) {
			out.bytes, out.aborted = n, aborted
			out.calls++
		})
		if !ok {
			return ok, nil, nil, out, fc
		}
		if method == http.MethodHead {
			fc.Response.SkipBody = true
		}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		if err := fc.Response.Write(bw); err != nil {
			return ok, nil, nil, out, fc
		}
		bw.Flush()
		resp, err := http.ReadResponse(bufio.NewReader(&buf), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s %s: unreadable response: %v", method, key, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: body: %v", method, key, err)
		}
		return ok, resp, b, out, fc
	}
	for _, tc := range []struct {
		method, key string
		body        []byte
	}{
		{http.MethodGet, "/index.json", body},
		{http.MethodHead, "/index.json", nil},
		{http.MethodGet, "/big", big},
		{http.MethodHead, "/big", nil},
	} {
		ok, resp, b, out, _ := serve(tc.method, tc.key)
		if !ok || resp == nil {
			t.Fatalf("%s %s: ok=%v, written=%v", tc.method, tc.key, ok, resp != nil)
		}
		wantLen := len(tc.body)
		if tc.method == http.MethodHead {
			wantLen = map[string]int{"/index.json": len(body), "/big": len(big)}[tc.key]
		}
		if resp.StatusCode != 200 || !bytes.Equal(b, tc.body) || resp.Header.Get(Header) != "HIT" ||
			resp.ContentLength != int64(wantLen) || resp.Header.Get("Age") == "" || resp.Header.Get("ETag") == "" {
			t.Errorf("%s %s: %d, %d bytes, %v", tc.method, tc.key, resp.StatusCode, len(b), resp.Header)
		}
		if out.calls != 1 || out.bytes != int64(len(tc.body)) || out.aborted {
			t.Errorf("%s %s: outcome %+v, want one call with %d bytes", tc.method, tc.key, *out, len(tc.body))
		}
	}
	for _, tc := range declinedHits(body) {
		ok, _, _, out, fc := serve(tc.method, tc.key, tc.hdr...)
		rh := &fc.Response.Header
		touched := rh.StatusCode() != 200 || rh.Peek(Header) != nil || rh.Peek("Age") != nil || rh.Peek("Etag") != nil ||
			rh.Peek("Cache-Control") != nil || len(fc.Response.Body()) != 0
		if ok || out.calls != 0 || touched {
			t.Errorf("%s: answered (ok=%v, calls %d):\n%s", tc.name, ok, out.calls, fc.Response.Header.String())
		}
	}
	// A body file cut short behind the cache's back: fasthttp announced
	// the stored length, so the write fails (the connection is cut) and
	// the outcome says so.
	c.mu.Lock()
	file := c.entries["/big"].body
	c.mu.Unlock()
	if err := os.Truncate(file, 100); err != nil {
		t.Fatal(err)
	}
	ok, resp, _, out, _ := serve(http.MethodGet, "/big")
	if !ok || resp != nil || out.calls != 1 || !out.aborted || out.bytes != 100 {
		t.Fatalf("truncated file: ok=%v written=%v outcome %+v; want a failed write, aborted after 100 bytes", ok, resp != nil, *out)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if ok, _, _, _, _ := serve(http.MethodGet, "/big"); ok {
		t.Fatal("a missing body file was answered")
	}
	clk.Advance(2 * time.Minute) // index.json is stale now
	if ok, _, _, _, _ := serve(http.MethodGet, "/index.json"); ok {
		t.Fatal("a stale object was answered by the fast path")
	}
}

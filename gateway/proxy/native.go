package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/fastserve"
	"github.com/valyala/fasthttp"
)

// The native path: ServeFast forwards a request fastserve received (over
// HTTP/1.1 or HTTP/2) to the origin with fasthttp's header types end to end, with the
// same rules as ServeHTTP (see the package comment) but without net/http's
// request and response values, httputil.ReverseProxy, or a goroutine
// hand-off. It exists for speed: on small responses a gateway without a
// cache forwards nearly twice as many requests per CPU second with it. The net/http path stays
// for the cache and for every request fastserve.Plain does not accept.

// FastRequest is what ServeFast needs besides the fasthttp request.
type FastRequest struct {
	// Path is the request's escaped path, sent to the origin without the
	// query (as ServeHTTP does).
	Path string
	// User is the authenticated user, "" for an anonymous request.
	User string
	// TLS reports whether the client connection is TLS (X-Forwarded-Proto).
	TLS bool
}

// FastResult is how a ServeFast exchange ended, for logs and metrics.
type FastResult struct {
	Status   int
	Bytes    int64         // body bytes sent to the client (for HEAD: none)
	Upstream time.Duration // until the origin's response headers; 0 without them
	Aborted  bool          // the client connection was cut off mid-response
}

// CanServeFast reports whether ServeFast may be used: the transport is
// this package's own and the origin URL has no path of its own.
func (p *Proxy) CanServeFast() bool {
	_, ok := p.opts.Transport.(*Transport)
	u := p.opts.Origin
	return ok && (u.Path == "" || u.Path == "/") && u.RawPath == "" && u.RawQuery == ""
}

// fastBufferLimit is the largest body read whole before it is answered;
// a larger (or unannounced) one streams.
const fastBufferLimit = 64 << 10

var responseHeaders = sync.Pool{New: func() any { return new(fasthttp.ResponseHeader) }}

var fastBuffers = sync.Pool{New: func() any { b := make([]byte, fastBufferLimit); return &b }}

// ServeFast forwards fc's request (a GET or HEAD that fastserve.Plain
// accepted) and answers in fc. done is called once with the outcome: before
// ServeFast returns, or, for a streamed body, when fasthttp has sent it (or
// given up). It must be used only when CanServeFast.
func (p *Proxy) ServeFast(fc *fasthttp.RequestCtx, in FastRequest, done func(FastResult)) {
	t := p.opts.Transport.(*Transport)
	start := time.Now()
	head := fc.IsHead()
	var token string
	if p.opts.Tokens != nil {
		tok, err := p.opts.Tokens.Token()
		if err != nil {
			p.opts.Logger.Error("cannot obtain the upstream token", "error", err.Error())
			p.reportFast("token")
			done(fastError(fc, http.StatusBadGateway))
			return
		}
		token = tok.AccessToken
	}
	trusted := TrustedAddr(fc.RemoteAddr().String(), p.opts.TrustedProxies)
	var peer string
	if p.opts.PeerToken != nil {
		peer = p.opts.PeerToken()
	}
	write := func(bw *bufio.Writer) { p.writeFastRequest(bw, fc, in, trusted, token, peer) }
	rh := responseHeaders.Get().(*fasthttp.ResponseHeader)
	defer func() { rh.Reset(); responseHeaders.Put(rh) }()
	body, err := t.exchangeFast(context.Background(), p.opts.Origin.Scheme, p.opts.Origin.Host, head, write, rh)
	if err != nil {
		status, reason := classify(err)
		p.opts.Logger.Warn("origin request failed", "path", in.Path, "reason", reason, "error", err.Error())
		p.reportFast(reason)
		done(fastError(fc, status))
		return
	}
	res := FastResult{Status: rh.StatusCode(), Upstream: time.Since(start)}
	resp := &fc.Response
	resp.SetStatusCode(res.Status)
	copyFastHeaders(&resp.Header, rh)
	if p.cdnPath(in.Path) && len(resp.Header.Peek("CDN-Cache-Control")) == 0 {
		if id := string(rh.Peek(export.ExportIDHeader)); export.ValidExportID(id) {
			resp.Header.Set("CDN-Cache-Control", p.cdn)
			resp.Header.Set("Cache-Tag", id)
			resp.Header.Set("Surrogate-Key", id)
		}
	}
	cl := rh.ContentLength()
	switch {
	case body == nil: // HEAD, 204, 304
		resp.SkipBody = true
		if cl >= 0 {
			resp.Header.SetContentLength(cl)
		}
		done(res)
	case cl >= 0 && cl <= fastBufferLimit:
		bp := fastBuffers.Get().(*[]byte)
		n, err := io.ReadFull(body, (*bp)[:cl])
		if err == nil {
			_, err = body.Read((*bp)[cl:cl]) // see the end: the connection is reused only after EOF
			if err == io.EOF {
				err = nil
			}
		}
		body.Close()
		if err != nil {
			fastBuffers.Put(bp)
			p.bodyFailed(in.Path, err)
			fastserve.Abort(fc)
			res.Aborted = true
			done(res)
			return
		}
		resp.SetBody((*bp)[:n])
		fastBuffers.Put(bp)
		res.Bytes = int64(n)
		done(res)
	default:
		// Stream: the headers leave at once, the body as it arrives.
		resp.ImmediateHeaderFlush = true
		resp.SetBodyStream(&fastBody{body: body, p: p, path: in.Path, res: res, done: done}, max(cl, -1))
	}
}

// reportFast counts a failed exchange (OnUpstreamError without a request).
func (p *Proxy) reportFast(reason string) {
	if p.opts.OnUpstreamError != nil {
		p.opts.OnUpstreamError(nil, reason)
	}
}

func (p *Proxy) bodyFailed(path string, err error) {
	p.opts.Logger.Warn("origin response body failed", "path", path, "error", err.Error())
	p.reportFast("body")
}

// fastError answers status with the JSON body of writeError.
func fastError(fc *fasthttp.RequestCtx, status int) FastResult {
	resp := &fc.Response
	resp.Reset()
	resp.SetStatusCode(status)
	resp.Header.SetContentType("application/json")
	resp.Header.Set("Cache-Control", "no-store")
	body := errorBody(status)
	resp.SetBodyString(body)
	return FastResult{Status: status, Bytes: int64(len(body))}
}

// fastBody streams an origin body to fasthttp and reports the outcome
// when fasthttp closes it.
type fastBody struct {
	body io.ReadCloser
	p    *Proxy
	path string
	res  FastResult
	done func(FastResult)
	err  error
	eof  bool
	once sync.Once
}

func (b *fastBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.res.Bytes += int64(n)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil && b.err == nil:
		b.err = err
		b.p.bodyFailed(b.path, err)
	}
	return n, err
}

// Close is called by fasthttp once the body was sent, or abandoned.
func (b *fastBody) Close() error {
	b.once.Do(func() {
		b.body.Close()
		b.res.Aborted = !b.eof
		b.done(b.res)
	})
	return nil
}

// hopHeaders are the hop-by-hop fields (RFC 9110 §7.6.1), never forwarded.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func isHop(k []byte, connection [][]byte) bool {
	for _, h := range hopHeaders {
		if bytes.EqualFold(k, []byte(h)) {
			return true
		}
	}
	for _, c := range connection {
		if bytes.EqualFold(k, c) {
			return true
		}
	}
	return false
}

// connectionTokens splits comma-separated values (the field names a
// Connection header lists, the codings of Te).
func connectionTokens(values [][]byte) [][]byte {
	var out [][]byte
	for _, v := range values {
		for _, f := range bytes.Split(v, []byte(",")) {
			if f = bytes.TrimSpace(f); len(f) > 0 {
				out = append(out, f)
			}
		}
	}
	return out
}

func hasPrefixFold(k []byte, prefix string) bool {
	return len(k) >= len(prefix) && bytes.EqualFold(k[:len(prefix)], []byte(prefix))
}

// writeFastRequest writes the request for the origin: the rules of
// rewrite, on fasthttp's header. peer is the gateway's peer token ("":
// none).
func (p *Proxy) writeFastRequest(bw *bufio.Writer, fc *fasthttp.RequestCtx, in FastRequest, trusted bool, token, peer string) {
	rh := &fc.Request.Header
	bw.Write(rh.Method())
	bw.WriteByte(' ')
	bw.WriteString(in.Path)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(p.opts.Origin.Host)
	bw.WriteString("\r\n")
	conn := connectionTokens(rh.PeekAll("Connection"))
	var priorXFF [][]byte
	var xfProto, xfHost []byte
	for k, v := range rh.AllInOrder() {
		switch {
		case isHop(k, conn), bytes.EqualFold(k, []byte("Host")),
			bytes.EqualFold(k, []byte("Authorization")), bytes.EqualFold(k, []byte("Cookie")),
			bytes.EqualFold(k, []byte(PeerTokenHeader)):
			continue
		case hasPrefixFold(k, "X-Forwarded-"):
			if !trusted {
				continue
			}
			switch {
			case bytes.EqualFold(k, []byte("X-Forwarded-For")):
				priorXFF = append(priorXFF, v)
				continue
			case bytes.EqualFold(k, []byte("X-Forwarded-Proto")):
				if xfProto == nil {
					xfProto = v
				}
				continue
			case bytes.EqualFold(k, []byte("X-Forwarded-Host")):
				if xfHost == nil {
					xfHost = v
				}
				continue
			}
		case bytes.EqualFold(k, []byte("Forwarded")):
			if !trusted {
				continue
			}
		case bytes.EqualFold(k, []byte(UserHeader)):
			if !trusted || in.User != "" {
				continue
			}
		}
		writeField(bw, k, v)
	}
	bw.WriteString("X-Forwarded-For: ")
	for _, v := range priorXFF {
		bw.Write(v)
		bw.WriteString(", ")
	}
	host, _, err := net.SplitHostPort(fc.RemoteAddr().String())
	if err != nil {
		host = fc.RemoteAddr().String()
	}
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if len(xfHost) == 0 {
		xfHost = rh.Host()
	}
	writeField(bw, []byte("X-Forwarded-Host"), xfHost)
	switch {
	case len(xfProto) > 0:
		writeField(bw, []byte("X-Forwarded-Proto"), xfProto)
	case in.TLS:
		bw.WriteString("X-Forwarded-Proto: https\r\n")
	default:
		bw.WriteString("X-Forwarded-Proto: http\r\n")
	}
	for _, v := range connectionTokens(rh.PeekAll("Te")) {
		if bytes.EqualFold(v, []byte("trailers")) {
			bw.WriteString("Te: trailers\r\n") // as ReverseProxy keeps it
			break
		}
	}
	if in.User != "" {
		bw.WriteString(UserHeader + ": ")
		bw.WriteString(fieldValue(in.User))
		bw.WriteString("\r\n")
	}
	if token != "" {
		bw.WriteString("Authorization: Bearer ")
		bw.WriteString(token)
		bw.WriteString("\r\n")
	}
	if peer != "" {
		bw.WriteString(PeerTokenHeader + ": ")
		bw.WriteString(peer) // visible ASCII only (peertoken.Parse)
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

// fieldValue renders a header value as net/http's Header.Write does:
// CR and LF become spaces, and surrounding spaces and tabs go. A value
// the gateway made (the forwarded user, refused at parse time when it
// holds a control character) can then never split the request.
func fieldValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	return strings.Trim(v, " \t")
}

func writeField(bw *bufio.Writer, k, v []byte) {
	bw.Write(k)
	bw.WriteString(": ")
	bw.Write(v)
	bw.WriteString("\r\n")
}

// copyFastHeaders copies the origin's response fields to the client's,
// without hop-by-hop fields, Set-Cookie and the framing (fasthttp frames
// the body itself).
func copyFastHeaders(dst *fasthttp.ResponseHeader, src *fasthttp.ResponseHeader) {
	conn := connectionTokens(src.PeekAll("Connection"))
	for k, v := range src.All() {
		switch {
		case isHop(k, conn), bytes.EqualFold(k, []byte("Content-Length")), bytes.EqualFold(k, []byte("Set-Cookie")):
			continue
		case bytes.EqualFold(k, []byte("Content-Type")):
			dst.SetContentTypeBytes(v)
			continue
		}
		dst.AddBytesKV(k, v)
	}
}

// exchangeFast sends the request write produces on a kept-alive connection
// (or a new one), reads the response headers into rh, and returns the body
// (nil when the response has none), framed by Content-Length, chunked
// encoding, or the end of the connection. The rules of RoundTrip hold:
// the timeouts, one retry on a new connection when a kept-alive one turns
// out closed, and the connection is reused only after a body read to its
// end and closed.
func (t *Transport) exchangeFast(ctx context.Context, scheme, host string, head bool, write func(*bufio.Writer), rh *fasthttp.ResponseHeader) (io.ReadCloser, error) {
	if scheme == "https" && t.tlsConfig == nil {
		return nil, errors.New("proxy transport: https origin without TLS configuration")
	}
	key := scheme + "://" + host
	pc, reused, err := t.get(ctx, key, scheme, host)
	if err != nil {
		return nil, err
	}
	body, err := pc.exchangeFast(ctx, head, write, rh)
	if !reused || ctx.Err() != nil || !closedWhileIdle(pc, err, rh.StatusCode(), rh.ConnectionClose()) {
		if err != nil {
			pc.close()
		}
		return body, err
	}
	if body != nil {
		body.Close() // the 408 of an idle timeout: never meant for this request
	}
	pc.close()
	// Once more, on a new connection: after an origin restart every pooled
	// connection is dead.
	if pc, err = t.dial(ctx, key, scheme, host); err != nil {
		return nil, err
	}
	rh.Reset()
	body, err = pc.exchangeFast(ctx, head, write, rh)
	if err != nil {
		pc.close()
	}
	return body, err
}

func (pc *persistConn) exchangeFast(ctx context.Context, head bool, write func(*bufio.Writer), rh *fasthttp.ResponseHeader) (io.ReadCloser, error) {
	stop, err := pc.send(ctx, func(io.Writer) error { write(pc.bw); return nil }) // errors surface at Flush
	if err != nil {
		return nil, err
	}
	rh.SetNoDefaultContentType(true)
	err = rh.Read(pc.br)
	// Informational answers (103 Early Hints, 100 Continue) precede the
	// real one; 101 would switch protocols, which this transport does not.
	for err == nil && rh.StatusCode() >= 100 && rh.StatusCode() < 200 {
		if rh.StatusCode() == http.StatusSwitchingProtocols {
			stop()
			return nil, errors.New("the origin answered 101 Switching Protocols")
		}
		rh.Reset()
		rh.SetNoDefaultContentType(true)
		err = rh.Read(pc.br)
	}
	if err != nil {
		stop()
		if err == fasthttp.ErrTimeout { // fasthttp's word for the read deadline
			err = os.ErrDeadlineExceeded
		}
		if isTimeout(err) && ctx.Err() == nil {
			return nil, &headerTimeoutError{d: pc.t.headerTimeout, err: err}
		}
		if errors.Is(err, io.EOF) && pc.conn.read > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, ctxErr(ctx, err)
	}
	pc.conn.perRead = pc.t.idleTimeout
	status := rh.StatusCode()
	cl := rh.ContentLength()
	if head || status == http.StatusNoContent || status == http.StatusNotModified {
		pc.release(stop() && !rh.ConnectionClose())
		return nil, nil
	}
	reusable := !rh.ConnectionClose() && cl != -2
	if cl == 0 {
		pc.release(stop() && reusable)
		return http.NoBody, nil
	}
	var framed io.Reader
	switch {
	case cl > 0:
		framed = &fixedReader{r: pc.br, n: int64(cl)}
	case cl == -1:
		framed = &chunkedReader{br: pc.br, cr: httputil.NewChunkedReader(pc.br)}
	default: // -2: until the origin closes
		framed = pc.br
	}
	return &body{rc: io.NopCloser(framed), pc: pc, ctx: ctx, stop: stop, reusable: reusable}, nil
}

// fixedReader reads n bytes, and calls an early end what it is.
type fixedReader struct {
	r io.Reader
	n int64
}

func (f *fixedReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	if err == io.EOF && f.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	if f.n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// chunkedReader decodes a chunked body and consumes its trailer section,
// so that the connection is ready for the next response.
type chunkedReader struct {
	br *bufio.Reader
	cr io.Reader
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	n, err := c.cr.Read(p)
	if err == io.EOF {
		for {
			line, lerr := c.br.ReadSlice('\n')
			if lerr != nil {
				if lerr == io.EOF {
					lerr = io.ErrUnexpectedEOF
				}
				return n, lerr
			}
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				break
			}
		}
	}
	return n, err
}

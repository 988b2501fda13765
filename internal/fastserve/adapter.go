package fastserve

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stella-ops/stella-mirror/internal/connguard"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http/httpguts"
)

// bufferLimit is the largest body handed back whole; a handler that writes
// more (or flushes) streams instead.
const bufferLimit = 64 << 10

// serve runs the net/http handler for one request.
func (s *Server) serve(fc *fasthttp.RequestCtx) {
	defer setDate(fc)
	if s.cfg.CloseConnections != nil {
		defer s.closeIfDraining(fc)
	}
	if s.cfg.Native != nil && s.native(fc) {
		return
	}
	s.adapt(fc)
}

// closeIfDraining marks fc's response Connection: close when
// Config.CloseConnections says so; a streamed body's headers are written
// after serve returns, so they carry it too.
func (s *Server) closeIfDraining(fc *fasthttp.RequestCtx) {
	if s.cfg.CloseConnections() {
		fc.SetConnectionClose()
	}
}

// adapt runs the net/http handler for fc's request and returns once fc's
// response is set: complete, or with a body stream the handler is still
// writing.
func (s *Server) adapt(fc *fasthttp.RequestCtx) {
	r, status := s.request(fc)
	if status != 0 {
		plainError(fc, status)
		return
	}
	if r.RequestURI == "*" && r.Method == http.MethodOptions {
		fc.Response.Header.SetContentLength(0) // net/http's globalOptionsHandler
		return
	}
	base := s.reqBase
	if v, ok := fc.UserValue(ctxValueKey{}).(ctxValue); ok {
		base = context.WithValue(base, v.key, v.val)
	}
	ctx, cancel := context.WithCancel(base)
	r = r.WithContext(ctx)
	w := &writer{fc: fc, conn: fc.Conn(), req: r, cancel: cancel, header: make(http.Header, 8), events: make(chan event, 1), head: r.Method == http.MethodHead}
	s.dispatch(job{w: w, cancel: cancel})
	switch ev := s.awaitEvent(fc, w, cancel); ev.kind {
	case evDone:
		w.commitBuffered()
	case evStream:
		fc.Response.SetBodyStream(ev.body, ev.size)
	case evAbort:
		Abort(fc)
	}
}

// peerGoneAfter is how long a handler may take to answer before the
// connection is watched for the client going away (its request context
// is then cancelled, as net/http's background read does): a proxied
// request waiting for a slow upstream stops when its client leaves,
// before any write could fail. Quicker answers pay for a timer only.
const peerGoneAfter = 20 * time.Millisecond

var waitTimers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// awaitEvent waits for the handler's event; if it does not come within
// peerGoneAfter, it watches the connection meanwhile (connguard.Conn's
// WaitPeerGone) and cancels the request when the client is gone.
func (s *Server) awaitEvent(fc *fasthttp.RequestCtx, w *writer, cancel context.CancelFunc) event {
	t := waitTimers.Get().(*time.Timer)
	t.Reset(peerGoneAfter)
	select {
	case ev := <-w.events:
		t.Stop()
		waitTimers.Put(t)
		return ev
	case <-t.C:
		waitTimers.Put(t)
	}
	gc := guardedConn(fc.Conn())
	if gc == nil {
		return <-w.events
	}
	stop := make(chan struct{})
	gone := make(chan bool, 1)
	go func() { gone <- gc.WaitPeerGone(stop) }()
	select {
	case ev := <-w.events:
		close(stop)
		<-gone
		return ev
	case g := <-gone:
		if g {
			s.logger.Debug("client gone before the answer; request cancelled", "remote", fc.RemoteAddr().String())
			cancel()
		}
		return <-w.events
	}
}

// guardedConn is the connguard.Conn under c (plain or TLS), or nil.
func guardedConn(c net.Conn) *connguard.Conn {
	if tc, ok := c.(*tlsConn); ok {
		c = tc.Conn.NetConn()
	}
	gc, _ := c.(*connguard.Conn)
	return gc
}

// Abort answers nothing to fc's request and ends the connection: the
// client sees it close, never a truncated response that looks complete.
func Abort(fc *fasthttp.RequestCtx) {
	fc.Response.Reset()
	fc.SetConnectionClose()
	fc.HijackSetNoResponse(true)
	fc.Hijack(func(net.Conn) {})
}

// native runs the Native hook; a panic in it is logged and ends the
// connection without an answer, as a handler's does.
func (s *Server) native(fc *fasthttp.RequestCtx) (handled bool) {
	defer func() {
		if v := recover(); v != nil {
			s.logger.Error("handler panic", "method", string(fc.Method()), "path", string(fc.Path()), "panic", v, "stack", string(debug.Stack()))
			Abort(fc)
			handled = true
		}
	}()
	return s.cfg.Native(fc)
}

// job is one handler call for a worker.
type job struct {
	w      *writer
	cancel context.CancelFunc
}

// workerIdle is how long a handler goroutine waits for its next request
// before it exits.
const workerIdle = 10 * time.Second

// dispatch runs j on an idle worker goroutine, or on a new one. Reusing
// goroutines keeps their grown stacks: a fresh goroutine per request spent
// 4% of the gateway's CPU growing its stack through the proxy.
func (s *Server) dispatch(j job) {
	select {
	case s.jobs <- j:
	default:
		go s.worker(j)
	}
}

func (s *Server) worker(j job) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		j.w.run(s, j.cancel)
		j = job{}
		t.Reset(workerIdle)
		select {
		case j = <-s.jobs:
		case <-t.C:
			return
		case <-s.base.Done():
			return
		}
	}
}

// request converts fc into an *http.Request the way net/http's server
// builds one; a non-zero status rejects the request.
func (s *Server) request(fc *fasthttp.RequestCtx) (*http.Request, int) {
	rh := &fc.Request.Header
	rawURI := string(rh.RequestURI())
	u, err := url.ParseRequestURI(rawURI)
	if err != nil {
		return nil, http.StatusBadRequest
	}
	proto := intern(rh.Protocol())
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok || major != 1 {
		return nil, http.StatusBadRequest
	}
	method := intern(rh.Method())
	if !validMethod(method) {
		return nil, http.StatusBadRequest
	}
	n := rh.Len() + 4 // Host, Content-Length, Content-Type, User-Agent, Cookie are counted apart
	hdr := make(http.Header, n)
	vals := make([]string, 0, n) // one backing array for the single values, as net/http does
	hosts := 0
	for k, v := range rh.AllInOrder() {
		key := intern(k)
		if !httpguts.ValidHeaderFieldName(key) {
			return nil, http.StatusBadRequest
		}
		key = http.CanonicalHeaderKey(key)
		val := string(v)
		if !httpguts.ValidHeaderFieldValue(val) {
			return nil, http.StatusBadRequest
		}
		if key == "Host" {
			hosts++
		}
		if old, ok := hdr[key]; ok {
			hdr[key] = append(old, val)
			continue
		}
		vals = append(vals, val)
		hdr[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	host := ""
	if hv := hdr["Host"]; len(hv) > 0 {
		host = hv[0]
	}
	delete(hdr, "Host")
	if hosts > 1 || (minor >= 1 && hosts == 0) || !httpguts.ValidHostHeader(host) {
		return nil, http.StatusBadRequest
	}
	if u.Host != "" {
		host = u.Host
	}
	// The headers above are the block as it arrived (fasthttp has already
	// decoded a chunked body and rewritten its own framing fields). A
	// request framed two ways is a smuggling attempt (RFC 9112 §6.3):
	// refuse it rather than pick one. Only a single "chunked" is a framing
	// both sides agree on; net/http answers 501 to anything else (identity
	// would let a body pass as the next request).
	te := hdr["Transfer-Encoding"]
	if _, hasCL := hdr["Content-Length"]; hasCL && len(te) > 0 {
		return nil, http.StatusBadRequest
	}
	chunked := false
	if len(te) > 0 {
		if len(te) != 1 || !strings.EqualFold(strings.TrimSpace(te[0]), "chunked") {
			return nil, http.StatusNotImplemented
		}
		chunked = true
	}
	delete(hdr, "Transfer-Encoding")
	if ex, ok := hdr["Expect"]; ok && !(len(ex) == 1 && strings.EqualFold(ex[0], "100-continue")) {
		return nil, http.StatusExpectationFailed
	}
	r := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      proto,
		ProtoMajor: major,
		ProtoMinor: minor,
		Header:     hdr,
		Host:       host,
		RemoteAddr: fc.RemoteAddr().String(),
		RequestURI: rawURI,
		Close:      rh.ConnectionClose(),
		Body:       http.NoBody,
	}
	if body := fc.Request.Body(); len(body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	if chunked {
		r.ContentLength = -1
		r.TransferEncoding = []string{"chunked"}
		delete(hdr, "Trailer")
		// fasthttp keeps the trailer section apart; PeekAll lists a
		// name's header values first, then its trailer values.
		for k := range rh.Trailers() {
			key := http.CanonicalHeaderKey(string(k))
			all := rh.PeekAll(string(k))
			var tv []string
			for _, v := range all[min(len(hdr[key]), len(all)):] {
				tv = append(tv, string(v))
			}
			if r.Trailer == nil {
				r.Trailer = make(http.Header)
			}
			r.Trailer[key] = tv
		}
	}
	r.TLS = TLSState(fc)
	return r, 0
}

// TLSState is the TLS state of fc's connection, or nil on plain TCP.
func TLSState(fc *fasthttp.RequestCtx) *tls.ConnectionState {
	if tc, ok := fc.Conn().(*tlsConn); ok {
		return &tc.state
	}
	return nil
}

// common are strings a request carries over and over; intern returns
// them without allocating.
var common = func() map[string]string {
	m := make(map[string]string)
	for _, s := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "HTTP/1.1", "HTTP/1.0",
		"Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Connection",
		"Content-Length", "Content-Type", "Cookie", "If-None-Match", "If-Modified-Since", "If-Range", "Range",
		"Cache-Control", "Pragma", "Referer", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
		"X-Real-Ip", "X-Request-Id", "Traceparent", "Forwarded", "Via", "Te", "Upgrade"} {
		m[s] = s
	}
	return m
}()

func intern(b []byte) string {
	if s, ok := common[string(b)]; ok {
		return s
	}
	return string(b)
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

type eventKind int

const (
	evDone   eventKind = iota // handler returned; the response is in the writer
	evStream                  // headers are final; the body streams from body
	evAbort                   // handler aborted before the headers went out
)

type event struct {
	kind eventKind
	body io.Reader
	size int
}

// writer is the http.ResponseWriter of one request. Until it streams, the
// body collects in buf; the handler goroutine owns everything until it sends
// its one event, after which fasthttp's goroutine reads what it needs.
type writer struct {
	fc      *fasthttp.RequestCtx // only until the event is sent
	conn    net.Conn
	req     *http.Request
	cancel  context.CancelFunc // cancels req's context: called when the client is gone
	header  http.Header
	events  chan event
	head    bool
	status  int
	written bool // WriteHeader called (or implied)
	buf     bytes.Buffer
	pipe    *stream // non-nil once streaming
	sent    bool    // the one event was sent
	clen    int64   // declared Content-Length, -1 if none
	wrote   int64   // body bytes accepted
}

func (w *writer) Header() http.Header { return w.header }

func (w *writer) WriteHeader(code int) {
	if w.written {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code < 200 {
		return // informational answers are not sent
	}
	w.written = true
	w.status = code
	w.clen = -1
	if cl := w.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			w.clen = n
		} else {
			w.header.Del("Content-Length")
		}
	}
}

func (w *writer) Write(p []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.head {
		w.sniff(p)
		w.wrote += int64(len(p))
		return len(p), nil
	}
	if w.clen >= 0 && w.wrote+int64(len(p)) > w.clen {
		return 0, http.ErrContentLength
	}
	if w.pipe == nil && w.buf.Len()+len(p) <= bufferLimit {
		w.wrote += int64(len(p))
		return w.buf.Write(p)
	}
	if w.pipe == nil {
		if w.buf.Len() > 0 {
			w.sniff(w.buf.Bytes())
		} else {
			w.sniff(p)
		}
		w.startStream()
	}
	n, err := w.pipe.write(p)
	w.wrote += int64(n)
	if err != nil {
		w.cancel() // the client is gone: stop the work done for it
	}
	return n, err
}

// ReadFrom keeps sendfile for a file copied whole into a fresh response
// (http.ServeContent does this): fasthttp sends the file itself.
func (w *writer) ReadFrom(src io.Reader) (int64, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	if w.pipe != nil || w.buf.Len() > 0 || w.head || w.clen < bufferLimit || !bodyAllowed(w.status) || !isFile(src) {
		// io.Copy would allocate a 32 KiB buffer for every call.
		bp := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(bp)
		return io.CopyBuffer(writeOnly{w}, src, *bp)
	}
	size := w.clen - w.wrote
	fb := &fileBody{src: src, size: size, done: make(chan struct{})}
	w.commitHeaders()
	if sf, ok := w.conn.(fileSender); ok {
		// The headers go out first, so that the body can be written to the
		// connection itself (connguard.Conn.SendFile) past fasthttp's
		// buffered writer.
		fb.sf = sf
		w.fc.Response.ImmediateHeaderFlush = true
	}
	w.send(event{kind: evStream, body: fb, size: int(size)})
	<-fb.done
	w.wrote += fb.n
	if fb.err != nil {
		w.cancel()
	}
	return fb.n, fb.err
}

func isFile(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	_, ok := r.(*os.File)
	return ok
}

// writeOnly hides ReadFrom from io.Copy.
type writeOnly struct{ w *writer }

func (o writeOnly) Write(p []byte) (int, error) { return o.w.Write(p) }

// Flush sends the headers and what is buffered; later writes stream.
func (w *writer) Flush() {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	if w.pipe == nil && !w.sent {
		w.sniff(w.buf.Bytes())
		w.startStream()
	}
}

// FlushError is Flush for http.ResponseController.
func (w *writer) FlushError() error {
	w.Flush()
	return nil
}

// SetWriteDeadline bounds the writes to the client (http.ResponseController).
func (w *writer) SetWriteDeadline(t time.Time) error { return w.conn.SetWriteDeadline(t) }

// sniff sets Content-Type from the body's first bytes, as net/http does,
// when the handler set none (nor a nil one).
func (w *writer) sniff(p []byte) {
	if _, ok := w.header["Content-Type"]; ok || len(p) == 0 || !bodyAllowed(w.status) {
		return
	}
	w.header.Set("Content-Type", http.DetectContentType(p))
}

// startStream commits the headers and hands fasthttp a pipe, first filled
// with what was buffered.
func (w *writer) startStream() {
	pw := newStream(w.clen, w.cancel)
	w.pipe = pw
	w.commitHeaders()
	size := -1
	if w.clen >= 0 {
		size = int(w.clen)
	}
	w.fc.Response.ImmediateHeaderFlush = true
	w.send(event{kind: evStream, body: pw, size: size})
	if w.buf.Len() > 0 {
		b := w.buf.Bytes()
		w.buf = bytes.Buffer{}
		if _, err := pw.write(b); err != nil {
			pw.closeWithError(err)
		}
	}
}

func (w *writer) send(ev event) {
	w.sent = true
	w.events <- ev
}

// commitHeaders copies status and headers into the fasthttp response.
func (w *writer) commitHeaders() {
	resp := &w.fc.Response
	resp.SetStatusCode(w.status)
	for k, vv := range w.header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "Connection":
			for _, v := range vv {
				if httpguts.HeaderValuesContainsToken([]string{v}, "close") {
					resp.SetConnectionClose()
				}
			}
			continue
		case "Content-Type":
			if len(vv) > 0 {
				resp.Header.SetContentType(vv[0])
			}
			continue
		case "Date":
			if len(vv) > 0 {
				SetDate(&resp.Header, []byte(vv[0]))
			}
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue // net/http drops them too
		}
		for _, v := range vv {
			resp.Header.Add(k, v)
		}
	}
	if w.req.Close {
		resp.SetConnectionClose()
	}
}

// commitBuffered finishes a response the handler completed in memory.
func (w *writer) commitBuffered() {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	resp := &w.fc.Response
	if _, ok := w.header["Content-Type"]; !ok && w.buf.Len() > 0 && bodyAllowed(w.status) {
		w.header.Set("Content-Type", http.DetectContentType(w.buf.Bytes()))
	}
	w.commitHeaders()
	switch {
	case w.head:
		resp.SkipBody = true
		if w.clen >= 0 {
			resp.Header.SetContentLength(int(w.clen))
		} else if w.wrote > 0 {
			resp.Header.SetContentLength(int(w.wrote))
		}
	case bodyAllowed(w.status):
		resp.SetBodyRaw(w.buf.Bytes())
	}
}

// run calls the handler on its own goroutine and sends the one event
// fasthttp waits for (if the handler did not already).
func (w *writer) run(s *Server, cancel context.CancelFunc) {
	defer cancel()
	aborted := false
	var streamErr error
	func() {
		defer func() {
			if v := recover(); v != nil {
				aborted = true
				streamErr = errAborted
				if v != http.ErrAbortHandler {
					s.logger.Error("handler panic", "method", w.req.Method, "path", w.req.URL.Path, "panic", v, "stack", string(debug.Stack()))
				}
			}
		}()
		s.cfg.Handler.ServeHTTP(w, w.req)
	}()
	if !aborted && w.clen >= 0 && w.wrote < w.clen && !w.head && bodyAllowed(w.status) {
		// A short body under a declared length: end the connection rather
		// than let the client wait for the rest (net/http does the same).
		aborted, streamErr = true, errShortBody
	}
	switch {
	case w.pipe != nil:
		w.pipe.closeWithError(streamErr) // nil: EOF
	case w.sent:
		// a file body was streamed; nothing left
	case aborted:
		w.send(event{kind: evAbort})
	default:
		w.send(event{kind: evDone})
	}
}

var (
	errAborted   = errors.New("handler aborted the response")
	errShortBody = errors.New("handler wrote less than its Content-Length")
)

func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199) && status != http.StatusNoContent && status != http.StatusNotModified
}

// fileSender is a connection that sends files itself (connguard.Conn:
// sendfile under the write-progress deadline).
type fileSender interface {
	SendFile(f *os.File, lr *io.LimitedReader) (written int64, err error, handled bool)
}

// fileBody lets fasthttp copy a file with sendfile and tells the handler
// (waiting in ReadFrom) when it is done.
type fileBody struct {
	src  io.Reader  // an *os.File, or an *io.LimitedReader of one
	size int64      // the bytes announced for it
	sf   fileSender // set when the headers are flushed before the body and the connection is plain TCP
	n    int64
	err  error
	once sync.Once
	done chan struct{}
}

// WriteTo sends the file: on a plain TCP connection with its SendFile, else
// through fasthttp's writer, whose ReadFrom also uses sendfile on TCP.
func (f *fileBody) WriteTo(w io.Writer) (int64, error) {
	var n int64
	var err error
	handled := false
	if f.sf != nil {
		lr, ok := f.src.(*io.LimitedReader)
		if !ok {
			lr = &io.LimitedReader{R: f.src, N: f.size}
		}
		lr.N = min(lr.N, f.size)
		if file, ok := lr.R.(*os.File); ok {
			n, err, handled = f.sf.SendFile(file, lr)
		}
	}
	if !handled {
		if rf, ok := w.(io.ReaderFrom); ok {
			n, err = rf.ReadFrom(f.src) // the *io.LimitedReader of an *os.File: sendfile
		} else {
			n, err = io.Copy(w, f.src)
		}
	}
	f.n += n
	if err != nil && f.err == nil {
		f.err = err
	}
	return n, err
}

func (f *fileBody) Read(p []byte) (int, error) {
	n, err := f.src.Read(p)
	f.n += int64(n)
	if err != nil && err != io.EOF && f.err == nil {
		f.err = err
	}
	return n, err
}

// Close is called by fasthttp when the body was sent (or abandoned).
func (f *fileBody) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

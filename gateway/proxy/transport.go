package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/stella-ops/stella-mirror/internal/rawsock"
)

// Transport is the http.RoundTripper NewTransport returns: HTTP/1.1 to the
// origin over kept-alive connections, one request per connection at a time,
// written and read on the caller's goroutine.
//
// net/http's Transport runs two goroutines per connection and hands every
// request and response between them and the caller; on small proxied
// responses those hand-offs cost the gateway a fifth of its throughput.
// The wire format is still net/http's: requests are written by
// (*http.Request).Write and responses parsed by http.ReadResponse, which
// frame bodies (Content-Length, chunked) exactly as the Transport does.
//
// Timeouts: DialTimeout for the TCP connection and TLS handshake,
// HeaderTimeout from the request's last byte to the response headers,
// BodyIdleTimeout for each later read. A request's context cancels it (the
// connection is then closed). A kept-alive connection the origin closed
// while idle is retried once on a new connection, as net/http does for
// requests without a body.
type Transport struct {
	dialer        *net.Dialer
	tlsConfig     *tls.Config // nil: the origin must be http
	headerTimeout time.Duration
	idleTimeout   time.Duration // per body read
	keepIdle      time.Duration // how long an unused connection is kept
	maxIdle       int

	mu   sync.Mutex
	idle map[string][]*persistConn // by scheme://host
}

// persistConn is one connection to the origin.
type persistConn struct {
	t      *Transport
	key    string
	conn   *countingConn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

// countingConn counts bytes read (a failure before the first response byte
// on a reused connection may be retried) and, once the headers are in,
// gives every read BodyIdleTimeout.
type countingConn struct {
	net.Conn
	read    int64
	perRead time.Duration   // 0: leave the deadline alone
	ctx     context.Context // the exchange's; nil when idle
}

func (c *countingConn) Read(p []byte) (int, error) {
	if c.perRead > 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.perRead)); err != nil {
			return 0, err
		}
		// A cancellation that broke the deadline just before it was
		// renewed above must still end this read.
		if c.ctx != nil && c.ctx.Err() != nil {
			return 0, c.ctx.Err()
		}
	}
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	return n, err
}

// RoundTrip sends req (which must have no body) and returns the response
// with its body streaming from the connection.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return nil, fmt.Errorf("proxy transport: unsupported URL %q", req.URL)
	}
	if req.URL.Scheme == "https" && t.tlsConfig == nil {
		return nil, errors.New("proxy transport: https origin without TLS configuration")
	}
	if req.Body != nil && req.Body != http.NoBody {
		return nil, errors.New("proxy transport: requests with a body are not forwarded")
	}
	ctx := req.Context()
	key := req.URL.Scheme + "://" + req.URL.Host
	pc, reused, err := t.get(ctx, key, req.URL.Scheme, req.URL.Host)
	if err != nil {
		return nil, err
	}
	resp, err := pc.exchange(ctx, req)
	status, closing := 0, false
	if resp != nil {
		status, closing = resp.StatusCode, resp.Close
	}
	if !reused || !idempotent(req.Method) || ctx.Err() != nil || !closedWhileIdle(pc, err, status, closing) {
		if err != nil {
			pc.close()
		}
		return resp, err
	}
	if resp != nil {
		resp.Body.Close() // the 408 of an idle timeout: never meant for this request
	}
	pc.close()
	// Retry once, on a new connection: after an origin restart every
	// pooled connection is dead, and the next one would fail the same way.
	if pc, err = t.dial(ctx, key, req.URL.Scheme, req.URL.Host); err != nil {
		return nil, err
	}
	resp, err = pc.exchange(ctx, req)
	if err != nil {
		pc.close()
	}
	return resp, err
}

// closedWhileIdle reports whether an exchange on a kept-alive connection
// failed because the origin had closed that connection while it was idle:
// the request may be sent again on a new one. Either nothing at all came
// back (err, no byte read, no timeout), or the origin timed the idle
// connection out and said so before closing (a 408 with Connection:
// close), an answer never meant for this request.
func closedWhileIdle(pc *persistConn, err error, status int, closing bool) bool {
	if err != nil {
		return pc.conn.read == 0 && !isTimeout(err)
	}
	return status == http.StatusRequestTimeout && closing
}

// idempotent reports whether a request with method may be sent twice.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// get returns a kept-alive connection (reused) or dials one.
func (t *Transport) get(ctx context.Context, key, scheme, host string) (*persistConn, bool, error) {
	now := time.Now()
	t.mu.Lock()
	for list := t.idle[key]; len(list) > 0; list = t.idle[key] {
		pc := list[len(list)-1]
		t.idle[key] = list[:len(list)-1]
		if now.Sub(pc.idleAt) < t.keepIdle {
			t.mu.Unlock()
			return pc, true, nil
		}
		go pc.conn.Close()
	}
	t.mu.Unlock()
	pc, err := t.dial(ctx, key, scheme, host)
	return pc, false, err
}

func (t *Transport) dial(ctx context.Context, key, scheme, host string) (*persistConn, error) {
	addr := host
	if _, _, err := net.SplitHostPort(host); err != nil {
		port := "80"
		if scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(host, port)
	}
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c = rawsock.Wrap(c)
	if scheme == "https" {
		cfg := t.tlsConfig.Clone()
		if cfg.ServerName == "" {
			name, _, err := net.SplitHostPort(addr)
			if err != nil {
				name = addr
			}
			cfg.ServerName = name
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(c, cfg)
		hctx, cancel := context.WithTimeout(ctx, t.dialer.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.RemoteAddr(), Err: err}
		}
		c = tc
	}
	cc := &countingConn{Conn: c}
	return &persistConn{t: t, key: key, conn: cc, br: bufio.NewReaderSize(cc, 16<<10), bw: bufio.NewWriterSize(cc, 4<<10)}, nil
}

// exchange writes req and reads the response headers.
func (pc *persistConn) exchange(ctx context.Context, req *http.Request) (*http.Response, error) {
	stop, err := pc.send(ctx, req.Write)
	if err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(pc.br, req)
	// Informational answers (103 Early Hints, 100 Continue) precede the
	// real one; 101 would switch protocols, which this transport does not.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 {
		if resp.StatusCode == http.StatusSwitchingProtocols {
			stop()
			return nil, errors.New("the origin answered 101 Switching Protocols")
		}
		resp, err = http.ReadResponse(pc.br, req)
	}
	if err != nil {
		stop()
		if isTimeout(err) && ctx.Err() == nil {
			return nil, &headerTimeoutError{d: pc.t.headerTimeout, err: err}
		}
		return nil, ctxErr(ctx, err)
	}
	pc.conn.perRead = pc.t.idleTimeout
	reusable := !resp.Close && !req.Close
	if resp.Body == http.NoBody || resp.Body == nil || req.Method == http.MethodHead {
		if !stop() {
			reusable = false
		}
		if resp.Body == nil {
			resp.Body = http.NoBody
		}
		pc.release(reusable && resp.Body == http.NoBody)
		return resp, nil
	}
	resp.Body = &body{rc: resp.Body, pc: pc, ctx: ctx, stop: stop, reusable: reusable}
	return resp, nil
}

// send writes a request (write fills pc's buffered writer, which is then
// flushed) and starts the header timeout. It returns the function that
// detaches ctx from the connection: until then, cancelling ctx breaks the
// connection's deadlines, which ends any read or write in progress.
func (pc *persistConn) send(ctx context.Context, write func(io.Writer) error) (stop func() bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stop = context.AfterFunc(ctx, func() { pc.conn.Conn.SetDeadline(time.Unix(1, 0)) })
	pc.conn.read = 0
	pc.conn.perRead = 0
	pc.conn.ctx = ctx
	if err := pc.conn.Conn.SetDeadline(time.Time{}); err != nil {
		stop()
		return nil, err
	}
	if err := write(pc.bw); err != nil {
		stop()
		return nil, ctxErr(ctx, err)
	}
	if err := pc.bw.Flush(); err != nil {
		stop()
		return nil, ctxErr(ctx, err)
	}
	if d := pc.t.headerTimeout; d > 0 {
		pc.conn.Conn.SetReadDeadline(time.Now().Add(d))
		// The new deadline may have replaced the one a cancellation set.
		if err := ctx.Err(); err != nil {
			stop()
			return nil, err
		}
	}
	return stop, nil
}

// ctxErr prefers the context's error when it caused err.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// headerTimeoutError is a HeaderTimeout expiry (a net.Error that times out).
type headerTimeoutError struct {
	d   time.Duration
	err error
}

func (e *headerTimeoutError) Error() string {
	return fmt.Sprintf("timeout awaiting response headers from the origin (%s): %v", e.d, e.err)
}
func (e *headerTimeoutError) Unwrap() error   { return e.err }
func (e *headerTimeoutError) Timeout() bool   { return true }
func (e *headerTimeoutError) Temporary() bool { return false }

// release keeps pc for reuse, or closes it.
func (pc *persistConn) release(reuse bool) {
	pc.conn.ctx = nil
	// Bytes after the response are nothing this connection asked for.
	if !reuse || pc.br.Buffered() > 0 {
		pc.close()
		return
	}
	pc.conn.perRead = 0
	pc.idleAt = time.Now()
	t := pc.t
	t.mu.Lock()
	if len(t.idle[pc.key]) >= t.maxIdle {
		t.mu.Unlock()
		pc.close()
		return
	}
	t.idle[pc.key] = append(t.idle[pc.key], pc)
	t.mu.Unlock()
}

func (pc *persistConn) close() { pc.conn.Close() }

// CloseIdleConnections closes the kept-alive connections.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = make(map[string][]*persistConn)
	t.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.close()
		}
	}
}

// body is a response body; the connection goes back to the pool only when
// the body was read to its end without error (closing it early closes the
// connection rather than reading the rest, however large).
type body struct {
	rc       io.ReadCloser
	pc       *persistConn
	ctx      context.Context
	stop     func() bool
	reusable bool
	eof      bool
	err      error
	done     bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("read on a closed response body")
	}
	if b.eof || b.err != nil {
		if b.err != nil {
			return 0, b.err
		}
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = ctxErr(b.ctx, err)
		err = b.err
	}
	return n, err
}

func (b *body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	stopped := b.stop()
	b.pc.release(b.eof && b.err == nil && b.reusable && stopped)
	return nil
}

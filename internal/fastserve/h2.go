package fastserve

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// h2server keeps the server's HTTP/2 connections (h2conn.go), for
// Shutdown and Close.
//
// Why not golang.org/x/net/http2 (net/http's own HTTP/2 server): it runs
// every request on a goroutine of its own, and every frame a handler
// writes goes through channels to the connection's serving goroutine and
// on to a writing one; with its HPACK encoder, that was more than half of
// the gateway's CPU for a cached index.json under h2load, which nginx
// served twice as fast. The connection in h2conn.go answers Native
// requests on the goroutine that read them and writes their frames in
// one system call (over a batchConn).
type h2server struct {
	s *Server

	mu     sync.Mutex
	conns  map[*h2conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newH2Server(s *Server) *h2server {
	return &h2server{s: s, conns: make(map[*h2conn]struct{})}
}

// serve serves tc until the client or a shutdown ends it.
func (h *h2server) serve(tc *tls.Conn) {
	c := newH2Conn(h.s, newBatchConn(tc, h.s.cfg.IdleTimeout), &tlsConn{Conn: tc, state: tc.ConnectionState()})
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		c.bc.Close()
		return
	}
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
		h.wg.Done()
	}()
	c.serve()
}

// shutdown refuses new connections, sends GOAWAY on the others and waits
// until their streams are done or ctx ends (then it closes them).
func (h *h2server) shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	for c := range h.conns {
		c.shutdown()
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.close()
		return ctx.Err()
	}
}

// close ends every connection now.
func (h *h2server) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.conns {
		c.bc.Conn.Close()
	}
}

// batchConn is a TLS connection whose writes are collected and sent by a
// goroutine of their own: a Write returns as soon as its bytes are queued,
// and each TLS write takes everything queued while the one before it was
// in the kernel. Nothing waits for a timer: an idle connection's first
// write goes out at once, and under load the frames of several responses
// share one TLS record and one system call.
//
// A Write waits while batchLimit bytes are queued (back-pressure from a
// slow client reaches the HTTP/2 server as before); after a failed write
// every Write fails with the same error. Close sends what is queued, for
// at most closeFlushTimeout, then closes.
type batchConn struct {
	*tls.Conn

	mu      sync.Mutex
	cond    *sync.Cond // signalled when queued bytes were taken or the writer stopped
	queued  *[]byte    // nil when nothing is queued
	err     error      // the first write error
	closing bool
	kick    chan struct{} // capacity 1: there are queued bytes (or closing)
	stopped chan struct{} // closed when the writer goroutine has returned

	writeTimeout time.Duration
}

const (
	batchLimit        = 64 << 10
	closeFlushTimeout = time.Second
)

var batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// newBatchConn starts tc's writer; writeTimeout (0: none) bounds each
// write, so a client that stops reading loses its connection.
func newBatchConn(tc *tls.Conn, writeTimeout time.Duration) *batchConn {
	c := &batchConn{Conn: tc, kick: make(chan struct{}, 1), stopped: make(chan struct{}), writeTimeout: writeTimeout}
	c.cond = sync.NewCond(&c.mu)
	go c.writer()
	return c
}

// Write queues p.
func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && c.queued != nil && len(*c.queued) >= batchLimit {
		c.cond.Wait()
	}
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	if c.queued == nil {
		c.queued = batchBuffers.Get().(*[]byte)
	}
	*c.queued = append(*c.queued, p...)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

// writer sends what is queued until a write fails or Close is done.
func (c *batchConn) writer() {
	defer close(c.stopped)
	for range c.kick {
		for {
			c.mu.Lock()
			b := c.queued
			c.queued = nil
			closing := c.closing
			c.cond.Broadcast() // room for blocked writers
			c.mu.Unlock()
			if b == nil {
				if closing {
					return
				}
				break
			}
			if c.writeTimeout > 0 {
				c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
			}
			_, err := c.Conn.Write(*b)
			if cap(*b) <= 4*batchLimit {
				*b = (*b)[:0]
				batchBuffers.Put(b)
			}
			if err != nil {
				c.mu.Lock()
				c.err = err
				c.cond.Broadcast()
				c.mu.Unlock()
				return
			}
		}
	}
}

// Close sends what is queued (for at most closeFlushTimeout) and closes
// the connection. It is safe to call more than once.
func (c *batchConn) Close() error {
	c.mu.Lock()
	first := !c.closing
	c.closing = true
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	if first {
		select {
		case c.kick <- struct{}{}:
		default:
		}
		t := time.NewTimer(closeFlushTimeout)
		select {
		case <-c.stopped:
		case <-t.C:
		}
		t.Stop()
	}
	return c.Conn.Close()
}

package fastserve

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
)

// HTTP/2 is net/http's: a TLS connection that negotiated "h2" is handed,
// already shaken hands with, to Config.HTTP2's Serve through an h2Listener.
// net/http sees a *tls.Conn whose NegotiatedProtocol is "h2" and runs its
// bundled HTTP/2 server on it (TLSNextProto), with the limits of
// http.Server.HTTP2, its timeouts, and its graceful Shutdown (GOAWAY).
//
// Why this and not golang.org/x/net/http2's Server.ServeConn: it is the
// same server (net/http bundles x/net/http2), but through http.Server it
// is configured with http.HTTP2Config like the std engine's, fixed with
// every Go release without a module bump, and http.Server.Shutdown already
// tracks, drains and closes its connections; ServeConn would leave that
// bookkeeping to us.
//
// The h2 path has no Native hook: HTTP/2 requests go to the handler.

// h2Listener is a net.Listener fed with connections that are already
// accepted (and shaken hands with) elsewhere.
type h2Listener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	addr  net.Addr
}

func newH2Listener(addr net.Addr) *h2Listener {
	return &h2Listener{conns: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

// deliver hands c to Accept; false when the listener is closed.
func (l *h2Listener) deliver(c *tls.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *h2Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *h2Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *h2Listener) Addr() net.Addr { return l.addr }

// serveH2 serves the HTTP/2 connections delivered to l until the server
// is shut down.
func (s *Server) serveH2(l *h2Listener) {
	err := s.h2.Serve(l)
	if err != nil && err != http.ErrServerClosed {
		s.logger.Error("HTTP/2 server stopped", "error", err.Error())
	}
}

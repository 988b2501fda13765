// Package loopname makes the project's own HTTP clients resolve "localhost"
// and every name under ".localhost" to the loopback address, as RFC 6761
// §6.3 asks of name resolution APIs, instead of sending them to DNS (the
// system resolver of a static Go binary, and many stub resolvers, answer
// "no such host" for mirror-primary.localhost).
//
// Only the dial target changes: the request keeps its Host header and the
// TLS client keeps the name for SNI and certificate verification.
package loopname

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Is reports whether host (without port) is "localhost" or a name under
// ".localhost", case-insensitively, with or without a trailing dot.
func Is(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	return h == "localhost" || (strings.HasSuffix(h, ".localhost") && len(h) > len(".localhost"))
}

// DialFunc is the signature of net.Dialer.DialContext and
// http.Transport.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Wrap returns a dial function that dials 127.0.0.1, then ::1, for an
// address whose host Is a localhost name, and passes every other address to
// dial unchanged. A nil dial means a zero net.Dialer.
func Wrap(dial DialFunc) DialFunc {
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || !Is(host) {
			return dial(ctx, network, addr)
		}
		var errs []error
		for _, ip := range loopbacks(network) {
			c, err := dial(ctx, network, net.JoinHostPort(ip, port))
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return nil, errors.Join(errs...)
	}
}

// loopbacks lists the loopback addresses to try for network, IPv4 first.
func loopbacks(network string) []string {
	switch network {
	case "tcp4", "udp4":
		return []string{"127.0.0.1"}
	case "tcp6", "udp6":
		return []string{"::1"}
	}
	return []string{"127.0.0.1", "::1"}
}

// NoProxy wraps an http.Transport Proxy function (e.g.
// http.ProxyFromEnvironment) so that requests to localhost names never go
// through a proxy: the proxy would resolve them on its own host. A nil next
// means no proxy at all.
func NoProxy(next func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(r *http.Request) (*url.URL, error) {
		if next == nil || Is(r.URL.Hostname()) {
			return nil, nil
		}
		return next(r)
	}
}

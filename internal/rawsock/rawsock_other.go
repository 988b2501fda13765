//go:build !linux

package rawsock

import "net"

// Wrap returns c: raw calls are implemented for Linux only.
func Wrap(c net.Conn) net.Conn { return c }

// TCP returns c as a TCP connection, if it is one.
func TCP(c net.Conn) (*net.TCPConn, bool) {
	tc, ok := c.(*net.TCPConn)
	return tc, ok
}

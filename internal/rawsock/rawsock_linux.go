package rawsock

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// conn is a TCP connection whose reads and writes are system calls made
// without entering the Go scheduler's syscall state. On a nonblocking
// socket read(2) and write(2) never wait (EAGAIN goes to the netpoller,
// with the connection's deadlines, as net's own loop does), so there is
// nothing for the scheduler to hand off while they run.
//
// The functions RawConn runs are made once per connection and their state
// kept in r and w, so a Read or Write allocates nothing (a closure per call
// cost three allocations). As for any net.Conn, one Read and one Write may
// run at a time, each on its own state.
type conn struct {
	*net.TCPConn
	rc   syscall.RawConn
	r, w op
}

// op is one direction's call in progress.
type op struct {
	p     []byte
	n     int // bytes done
	errno syscall.Errno
	fn    func(fd uintptr) bool // c.read or c.write, for rc
}

// Wrap returns c with raw reads and writes when it is a *net.TCPConn, and
// c itself otherwise. Everything but Read and Write (deadlines, Close,
// ReadFrom's sendfile, addresses) is the TCP connection's own.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rs := &conn{TCPConn: tc, rc: rc}
	rs.r.fn, rs.w.fn = rs.read, rs.write
	return rs
}

// Read reads at most len(p) bytes; io.EOF when the peer has closed.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.r = op{p: p, fn: c.r.fn}
	err := c.rc.Read(c.r.fn)
	n, errno := c.r.n, c.r.errno
	c.r.p = nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// read is one attempt for rc.Read: false to wait until fd is readable.
func (c *conn) read(fd uintptr) bool {
	p := c.r.p
	for {
		n, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.r.n, c.r.errno = int(n), errno
		return true
	}
}

// Write writes all of p unless the connection fails or its deadline passes.
func (c *conn) Write(p []byte) (int, error) {
	c.w = op{p: p, fn: c.w.fn}
	err := c.rc.Write(c.w.fn)
	n, errno := c.w.n, c.w.errno
	c.w.p = nil
	if err == nil && errno != 0 {
		err = os.NewSyscallError("write", errno)
	}
	return n, err
}

// write is one attempt for rc.Write: false to wait until fd has room.
func (c *conn) write(fd uintptr) bool {
	p := c.w.p
	for c.w.n < len(p) {
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.w.n])), uintptr(len(p)-c.w.n))
		switch {
		case errno == 0 && n > 0:
			c.w.n += int(n)
		case errno == 0: // no progress without an error: wait rather than spin
			return false
		case errno == syscall.EINTR:
		case errno == syscall.EAGAIN:
			return false
		default:
			c.w.errno = errno
			return true
		}
	}
	return true
}

// TCP returns the TCP connection under c: c itself, or the one Wrap
// wrapped.
func TCP(c net.Conn) (*net.TCPConn, bool) {
	switch c := c.(type) {
	case *net.TCPConn:
		return c, true
	case *conn:
		return c.TCPConn, true
	}
	return nil, false
}

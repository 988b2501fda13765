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
type conn struct {
	*net.TCPConn
	rc syscall.RawConn
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
	return &conn{TCPConn: tc, rc: rc}
}

// Read reads at most len(p) bytes; io.EOF when the peer has closed.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n uintptr
	var errno syscall.Errno
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			n, _, errno = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch errno {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return int(n), nil
}

// Write writes all of p unless the connection fails or its deadline passes.
func (c *conn) Write(p []byte) (int, error) {
	written := 0
	var errno syscall.Errno
	err := c.rc.Write(func(fd uintptr) bool {
		for written < len(p) {
			n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[written])), uintptr(len(p)-written))
			switch {
			case e == 0 && n > 0:
				written += int(n)
				continue
			case e == 0: // no progress without an error: wait rather than spin
				return false
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false
			}
			errno = e
			return true
		}
		return true
	})
	if err == nil && errno != 0 {
		err = os.NewSyscallError("write", errno)
	}
	return written, err
}

package fastserve

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// Raw sendfile for a file body on a plain TCP connection.
//
// net's sendfile enters the Go scheduler's syscall state for every call.
// Serving a large file to a client slower than the disk, the process is
// mostly waiting for socket space, so the scheduler's monitor thread goes
// to sleep and each sendfile wakes it again (a futex wake), and a call that
// lasts longer than its 20 µs tick hands the P to another thread (another
// wake). Profiled on the 64 MiB bundle, that was a quarter of the origin's
// CPU, and twice nginx's context switches per byte.
//
// sendFile makes the call without entering the syscall state, in chunks of
// rawChunk: on a nonblocking socket sendfile never waits for the network
// (EAGAIN goes to the netpoller, as net's loop does), so the only way a call
// is slow is a page-cache miss on the file. A chunk that takes longer than
// slowChunk (a disk read) switches the rest of the transfer back to net's
// sendfile, so a cold file holds a P for one chunk at most.
const rawChunk = 512 << 10

// slowChunk is in nanoseconds, a variable for the test of the switch back.
var slowChunk atomic.Int64

func init() { slowChunk.Store(int64(time.Millisecond)) }

// sendFile copies lr (an *os.File, bounded by lr.N) to c and reduces lr.N
// by what it wrote. It reports handled=false, having written nothing, when
// sendfile(2) cannot copy this file (the caller then copies another way).
func sendFile(c *net.TCPConn, f *os.File, lr *io.LimitedReader) (written int64, err error, handled bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err, true
	}
	fc, err := f.SyscallConn()
	if err != nil {
		return 0, nil, false
	}
	var slow, unsupported bool
	var werr error
	cerr := fc.Control(func(src uintptr) {
		err := rc.Write(func(dst uintptr) bool {
			for lr.N > 0 {
				start := time.Now()
				n, _, errno := syscall.RawSyscall6(syscall.SYS_SENDFILE, dst, src, 0, uintptr(min(lr.N, rawChunk)), 0, 0)
				switch {
				case errno == syscall.EAGAIN:
					return false // wait until the socket has room
				case errno == syscall.EINTR:
					continue
				case (errno == syscall.EINVAL || errno == syscall.ENOSYS || errno == syscall.EOPNOTSUPP) && written == 0:
					unsupported = true
					return true
				case errno != 0:
					werr = os.NewSyscallError("sendfile", errno)
					return true
				case n == 0:
					// The file ended before the length that was announced.
					werr = io.ErrUnexpectedEOF
					return true
				}
				written += int64(n)
				lr.N -= int64(n)
				if time.Since(start) > time.Duration(slowChunk.Load()) {
					slow = true
					return true
				}
			}
			return true
		})
		if err != nil && werr == nil {
			werr = err
		}
	})
	if unsupported {
		return 0, nil, false
	}
	if werr == nil {
		werr = cerr
	}
	if werr == nil && slow && lr.N > 0 {
		n, err := c.ReadFrom(lr) // net's sendfile, in the scheduler's syscall state
		written += n
		werr = err
	}
	return written, werr, true
}

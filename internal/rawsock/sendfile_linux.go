package rawsock

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// SendFile's chunks: on a nonblocking socket sendfile never waits for the
// network (EAGAIN goes to the netpoller), so the only way a call is slow is
// a page-cache miss on the file. A chunk that takes longer than slowChunk
// (a disk read) switches the rest of the transfer back to net's sendfile,
// which is made in the scheduler's syscall state: a cold file holds a P
// for one chunk at most. Profiled on the 64 MiB bundle, net's sendfile had
// the monitor thread woken after every wait for socket space: a quarter of
// the origin's CPU, and twice nginx's context switches per byte.
const rawChunk = 512 << 10

// slowChunk is in nanoseconds, a variable for the test of the switch back.
var slowChunk atomic.Int64

func init() { slowChunk.Store(int64(time.Millisecond)) }

// SendFile copies lr (an *os.File, bounded by lr.N) to c with sendfile(2)
// made as a raw call, and reduces lr.N by what it wrote. It reports
// handled=false, having written nothing, when sendfile cannot copy this
// file (the caller then copies another way).
func SendFile(c *net.TCPConn, f *os.File, lr *io.LimitedReader) (written int64, err error, handled bool) {
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
		if werr == nil && lr.N > 0 {
			// io.Copy's rules: the file's end is no error there.
			werr = io.ErrUnexpectedEOF
		}
	}
	return written, werr, true
}

package connguard

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stella-ops/stella-mirror/internal/rawsock"
)

// MinProgress is how many bytes the peer must accept within one
// write-progress timeout for a write to count as progressing: a client
// that stopped reading still lets through a few KiB now and then, each
// time its kernel collapses its receive queue (make dos h1-slow-read:
// 1.7 to 16 KiB, once or twice per connection), which with "any byte"
// held every stalled connection for two or three timeouts. 64 KiB per
// timeout is 2.2 KB/s at the default 30 s.
const MinProgress = 64 << 10

// Conn is an accepted connection with a write-progress deadline: before
// each write the deadline is moved to now + WriteProgressTimeout, and a
// write that times out after the peer accepted at least MinProgress bytes
// since the deadline was set goes on with a fresh deadline. A write fails
// (os.ErrDeadlineExceeded) only when the peer accepted less than that in
// a whole timeout, however long the transfer: a slow download that
// progresses is never cut, a client that stopped reading loses its
// connection. It sits below TLS, whose connection is
// unusable after a failed write: the timeout only ever fires once, and
// after it every write fails at once (stalled).
//
// Reads and writes are rawsock's; ReadFrom and SendFile keep sendfile(2),
// with the same deadline rule.
type Conn struct {
	net.Conn // rawsock.Wrap of the accepted connection
	tcp      *net.TCPConn
	l        *Guard
	ip       netip.Addr
	timeout  time.Duration
	slack    int64        // nanoseconds: the deadline is moved only when it is nearer than timeout - slack
	armed    atomic.Int64 // the write deadline in force, unix nanoseconds (0: none)
	stall    atomic.Bool  // a write timed out without progress: every later write fails at once
	moved    atomic.Int64 // bytes the peer accepted since the deadline was last moved
	once     sync.Once
}

func newConn(c net.Conn, l *Guard, ip netip.Addr) *Conn {
	tcp, _ := c.(*net.TCPConn)
	gc := &Conn{Conn: rawsock.Wrap(c), tcp: tcp, l: l, ip: ip, timeout: l.limits.WriteProgressTimeout}
	gc.slack = int64(gc.timeout / 8)
	return gc
}

// arm moves the write deadline to now + timeout, unless it is already
// at most timeout/8 earlier than that (a deadline change per small
// response is not free).
func (c *Conn) arm() {
	now := time.Now()
	want := now.UnixNano() + int64(c.timeout)
	if a := c.armed.Load(); a != 0 && want-a < c.slack {
		return
	}
	c.armed.Store(want)
	c.moved.Store(0)
	c.Conn.SetWriteDeadline(now.Add(c.timeout))

}

// Write writes p, failing only when no byte of it was accepted for the
// write-progress timeout (or on any other error).
func (c *Conn) Write(p []byte) (int, error) {
	if c.timeout <= 0 {
		return c.Conn.Write(p)
	}
	if c.stall.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	total := 0
	for {
		c.arm()
		n, err := c.Conn.Write(p[total:])
		total += n
		if err == nil || total == len(p) {
			return total, nil
		}
		if !isTimeout(err) {
			return total, err
		}
		if c.moved.Add(int64(n)) < MinProgress {
			c.stalled()
			return total, err
		}
		c.armed.Store(0) // progress: a fresh deadline
	}
}

// stalled marks c as stalled: the peer accepted nothing for the whole
// timeout, so every later write fails at once instead of waiting another
// timeout — notably the TLS close_notify alert that closing the
// connection sends (crypto/tls gives it a deadline of 5 s of its own),
// which kept each stalled connection's descriptor for one more timeout.
func (c *Conn) stalled() {
	c.stall.Store(true)
	if c.l != nil && c.l.metrics != nil {
		c.l.metrics.WriteTimeout("connection")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// SetWriteDeadline sets the write deadline; the next Write moves it again
// (to now + the write-progress timeout) when that is later.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		c.armed.Store(0)
	} else {
		c.armed.Store(t.UnixNano())
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines (see SetWriteDeadline).
func (c *Conn) SetDeadline(t time.Time) error {
	if t.IsZero() {
		c.armed.Store(0)
	} else {
		c.armed.Store(t.UnixNano())
	}
	return c.Conn.SetDeadline(t)
}

// ReadFrom copies r to the connection: a file (or an io.LimitedReader of
// one) with sendfile(2), anything else through Write.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	lr, ok := r.(*io.LimitedReader)
	if !ok {
		if f, isFile := r.(*os.File); isFile {
			lr = &io.LimitedReader{R: f, N: 1<<63 - 1}
			ok = true
		}
	}
	if ok {
		if f, isFile := lr.R.(*os.File); isFile {
			if n, err, handled := c.SendFile(f, lr); handled {
				if err == io.ErrUnexpectedEOF && lr.N > 1<<62 {
					err = nil // no length was announced: the file's end is the end
				}
				return n, err
			}
		}
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	return io.CopyBuffer(writeOnly{c}, r, *bp)
}

// SendFile sends up to lr.N bytes of f with sendfile(2) (rawsock.SendFile)
// and reduces lr.N by what it sent, under the write-progress rule. It
// reports handled=false, having sent nothing, when sendfile cannot copy f.
func (c *Conn) SendFile(f *os.File, lr *io.LimitedReader) (written int64, err error, handled bool) {
	if c.tcp == nil {
		return 0, nil, false
	}
	if c.timeout > 0 && c.stall.Load() {
		return 0, os.ErrDeadlineExceeded, true
	}
	for {
		if c.timeout > 0 {
			c.arm()
		}
		n, err, handled := rawsock.SendFile(c.tcp, f, lr)
		written += n
		if !handled {
			return written, nil, written > 0
		}
		if err == nil || c.timeout <= 0 || !isTimeout(err) {
			return written, err, true
		}
		if c.moved.Add(n) < MinProgress {
			c.stalled()
			return written, err, true
		}
		c.armed.Store(0)
	}
}

// CloseWrite shuts down the writing side (net/http's server uses it).
func (c *Conn) CloseWrite() error {
	if c.tcp == nil {
		return nil
	}
	return c.tcp.CloseWrite()
}

// Close closes the connection and gives back its place under the caps.
func (c *Conn) Close() error {
	c.once.Do(func() {
		if c.l != nil {
			c.l.release(c.ip)
		}
	})
	return c.Conn.Close()
}

// TCP is the TCP connection under c.
func (c *Conn) TCP() *net.TCPConn { return c.tcp }

type writeOnly struct{ w io.Writer }

func (o writeOnly) Write(p []byte) (int, error) { return o.w.Write(p) }

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// aLongTimeAgo is a deadline in the past: it wakes a waiting read at once.
var aLongTimeAgo = time.Unix(1, 0)

// WaitPeerGone waits, without consuming anything, until the peer closes
// or resets the connection (true), or sends data, or stop is closed
// (false). It is for a server waiting on a handler while no one reads the
// connection: a client that went away can be told from one that is
// waiting for its answer. It clears the read deadline, and leaves one in
// the past when stop ended the wait: the caller sets the next deadline
// before it reads again.
func (c *Conn) WaitPeerGone(stop <-chan struct{}) bool {
	if c.tcp == nil {
		return false
	}
	c.tcp.SetReadDeadline(time.Time{})
	rc, err := c.tcp.SyscallConn()
	if err != nil {
		return false
	}
	finished := make(chan struct{})
	helperDone := make(chan struct{})
	go func() {
		defer close(helperDone)
		select {
		case <-stop:
			c.tcp.SetReadDeadline(aLongTimeAgo)
		case <-finished:
		}
	}()
	gone := false
	var b [1]byte
	rc.Read(func(fd uintptr) bool {
		for {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false // nothing yet: wait until readable
			case err != nil, n == 0:
				gone = true // reset, or the peer's FIN
			}
			return true
		}
	})
	close(finished)
	<-helperDone
	return gone
}

package connguard

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// flakyListener fails its first n Accepts with EMFILE, then accepts from
// the real listener.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
	calls []time.Time
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls = append(l.calls, time.Now())
	if l.fails > 0 {
		l.fails--
		l.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestAcceptRetriesErrors (F1): accept errors such as EMFILE do not end
// Accept: they are counted and retried with a growing pause, and the next
// connection is returned. Only Close ends Accept (net.ErrClosed).
func TestAcceptRetriesErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln, fails: 5}
	m, err := NewMetrics(prometheus.NewRegistry(), "test", "srv")
	if err != nil {
		t.Fatal(err)
	}
	gl := NewListener(fl, "test", Limits{}, nil, m)
	defer gl.Close()
	go func() {
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	c, err := gl.Accept()
	if err != nil {
		t.Fatalf("Accept after EMFILE: %v", err)
	}
	c.Close()
	if n := testutil.ToFloat64(m.AcceptErrors); n != 5 {
		t.Errorf("accept_errors_total = %v, want 5", n)
	}
	fl.mu.Lock()
	calls := fl.calls
	fl.mu.Unlock()
	// The pauses double from 5 ms: the five retries span at least
	// 5+10+20+40+80 ms.
	if span := calls[5].Sub(calls[0]); span < 155*time.Millisecond {
		t.Errorf("five retries within %s: no backoff", span)
	}

	done := make(chan error, 1)
	go func() { _, err := gl.Accept(); done <- err }()
	gl.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

// TestBackoffEndsOnClose: a listener that fails for good is retried until
// Close, which ends Accept at once even during a pause.
func TestBackoffEndsOnClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln, fails: 1 << 30}
	gl := NewListener(fl, "test", Limits{}, nil, nil)
	done := make(chan error, 1)
	go func() { _, err := gl.Accept(); done <- err }()
	for {
		fl.mu.Lock()
		n := len(fl.calls)
		fl.mu.Unlock()
		if n >= 3 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Accept returned while the listener fails: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	gl.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

// stuckConn is a net.Conn whose writes never progress: each one fails
// with a timeout at once, as a write to a peer that reads nothing does
// when its deadline passes. It counts the writes.
type stuckConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *stuckConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return 0, os.ErrDeadlineExceeded
}

func (c *stuckConn) SetWriteDeadline(time.Time) error { return nil }
func (c *stuckConn) SetDeadline(time.Time) error      { return nil }
func (c *stuckConn) Close() error                     { return nil }
func (c *stuckConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// TestStalledConnFailsLaterWritesAtOnce: once a write timed out without
// progress, later writes (crypto/tls's close_notify on Close, with its own
// 5 s deadline) fail at once without reaching the socket, so that a
// stalled connection's descriptor is not held for another timeout. The
// stall is counted once. Before, each later write waited for the peer
// again.
func TestStalledConnFailsLaterWritesAtOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, "test", "cg")
	if err != nil {
		t.Fatal(err)
	}
	g := New(Limits{WriteProgressTimeout: time.Hour}, nil, m)
	sc := &stuckConn{}
	c, ok := g.admit(sc, "test")
	if !ok {
		t.Fatal("not admitted")
	}
	if _, err := c.Write([]byte("response")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first write: %v, want a deadline error", err)
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second)) // what tls.Conn.Close does
	if _, err := c.Write([]byte("close_notify")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after the stall: %v, want a deadline error", err)
	}
	if n := sc.writes.Load(); n != 1 {
		t.Errorf("the socket saw %d writes, want 1 (none after the stall)", n)
	}
	if n := testutil.ToFloat64(m.WriteTimeouts.WithLabelValues("connection")); n != 1 {
		t.Errorf("write_timeouts_total{scope=connection} = %v, want 1", n)
	}
}

// tricklingConn accepts per bytes of each write and then times out, as a
// peer that reads nothing but whose kernel frees some receive buffer now
// and then; after max writes it accepts everything.
type tricklingConn struct {
	stuckConn
	per, max int
}

func (c *tricklingConn) Write(p []byte) (int, error) {
	if c.writes.Add(1) > int64(c.max) {
		return len(p), nil
	}
	n := min(c.per, len(p))
	if n == len(p) {
		return n, nil
	}
	return n, os.ErrDeadlineExceeded
}

// TestWriteProgressNeedsMinProgress: a write that times out goes on only
// when the peer accepted at least MinProgress bytes within the timeout: a
// trickle of a few KiB per timeout (a client that reads nothing, its
// kernel collapsing its receive queue) ends the write at the first
// timeout, a peer that takes MinProgress per timeout is still served to
// the end. Before, any byte counted, and the trickle kept the connection
// for as many timeouts as it lasted.
func TestWriteProgressNeedsMinProgress(t *testing.T) {
	for _, tc := range []struct {
		name       string
		per        int
		wantErr    bool
		wantWrites int64
	}{
		{"trickle", 16 << 10, true, 1},
		{"progress", MinProgress, false, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(Limits{WriteProgressTimeout: time.Hour}, nil, nil)
			tc0 := &tricklingConn{per: tc.per, max: 4}
			c, _ := g.admit(tc0, "test")
			n, err := c.Write(make([]byte, 1<<20))
			if (err != nil) != tc.wantErr {
				t.Fatalf("wrote %d: %v, want error %v", n, err, tc.wantErr)
			}
			if got := tc0.writes.Load(); got != tc.wantWrites {
				t.Errorf("the socket saw %d writes, want %d", got, tc.wantWrites)
			}
		})
	}
}

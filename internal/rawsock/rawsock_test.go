package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// pair returns a wrapped client end and the plain server end of a
// loopback TCP connection.
func pair(t *testing.T) (wrapped net.Conn, peer *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	w := Wrap(c)
	if _, ok := w.(*conn); !ok && runtime.GOOS == "linux" {
		t.Fatalf("Wrap returned %T", w)
	}
	return w, s.(*net.TCPConn)
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// TestBothWays: bytes written in many sizes arrive whole and in order in
// both directions, through partial writes and waits for room (8 MiB is
// more than the socket buffers hold) and for data.
func TestBothWays(t *testing.T) {
	w, peer := pair(t)
	want := pattern(8<<20 + 11)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		got <- b
	}()
	for i, step := 0, 1; i < len(want); i, step = i+step, step*5%300007+1 {
		n, err := w.Write(want[i:min(i+step, len(want))])
		if err != nil || n != min(step, len(want)-i) {
			t.Fatalf("Write at %d: %d, %v", i, n, err)
		}
	}
	w.(interface{ CloseWrite() error }).CloseWrite()
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("peer read %d bytes, want %d in order", len(b), len(want))
	}

	back := pattern(3<<20 + 5)
	go func() {
		peer.Write(back)
		peer.CloseWrite()
	}()
	var buf bytes.Buffer
	p := make([]byte, 10007)
	for {
		if n, err := w.Read(p[:0]); n != 0 || err != nil {
			t.Fatalf("zero-length Read: %d, %v", n, err)
		}
		n, err := w.Read(p)
		buf.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(buf.Bytes(), back) {
		t.Fatalf("read %d bytes, want %d in order", buf.Len(), len(back))
	}
}

// TestDeadlinesAndErrors: deadlines end a waiting Read or Write with a
// timeout error, and a reset peer or a closed connection gives an error.
func TestDeadlinesAndErrors(t *testing.T) {
	t.Run("read deadline", func(t *testing.T) {
		w, _ := pair(t)
		w.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := w.Read(make([]byte, 10))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read past the deadline: %v, want a timeout", err)
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		w, peer := pair(t)
		peer.SetReadBuffer(4096) // and never read
		w.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		chunk := make([]byte, 1<<20)
		var err error
		for range 1000 { // the socket buffers fill long before
			if _, err = w.Write(chunk); err != nil {
				break
			}
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write past the deadline: %v, want a timeout", err)
		}
	})
	t.Run("peer reset", func(t *testing.T) {
		w, peer := pair(t)
		peer.SetLinger(0)
		peer.Close()
		if _, err := w.Read(make([]byte, 10)); err == nil || err == io.EOF {
			t.Fatalf("Read after a reset: %v, want an error other than EOF", err)
		}
		chunk := make([]byte, 64<<10)
		for i := range 1000 {
			if _, err := w.Write(chunk); err != nil {
				break
			}
			if i == 999 {
				t.Fatal("writes to a reset connection kept succeeding")
			}
		}
	})
	t.Run("closed", func(t *testing.T) {
		w, _ := pair(t)
		w.Close()
		if _, err := w.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
		if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after Close: %v", err)
		}
	})
}

// TestWrapOtherConns: anything but a TCP connection is returned as it is.
func TestWrapOtherConns(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("a pipe was wrapped")
	}
}

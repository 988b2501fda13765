package fastserve

import (
	"context"
	"errors"
	"io"
	"sync"
)

// stream carries a handler's body writes to fasthttp's goroutine one
// buffer at a time, like io.Pipe, but a TLS connection takes each buffer
// as it is (writeTo) instead of copying it through another one.
type stream struct {
	pieces chan []byte   // handler → consumer
	acks   chan error    // consumer → handler: the piece is written (or failed)
	eof    chan struct{} // closed by closeWithError, after err is set
	gone   chan struct{} // closed by Close: nobody reads any more
	err    error
	cur    []byte // Read: the rest of the current piece
	once   sync.Once
	eofOne sync.Once
	// Consumer side (fasthttp's goroutine): how much was taken, and
	// whether the end was seen, so that Close knows whether the body was
	// abandoned (a failed write: the client is gone).
	size     int64 // declared length, -1 if none
	consumed int64
	ended    bool
	cancel   context.CancelFunc // the request's
}

func newStream(size int64, cancel context.CancelFunc) *stream {
	return &stream{pieces: make(chan []byte), acks: make(chan error), eof: make(chan struct{}), gone: make(chan struct{}),
		size: size, cancel: cancel}
}

var errStreamClosed = errors.New("the client connection stopped reading")

// write hands p over and waits until it is written.
func (s *stream) write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	select {
	case s.pieces <- p:
	case <-s.gone:
		return 0, errStreamClosed
	}
	select {
	case err := <-s.acks:
		if err != nil {
			return 0, err
		}
		return len(p), nil
	case <-s.gone:
		return 0, errStreamClosed
	}
}

// closeWithError ends the body: nil is a clean end, anything else makes
// the consumer fail (and fasthttp close the connection).
func (s *stream) closeWithError(err error) {
	s.eofOne.Do(func() {
		s.err = err
		close(s.eof)
	})
}

// next waits for the next piece; io.EOF or the handler's error at the end.
func (s *stream) next() ([]byte, error) {
	select {
	case p := <-s.pieces:
		return p, nil
	case <-s.eof:
		s.ended = true
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
}

// Read implements io.Reader for fasthttp's own copy loops.
func (s *stream) Read(b []byte) (int, error) {
	if len(s.cur) == 0 {
		p, err := s.next()
		if err != nil {
			return 0, err
		}
		s.cur = p
	}
	n := copy(b, s.cur)
	s.cur = s.cur[n:]
	s.consumed += int64(n)
	if len(s.cur) == 0 {
		s.acks <- nil
	}
	return n, nil
}

// writeTo writes up to limit bytes to w, each piece straight from the
// handler's buffer.
func (s *stream) writeTo(w io.Writer, limit int64) (int64, error) {
	var total int64
	for total < limit {
		if len(s.cur) == 0 {
			p, err := s.next()
			if err == io.EOF {
				return total, nil
			}
			if err != nil {
				return total, err
			}
			s.cur = p
		}
		p := s.cur
		if int64(len(p)) > limit-total {
			p = p[:limit-total]
		}
		n, err := w.Write(p)
		total += int64(n)
		s.consumed += int64(n)
		s.cur = s.cur[n:]
		if err != nil {
			s.acks <- err
			s.cur = nil
			return total, err
		}
		if len(s.cur) == 0 {
			s.acks <- nil
		}
	}
	return total, nil
}

// Close is called by fasthttp when it is done with the body: after the
// end, or because writing to the client failed. In the second case the
// request's context is cancelled: a handler waiting for an upstream
// between two writes stops without having to write again.
func (s *stream) Close() error {
	s.once.Do(func() {
		if !s.ended && (s.size < 0 || s.consumed < s.size) && s.cancel != nil {
			s.cancel() // before the handler's write can fail
		}
		close(s.gone)
	})
	return nil
}

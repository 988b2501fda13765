package sourcetest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// Interrupt wraps src so that the first transfer of file rel stops after
// exactly after bytes: stop is called (cancel the run's context, as a
// SIGTERM would) and the read fails with context.Canceled. The wrapper
// keeps src's RangeOpener and its readers' Sizer and Validator, so the
// engine handles it as it handles src.
func Interrupt(src mirrorsync.Source, rel string, after int64, stop func()) mirrorsync.Source {
	return &interrupting{Source: src, rel: rel, after: after, stop: stop}
}

type interrupting struct {
	mirrorsync.Source
	rel   string
	after int64
	stop  func()
	done  atomic.Bool
}

func (s *interrupting) Open(ctx context.Context, id, rel string) (io.ReadCloser, error) {
	rc, err := s.Source.Open(ctx, id, rel)
	return s.wrap(rel, rc), err
}

func (s *interrupting) OpenFrom(ctx context.Context, id, rel string, offset int64, validator string) (io.ReadCloser, int64, error) {
	rc, start, err := s.Source.(mirrorsync.RangeOpener).OpenFrom(ctx, id, rel, offset, validator)
	return s.wrap(rel, rc), start, err
}

func (s *interrupting) wrap(rel string, rc io.ReadCloser) io.ReadCloser {
	if rc == nil || rel != s.rel || !s.done.CompareAndSwap(false, true) {
		return rc
	}
	return &cutReader{ReadCloser: rc, left: s.after, stop: s.stop}
}

// cutReader delivers left bytes, then stops the run.
type cutReader struct {
	io.ReadCloser
	left int64
	stop func()
}

func (r *cutReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		r.stop()
		return 0, context.Canceled
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.ReadCloser.Read(p)
	r.left -= int64(n)
	return n, err
}

func (r *cutReader) Size() int64 {
	if s, ok := r.ReadCloser.(mirrorsync.Sizer); ok {
		return s.Size()
	}
	return -1
}

func (r *cutReader) Validator() string {
	if v, ok := r.ReadCloser.(mirrorsync.Validator); ok {
		return v.Validator()
	}
	return ""
}

// ServedBytes wraps a test server's handler and records, per request,
// the path, the Range header and the response body bytes written. It is
// for asserting what a resumed download fetched. Reset forgets earlier
// requests, including ones still being answered.
type ServedBytes struct {
	Next http.Handler

	mu   sync.Mutex
	reqs []*servedRequest
}

type servedRequest struct {
	path, rng string
	n         int64
}

// ServeHTTP records r and counts the bytes written for it.
func (s *ServedBytes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &servedRequest{path: r.URL.Path, rng: r.Header.Get("Range")}
	s.mu.Lock()
	s.reqs = append(s.reqs, rec)
	s.mu.Unlock()
	s.Next.ServeHTTP(&countingWriter{ResponseWriter: w, mu: &s.mu, rec: rec}, r)
}

// Bytes returns the body bytes served for paths ending in suffix.
func (s *ServedBytes) Bytes(suffix string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range s.reqs {
		if strings.HasSuffix(r.path, suffix) {
			n += r.n
		}
	}
	return n
}

// Ranges returns the Range headers ("" for none) of the requests for
// paths ending in suffix, in order.
func (s *ServedBytes) Ranges(suffix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.reqs {
		if strings.HasSuffix(r.path, suffix) {
			out = append(out, r.rng)
		}
	}
	return out
}

// Reset forgets every request recorded so far.
func (s *ServedBytes) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = nil
}

type countingWriter struct {
	http.ResponseWriter
	mu  *sync.Mutex
	rec *servedRequest
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.mu.Lock()
	w.rec.n += int64(n)
	w.mu.Unlock()
	return n, err
}

// ReadFrom keeps the count when net/http copies a file (sendfile).
func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w}, r)
}

// Flush passes flushes on.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

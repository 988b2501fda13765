package connguard

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// StreamDeadline wraps h so that every HTTP/2 stream it serves has a
// write-progress deadline: a Write (or Flush) of the handler that has not
// returned after timeout — the client's flow-control window stayed shut,
// or the connection is stalled — resets the stream (net/http's HTTP/2
// server resets a stream whose write deadline passed, and the blocked
// Write returns an error), and after the handler returns, the rest of
// the response must be accepted within timeout too. Time the handler
// spends elsewhere (waiting for an upstream) is not counted. HTTP/1.x
// requests pass through unchanged: their connection has the same rule
// (Conn). m, if not nil, counts the resets (scope stream).
func StreamDeadline(h http.Handler, timeout time.Duration, m *Metrics) http.Handler {
	if timeout <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dl, ok := w.(interface{ SetWriteDeadline(time.Time) error })
		if r.ProtoMajor != 2 || !ok {
			h.ServeHTTP(w, r)
			return
		}
		sw := &streamWriter{ResponseWriter: w, dl: dl, timeout: timeout, m: m}
		defer sw.finish()
		h.ServeHTTP(sw, r)
	})
}

// streamWriter is an HTTP/2 stream's ResponseWriter under StreamDeadline.
// A watchdog timer (started by the first write) looks every timeout at the
// write in progress, if any.
type streamWriter struct {
	http.ResponseWriter
	dl      interface{ SetWriteDeadline(time.Time) error }
	timeout time.Duration
	m       *Metrics

	writing atomic.Int64 // unix nanoseconds when the write in progress began; 0: none
	mu      sync.Mutex
	timer   *time.Timer
	done    bool
	reset   atomic.Bool
}

func (w *streamWriter) begin() {
	w.writing.Store(time.Now().UnixNano())
	if w.timer == nil {
		w.mu.Lock()
		if !w.done {
			w.timer = time.AfterFunc(w.timeout, w.check)
		}
		w.mu.Unlock()
	}
}

func (w *streamWriter) end(err error) {
	w.writing.Store(0)
	if err != nil && w.reset.Load() && w.m != nil {
		w.m.WriteTimeout("stream")
		w.reset.Store(false) // counted once
	}
}

// check runs on the timer: a write blocked for timeout resets the stream
// (a deadline in the past does that at once).
func (w *streamWriter) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	next := w.timeout
	if start := w.writing.Load(); start != 0 {
		waited := time.Duration(time.Now().UnixNano() - start)
		if waited >= w.timeout {
			w.reset.Store(true)
			w.dl.SetWriteDeadline(time.Unix(0, 1))
			return
		}
		next = w.timeout - waited
	}
	w.timer.Reset(next)
}

// finish stops the watchdog; what the handler left to send (the buffered
// rest and the end of the stream) must go out within timeout.
func (w *streamWriter) finish() {
	w.mu.Lock()
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
	reset := w.reset.Load()
	w.mu.Unlock()
	if !reset {
		w.dl.SetWriteDeadline(time.Now().Add(w.timeout))
	}
}

func (w *streamWriter) Write(p []byte) (int, error) {
	w.begin()
	n, err := w.ResponseWriter.Write(p)
	w.end(err)
	return n, err
}

// ReadFrom copies r through Write (an HTTP/2 stream has no sendfile).
func (w *streamWriter) ReadFrom(r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	return io.CopyBuffer(writeOnly{w}, r, *bp)
}

// Flush sends what is buffered, under the same rule as Write.
func (w *streamWriter) Flush() { w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *streamWriter) FlushError() error {
	w.begin()
	err := http.NewResponseController(w.ResponseWriter).Flush()
	w.end(err)
	return err
}

// Unwrap gives http.ResponseController the stream's own writer.
func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

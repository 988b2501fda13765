// Package httprec records what a handler answered — the status code and
// the number of body bytes — for metrics and access logs. It is shared by
// the origin and the gateway. It is not a buffering recorder for tests
// (net/http/httptest.ResponseRecorder is).
package httprec

import (
	"io"
	"net/http"
)

// DurationBuckets are the histogram buckets (seconds) of request
// durations: from sub-millisecond in-memory answers to minutes of
// streaming a large bundle to a slow client.
var DurationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Recorder wraps an http.ResponseWriter and remembers the status and body
// size of the response. It passes ReadFrom through so that
// http.ServeContent of an *os.File still reaches net/http's sendfile path,
// and Flush and Unwrap so that streaming and http.ResponseController work.
//
// The zero Status means nothing has been written yet; informational (1xx)
// codes are not recorded.
type Recorder struct {
	http.ResponseWriter
	// Status is the first final status code written (200 when Write or
	// ReadFrom came first); 0 until then.
	Status int
	// Bytes counts the body bytes written.
	Bytes int64
}

// WriteHeader records the first final status code and passes it on.
func (w *Recorder) WriteHeader(code int) {
	if w.Status == 0 && code >= 200 {
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write passes b on and counts the bytes written.
func (w *Recorder) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.Bytes += int64(n)
	return n, err
}

// ReadFrom lets io.Copy hand the source to the underlying writer's
// ReadFrom (sendfile for files on a TCP connection).
func (w *Recorder) ReadFrom(src io.Reader) (int64, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
	}
	w.Bytes += n
	return n, err
}

// Flush implements http.Flusher when the underlying writer does.
func (w *Recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *Recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var (
	_ http.Flusher  = (*Recorder)(nil)
	_ io.ReaderFrom = (*Recorder)(nil)
)

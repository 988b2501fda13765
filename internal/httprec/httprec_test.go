package httprec

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// readerFromWriter is a ResponseWriter with ReadFrom, standing in for
// net/http's connection writer (sendfile).
type readerFromWriter struct {
	*httptest.ResponseRecorder
	readFrom bool
}

func (w *readerFromWriter) ReadFrom(r io.Reader) (int64, error) {
	w.readFrom = true
	return io.Copy(w.ResponseRecorder, r)
}

func TestRecorder(t *testing.T) {
	t.Run("status and bytes", func(t *testing.T) {
		rec := &Recorder{ResponseWriter: httptest.NewRecorder()}
		rec.WriteHeader(http.StatusNotFound)
		rec.WriteHeader(http.StatusOK) // superfluous: the first final code stays
		if _, err := rec.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if rec.Status != http.StatusNotFound || rec.Bytes != 5 {
			t.Fatalf("Status %d Bytes %d, want 404 5", rec.Status, rec.Bytes)
		}
	})
	t.Run("informational codes are not recorded", func(t *testing.T) {
		rec := &Recorder{ResponseWriter: httptest.NewRecorder()}
		rec.WriteHeader(http.StatusEarlyHints)
		if rec.Status != 0 {
			t.Fatalf("Status %d after 103, want 0", rec.Status)
		}
	})
	t.Run("write without header is 200", func(t *testing.T) {
		rec := &Recorder{ResponseWriter: httptest.NewRecorder()}
		if _, err := rec.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if rec.Status != http.StatusOK {
			t.Fatalf("Status %d, want 200", rec.Status)
		}
	})
	t.Run("ReadFrom passes through", func(t *testing.T) {
		under := &readerFromWriter{ResponseRecorder: httptest.NewRecorder()}
		rec := &Recorder{ResponseWriter: under}
		// struct{io.Reader} hides strings.Reader's WriteTo from io.Copy.
		n, err := io.Copy(rec, struct{ io.Reader }{strings.NewReader("body bytes")})
		if err != nil || n != 10 {
			t.Fatalf("io.Copy = %d, %v", n, err)
		}
		if !under.readFrom {
			t.Fatal("the underlying ReadFrom was not used")
		}
		if rec.Status != http.StatusOK || rec.Bytes != 10 || under.Body.String() != "body bytes" {
			t.Fatalf("Status %d Bytes %d body %q", rec.Status, rec.Bytes, under.Body.String())
		}
	})
	t.Run("ReadFrom without underlying ReadFrom", func(t *testing.T) {
		under := httptest.NewRecorder()
		rec := &Recorder{ResponseWriter: under}
		if _, err := rec.ReadFrom(strings.NewReader("abc")); err != nil {
			t.Fatal(err)
		}
		if rec.Bytes != 3 || under.Body.String() != "abc" {
			t.Fatalf("Bytes %d body %q", rec.Bytes, under.Body.String())
		}
	})
}

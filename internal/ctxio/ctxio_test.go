package ctxio

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReaderStopsWhenDone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := Reader{ctx, strings.NewReader("abcdef")}
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("read before cancel: %d %v", n, err)
	}
	cancel()
	if _, err := r.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	rs := ReadSeeker{ctx, strings.NewReader("abc")}
	if _, err := io.ReadAll(rs); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadSeeker after cancel: %v", err)
	}
	if off, err := rs.Seek(1, io.SeekStart); off != 1 || err != nil {
		t.Fatalf("Seek: %d %v", off, err)
	}
}

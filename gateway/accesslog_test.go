package gateway

import (
	"strings"
	"testing"
	"time"
)

func TestBufferedWriterFlushes(t *testing.T) {
	var sb syncBuilder
	w := NewBufferedWriter(&sb, 1<<10, time.Hour)
	w.Write([]byte("line 1\n"))
	if sb.String() != "" {
		t.Fatal("written before a flush")
	}
	w.Write([]byte(strings.Repeat("x", 2<<10) + "\n")) // larger than the buffer: goes through
	if !strings.HasPrefix(sb.String(), "line 1\n") {
		t.Fatalf("a full buffer was not written: %q", sb.String()[:min(20, len(sb.String()))])
	}
	w.Write([]byte("last\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(sb.String(), "last\n") {
		t.Fatal("Close did not flush")
	}
}

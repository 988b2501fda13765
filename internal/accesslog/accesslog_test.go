package accesslog

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/syncbuf"
)

func TestLineIsValidJSON(t *testing.T) {
	tests := []struct {
		name string
		v    string
	}{
		{"plain", "/concelier/exports/index.json"},
		{"quotes and backslash", `a"b\c`},
		{"controls", "a\nb\rc\td\x00e\x1f"},
		{"html", "<script>&</script>"},
		{"invalid utf8", "ok\xff\xfeok"},
		{"unicode", "größe ✓ \u2028 \u2029"},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			at := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
			l := New(&out, Options{BufferSize: -1, Now: func() time.Time { return at }})
			l.Write(l.Start("request").Str("path", tt.v).Int("status", 404).Millis("duration_ms", 1250*time.Microsecond).Bool("aborted", true))
			var got map[string]any
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out.String())
			}
			var want string // what encoding/json makes of the same string
			enc, _ := json.Marshal(tt.v)
			json.Unmarshal(enc, &want)
			if got["path"] != want {
				t.Errorf("path = %q, want %q", got["path"], want)
			}
			if got["status"] != float64(404) || got["duration_ms"] != 1.25 || got["msg"] != "request" ||
				got["level"] != "INFO" || got["time"] != "2026-11-30T12:00:00.123456789Z" || got["aborted"] != true {
				t.Errorf("fields: %v", got)
			}
			if !strings.HasSuffix(out.String(), "}\n") || strings.Count(out.String(), "\n") != 1 {
				t.Errorf("not one line: %q", out.String())
			}
		})
	}
}

// TestMatchesEncodingJSON: string escaping agrees with encoding/json.
func TestMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"a\"b", "<>&", "\u2028x\u2029", "\x7f", "tab\there", "é"} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

type syncBuffer = syncbuf.Buffer

func TestBufferedFlushAndClose(t *testing.T) {
	var out syncBuffer
	l := New(&out, Options{FlushInterval: time.Hour})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				l.Write(l.Start("request").Int("i", int64(i)))
			}
		}()
	}
	wg.Wait()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1000 {
		t.Fatalf("%d lines after Flush, want 1000", n)
	}
	l.Write(l.Start("request"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("line %d torn or invalid: %q", i, line)
		}
	}
	if n := strings.Count(out.String(), "\n"); n != 1001 {
		t.Fatalf("%d lines after Close, want 1001", n)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteErrorReported(t *testing.T) {
	l := New(failWriter{}, Options{BufferSize: 16})
	for i := 0; i < 10; i++ {
		l.Write(l.Start("request").Str("path", "/x"))
	}
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Close = %v, want the write error", err)
	}
	var nilLogger *Logger
	nilLogger.Write(nilLogger.Start("request")) // discards, does not panic
}

func BenchmarkLine(b *testing.B) {
	l := New(discard{}, Options{})
	defer l.Close()
	b.ReportAllocs()
	for b.Loop() {
		l.Write(l.Start("request").Str("method", "GET").Str("path", "/concelier/exports/index.json").
			Int("status", 200).Int("bytes", 4096).Millis("duration_ms", 150*time.Microsecond).
			Str("remote", "127.0.0.1:54321").Str("user_agent", "wrk"))
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestComponentField: with Options.Component every line carries
// "component" (the schema of the other log lines, internal/logging), so
// access lines can be told apart from another component's in one stream;
// without it there is no such key.
func TestComponentField(t *testing.T) {
	for _, comp := range []string{"gateway", "origin", ""} {
		var out bytes.Buffer
		l := New(&out, Options{BufferSize: -1, Component: comp})
		l.Write(l.Start("request").Str("path", "/x").Int("status", 200))
		var got map[string]any
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out.String())
		}
		c, ok := got["component"]
		if comp == "" && ok || comp != "" && c != comp {
			t.Errorf("Component %q: line %s", comp, out.String())
		}
		if got["msg"] != "request" || got["path"] != "/x" {
			t.Errorf("line %s", out.String())
		}
	}
}

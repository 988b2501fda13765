// Package accesslog writes access logs: one JSON object per request, in the
// same shape as log/slog's JSON handler ({"time","level","msg",…}), so log
// shippers parse access and operational lines alike.
//
// It exists because the access log is on every request's path: slog's
// generic handler costs several microseconds per line, and one write(2) per
// request costs another. A Line appends fields straight into a pooled byte
// buffer, and the Logger batches lines in a buffer that is flushed when it
// fills, every FlushInterval, and on Close — like nginx's
// `access_log … buffer=64k flush=…`. A crash loses at most FlushInterval of
// lines.
package accesslog

import (
	"bufio"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Defaults for Options.
const (
	DefaultBufferSize    = 64 << 10
	DefaultFlushInterval = 200 * time.Millisecond
)

// Options tune a Logger. The zero value is production behaviour.
type Options struct {
	// BufferSize is the batch buffer; DefaultBufferSize when 0. Negative
	// disables buffering: every line is written at once (tests, pipes read
	// line by line).
	BufferSize int
	// FlushInterval bounds how long a line may sit in the buffer;
	// DefaultFlushInterval when 0.
	FlushInterval time.Duration
	// Now stamps lines; time.Now when nil.
	Now func() time.Time
	// Component, when set, is written as "component" on every line
	// (internal/logging's common field: "origin", "gateway"). Default: none.
	Component string
}

// Logger writes access-log lines to an io.Writer. It is safe for
// concurrent use. A nil *Logger discards everything.
type Logger struct {
	now  func() time.Time
	comp []byte // `,"component":"…"`, or nil

	mu      sync.Mutex
	out     io.Writer
	buf     *bufio.Writer // nil when unbuffered
	err     error         // first write error, reported by Close
	pending bool          // the buffer holds lines not yet flushed
	closed  bool

	stop chan struct{}
	done chan struct{}
}

// New returns a Logger writing to w.
func New(w io.Writer, opts Options) *Logger {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Logger{now: opts.Now, out: w}
	if opts.Component != "" {
		l.comp = appendString([]byte(`,"component":`), opts.Component)
	}
	if opts.BufferSize >= 0 {
		size := opts.BufferSize
		if size == 0 {
			size = DefaultBufferSize
		}
		interval := opts.FlushInterval
		if interval <= 0 {
			interval = DefaultFlushInterval
		}
		l.buf = bufio.NewWriterSize(w, size)
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.flusher(interval)
	}
	return l
}

func (l *Logger) flusher(interval time.Duration) {
	defer close(l.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.Flush()
		case <-l.stop:
			return
		}
	}
}

// Flush writes buffered lines out.
func (l *Logger) Flush() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}

func (l *Logger) flushLocked() error {
	if l.buf != nil && l.pending {
		if err := l.buf.Flush(); err != nil && l.err == nil {
			l.err = err
		}
		l.pending = false
	}
	return l.err
}

// Close flushes and stops the background flusher. Lines logged after Close
// are written unbuffered. It returns the first write error seen, if any.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		err := l.err
		l.mu.Unlock()
		return err
	}
	l.closed = true
	err := l.flushLocked()
	l.buf = nil
	l.mu.Unlock()
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	return err
}

var linePool = sync.Pool{New: func() any { return &Line{b: make([]byte, 0, 512)} }}

// Line is one access-log line being built. Get one from Logger.Start, add
// fields, then hand it to Logger.Write; a Line must not be used after that.
type Line struct {
	b []byte
}

// Start begins a line with time, level "INFO" and msg.
func (l *Logger) Start(msg string) *Line {
	ln := linePool.Get().(*Line)
	ln.b = append(ln.b[:0], `{"time":"`...)
	now := time.Now
	if l != nil {
		now = l.now
	}
	ln.b = now().AppendFormat(ln.b, time.RFC3339Nano)
	ln.b = append(ln.b, `","level":"INFO","msg":`...)
	ln.b = appendString(ln.b, msg)
	if l != nil {
		ln.b = append(ln.b, l.comp...)
	}
	return ln
}

// Write finishes ln and logs it.
func (l *Logger) Write(ln *Line) {
	ln.b = append(ln.b, '}', '\n')
	if l != nil {
		l.mu.Lock()
		var err error
		if l.buf != nil {
			_, err = l.buf.Write(ln.b)
			l.pending = true
		} else {
			_, err = l.out.Write(ln.b)
		}
		if err != nil && l.err == nil {
			l.err = err
		}
		l.mu.Unlock()
	}
	if cap(ln.b) <= 64<<10 {
		linePool.Put(ln)
	}
}

// Str adds a string field.
func (ln *Line) Str(key, v string) *Line {
	ln.key(key)
	ln.b = appendString(ln.b, v)
	return ln
}

// Int adds an integer field.
func (ln *Line) Int(key string, v int64) *Line {
	ln.key(key)
	ln.b = strconv.AppendInt(ln.b, v, 10)
	return ln
}

// Bool adds a boolean field.
func (ln *Line) Bool(key string, v bool) *Line {
	ln.key(key)
	ln.b = strconv.AppendBool(ln.b, v)
	return ln
}

// Millis adds a duration as a number of milliseconds with microsecond
// precision (e.g. 1.25).
func (ln *Line) Millis(key string, d time.Duration) *Line {
	ln.key(key)
	ln.b = strconv.AppendFloat(ln.b, float64(d.Microseconds())/1000, 'f', -1, 64)
	return ln
}

func (ln *Line) key(k string) {
	ln.b = append(ln.b, ',')
	ln.b = appendString(ln.b, k)
	ln.b = append(ln.b, ':')
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// control characters, quotes, backslashes and the HTML-sensitive <, >, &
// and U+2028/U+2029 are escaped, as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

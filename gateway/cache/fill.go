package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Errors a fill ends with. Clients streaming from the fill get them from
// their body's Read, so the server aborts their connection rather than
// ending a short response as if it were complete.
var (
	ErrTruncated      = errors.New("cache: upstream body shorter than its Content-Length")
	ErrTooLong        = errors.New("cache: upstream body longer than its Content-Length")
	ErrDigestMismatch = errors.New("cache: upstream body does not match its sha256 ETag")
)

// fill streams one upstream 200 into a temporary file while any number of
// clients read the bytes written so far. Readers share the file through
// ReadAt, so a rename or unlink of the path does not affect them, and no
// reader holds more than its copy buffer in memory. The file is closed by
// its flight when the last reference (the fill itself, every request that
// joined the flight) is dropped.
type fill struct {
	c         *Cache
	key       string
	header    http.Header // stored header
	status    int         // the response's status code
	cdn       bool        // CDN-Cache-Control is the policy (meta.CDN)
	freshness freshness
	vary      []string // the request fields the response varies by (meta.Vary)
	size      int64    // Content-Length, -1 when unknown
	wantSHA   string   // hex sha256 from the ETag, "" when the ETag has another form
	reqAt     time.Time
	respAt    time.Time
	file      *os.File
	ctx       context.Context // the upstream request's: cancelled when nobody waits any more

	mu       sync.Mutex
	written  int64
	done     bool
	err      error
	progress chan struct{} // closed and replaced whenever written/done/err change
}

// sha256ETag returns the hex digest if etag is a quoted, strong sha256 hex.
func sha256ETag(etag string) string {
	if len(etag) != 66 || etag[0] != '"' || etag[65] != '"' {
		return ""
	}
	h := etag[1:65]
	if _, err := hex.DecodeString(h); err != nil {
		return ""
	}
	return h
}

func (c *Cache) newFill(key string, resp *http.Response, reqAt, respAt time.Time) (*fill, error) {
	tmp, err := os.CreateTemp(c.dir, tmpPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("cache: creating fill file: %w", err)
	}
	hdr := storedHeader(resp.Header)
	if !c.rules.setCookie {
		delete(hdr, "Set-Cookie")
	}
	f := &fill{
		c:        c,
		key:      key,
		header:   hdr,
		status:   resp.StatusCode,
		cdn:      c.rules.cdn && validCDN(resp.Header),
		size:     resp.ContentLength,
		wantSHA:  sha256ETag(resp.Header.Get("ETag")),
		reqAt:    reqAt,
		respAt:   respAt,
		file:     tmp,
		progress: make(chan struct{}),
	}
	f.freshness = freshnessOf(hdr, f.status, key, f.cdn, reqAt, respAt)
	return f, nil
}

// run copies the upstream body into the file, then verifies and commits it.
// It owns resp.Body and calls done when it has finished.
func (f *fill) run(body io.ReadCloser, done func(*entry)) {
	c := f.c
	defer body.Close()
	var (
		h   hash.Hash = sha256.New()
		mem []byte
		err error
	)
	if f.size >= 0 && f.size <= int64(c.cfg.MemoryMaxObjectSize) {
		mem = make([]byte, 0, f.size)
	}
	bufp := c.bufs.Get().(*[]byte)
	buf := *bufp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if f.size >= 0 && f.written+int64(n) > f.size {
				err = ErrTooLong
				break
			}
			if _, werr := f.file.WriteAt(buf[:n], f.written); werr != nil {
				err = fmt.Errorf("cache: writing fill file: %w", werr)
				break
			}
			h.Write(buf[:n])
			if mem != nil {
				mem = append(mem, buf[:n]...)
			}
			f.mu.Lock()
			f.written += int64(n)
			f.notifyLocked()
			f.mu.Unlock()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = fmt.Errorf("cache: reading upstream body: %w", rerr)
			break
		}
	}
	c.bufs.Put(bufp)
	sum := hex.EncodeToString(h.Sum(nil))
	if err == nil && f.size >= 0 && f.written < f.size {
		err = ErrTruncated
	}
	if err == nil && f.wantSHA != "" && sum != f.wantSHA {
		err = ErrDigestMismatch
	}
	tmpName := f.file.Name()
	if err != nil {
		if f.ctx != nil && errors.Is(f.ctx.Err(), context.Canceled) {
			// Every client went away (see Cache.leave), or Close: no
			// failure of the origin's.
			c.log.Debug("cache: fill cancelled, not stored", "key", f.key, "bytes", f.written, "content_length", f.size)
		} else {
			c.m.fillFailures.Inc()
			c.log.Warn("cache: fill failed, not stored", "key", f.key, "export_id", f.header.Get(ExportIDHeader),
				"bytes", f.written, "content_length", f.size, "error", err)
		}
		f.finish(err)
		os.Remove(tmpName)
		done(nil)
		return
	}
	// Every byte is verified: readers may now see the end of the body,
	// while the object is made durable.
	f.finish(nil)
	if c.beforeCommit != nil {
		c.beforeCommit()
	}
	e, cerr := f.commit(tmpName, sum)
	if cerr != nil {
		c.log.Warn("cache: storing object", "key", f.key, "error", cerr)
		os.Remove(tmpName)
		done(nil)
		return
	}
	done(e)
	if e != nil && mem != nil {
		c.mu.Lock()
		c.memPutLocked(e, mem)
		c.mu.Unlock()
	}
}

// commit makes the verified temporary file a stored object: fsync, rename
// to its body name, write the metadata. It returns the entry, or nil when
// the object is too large to store (a body of unknown length that grew past
// MaxObjectSize). A purge during the fill is handled by endFlight.
func (f *fill) commit(tmpName, sum string) (*entry, error) {
	c := f.c
	if f.written > int64(c.cfg.MaxObjectSize) {
		os.Remove(tmpName)
		return nil, nil
	}
	if err := f.file.Sync(); err != nil {
		return nil, err
	}
	m := meta{Key: f.key, Stem: c.newStem(f.key), Size: f.written, SHA256: sum,
		Header: f.header, RequestTime: f.reqAt, ResponseTime: f.respAt, CDN: f.cdn, Vary: f.vary}
	if f.status != http.StatusOK {
		m.Status = f.status
	}
	e := newEntry(c.dir, m)
	if err := os.Rename(tmpName, e.body); err != nil {
		return nil, err
	}
	if err := c.writeMeta(m); err != nil {
		os.Remove(e.body)
		return nil, err
	}
	return e, nil
}

// matches: a request with header h selects the response being filled.
func (f *fill) matches(h http.Header) bool {
	return f.vary == nil || variantKey(baseKey(f.key), f.vary, h) == f.key
}

// complete reports whether the whole body was written and verified.
func (f *fill) complete() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done && f.err == nil
}

// finish records the end of the body (err == nil: complete and verified).
func (f *fill) finish(err error) {
	f.mu.Lock()
	f.done, f.err = true, err
	f.notifyLocked()
	f.mu.Unlock()
}

func (f *fill) notifyLocked() {
	close(f.progress)
	f.progress = make(chan struct{})
}

// reader returns a reader of bytes [off, end) of the fill (end -1: to the
// end of the body), which waits for bytes not yet written and fails with
// the fill's error. ctx is the client's request context: a client gone
// ends a wait at once. release is called once on Close (it drops the
// reader's reference to the file and its place among the flight's
// waiters); abandoned reports a reader closed before its end while the
// fill still ran.
func (f *fill) reader(ctx context.Context, off, end int64, release func(abandoned bool)) io.ReadCloser {
	return &fillReader{f: f, ctx: ctx, pos: off, end: end, release: release}
}

type fillReader struct {
	f       *fill
	release func(abandoned bool)
	ctx     context.Context
	pos     int64
	end     int64
	eof     bool // Read returned io.EOF
	closed  bool
}

func (r *fillReader) Read(p []byte) (int, error) {
	f := r.f
	if r.closed {
		return 0, errors.New("cache: read after close")
	}
	for {
		f.mu.Lock()
		limit, done, ferr, ch := f.written, f.done, f.err, f.progress
		f.mu.Unlock()
		if ferr != nil {
			return 0, ferr
		}
		if !done && f.size > 0 && limit >= f.size {
			// Hold back the last byte until the body is verified, so a
			// digest mismatch still reaches the client as an error.
			limit = f.size - 1
		}
		end := r.end
		if end < 0 && done {
			end = limit
		}
		if end >= 0 && r.pos >= end {
			r.eof = true
			return 0, io.EOF
		}
		if r.pos < limit {
			n := int64(len(p))
			n = min(n, limit-r.pos)
			if end >= 0 {
				n = min(n, end-r.pos)
			}
			m, err := f.file.ReadAt(p[:n], r.pos)
			r.pos += int64(m)
			if err == io.EOF && m > 0 {
				err = nil
			}
			return m, err
		}
		if done {
			// A range beyond a body of unknown length.
			r.eof = true
			return 0, io.EOF
		}
		select {
		case <-ch:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
}

func (r *fillReader) Close() error {
	if !r.closed {
		r.closed = true
		finished := r.eof || (r.end >= 0 && r.pos >= r.end)
		r.f.mu.Lock()
		running := !r.f.done
		r.f.mu.Unlock()
		r.release(!finished && running)
	}
	return nil
}

// Package ctxio makes long reads stop when their context is done: a copy
// of a large file (a backup member, a restore, signing a bundle) ends
// within one buffer of SIGTERM or Ctrl-C instead of running to the end.
package ctxio

import (
	"context"
	"io"
)

// Reader fails its reads with the context's error once Ctx is done.
type Reader struct {
	Ctx context.Context
	R   io.Reader
}

// Read reads from R unless Ctx is done.
func (c Reader) Read(p []byte) (int, error) {
	if err := c.Ctx.Err(); err != nil {
		return 0, err
	}
	return c.R.Read(p)
}

// ReadSeeker is Reader for a seekable source (a reader that reads twice).
type ReadSeeker struct {
	Ctx context.Context
	RS  io.ReadSeeker
}

// Read reads from RS unless Ctx is done.
func (c ReadSeeker) Read(p []byte) (int, error) { return Reader{c.Ctx, c.RS}.Read(p) }

// Seek seeks RS.
func (c ReadSeeker) Seek(offset int64, whence int) (int64, error) { return c.RS.Seek(offset, whence) }

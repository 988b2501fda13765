package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/stella-ops/stella-mirror/internal/ctxio"
)

// maxCopyAttempts bounds how often a file rewritten in place during the
// copy is copied again before the backup gives up on it.
const maxCopyAttempts = 5

// maxBufferedFile is the largest file copied into memory (and re-copied
// when rewritten in place) before it goes into the archive. Configuration
// files, keys, secrets and state are far smaller; larger files (export
// bundles, which are never rewritten in place) are streamed into the
// archive from one descriptor and the backup fails if they change.
const maxBufferedFile = 32 << 20

// copied is what copyStable read.
type copied struct {
	data    []byte
	size    int64
	sha256  string
	mode    os.FileMode
	uid     int
	gid     int
	modTime time.Time
}

// copyStable reads src into memory from one open descriptor, so a rename
// over src during the copy cannot tear it. When src's size or
// modification time change while it is read (a writer rewriting it in
// place), or fewer bytes than its size could be read, it is read again, up
// to maxCopyAttempts times. Files larger than maxBufferedFile are refused
// (errTooLarge): the caller streams them. Nothing is written to disk.
func copyStable(ctx context.Context, src string) (copied, error) {
	return copyStableHook(ctx, src, nil)
}

// copyStableHook is copyStable with a hook called after each attempt's
// copy and before its second stat (tests change the file there).
func copyStableHook(ctx context.Context, src string, hook func(attempt int)) (copied, error) {
	var lastErr error
	for attempt := range maxCopyAttempts {
		c, err := copyOnce(ctx, src, func() {
			if hook != nil {
				hook(attempt)
			}
		})
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errUnstable) {
			return copied{}, err
		}
		lastErr = err
	}
	return copied{}, fmt.Errorf("%s: %w (kept changing during %d copies)", src, lastErr, maxCopyAttempts)
}

var (
	errUnstable = errors.New("file changed while it was copied")
	errTooLarge = errors.New("file too large to buffer")
)

func copyOnce(ctx context.Context, src string, afterCopy func()) (copied, error) {
	f, err := openNoBlock(src)
	if err != nil {
		return copied{}, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return copied{}, err
	}
	if !before.Mode().IsRegular() {
		return copied{}, fmt.Errorf("%s: not a regular file (%s)", src, before.Mode().Type())
	}
	if before.Size() > maxBufferedFile {
		return copied{}, errTooLarge
	}
	var buf bytes.Buffer
	buf.Grow(int(before.Size()))
	h := sha256.New()
	// One byte more than the size tells a file that grew.
	n, err := io.Copy(io.MultiWriter(&buf, h), ctxio.Reader{Ctx: ctx, R: io.LimitReader(f, before.Size()+1)})
	if err != nil {
		return copied{}, fmt.Errorf("copying %s: %w", src, err)
	}
	afterCopy()
	after, err := f.Stat()
	if err != nil {
		return copied{}, err
	}
	if n != before.Size() || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		return copied{}, errUnstable
	}
	c := copied{data: buf.Bytes(), size: n, sha256: hex.EncodeToString(h.Sum(nil)), mode: before.Mode(), modTime: before.ModTime()}
	c.uid, c.gid = owner(before)
	return c, nil
}

// openNoBlock opens src for reading without blocking: open(2) of a named
// pipe waits for a writer (forever, and no signal or context ends it),
// with O_NONBLOCK it returns at once and the caller's fstat refuses it.
// O_NONBLOCK changes nothing for a regular file.
func openNoBlock(src string) (*os.File, error) {
	return os.OpenFile(src, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// owner returns a file's numeric owner, or -1s where unknown.
func owner(fi os.FileInfo) (int, int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}

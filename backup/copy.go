package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// maxCopyAttempts bounds how often a file rewritten in place during the
// copy is copied again before the backup gives up on it.
const maxCopyAttempts = 5

// copied is what copyStable saved.
type copied struct {
	size    int64
	sha256  string
	mode    os.FileMode
	uid     int
	gid     int
	modTime time.Time
}

// copyStable copies src to dst (created with mode 0600) from one open
// descriptor of src, so a rename over src during the copy cannot tear it.
// When src's size or modification time change while it is copied (a
// writer rewriting it in place), or fewer bytes than its size could be
// read, the copy is made again, up to maxCopyAttempts times.
func copyStable(src, dst string) (copied, error) {
	return copyStableHook(src, dst, nil)
}

// copyStableHook is copyStable with a hook called after each attempt's
// copy and before its second stat (tests change the file there).
func copyStableHook(src, dst string, hook func(attempt int)) (copied, error) {
	var lastErr error
	for attempt := range maxCopyAttempts {
		c, err := copyOnce(src, dst, func() {
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

var errUnstable = errors.New("file changed while it was copied")

func copyOnce(src, dst string, afterCopy func()) (copied, error) {
	f, err := os.Open(src)
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
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return copied{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), f)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
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
	c := copied{size: n, sha256: hex.EncodeToString(h.Sum(nil)), mode: before.Mode(), modTime: before.ModTime()}
	c.uid, c.gid = owner(before)
	return c, nil
}

// owner returns a file's numeric owner, or -1s where unknown.
func owner(fi os.FileInfo) (int, int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}

// hashFile returns the SHA-256 of a file and its size.
func hashFile(name string) (string, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

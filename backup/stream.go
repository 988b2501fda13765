package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"

	"github.com/stella-ops/stella-mirror/internal/ctxio"
)

// PartialPrefix starts the name of an archive being written: DIR/.partial-
// NAME.tar.gz[.age]-RANDOM. Retention never lists such a file (it is not
// named like an archive) and restore refuses it; the next backup into DIR
// removes one left by a killed run and reports it.
const PartialPrefix = ".partial-"

// stalePrefixes are the names of unfinished output of earlier versions and
// runs: the plaintext staging folders of versions before the archive was
// streamed, and their temporary archive files.
var stalePrefixes = []string{PartialPrefix, ".staging-"}

// IsPartial reports whether a file name (base name) is unfinished backup
// output rather than an archive.
func IsPartial(name string) bool {
	for _, p := range stalePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	// The temporary archive name of earlier versions: .NAME.tar.gz[.age].tmp-*
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tar.gz") && strings.Contains(name, ".tmp-")
}

// lockDir takes an exclusive, non-blocking flock on the output folder for
// the run, so a second backup into it neither writes beside the first nor
// takes the first's partial output for a stale leftover. The lock goes
// with the process (a SIGKILLed run releases it).
func lockDir(dir string) (func(), error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another backup is writing to %s", dir)
		}
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return func() { d.Close() }, nil
}

// removeStale removes the unfinished output of interrupted runs from dir
// (the caller holds dir's lock, so none is being written) and returns the
// paths it removed.
func removeStale(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		if !IsPartial(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("removing the stale %s: %w", p, err))
			continue
		}
		removed = append(removed, p)
	}
	if len(removed) > 0 {
		if err := syncDir(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// archiveWriter streams a tar through gzip (and age) straight into a
// private temporary file in the output folder: no plaintext ever reaches
// the disk when the archive is encrypted.
type archiveWriter struct {
	tmp  *os.File
	enc  io.WriteCloser
	gz   *gzip.Writer
	tw   *tar.Writer
	top  string
	done bool
}

// newArchiveWriter creates the temporary file (O_EXCL, 0600) for final.
func newArchiveWriter(final, top string, recipients []age.Recipient) (*archiveWriter, error) {
	tmp, err := os.CreateTemp(filepath.Dir(final), PartialPrefix+filepath.Base(final)+"-*")
	if err != nil {
		return nil, err
	}
	w := &archiveWriter{tmp: tmp, top: top}
	var out io.Writer = tmp
	if len(recipients) > 0 {
		if w.enc, err = age.Encrypt(tmp, recipients...); err != nil {
			w.Cancel()
			return nil, fmt.Errorf("age: %w", err)
		}
		out = w.enc
	}
	w.gz = gzip.NewWriter(out)
	w.tw = tar.NewWriter(w.gz)
	return w, nil
}

// Name is the temporary file's path.
func (w *archiveWriter) Name() string { return w.tmp.Name() }

// header starts a member of size bytes.
func (w *archiveWriter) header(name string, mode, size int64, mt time.Time) error {
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: w.top + "/" + name, Mode: mode, Size: size,
		ModTime: mt, Format: tar.FormatPAX})
}

// addBytes writes a member held in memory.
func (w *archiveWriter) addBytes(name string, mode int64, mt time.Time, data []byte) error {
	if err := w.header(name, mode, int64(len(data)), mt); err != nil {
		return err
	}
	_, err := w.tw.Write(data)
	return err
}

// addFile saves the file s.path as a member and fills e's content fields.
// Files up to maxBufferedFile are read into memory first (and re-read when
// rewritten in place, see copyStable); larger ones are streamed from one
// descriptor and the backup fails if they change meanwhile.
func (w *archiveWriter) addFile(ctx context.Context, path string, e *Entry) error {
	c, err := copyStable(ctx, path)
	switch {
	case err == nil:
		e.SHA256, e.Size, e.Mode, e.ModTime = c.sha256, c.size, modeString(c.mode), c.modTime.UTC()
		e.UID, e.GID = c.uid, c.gid
		return w.addBytes(member(e.Path), memberMode(e), e.ModTime, c.data)
	case !errors.Is(err, errTooLarge):
		return err
	}
	f, err := openNoBlock(path)
	if err != nil {
		return err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return err
	}
	if !before.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file (%s)", path, before.Mode().Type())
	}
	e.Size, e.Mode, e.ModTime = before.Size(), modeString(before.Mode()), before.ModTime().UTC()
	e.UID, e.GID = owner(before)
	if err := w.header(member(e.Path), memberMode(e), e.Size, e.ModTime); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w.tw, h), ctxio.Reader{Ctx: ctx, R: io.LimitReader(f, e.Size)})
	if err != nil {
		return fmt.Errorf("copying %s: %w", path, err)
	}
	after, err := f.Stat()
	if err != nil {
		return err
	}
	if n != e.Size || after.Size() != e.Size || !after.ModTime().Equal(before.ModTime()) {
		return fmt.Errorf("%s: %w (files over %d MiB are streamed once: do not rewrite them in place during a backup)", path, errUnstable, maxBufferedFile>>20)
	}
	e.SHA256 = hex.EncodeToString(h.Sum(nil))
	return nil
}

// memberMode is the mode in the tar header: secrets are 0600.
func memberMode(e *Entry) int64 {
	if e.Secret {
		return 0o600
	}
	perm, _ := e.Perm()
	return int64(perm)
}

// Commit finishes the stream, fsyncs the file, renames it to final and
// fsyncs the folder; it returns the archive's size.
func (w *archiveWriter) Commit(final string) (int64, error) {
	err := w.tw.Close()
	if err == nil {
		err = w.gz.Close()
	}
	if err == nil && w.enc != nil {
		err = w.enc.Close()
	}
	if err == nil {
		err = w.tmp.Sync()
	}
	var fi fs.FileInfo
	if err == nil {
		fi, err = w.tmp.Stat()
	}
	if err == nil {
		err = w.tmp.Close()
	}
	if err == nil {
		err = os.Rename(w.tmp.Name(), final)
	}
	if err != nil {
		w.Cancel()
		return 0, err
	}
	w.done = true
	return fi.Size(), syncDir(filepath.Dir(final))
}

// Cancel removes the temporary file; after Commit it does nothing, so
// `defer w.Cancel()` is always safe.
func (w *archiveWriter) Cancel() {
	if w.done {
		return
	}
	w.done = true
	w.tmp.Close()
	os.Remove(w.tmp.Name())
}

// syncDir fsyncs a folder so a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

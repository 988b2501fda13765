// Package localsrc is the mirrorsync source for a local directory laid out
// like an export root (<dir>/<exportId>/…, optionally <dir>/latest): a
// mounted volume, an NFS share, a USB disk carried into an air gap.
//
// It offers the export <dir>/latest points to, else the newest complete
// one (the origin's rule). Files are opened through an os.Root on the
// export directory, so no symlink or ".." in the source can reach files
// outside it. Readers report the file's size, so a file larger than its
// index declares is refused unread; an interrupted copy resumes by a seek
// (mirrorsync.RangeOpener) unless the file's size or modification time
// changed since.
package localsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

var (
	_ mirrorsync.Source      = (*Dir)(nil)
	_ mirrorsync.RangeOpener = (*Dir)(nil)
)

// Dir is a local export root used as a sync source.
type Dir struct {
	root string
}

// New returns the source for the export root dir.
func New(dir string) (*Dir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("source directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("source %s is not a directory", abs)
	}
	return &Dir{root: abs}, nil
}

// String returns the directory.
func (d *Dir) String() string { return d.root }

// Resolve returns the target of <dir>/latest, else the newest complete export.
func (d *Dir) Resolve(ctx context.Context) (string, error) {
	target, err := os.Readlink(filepath.Join(d.root, export.LatestLink))
	if err == nil {
		if strings.ContainsRune(target, '/') || !export.ValidExportID(target) {
			return "", fmt.Errorf("%s points to %q, which is not an export id", filepath.Join(d.root, export.LatestLink), target)
		}
		return target, nil
	}
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return "", err
	}
	var cands []mirrorsync.Candidate
	for _, e := range entries {
		if !e.IsDir() || !export.ValidExportID(e.Name()) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(d.root, e.Name(), filepath.FromSlash(export.IndexPath)))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		cands = append(cands, mirrorsync.Candidate{ID: e.Name(), Marker: fi.ModTime()})
	}
	id := mirrorsync.Newest(cands)
	if id == "" {
		return "", fmt.Errorf("no complete export in %s: %w", d.root, fs.ErrNotExist)
	}
	return id, nil
}

// Open opens file rel of export id. The reader reports the file's size
// (mirrorsync.Sizer) and a validator of its size and modification time.
func (d *Dir) Open(ctx context.Context, id, rel string) (io.ReadCloser, error) {
	if !export.ValidExportID(id) {
		return nil, fmt.Errorf("export id %q: invalid", id)
	}
	if err := export.ValidateRelPath(rel); err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(filepath.Join(d.root, id))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// O_NONBLOCK: open(2) of a named pipe would wait for a writer, forever
	// and deaf to SIGTERM; so it returns at once and Stat refuses it. It
	// changes nothing for a regular file.
	f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file", rel)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &file{File: f, size: fi.Size(), validator: validatorOf(fi)}, nil
}

// OpenFrom opens file rel of export id and seeks to offset; a file whose
// size or modification time differs from validator is read from 0.
func (d *Dir) OpenFrom(ctx context.Context, id, rel string, offset int64, validator string) (io.ReadCloser, int64, error) {
	rc, err := d.Open(ctx, id, rel)
	if err != nil {
		return nil, 0, err
	}
	f := rc.(*file)
	if validator != "" && validator != f.validator || offset < 0 {
		return f, 0, nil
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, offset, nil
}

// file is an open source file with what was known when it was opened.
type file struct {
	*os.File
	size      int64
	validator string
}

// Size returns the file's size.
func (f *file) Size() int64 { return f.size }

// Validator names this version of the file.
func (f *file) Validator() string { return f.validator }

func validatorOf(fi fs.FileInfo) string {
	return fmt.Sprintf("%d-%d", fi.Size(), fi.ModTime().UnixNano())
}

// ExcititorDomains lists <dir>/<id>/excititor/*.
func (d *Dir) ExcititorDomains(ctx context.Context, id string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(d.root, id, "excititor"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && export.ValidDomainID(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

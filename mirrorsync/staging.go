package mirrorsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
)

// maxAttempts is how often one file is fetched before the run gives up
// (transfer errors only; a digest mismatch is never retried).
const maxAttempts = 3

// How a staged file got there.
const (
	viaDownload = iota + 1
	viaReuse
	viaResume
)

// stage makes the staged copy of f correct: kept when already there and
// right, hard-linked from a published export with the same digest, or
// downloaded.
func (r *run) stage(ctx context.Context, id string, f *planFile) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dst := filepath.Join(r.staging, filepath.FromSlash(f.rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("staging %s: %w", f.rel, err)
	}
	if ok, err := r.staged(dst, f); err != nil {
		return err
	} else if ok {
		r.count(dst, f)
		return nil
	}
	if r.link(dst, f) {
		r.res.FilesReused++
		r.via(f, viaReuse)
		return nil
	}
	if f.data != nil {
		if err := r.writeFile(dst, bytes.NewReader(f.data), f); err != nil {
			return err
		}
		r.via(f, viaDownload)
		return nil
	}
	if err := r.download(ctx, id, f, dst); err != nil {
		return err
	}
	r.res.FilesDownloaded++
	r.via(f, viaDownload)
	return nil
}

// via records how f was staged (signatures only: a reused or resumed
// signature that fails verification is fetched again).
func (r *run) via(f *planFile, how int) {
	if f.sig != nil {
		if r.sigVia == nil {
			r.sigVia = map[string]int{}
		}
		r.sigVia[f.rel] = how
	}
}

// count classifies a file that was already in staging: put there by a
// Mirrorer during this run (downloaded or linked) or left by an earlier run.
func (r *run) count(dst string, f *planFile) {
	switch {
	case r.bulkUsed && !r.preexisting[dst] && r.sharesInode(dst, f):
		r.res.FilesReused++
		r.via(f, viaReuse)
	case r.bulkUsed && !r.preexisting[dst]:
		r.res.FilesDownloaded++
		r.via(f, viaDownload)
	default:
		r.res.FilesResumed++
		r.via(f, viaResume)
	}
}

// sharesInode reports whether dst is a hard link of a published file.
func (r *run) sharesInode(dst string, f *planFile) bool {
	fi, err := os.Stat(dst)
	if err != nil {
		return false
	}
	for _, c := range r.candidates(f) {
		if ci, err := os.Stat(c); err == nil && os.SameFile(fi, ci) {
			return true
		}
	}
	return false
}

// staged reports whether dst already holds f's bytes. A wrong file is
// removed. Signatures (no declared digest) are kept for verification.
func (r *run) staged(dst string, f *planFile) (bool, error) {
	fi, err := os.Lstat(dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.Mode().IsRegular():
		return false, os.RemoveAll(dst)
	}
	if ci, ok := r.checked[dst]; ok && os.SameFile(ci, fi) && ci.Size() == fi.Size() {
		return true, nil // verified before the Mirrorer ran, which leaves it alone
	}
	if f.digest == "" {
		return fi.Size() <= jws.MaxSignatureSize, nil
	}
	if f.size >= 0 && fi.Size() != f.size {
		return false, os.Remove(dst)
	}
	d, _, err := export.DigestFile(dst)
	if err != nil {
		return false, err
	}
	if d != f.digest {
		r.log.Info("staged file is wrong; fetching it again", "path", f.rel)
		return false, os.Remove(dst)
	}
	return true, nil
}

// candidates lists published files that may hold f's bytes.
func (r *run) candidates(f *planFile) []string {
	var out []string
	if f.digest != "" {
		out = append(out, r.reuse[f.digest]...)
	}
	if f.sig != nil {
		out = append(out, r.sigReuse[sigKey(f.sig.payload, f.sig.digest, f.sig.ref)]...)
	}
	if f.data != nil {
		out = append(out, filepath.Join(r.opts.Root, r.res.ExportID, filepath.FromSlash(f.rel)))
	}
	return out
}

// link hard-links a published file with f's digest into dst. The
// candidate's bytes are hashed first: the index it came from is not proof.
func (r *run) link(dst string, f *planFile) bool {
	for _, c := range r.candidates(f) {
		fi, err := os.Lstat(c)
		if err != nil || !fi.Mode().IsRegular() || f.size >= 0 && fi.Size() != f.size {
			continue
		}
		if f.digest != "" {
			d, _, err := export.DigestFile(c)
			if err != nil || d != f.digest {
				r.log.Warn("published file does not match its declared digest; not reusing it", "file", c)
				continue
			}
		} else if fi.Size() > jws.MaxSignatureSize {
			continue
		}
		if err := os.Link(c, dst); err != nil {
			r.log.Warn("cannot hard-link published file; downloading instead", "file", c, "error", err)
			return false
		}
		return true
	}
	return false
}

// download fetches f from the source into dst, retrying transfer errors.
// A transfer error keeps the partial file when the source can resume it
// (RangeOpener); the next attempt, or the next run, continues it. A
// resumed file that fails verification is fetched once more in full.
func (r *run) download(ctx context.Context, id string, f *planFile, dst string) error {
	retriedFull := false
	for attempt := 1; ; attempt++ {
		resumed, err := r.fetch(ctx, id, f, dst)
		var ve *VerifyError
		if resumed && errors.As(err, &ve) && !retriedFull && ctx.Err() == nil {
			retriedFull = true
			r.log.Warn("resumed download failed verification; downloading the whole file again",
				"export_id", id, "path", f.rel, "error", err)
			attempt--
			continue
		}
		// A full disk is not retried: the same bytes would not fit again.
		if err == nil || attempt == maxAttempts || ctx.Err() != nil || errors.As(err, &ve) || errors.Is(err, fs.ErrNotExist) || isNoSpace(err) {
			if err != nil && !errors.As(err, &ve) {
				err = fmt.Errorf("source %s: fetching %s of export %s: %w", r.opts.Source, f.rel, id, err)
			}
			return err
		}
		r.log.Warn("fetch failed; retrying", "path", f.rel, "attempt", attempt, "error", err)
	}
}

// writeFile writes src to dst through a temporary file that is hashed,
// checked against f, fsynced and renamed into place.
func (r *run) writeFile(dst string, src io.Reader, f *planFile) (err error) {
	tmp := partPath(dst)
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("staging %s: %w", f.rel, err)
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	var w io.Writer = out
	if r.opts.wrapWriter != nil {
		w = r.opts.wrapWriter(w)
	}
	n, err := io.Copy(io.MultiWriter(w, h), src)
	if err != nil {
		return fmt.Errorf("staging %s: %w", f.rel, err)
	}
	if err := checkWritten(f, n, h); err != nil {
		return err
	}
	return commitPart(out, tmp, dst, f)
}

// checkWritten compares n bytes hashed by h with what f declares.
func checkWritten(f *planFile, n int64, h hash.Hash) error {
	got := export.DigestPrefix + hex.EncodeToString(h.Sum(nil))
	switch {
	case f.size >= 0 && n > f.size:
		return &VerifyError{Path: f.rel, Reason: fmt.Sprintf("more than the %d bytes the index declares (stopped reading at %d)", f.size, n)}
	case f.size >= 0 && n != f.size:
		return &VerifyError{Path: f.rel, Reason: fmt.Sprintf("%d bytes, the index declares %d", n, f.size)}
	case f.digest != "" && got != f.digest:
		return &VerifyError{Path: f.rel, Reason: fmt.Sprintf("digest %s, the index declares %s", got, f.digest)}
	case f.sig != nil && n > jws.MaxSignatureSize:
		return &VerifyError{Path: f.rel, Reason: fmt.Sprintf("larger than %d bytes", jws.MaxSignatureSize)}
	}
	return nil
}

// commitPart fsyncs and closes out, the temporary file tmp, and renames it
// to dst.
func commitPart(out *os.File, tmp, dst string, f *planFile) error {
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("staging %s: %w", f.rel, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("staging %s: %w", f.rel, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("staging %s: %w", f.rel, err)
	}
	return nil
}

// removeExtra deletes everything in staging the plan does not list
// (leftover temporary files, files of an older state of the export).
func (r *run) removeExtra(p *plan) error {
	want := map[string]bool{}
	for _, f := range p.files {
		want[filepath.Join(r.staging, filepath.FromSlash(f.rel))] = true
	}
	return filepath.WalkDir(r.staging, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || want[path] {
			return nil
		}
		return os.Remove(path)
	})
}

// countingReader counts bytes read into n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

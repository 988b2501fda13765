package mirrorsync

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/stella-ops/stella-mirror/export/jws"
)

// A download goes to ".<name>.part" beside its destination; for a source
// that can resume (RangeOpener), ".<name>.part.info" records which file
// the partial bytes belong to (partInfo). An interrupted transfer leaves
// both; the next attempt or run hashes the partial bytes again (a prefix
// cannot be checked against a whole-file digest, so the hash is continued
// while the rest is appended) and asks the source for the remainder only.
// The whole file's digest is checked as for any download; when it fails
// after a resume, the partial file is discarded and the file downloaded
// once in full. A verification failure, a full disk (ENOSPC, EDQUOT) and
// a source without RangeOpener remove the partial file at once.

// partPath is the temporary file a download of dst is written to.
func partPath(dst string) string {
	return filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".part")
}

// partInfoPath records what partPath(dst) holds.
func partInfoPath(dst string) string { return partPath(dst) + ".info" }

// partInfo identifies the file a partial download belongs to.
type partInfo struct {
	// Digest and Size are what the index declared for the file.
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Validator is what the source's reader reported (an ETag); "" for none.
	Validator string `json:"validator,omitempty"`
}

// resumable reports whether a partial download of f may be continued.
func (r *run) resumable(f *planFile) (RangeOpener, bool) {
	ro, ok := r.opts.Source.(RangeOpener)
	return ro, ok && f.digest != "" && f.size > 0 && f.sig == nil && f.data == nil
}

// partPrefix returns the length of the partial download of f at dst, a
// hash of those bytes and the validator recorded with them. ok is false
// (and anything left there removed) when there is nothing to continue.
func (r *run) partPrefix(dst string, f *planFile) (off int64, h hash.Hash, validator string, ok bool) {
	tmp, infoPath := partPath(dst), partInfoPath(dst)
	discard := func(why string) (int64, hash.Hash, string, bool) {
		if why != "" {
			r.log.Info("discarding partial download", "path", f.rel, "reason", why)
		}
		os.Remove(tmp)
		os.Remove(infoPath)
		return 0, nil, "", false
	}
	fi, err := os.Lstat(tmp)
	if err != nil {
		return discard("")
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return discard("")
	}
	data, err := os.ReadFile(infoPath)
	var info partInfo
	if err != nil || json.Unmarshal(data, &info) != nil {
		return discard("no record of what it belongs to")
	}
	switch {
	case info.Digest != f.digest || info.Size != f.size:
		return discard(fmt.Sprintf("it belongs to %s (%d bytes); the index now declares %s (%d bytes)", info.Digest, info.Size, f.digest, f.size))
	case fi.Size() > f.size:
		return discard(fmt.Sprintf("%d bytes, more than the %d declared", fi.Size(), f.size))
	}
	in, err := os.Open(tmp)
	if err != nil {
		return discard(err.Error())
	}
	defer in.Close()
	h = sha256.New()
	n, err := io.Copy(h, in)
	if err != nil || n != fi.Size() {
		return discard(fmt.Sprintf("reading it: %v", err))
	}
	return n, h, info.Validator, true
}

// fetch downloads f into dst: the rest of a partial download when the
// source can resume it, else the whole file. resumed reports that bytes
// of an earlier transfer were kept (a verification failure then means
// the partial bytes may be wrong, and the caller downloads again in full).
func (r *run) fetch(ctx context.Context, id string, f *planFile, dst string) (resumed bool, err error) {
	ro, canResume := r.resumable(f)
	var (
		rc    io.ReadCloser
		start int64
		h     hash.Hash
	)
	if canResume {
		if off, ph, validator, ok := r.partPrefix(dst, f); ok {
			if off == f.size {
				// Killed between the last write and the rename.
				return true, r.finishPart(dst, f, off, ph)
			}
			rc, start, err = ro.OpenFrom(ctx, id, f.rel, off, validator)
			if err == nil && start != off && start != 0 {
				rc.Close()
				err = fmt.Errorf("%s: asked for the bytes from %d on, the source sent them from %d: %w", f.rel, off, start, ErrBadRange)
			}
			switch {
			case errors.Is(err, ErrBadRange):
				// A source (or a proxy) that mangles ranges would otherwise
				// fail every run on the same partial file: start over.
				r.log.Warn("the source answered the range request wrongly; discarding the partial download and fetching the whole file",
					"export_id", id, "path", f.rel, "offset", off, "error", err)
				os.Remove(partPath(dst))
				os.Remove(partInfoPath(dst))
				rc, start, err = nil, 0, nil
			case err != nil:
				return false, err
			case start == off:
				h, resumed = ph, true
				r.log.Info("resuming partial download", "export_id", id, "path", f.rel, "offset", off, "size", f.size)
			default: // start == 0
				r.log.Info("the source sent the whole file instead of the rest; downloading it again",
					"export_id", id, "path", f.rel, "offset", off)
			}
		}
	}
	if rc == nil {
		if rc, err = r.opts.Source.Open(ctx, id, f.rel); err != nil {
			return false, err
		}
	}
	defer rc.Close()
	if err := checkSourceSize(rc, f); err != nil {
		if resumed {
			// The rest of the file was to be spliced onto the partial
			// bytes: drop them, so the caller's one whole download (a
			// VerifyError after a resume) starts from 0.
			os.Remove(partPath(dst))
			os.Remove(partInfoPath(dst))
		}
		return resumed, err
	}
	tmp, infoPath := partPath(dst), partInfoPath(dst)
	var out *os.File
	if resumed {
		out, err = os.OpenFile(tmp, os.O_WRONLY, 0)
		if err == nil {
			_, err = out.Seek(start, io.SeekStart)
		}
	} else {
		h = sha256.New()
		os.Remove(infoPath)
		out, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err == nil && canResume {
			err = writePartInfo(infoPath, f, rc)
		}
	}
	if err != nil {
		if out != nil {
			out.Close()
		}
		return resumed, fmt.Errorf("staging %s: %w", f.rel, err)
	}
	keep := false
	defer func() {
		if err != nil && !keep {
			out.Close()
			os.Remove(tmp)
			os.Remove(infoPath)
		}
	}()

	var src io.Reader = &countingReader{r: rc, n: &r.bytes}
	switch {
	case f.sig != nil:
		src = io.LimitReader(src, jws.MaxSignatureSize+1)
	case f.size >= 0:
		// One byte more than declared is enough to reject the file; a
		// source streaming without end cannot fill the disk.
		src = io.LimitReader(src, f.size+1-start)
	}
	var w io.Writer = out
	if r.opts.wrapWriter != nil {
		w = r.opts.wrapWriter(w)
	}
	n, err := io.Copy(io.MultiWriter(w, h), src)
	if err != nil {
		// A transfer error: keep what arrived for the next attempt, unless
		// the disk is full (the partial file would hold the space the
		// rest of the run, or retention, needs).
		keep = canResume && !errors.Is(err, syscall.ENOSPC) && !errors.Is(err, syscall.EDQUOT)
		if keep {
			out.Close()
		}
		return resumed, fmt.Errorf("staging %s: %w", f.rel, err)
	}
	if err := checkWritten(f, start+n, h); err != nil {
		return resumed, err
	}
	os.Remove(infoPath)
	if err := commitPart(out, tmp, dst, f); err != nil {
		return resumed, err
	}
	r.bytesResumed.Add(start)
	return resumed, nil
}

// finishPart renames a complete partial download into place when its
// digest is right; otherwise it removes it and returns the VerifyError.
func (r *run) finishPart(dst string, f *planFile, n int64, h hash.Hash) error {
	tmp := partPath(dst)
	if err := checkWritten(f, n, h); err != nil {
		os.Remove(tmp)
		os.Remove(partInfoPath(dst))
		return err
	}
	out, err := os.OpenFile(tmp, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("staging %s: %w", f.rel, err)
	}
	os.Remove(partInfoPath(dst))
	if err := commitPart(out, tmp, dst, f); err != nil {
		return err
	}
	r.bytesResumed.Add(n)
	return nil
}

// writePartInfo records which file a new partial download belongs to.
func writePartInfo(path string, f *planFile, rc io.Reader) error {
	info := partInfo{Digest: f.digest, Size: f.size}
	if v, ok := rc.(Validator); ok {
		info.Validator = v.Validator()
	}
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// checkSourceSize refuses, before reading anything, a file whose size at
// the source (when the reader knows it) differs from the declared one.
func checkSourceSize(rc io.Reader, f *planFile) error {
	s, ok := rc.(Sizer)
	if !ok {
		return nil
	}
	n := s.Size()
	switch {
	case n < 0:
		return nil
	case f.sig != nil && n > jws.MaxSignatureSize:
		return &VerifyError{Path: f.rel, Reason: fmt.Sprintf("the source has %d bytes, more than the %d a signature may have", n, jws.MaxSignatureSize)}
	case f.size >= 0 && n != f.size:
		return &VerifyError{Path: f.rel, Reason: fmt.Sprintf("the source has %d bytes, the index declares %d", n, f.size)}
	}
	return nil
}

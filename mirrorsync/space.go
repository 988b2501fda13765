package mirrorsync

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/stella-ops/stella-mirror/export"
)

// SpaceError is a run that stopped before downloading because the export
// root's file system lacks the space the new export needs, even after
// pruning every export it may prune (never the active or the previous
// one). errors.Is(err, syscall.ENOSPC) holds for it.
type SpaceError struct {
	// Root is the export root; ExportID the export that did not fit.
	Root, ExportID string
	// Need is the bytes the export still needs (what cannot be
	// hard-linked from a published export or is not staged yet, rounded
	// to blocks, plus a margin); Free the bytes available.
	Need, Free uint64
	// NeedInodes and FreeInodes are the same for inodes (files and
	// folders), on file systems that count them (0, 0 where they do not).
	NeedInodes, FreeInodes uint64
	// Keep is the run's keep; Pruned the exports the run removed first.
	Keep   int
	Pruned []string
}

func (e *SpaceError) Error() string {
	pruned := "nothing could be pruned (the active and the previous export are never pruned)"
	if len(e.Pruned) > 0 {
		pruned = fmt.Sprintf("pruned %v, nothing else may go (never the active or the previous export)", e.Pruned)
	}
	need := fmt.Sprintf("it needs %s, %s free", HumanBytes(e.Need), HumanBytes(e.Free))
	if e.NeedInodes > e.FreeInodes {
		need = fmt.Sprintf("it needs %d inodes (files and folders), %d free", e.NeedInodes, e.FreeInodes)
	}
	return fmt.Sprintf("no space left in %s for export %s: %s; %s; keep=%d needs room for %d exports (docs/operations.md, \"Space needs\")",
		e.Root, e.ExportID, need, pruned, e.Keep, e.Keep+1)
}

// Unwrap makes errors.Is(err, syscall.ENOSPC) hold.
func (e *SpaceError) Unwrap() error { return syscall.ENOSPC }

// HumanBytes formats n in binary units: "512 B", "3.4 MiB".
func HumanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// sigEstimate is the space counted for a detached JWS, whose size the
// index does not declare (real ones are well under a kilobyte).
const sigEstimate = 4 << 10

// spaceMargin is added to every estimate: the state file, its temporary
// copy, directory blocks the estimate does not see.
const spaceMargin = 256 << 10

// statfs returns the bytes available to the run's user in dir's file
// system and the size of its blocks.
func statfs(dir string) (avail, block uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Frsize)
	if bs == 0 {
		bs = uint64(st.Bsize)
	}
	return st.Bavail * bs, bs, nil
}

// inodeMargin is added to the inodes an export needs: the state file's
// temporary copy, the latest symlink's, a partial download's record, the
// staging and trash folders.
const inodeMargin = 8

// freeInodes returns the inodes available in the export root's file
// system; ok is false when it does not count them (btrfs, a tmpfs without
// a limit report none) or cannot be asked.
func (r *run) freeInodes() (free uint64, ok bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(r.opts.Root, &st); err != nil || st.Files == 0 {
		return 0, false
	}
	return st.Ffree, true
}

// freeSpace is the Options.statfs hook, or statfs.
func (r *run) freeSpace() (avail, block uint64, err error) {
	if r.opts.statfs != nil {
		return r.opts.statfs(r.opts.Root)
	}
	return statfs(r.opts.Root)
}

// spaceNeeded estimates the bytes staging p still takes: every planned
// file that is neither staged with its declared size nor hard-linkable
// from a published export (a candidate of the declared size), rounded up
// to whole blocks, less what a partial download already holds, plus one
// block per new directory and a margin. inodes counts the files and
// folders it creates the same way (a hard link takes none), plus a margin.
func (r *run) spaceNeeded(p *plan, block uint64) (need, inodes uint64) {
	if block == 0 {
		block = 4096
	}
	roundUp := func(n int64) uint64 { return (uint64(n) + block - 1) / block * block }
	need, inodes = uint64(spaceMargin), inodeMargin
	newDirs := map[string]bool{}
	for i := range p.files {
		f := &p.files[i]
		dst := filepath.Join(r.staging, filepath.FromSlash(f.rel))
		size := f.size
		if size < 0 {
			size = sigEstimate
		}
		if fi, err := os.Lstat(dst); err == nil && fi.Mode().IsRegular() && (f.size < 0 || fi.Size() == f.size) {
			continue
		}
		if r.linkable(f) {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(filepath.Dir(dst), "."+filepath.Base(dst)+".part")); err == nil && fi.Mode().IsRegular() && fi.Size() <= size {
			size -= fi.Size()
		} else {
			inodes++
		}
		need += roundUp(size)
		for d := filepath.Dir(dst); d != r.staging && !newDirs[d]; d = filepath.Dir(d) {
			if _, err := os.Lstat(d); err == nil {
				break
			}
			newDirs[d] = true
			need += block
			inodes++
		}
	}
	return need, inodes
}

// linkable reports whether a published file of f's declared size is a
// candidate to hard-link (the bytes are hashed only when linking).
func (r *run) linkable(f *planFile) bool {
	for _, c := range r.candidates(f) {
		if fi, err := os.Lstat(c); err == nil && fi.Mode().IsRegular() && (f.size < 0 || fi.Size() == f.size) {
			return true
		}
	}
	return false
}

// pruneCandidate is an export ensureSpace may remove, and why.
type pruneCandidate struct{ id, reason string }

// pruneCandidates lists, in the order they go, the exports a run short
// of space may remove before downloading p: first those retention would
// remove once p is published (beyond keep), oldest first; then the other
// kept ones, oldest first. Never the active export (ROOT/latest), the
// previous one (the newest other), nor a published copy of p itself.
func (r *run) pruneCandidates(p *plan) []pruneCandidate {
	active, _ := os.Readlink(filepath.Join(r.opts.Root, export.LatestLink))
	var others []string // newest first, without p.id
	for _, id := range r.exportsNewestFirst() {
		if id != p.id {
			others = append(others, id)
		}
	}
	previous := ""
	for _, id := range others {
		if id != active {
			previous = id
			break
		}
	}
	var beyond, kept []pruneCandidate
	for i := len(others) - 1; i >= 0; i-- {
		id := others[i]
		switch {
		case id == active || id == previous:
		case i >= r.opts.Keep-1:
			beyond = append(beyond, pruneCandidate{id, fmt.Sprintf("beyond keep=%d once %s is published", r.opts.Keep, p.id)})
		default:
			kept = append(kept, pruneCandidate{id, "oldest kept export other than the active and the previous one"})
		}
	}
	return append(beyond, kept...)
}

// ensureSpace checks, before anything is downloaded, that the export
// root's file system has room for what p still needs; when it has not,
// it prunes exports (pruneCandidates) one at a time until it has, logging
// each, and fails with a *SpaceError when pruning is not enough. A file
// system whose free space cannot be read is not checked (logged).
func (r *run) ensureSpace(p *plan) error {
	free, block, err := r.freeSpace()
	if err != nil {
		r.log.Warn("cannot read the free space of the export root; not checking it", "root", r.opts.Root, "error", err)
		return nil
	}
	freeInodes, countsInodes := r.freeInodes()
	need, needInodes := r.spaceNeeded(p, block)
	fits := func() bool { return need <= free && (!countsInodes || needInodes <= freeInodes) }
	// space describes the shortage for the log lines.
	space := func() []any {
		a := []any{"need", HumanBytes(need), "free", HumanBytes(free)}
		if countsInodes {
			a = append(a, "need_inodes", needInodes, "free_inodes", freeInodes)
		}
		return a
	}
	if fits() {
		r.log.Debug("free space", space()...)
		return nil
	}
	for _, c := range r.pruneCandidates(p) {
		r.log.Warn("not enough free space; pruning an export before downloading",
			append([]any{"export_id", c.id, "reason", c.reason}, space()...)...)
		aside, err := r.toTrash(c.id)
		if err != nil {
			return err
		}
		if err := os.RemoveAll(aside); err != nil {
			return fmt.Errorf("pruning export %s: %w", c.id, err)
		}
		r.res.Pruned = append(r.res.Pruned, c.id)
		// The pruned export may have held files p could have reused.
		r.indexPublished(p.id)
		if free, block, err = r.freeSpace(); err != nil {
			return fmt.Errorf("reading free space: %w", err)
		}
		freeInodes, countsInodes = r.freeInodes()
		if need, needInodes = r.spaceNeeded(p, block); fits() {
			r.log.Info("enough free space after pruning", append([]any{"pruned", r.res.Pruned}, space()...)...)
			return nil
		}
	}
	se := &SpaceError{Root: r.opts.Root, ExportID: p.id, Need: need, Free: free, Keep: r.opts.Keep, Pruned: r.res.Pruned}
	if countsInodes {
		se.NeedInodes, se.FreeInodes = needInodes, freeInodes
	}
	return se
}

// isNoSpace reports whether err is a full file system or quota.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

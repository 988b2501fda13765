package mirrorsync

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stella-ops/stella-mirror/export"
)

// publish moves the verified staging directory to ROOT/<id> and points
// ROOT/latest at it.
func (r *run) publish(p *plan) error {
	root := r.opts.Root
	if err := syncTree(r.staging); err != nil {
		return fmt.Errorf("syncing staged export: %w", err)
	}
	target := filepath.Join(root, p.id)
	_, err := os.Lstat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Rename(r.staging, target); err != nil {
			return fmt.Errorf("publishing %s: %w", p.id, err)
		}
		r.res.Published = true
	case err != nil:
		return err
	case r.sameTree(p, target):
		// Already published (an earlier run stopped after the rename).
		if err := os.RemoveAll(r.staging); err != nil {
			return err
		}
	default:
		// The source changed the export under the same id: swap the two
		// directories in one step, then discard the old one.
		if err := r.replace(p.id, target); err != nil {
			return err
		}
		r.res.Published = true
	}
	if err := syncDir(root); err != nil {
		return err
	}
	changed, err := swapLatest(root, p.id)
	if err != nil {
		return err
	}
	if changed {
		r.res.Published = true
	}
	if r.res.Published {
		r.log.Info("published", "export_id", p.id, "generated_at", p.generatedAt)
	}
	return nil
}

// replace puts the staged export in place of the published directory of
// the same id. renameat2(RENAME_EXCHANGE) swaps them atomically, so the
// origin never finds the directory missing; where the file system cannot
// exchange, the old directory is renamed aside first (a moment without
// it, answered 503 by the origin).
func (r *run) replace(id, target string) error {
	err := unix.Renameat2(unix.AT_FDCWD, r.staging, unix.AT_FDCWD, target, unix.RENAME_EXCHANGE)
	if err == nil {
		// The old tree is now at the staging path.
		dir := filepath.Join(r.opts.Root, trashDir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return os.Rename(r.staging, filepath.Join(dir, id+"."+strconv.FormatInt(time.Now().UnixNano(), 36)))
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("publishing %s: exchanging directories: %w", id, err)
	}
	aside, err := r.toTrash(id)
	if err != nil {
		return err
	}
	if err := os.Rename(r.staging, target); err != nil {
		os.Rename(aside, target)
		return fmt.Errorf("publishing %s: %w", id, err)
	}
	return nil
}

// sameTree reports whether every planned file in staging is the same
// inode as in the published directory.
func (r *run) sameTree(p *plan, target string) bool {
	for _, f := range p.files {
		a, err1 := os.Stat(filepath.Join(r.staging, filepath.FromSlash(f.rel)))
		b, err2 := os.Stat(filepath.Join(target, filepath.FromSlash(f.rel)))
		if err1 != nil || err2 != nil || !os.SameFile(a, b) {
			return false
		}
	}
	return true
}

// swapLatest points ROOT/latest at id with one rename of a new symlink.
func swapLatest(root, id string) (bool, error) {
	latest := filepath.Join(root, export.LatestLink)
	if t, err := os.Readlink(latest); err == nil && t == id {
		return false, nil
	}
	tmp := filepath.Join(root, ".latest.tmp")
	os.Remove(tmp)
	if err := os.Symlink(id, tmp); err != nil {
		return false, fmt.Errorf("creating latest symlink: %w", err)
	}
	if err := os.Rename(tmp, latest); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("swapping latest: %w", err)
	}
	return true, syncDir(root)
}

// toTrash renames ROOT/<id> into ROOT/.trash, from where emptyTrash
// removes it; the rename makes the removal invisible to the origin.
func (r *run) toTrash(id string) (string, error) {
	dir := filepath.Join(r.opts.Root, trashDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	aside := filepath.Join(dir, id+"."+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Rename(filepath.Join(r.opts.Root, id), aside); err != nil {
		return "", fmt.Errorf("moving export %s aside: %w", id, err)
	}
	return aside, nil
}

// emptyTrash removes what earlier steps moved aside.
func (r *run) emptyTrash() {
	if err := os.RemoveAll(filepath.Join(r.opts.Root, trashDir)); err != nil {
		r.log.Warn("emptying trash", "error", err)
	}
}

// retain removes exports beyond the newest Keep (exportsNewestFirst).
// The active export is always kept.
func (r *run) retain(active string) {
	kept := 1 // the active export
	for _, id := range r.exportsNewestFirst() {
		if id == active {
			continue
		}
		if kept < r.opts.Keep {
			kept++
			continue
		}
		if _, err := r.toTrash(id); err != nil {
			r.log.Warn("retention", "export_id", id, "error", err)
			continue
		}
		r.res.Removed = append(r.res.Removed, id)
		r.log.Info("removed old export", "export_id", id)
	}
}

// exportsNewestFirst lists the published exports, newest first by the
// mtime of their completeness marker (index.json), ties by name.
func (r *run) exportsNewestFirst() []string {
	type exp struct {
		id  string
		mod time.Time
	}
	var all []exp
	for _, id := range r.publishedExports() {
		var mod time.Time
		if fi, err := os.Stat(filepath.Join(r.opts.Root, id, filepath.FromSlash(export.IndexPath))); err == nil {
			mod = fi.ModTime()
		} else if fi, err := os.Stat(filepath.Join(r.opts.Root, id)); err == nil {
			mod = fi.ModTime()
		}
		all = append(all, exp{id, mod})
	}
	slices.SortFunc(all, func(a, b exp) int {
		if c := b.mod.Compare(a.mod); c != 0 {
			return c
		}
		if a.id > b.id {
			return -1
		}
		return 1
	})
	ids := make([]string, len(all))
	for i, e := range all {
		ids[i] = e.id
	}
	return ids
}

// syncTree fsyncs every file and directory under dir.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

// syncDir fsyncs a directory so renames in it are durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

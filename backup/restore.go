package backup

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"filippo.io/age"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Archive is the archive file (.tar.gz or .tar.gz.age). Required.
	Archive string
	// Identities decrypt an encrypted archive; IdentityFile names where
	// they came from, for messages.
	Identities   []age.Identity
	IdentityFile string
	// Root is where files go: Root + each original path. Required ("/" to
	// put them back where they were).
	Root string
	// Force overwrites existing files; without it any existing file is
	// an error and nothing is written.
	Force bool
	// DryRun decrypts and verifies the archive and reports what would be
	// written and what exists; nothing is written.
	DryRun bool
	// Chown restores numeric owners (only root can). Default: false; the
	// command sets it when it runs as root.
	Chown bool
}

// RestoreResult is what Restore did.
type RestoreResult struct {
	// Manifest is the archive's manifest.
	Manifest *Manifest
	// Written are the paths written (or, with DryRun, to write), under Root.
	Written []string
	// Existing are the paths that already existed (overwritten with Force).
	Existing []string
	// Encrypted tells whether the archive was age-encrypted.
	Encrypted bool
}

// Restore verifies every checksum of the archive, then writes its files
// under Root with their modes. Nothing is written when any check fails or
// when a file exists and Force is not set.
func Restore(o RestoreOptions) (*RestoreResult, error) {
	if o.Archive == "" || o.Root == "" {
		return nil, errors.New("restore: --from ARCHIVE and --to ROOT are required")
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, err
	}
	v, err := verifyArchive(o.Archive, o.Identities, o.IdentityFile)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	m := v.manifest
	res := &RestoreResult{Manifest: m}
	for _, e := range m.Entries {
		target := filepath.Join(root, e.Path)
		fi, err := os.Lstat(target)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("restore: %w", err)
		case e.Type == TypeDir && fi.IsDir():
			continue
		case e.Type == TypeDir || fi.IsDir():
			return nil, fmt.Errorf("restore: %s exists and is not a %s", target, map[bool]string{true: "folder", false: "file"}[e.Type == TypeDir])
		default:
			res.Existing = append(res.Existing, target)
		}
		if e.Type != TypeDir {
			res.Written = append(res.Written, target)
		}
	}
	if len(res.Existing) > 0 && !o.Force && !o.DryRun {
		return res, fmt.Errorf("restore: %d file(s) exist under %s, nothing written (use --force to overwrite): %s", len(res.Existing), root, listSome(res.Existing))
	}
	if o.DryRun {
		return res, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := extract(o, root, v, res); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	return res, nil
}

// listSome lists up to five paths.
func listSome(paths []string) string {
	if len(paths) <= 5 {
		return strings.Join(paths, ", ")
	}
	return strings.Join(paths[:5], ", ") + fmt.Sprintf(" and %d more", len(paths)-5)
}

// extract reads the archive a second time and writes it under root through
// an os.Root, so no path or symlink in the tree leads outside root.
func extract(o RestoreOptions, root string, v *verified, res *RestoreResult) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	m := v.manifest
	rel := func(p string) string { return strings.TrimPrefix(p, "/") }
	// Folders first (private until the end), then files from the stream,
	// then symlinks, then folder modes deepest first.
	var dirs []*Entry
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type == TypeDir {
			if err := r.MkdirAll(rel(e.Path), 0o700); err != nil {
				return err
			}
			dirs = append(dirs, e)
		}
	}
	a, err := openArchive(o.Archive, o.Identities, o.IdentityFile)
	if err != nil {
		return err
	}
	defer a.Close()
	res.Encrypted = a.encrypted
	for {
		h, err := a.tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return corrupt(o.Archive, err)
		}
		mem, _ := strings.CutPrefix(h.Name, m.Name+"/")
		e := v.files[mem]
		if e == nil {
			continue // SHA256SUMS, MANIFEST.json (checked in the first pass)
		}
		if err := writeFile(r, rel(e.Path), a.tr, e, o.Chown); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(root, e.Path), err)
		}
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeSymlink {
			continue
		}
		if err := r.MkdirAll(filepath.Dir(rel(e.Path)), 0o755); err != nil {
			return err
		}
		if o.Force {
			r.Remove(rel(e.Path))
		}
		if err := r.Symlink(e.Target, rel(e.Path)); err != nil {
			return err
		}
		if o.Chown {
			r.Lchown(rel(e.Path), e.UID, e.GID)
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i].Path) > len(dirs[j].Path) })
	for _, e := range dirs {
		perm, _ := e.Perm()
		if o.Chown {
			if err := r.Chown(rel(e.Path), e.UID, e.GID); err != nil {
				return err
			}
		}
		if err := r.Chmod(rel(e.Path), perm); err != nil {
			return err
		}
	}
	return syncDir(root)
}

// writeFile writes one file through a temporary name, checks its digest
// again and only then renames it into place with its mode (and owner).
func writeFile(r *os.Root, name string, body io.Reader, e *Entry, chown bool) (err error) {
	dir := filepath.Dir(name)
	if err := r.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(name)+".restore-"+hex.EncodeToString(rnd[:]))
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			r.Remove(tmp)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), body)
	if err != nil {
		return err
	}
	if n != e.Size || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		return fmt.Errorf("%w: the archive changed between verification and extraction", ErrCorrupt)
	}
	perm, _ := e.Perm()
	if chown {
		if err = f.Chown(e.UID, e.GID); err != nil {
			return err
		}
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if !e.ModTime.IsZero() {
		r.Chtimes(tmp, e.ModTime, e.ModTime)
	}
	return r.Rename(tmp, name)
}

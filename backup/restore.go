package backup

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"filippo.io/age"

	"github.com/stella-ops/stella-mirror/backup/inventory"

	"github.com/stella-ops/stella-mirror/internal/ctxio"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// Archive is the archive file (.tar.gz or .tar.gz.age). Required.
	Archive string
	// Identities decrypt an encrypted archive; IdentityFile names where
	// they came from, for messages.
	Identities   []age.Identity
	IdentityFile string
	// VerifyKeys are the backup verification keys (Ed25519 public keys);
	// the archive's signature must verify against one of them. Several
	// keys are given during a key rotation.
	VerifyKeys []ed25519.PublicKey
	// AllowUnsigned restores an archive without a signature (or without
	// checking it when no VerifyKeys are given). Entries under --include
	// paths are refused from such an archive. Default: false.
	AllowUnsigned bool
	// Root is where files go: Root + each original path. Required ("/" to
	// put them back where they were).
	Root string
	// Force overwrites existing files; without it any existing file is
	// an error and nothing is written.
	Force bool
	// DryRun decrypts and verifies the archive, checks the restore rules
	// (when References is set) and reports what would be written and what
	// exists; nothing is written under Root.
	DryRun bool
	// Chown restores numeric owners (only root can). Default: false; the
	// command sets it when it runs as root.
	Chown bool
	// References loads the restored configurations (configs are their
	// original paths, each read from root + its path — root is a private
	// temporary folder holding only the configurations —, maps the archive's
	// --map rewrites) and returns every path they reference on this host
	// (package backup/profile: profile.References). Every entry of the
	// archive must be one of them (or inside a referenced folder), a
	// configuration file, or an include of a signed archive. Required
	// unless DryRun.
	References func(ctx context.Context, root string, configs []string, maps []PathMapping) ([]Reference, error)
	// Validate checks the restored files (stella-mirror validate, the
	// drill) before the restore is committed; an error undoes the
	// restore. Default (nil): no check.
	Validate func(ctx context.Context, m *Manifest, root string) error
}

// Reference is a path a restored configuration references (see
// inventory.Reference).
type Reference = inventory.Reference

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
	// Signed tells whether the archive carries a signature; KeyID names
	// the verification key it verified against ("" when not checked).
	Signed bool
	KeyID  string
}

// ErrRefused is returned (wrapped) when an archive verifies but what it
// would restore breaks the restore rules (a path no configuration
// references).
var ErrRefused = errors.New("archive refused")

// Restore verifies every checksum and the signature of the archive, then
// loads its configurations from a private temporary folder, checks that
// every entry is a path they reference, and only then writes the entries
// and their modes under Root (all writes through an os.Root) and runs
// Validate. Nothing is written under Root when a check of the archive or
// a rule fails, or when a file exists and Force is not set; when a later
// step fails, everything the restore wrote is removed and the files it
// replaced are put back.
func Restore(ctx context.Context, o RestoreOptions) (*RestoreResult, error) {
	if o.Archive == "" || o.Root == "" {
		return nil, errors.New("restore: --from ARCHIVE and --to ROOT are required")
	}
	if o.References == nil && !o.DryRun {
		return nil, errors.New("restore: no References function given")
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, err
	}
	v, err := verifyArchive(o.Archive, verifyOptions{identities: o.Identities, identityFile: o.IdentityFile,
		verifyKeys: o.VerifyKeys, allowUnsigned: o.AllowUnsigned})
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	m := v.manifest
	res := &RestoreResult{Manifest: m, Signed: v.signed, KeyID: v.keyID}
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
	if o.DryRun && o.References == nil {
		return res, nil
	}
	// The configurations first, read from a private folder outside ROOT:
	// the rules need what they reference, and nothing — not even a
	// configuration — is written under ROOT before the rules accepted
	// every entry (on a live host, a file in /etc/cron.d acts the moment
	// it exists). A dry run checks the rules too.
	var configs []string
	isConfig := make(map[string]bool)
	for _, c := range m.Configs {
		configs = append(configs, c.Path)
		isConfig[c.Path] = true
	}
	refs, err := configReferences(ctx, o, v, configs, isConfig, root)
	if err != nil {
		return res, fmt.Errorf("restore: %w (nothing was written under %s)", err, root)
	}
	secret, err := checkRules(m, refs, v.keyID != "")
	if err != nil {
		return res, fmt.Errorf("restore: %w (nothing was written under %s)", err, root)
	}
	if o.DryRun {
		return res, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer r.Close()
	tx := &restoreTx{r: r}
	fail := func(err error) (*RestoreResult, error) {
		if rerr := tx.rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undoing the restore: %w", rerr))
		} else {
			err = fmt.Errorf("%w (everything the restore wrote under %s was removed)", err, root)
		}
		return res, fmt.Errorf("restore: %w", err)
	}
	if res.Encrypted, err = extract(ctx, o, tx, v, func(*Entry) bool { return true }); err != nil {
		return fail(err)
	}
	if err := applyModes(tx, m, secret); err != nil {
		return fail(err)
	}
	if err := syncDir(root); err != nil {
		return fail(err)
	}
	if o.Validate != nil {
		if err := o.Validate(ctx, m, root); err != nil {
			return fail(err)
		}
	}
	if err := tx.commit(); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	return res, nil
}

// configReferences writes the archive's configuration files into a
// private temporary folder (0700, outside the restore root, removed at
// once), loads them there with o.References and returns what they
// reference. Messages name the files under root, where they would go.
func configReferences(ctx context.Context, o RestoreOptions, v *verified, configs []string, isConfig map[string]bool, root string) ([]Reference, error) {
	dir, err := os.MkdirTemp("", "stella-mirror-restore-configs-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	o.Chown = false
	if _, err := extract(ctx, o, &restoreTx{r: r}, v, func(e *Entry) bool { return isConfig[e.Path] }); err != nil {
		return nil, fmt.Errorf("reading the configuration files: %w", err)
	}
	refs, err := o.References(ctx, dir, configs, v.manifest.PathMap)
	if err != nil {
		return nil, fmt.Errorf("%w: loading the restored configurations: %v", ErrRefused, strings.ReplaceAll(err.Error(), dir, root))
	}
	return refs, nil
}

// listSome lists up to five paths.
func listSome(paths []string) string {
	if len(paths) <= 5 {
		return strings.Join(paths, ", ")
	}
	return strings.Join(paths[:5], ", ") + fmt.Sprintf(" and %d more", len(paths)-5)
}

// checkRules refuses entries no restored configuration references; it
// returns which entries are secrets (by a referencing configuration).
func checkRules(m *Manifest, refs []Reference, signed bool) (map[string]bool, error) {
	files := map[string]Reference{}
	var dirs []Reference
	for _, c := range m.Configs {
		files[c.Path] = Reference{Path: c.Path, Key: "config"}
	}
	for _, r := range refs {
		r.Path = filepath.Clean(r.Path)
		if r.Dir {
			dirs = append(dirs, r)
		} else {
			files[r.Path] = r
		}
	}
	if signed {
		for _, p := range m.Includes {
			dirs = append(dirs, Reference{Path: p, Key: "--include", Dir: true})
		}
	}
	var refused []string
	secret := make(map[string]bool)
	for i := range m.Entries {
		e := &m.Entries[i]
		ref, ok := files[e.Path]
		for _, d := range dirs {
			if !ok && (e.Path == d.Path || strings.HasPrefix(e.Path, d.Path+"/")) {
				ref, ok = d, true
			}
		}
		if !ok {
			refused = append(refused, e.Path)
			continue
		}
		secret[e.Path] = ref.Secret
	}
	if len(refused) > 0 {
		why := ""
		if !signed && len(m.Includes) > 0 {
			why = "; entries under --include paths are restored only from a signed archive (--verify-key)"
		}
		return nil, fmt.Errorf("%w: %d path(s) no restored configuration references%s: %s", ErrRefused, len(refused), why, listSome(refused))
	}
	return secret, nil
}

// applyModes gives every restored file its mode, a secret's (by the
// manifest or by a configuration that references it) at most 0640, and a
// folder of secrets at most 0750.
func applyModes(tx *restoreTx, m *Manifest, secret map[string]bool) error {
	// Every file was written 0600; now its mode, a secret's (by the
	// manifest or by a configuration that references it) at most 0640.
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type == TypeDir && (secret[e.Path] || e.Secret || e.Kind == "secret" || e.Kind == "acme") {
			// A folder of secrets (the ACME storage): never writable or
			// readable by others, whatever the manifest says — anyone
			// could otherwise replace the keys a service loads.
			perm, _ := e.Perm()
			if err := tx.r.Chmod(rel(e.Path), perm&0o750); err != nil {
				return err
			}
			continue
		}
		if e.Type != TypeFile {
			continue
		}
		perm := filePerm(e)
		if secret[e.Path] {
			perm = secretPerm(perm)
		}
		if err := tx.r.Chmod(rel(e.Path), perm); err != nil {
			return err
		}
	}
	return nil
}

// secretPerm limits a secret's mode to 0640 (owner read/write, group
// read): whatever the manifest says, a secret is never world-readable.
func secretPerm(perm fs.FileMode) fs.FileMode { return perm & 0o640 }

// filePerm is the mode a restored file gets: no set-id or sticky bits
// from an archive, never world-writable, secrets at most 0640.
func filePerm(e *Entry) fs.FileMode {
	perm, _ := e.Perm()
	perm &= fs.ModePerm &^ 0o002
	if e.Secret || e.Kind == "secret" || e.Kind == "acme" {
		perm = secretPerm(perm)
	}
	return perm
}

// restoreTx records what a restore changed under its root so that a
// failed restore can be undone: files and links written, originals moved
// aside (put back on rollback, removed on commit), folders created, folder
// modes changed.
type restoreTx struct {
	r       *os.Root
	written []string      // final names
	temps   []string      // temporary names not yet renamed
	aside   [][2]string   // {aside name, original name}
	created []string      // folders created, in creation order
	modes   []dirModeUndo // folder modes changed
}

type dirModeUndo struct {
	name string
	mode fs.FileMode
	// uid and gid are the folder's owner before the restore (-1: not
	// known, not put back).
	uid, gid int
}

// rel turns an absolute archive path into a name under the root.
func rel(p string) string { return strings.TrimPrefix(p, "/") }

// mkdirAll creates name's missing folders (0700 until the end), recording
// each one created.
func (tx *restoreTx) mkdirAll(name string) error {
	if name == "." || name == "" {
		return nil
	}
	parts := strings.Split(name, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		// Stat: an existing symlinked folder (/var/run → /run) is used as
		// it is; the os.Root keeps every step inside the root.
		fi, err := tx.r.Stat(p)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return fmt.Errorf("%s exists and is not a folder", p)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		if err := tx.r.Mkdir(p, 0o700); err != nil {
			return err
		}
		tx.created = append(tx.created, p)
	}
	return nil
}

// replace moves tmp to name, setting an existing name aside first.
func (tx *restoreTx) replace(tmp, name string) error {
	if _, err := tx.r.Lstat(name); err == nil {
		aside := path.Join(path.Dir(name), "."+path.Base(name)+".restore-orig-"+randomHex())
		if err := tx.r.Rename(name, aside); err != nil {
			return err
		}
		tx.aside = append(tx.aside, [2]string{aside, name})
	}
	if err := tx.r.Rename(tmp, name); err != nil {
		return err
	}
	tx.forgetTemp(tmp)
	tx.written = append(tx.written, name)
	return nil
}

func (tx *restoreTx) forgetTemp(tmp string) {
	for i, t := range tx.temps {
		if t == tmp {
			tx.temps = append(tx.temps[:i], tx.temps[i+1:]...)
			return
		}
	}
}

// rollback undoes everything, newest first.
func (tx *restoreTx) rollback() error {
	var errs []error
	for _, t := range tx.temps {
		if err := tx.r.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for i := len(tx.written) - 1; i >= 0; i-- {
		if err := tx.r.Remove(tx.written[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for i := len(tx.aside) - 1; i >= 0; i-- {
		if err := tx.r.Rename(tx.aside[i][0], tx.aside[i][1]); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(tx.modes) - 1; i >= 0; i-- {
		// The owner first: a chown may clear set-id bits the mode restores.
		if m := tx.modes[i]; m.uid >= 0 && m.gid >= 0 {
			if err := tx.r.Lchown(m.name, m.uid, m.gid); err != nil {
				errs = append(errs, err)
			}
		}
		if err := tx.r.Chmod(tx.modes[i].name, tx.modes[i].mode); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(tx.created) - 1; i >= 0; i-- {
		if err := tx.r.Remove(tx.created[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	*tx = restoreTx{r: tx.r}
	return errors.Join(errs...)
}

// commit removes the originals set aside.
func (tx *restoreTx) commit() error {
	var errs []error
	for _, a := range tx.aside {
		if err := tx.r.RemoveAll(a[0]); err != nil {
			errs = append(errs, err)
		}
	}
	*tx = restoreTx{r: tx.r}
	return errors.Join(errs...)
}

func randomHex() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// extract reads the archive again and writes the entries only accepts
// under the root through an os.Root (no path or symlink in the tree leads
// outside it). It reports whether the archive was encrypted.
func extract(ctx context.Context, o RestoreOptions, tx *restoreTx, v *verified, only func(*Entry) bool) (bool, error) {
	m := v.manifest
	// Folders first (private until the end), then files from the stream,
	// then symlinks, then folder modes deepest first.
	var dirs []*Entry
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type == TypeDir && only(e) {
			if err := tx.mkdirAll(rel(e.Path)); err != nil {
				return false, err
			}
			dirs = append(dirs, e)
		}
	}
	a, err := openArchive(o.Archive, o.Identities, o.IdentityFile)
	if err != nil {
		return false, err
	}
	defer a.Close()
	for {
		if err := ctx.Err(); err != nil {
			return a.encrypted, fmt.Errorf("interrupted (%w)", context.Cause(ctx))
		}
		h, err := a.tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a.encrypted, corrupt(o.Archive, err)
		}
		mem, _ := strings.CutPrefix(h.Name, m.Name+"/")
		e := v.files[mem]
		if e == nil {
			continue // SHA256SUMS, MANIFEST.json, MANIFEST.sig (checked in the first pass)
		}
		if !only(e) {
			continue
		}
		// SIGTERM/SIGINT (the context) stop the restore within one buffer;
		// the caller undoes what was written.
		if err := writeFile(tx, rel(e.Path), ctxio.Reader{Ctx: ctx, R: a.tr}, e, o.Chown); err != nil {
			return a.encrypted, fmt.Errorf("%s: %w", filepath.Join(o.Root, e.Path), err)
		}
	}
	if err := a.finish(o.Archive); err != nil {
		return a.encrypted, err
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeSymlink || !only(e) {
			continue
		}
		name := rel(e.Path)
		if err := tx.mkdirAll(path.Dir(name)); err != nil {
			return a.encrypted, err
		}
		tmp := path.Join(path.Dir(name), "."+path.Base(name)+".restore-"+randomHex())
		if err := tx.r.Symlink(e.Target, tmp); err != nil {
			return a.encrypted, err
		}
		tx.temps = append(tx.temps, tmp)
		if o.Chown {
			tx.r.Lchown(tmp, e.UID, e.GID)
		}
		if err := tx.replace(tmp, name); err != nil {
			return a.encrypted, err
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i].Path) > len(dirs[j].Path) })
	for _, e := range dirs {
		perm, _ := e.Perm()
		perm &= fs.ModePerm | fs.ModeSticky
		if perm&fs.ModeSticky == 0 {
			// World-writable only as a sticky folder (like /tmp): anyone
			// could otherwise replace what a service loads from it.
			perm &^= 0o002
		}
		name := rel(e.Path)
		if fi, err := tx.r.Lstat(name); err == nil {
			u := dirModeUndo{name: name, mode: fi.Mode() & (fs.ModePerm | fs.ModeSticky | fs.ModeSetgid), uid: -1, gid: -1}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				u.uid, u.gid = int(st.Uid), int(st.Gid)
			}
			tx.modes = append(tx.modes, u)
		}
		if o.Chown {
			if err := tx.r.Chown(name, e.UID, e.GID); err != nil {
				return a.encrypted, err
			}
		}
		if err := tx.r.Chmod(name, perm); err != nil {
			return a.encrypted, err
		}
	}
	// Folders created only as parents of files keep 0700 → open them like
	// mkdir -p would (0755), the files' own modes protect their content.
	for _, d := range tx.created {
		if !isDirEntry(m, "/"+d) {
			if err := tx.r.Chmod(d, 0o755); err != nil {
				return a.encrypted, err
			}
		}
	}
	return a.encrypted, nil
}

// isDirEntry reports whether the manifest has a folder entry for p.
func isDirEntry(m *Manifest, p string) bool {
	for i := range m.Entries {
		if m.Entries[i].Path == p {
			return m.Entries[i].Type == TypeDir
		}
	}
	return false
}

// writeFile writes one file through a temporary name, checks its digest
// again and only then renames it into place with its mode (and owner).
func writeFile(tx *restoreTx, name string, body io.Reader, e *Entry, chown bool) (err error) {
	dir := path.Dir(name)
	if err := tx.mkdirAll(dir); err != nil {
		return err
	}
	tmp := path.Join(dir, "."+path.Base(name)+".restore-"+randomHex())
	f, err := tx.r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	tx.temps = append(tx.temps, tmp)
	defer func() {
		if err != nil {
			f.Close()
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
	if chown {
		if err = f.Chown(e.UID, e.GID); err != nil {
			return err
		}
	}
	// The file stays 0600 (OpenFile) until applyRules has checked every
	// entry and knows which files are secrets.
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if !e.ModTime.IsZero() {
		tx.r.Chtimes(tmp, e.ModTime, e.ModTime)
	}
	return tx.replace(tmp, name)
}

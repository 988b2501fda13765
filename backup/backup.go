package backup

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/stella-ops/stella-mirror/backup/inventory"
)

// Options configure Backup.
type Options struct {
	// Configs are the profile's configuration files (YAML or env). At
	// least one of Configs and Includes is required.
	Configs []string
	// Load loads Configs with the components' loaders and returns what
	// they reference (package backup/profile: profile.LoadInventory).
	// Required when Configs are given.
	Load func(configs []string) (*inventory.Inventory, error)
	// PathMap rewrites path prefixes of every path the configurations
	// reference before it is read (compose: /run/secrets is mounted from a
	// host folder). Entries are saved under the host path. Default: none.
	PathMap []PathMapping
	// Includes are further files or folders (saved recursively).
	Includes []string
	// IncludeExports adds the active export of every export root the
	// configurations name. Default: false.
	IncludeExports bool
	// OutDir receives the archive; it is created (0700) if missing. Required.
	OutDir string
	// Recipients encrypt the archive with age; none writes a plain tar.gz.
	Recipients []age.Recipient
	// SigningKey signs the manifest and checksums (MANIFEST.sig), so
	// restore --verify-key can tell the archive was made here. Default
	// (nil): the archive is unsigned and restore needs --allow-unsigned.
	SigningKey ed25519.PrivateKey
	// Retention prunes OutDir after a successful backup. Default (nil):
	// nothing is pruned.
	Retention *Retention
	// DryRun lists what would be saved and pruned; nothing is written.
	DryRun bool
	// Now is the clock that names the archive. Default: time.Now.
	Now func() time.Time
	// Version is recorded in the manifest.
	Version string
	// Started is called once the partial archive (DIR/.partial-…) is
	// created, before any file is read; the command logs it. Default: nil.
	Started func(partial string)
}

// Result is what Backup did.
type Result struct {
	// Archive is the archive's path (empty for a dry run).
	Archive string
	// Manifest describes the archive's content.
	Manifest *Manifest
	// Bytes is the archive's size; ContentBytes the files' total size.
	Bytes, ContentBytes int64
	// KeyID is the signing key's id (empty when unsigned).
	KeyID string
	// Stale are the unfinished outputs of interrupted runs (partial
	// archives, plaintext staging folders of earlier versions) found in
	// OutDir and removed before this run.
	Stale []string
	// Removed are the archives retention removed (or would remove).
	Removed []string
	// Warnings are references skipped (see Profile.Warnings).
	Warnings []string
}

// source is one path to save.
type source struct {
	path   string
	kind   string
	secret bool
	keys   []string
	walked bool // found in a folder walk: symlinks are saved as links
}

// Backup takes a hot backup of the profile into OutDir, then applies the
// retention policy. The archive is streamed (tar → gzip → age) into a
// private temporary file in OutDir and appears under its final name only
// when complete: nothing is written in plaintext but the bytes of an
// unencrypted archive. The unfinished output of interrupted runs is
// removed first and listed in Result.Stale. When ctx is cancelled
// (SIGTERM) the run stops within one buffer of a file, removes its partial
// output and returns ctx's error.
func Backup(ctx context.Context, o Options) (*Result, error) {
	if len(o.Configs) == 0 && len(o.Includes) == 0 {
		return nil, errors.New("backup: nothing to back up: give --config and/or --include")
	}
	if o.OutDir == "" {
		return nil, errors.New("backup: an output folder is required (--out)")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	now := o.Now().UTC().Truncate(time.Second)
	m := &Manifest{Format: FormatVersion, Name: ArchiveName(now), Created: now, Version: o.Version}
	m.Host, _ = os.Hostname()
	p := &inventory.Inventory{}
	if len(o.Configs) > 0 {
		if o.Load == nil {
			return nil, errors.New("backup: no configuration loader (Options.Load)")
		}
		var err error
		if p, err = o.Load(o.Configs); err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
	}
	var err error
	if o.PathMap, err = inventory.SortPathMaps(o.PathMap); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	m.PathMap = o.PathMap
	srcs, warnings, err := plan(p, o)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	for _, c := range p.Configs {
		m.Configs = append(m.Configs, ConfigRef{Path: c.Path, Format: c.Format})
	}
	for _, inc := range o.Includes {
		if abs, err := filepath.Abs(inc); err == nil {
			m.Includes = append(m.Includes, abs)
		}
	}
	res := &Result{Manifest: m, Warnings: warnings}
	ext := ".tar.gz"
	if len(o.Recipients) > 0 {
		ext += ".age"
	}
	final := filepath.Join(o.OutDir, m.Name+ext)

	if o.DryRun {
		for _, s := range srcs {
			stat := os.Stat
			if s.walked {
				stat = os.Lstat
			}
			fi, err := stat(s.path)
			if err != nil {
				return nil, fmt.Errorf("backup: %w", err)
			}
			e := Entry{Path: s.path, Mode: modeString(fi.Mode()), Kind: s.kind, Secret: s.secret, Keys: s.keys, Size: fi.Size()}
			switch {
			case fi.IsDir():
				e.Type, e.Size = TypeDir, 0
			case fi.Mode()&fs.ModeSymlink != 0:
				e.Type, e.Size = TypeSymlink, 0
			default:
				e.Type = TypeFile
				res.ContentBytes += fi.Size()
			}
			m.Entries = append(m.Entries, e)
		}
		if _, err := os.Stat(o.OutDir); err == nil && o.Retention != nil {
			res.Removed, err = pruneWith(o.OutDir, *o.Retention, Archive{Name: filepath.Base(final), Time: now})
			if err != nil {
				return nil, err
			}
		}
		return res, nil
	}

	if err := os.MkdirAll(o.OutDir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	unlock, err := lockDir(o.OutDir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer unlock()
	res.Stale, err = removeStale(o.OutDir)
	if err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	if _, err := os.Lstat(final); err == nil {
		return res, fmt.Errorf("backup: %s already exists (two backups in one second?)", final)
	}
	w, err := newArchiveWriter(final, m.Name, o.Recipients)
	if err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	defer w.Cancel()
	if o.Started != nil {
		o.Started(w.Name())
	}
	interrupted := func() error {
		return fmt.Errorf("backup: interrupted (%w); the partial archive %s was removed", context.Cause(ctx), w.Name())
	}

	sums := make(map[string]string)
	for _, s := range srcs {
		if ctx.Err() != nil {
			return res, interrupted()
		}
		e, err := w.save(ctx, s)
		if err != nil {
			if ctx.Err() != nil {
				return res, interrupted()
			}
			return res, fmt.Errorf("backup: %w", err)
		}
		if e.Type == TypeFile {
			sums[member(e.Path)] = e.SHA256
			res.ContentBytes += e.Size
		}
		m.Entries = append(m.Entries, e)
	}
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
	// What restore would refuse fails the backup now, not the restore.
	if err := m.validate(); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	mb, err := encodeManifest(m)
	if err != nil {
		return res, err
	}
	ms := sha256.Sum256(mb)
	sums[ManifestName] = hex.EncodeToString(ms[:])
	var sb strings.Builder
	if err := writeSums(&sb, sums); err != nil {
		return res, err
	}
	if err := checkArchiveLimits(m.Name, sums, mb, []byte(sb.String())); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	// The metadata goes last: the digests are known once the files are
	// streamed. Restore reads the members in any order.
	if err := w.addBytes(SumsName, 0o600, m.Created, []byte(sb.String())); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	if err := w.addBytes(ManifestName, 0o600, m.Created, mb); err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	if o.SigningKey != nil {
		sig, err := signArchive(o.SigningKey, mb, []byte(sb.String()))
		if err != nil {
			return res, fmt.Errorf("backup: signing: %w", err)
		}
		if err := w.addBytes(SignatureName, 0o600, m.Created, sig); err != nil {
			return res, fmt.Errorf("backup: %w", err)
		}
		res.KeyID = KeyID(o.SigningKey.Public().(ed25519.PublicKey))
	}
	if ctx.Err() != nil {
		return res, interrupted()
	}
	n, err := w.Commit(final)
	if err != nil {
		return res, fmt.Errorf("backup: %w", err)
	}
	res.Archive, res.Bytes = final, n
	if o.Retention != nil {
		if res.Removed, err = Prune(o.OutDir, *o.Retention, false); err != nil {
			return res, err
		}
	}
	return res, nil
}

// save adds one source to the archive and returns its manifest entry.
// Folders and symlinks are manifest entries only; a referenced symlink (a
// Kubernetes secret) is saved as its content.
func (w *archiveWriter) save(ctx context.Context, s source) (Entry, error) {
	e := Entry{Path: s.path, Kind: s.kind, Secret: s.secret, Keys: s.keys}
	stat := os.Stat
	if s.walked {
		stat = os.Lstat
	}
	fi, err := stat(s.path)
	if err != nil {
		return e, err
	}
	e.UID, e.GID = owner(fi)
	e.Mode = modeString(fi.Mode())
	switch {
	case fi.IsDir():
		e.Type = TypeDir
		return e, nil
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
		e.ModTime = fi.ModTime().UTC()
		e.Target, err = os.Readlink(s.path)
		return e, err
	}
	e.Type = TypeFile
	return e, w.addFile(ctx, s.path, &e)
}

// pruneWith is a dry-run Prune that counts extra as already present.
func pruneWith(dir string, r Retention, extra Archive) ([]string, error) {
	archives, err := ListArchives(dir)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	archives = append(archives, extra)
	keep := r.Keep(archives)
	var out []string
	for _, a := range archives {
		if !keep[a.Name] {
			out = append(out, a.Name)
		}
	}
	return out, nil
}

// plan lists every path to save, de-duplicated, in a stable order.
func plan(p *inventory.Inventory, o Options) ([]source, []string, error) {
	var out []source
	var errs []error
	warnings := append([]string(nil), p.Warnings...)
	index := make(map[string]int)
	add := func(s source) {
		if strings.ContainsAny(s.path, "\n\\") {
			// SHA256SUMS could not list it unescaped.
			errs = append(errs, fmt.Errorf("%q: paths with a newline or backslash cannot be backed up", s.path))
			return
		}
		if i, ok := index[s.path]; ok {
			out[i].keys = append(out[i].keys, s.keys...)
			out[i].secret = out[i].secret || s.secret
			return
		}
		index[s.path] = len(out)
		out = append(out, s)
	}
	outAbs, _ := filepath.Abs(o.OutDir)
	walk := func(root, kind string, secret bool, keys []string) {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if o.OutDir != "" && (path == outAbs || strings.HasPrefix(path, outAbs+string(filepath.Separator))) {
				// Never back up the backups (nor the staging folder).
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type()&fs.ModeSymlink != 0 {
				target, err := os.Readlink(path)
				if err != nil {
					return err
				}
				if !plainRelative(target) {
					// Restore accepts relative targets of plain names only.
					warnings = append(warnings, fmt.Sprintf("%s: symlink to %s skipped (only relative targets without . or .. are saved)", path, target))
					return nil
				}
			} else if !d.IsDir() && !d.Type().IsRegular() {
				warnings = append(warnings, fmt.Sprintf("%s: %s skipped (not a file, folder or symlink)", path, d.Type()))
				return nil
			}
			add(source{path: path, kind: kind, secret: secret, keys: keys, walked: true})
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range p.Configs {
		fi, err := os.Stat(c.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		add(source{path: c.Path, kind: "config", secret: fi.Mode().Perm()&0o077 == 0})
	}
	for _, r := range p.Refs {
		what := fmt.Sprintf("%s=%s (%s)", r.Key, r.Path, r.Config)
		if why := inventory.Unresolvable(r.Path); why != "" {
			warnings = append(warnings, what+" "+why)
			continue
		}
		if mapped := inventory.MapPath(o.PathMap, r.Path); mapped != r.Path {
			what = fmt.Sprintf("%s=%s → %s (%s)", r.Key, r.Path, mapped, r.Config)
			r.Path = mapped
		}
		fi, err := os.Stat(r.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && r.Optional:
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", what, unwrapPath(err)))
			continue
		case r.Dir != fi.IsDir():
			kind := "a file"
			if r.Dir {
				kind = "a folder"
			}
			errs = append(errs, fmt.Errorf("%s: not %s", what, kind))
			continue
		}
		abs := filepath.Clean(r.Path)
		if r.Dir {
			walk(abs, r.Kind, r.Secret, []string{r.Key})
		} else {
			add(source{path: abs, kind: r.Kind, secret: r.Secret, keys: []string{r.Key}})
		}
	}
	for _, inc := range o.Includes {
		abs, err := filepath.Abs(inc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fi, err := os.Stat(abs)
		if err != nil {
			errs = append(errs, fmt.Errorf("--include %s: %w", inc, unwrapPath(err)))
			continue
		}
		if fi.IsDir() {
			walk(abs, "include", fi.Mode().Perm()&0o077 == 0, nil)
		} else {
			add(source{path: abs, kind: "include", secret: fi.Mode().Perm()&0o077 == 0})
		}
	}
	if o.IncludeExports {
		roots := map[string]string{}
		var order []string
		for _, r := range p.Refs {
			if r.ExportRoot == "" || inventory.Unresolvable(r.ExportRoot) != "" {
				continue
			}
			root := filepath.Clean(inventory.MapPath(o.PathMap, r.ExportRoot))
			if _, ok := roots[root]; !ok {
				order = append(order, root)
				roots[root] = r.ActiveExportID
			} else if r.ActiveExportID != "" {
				roots[root] = r.ActiveExportID
			}
		}
		for _, root := range order {
			id, err := inventory.ActiveExport(root, roots[root])
			if err != nil {
				errs = append(errs, fmt.Errorf("--include-exports: %w", err))
				continue
			}
			add(source{path: root, kind: "export"})
			if fi, err := os.Lstat(filepath.Join(root, "latest")); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				add(source{path: filepath.Join(root, "latest"), kind: "export", walked: true})
			}
			walk(filepath.Join(root, id), "export", false, nil)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return out, warnings, nil
}

// unwrapPath drops the *PathError wrapper when the caller names the path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// checkArchiveLimits fails a backup that restore would refuse for its
// size: more members, longer member names, a bigger SHA256SUMS or manifest
// than restore reads (archive.go). Such an archive could never be
// restored; the backup fails now, naming the limit, instead.
func checkArchiveLimits(top string, sums map[string]string, manifest, sumsFile []byte) error {
	members := len(sums) + 2 // the files, SHA256SUMS, MANIFEST.json (in sums), MANIFEST.sig
	names := 0
	for mem := range sums {
		names += len(top) + 1 + len(mem)
	}
	switch {
	case members >= maxMembers || names > maxNameBytes:
		return fmt.Errorf("%d files with %d bytes of names: more than restore reads in one archive (%d members, %d MiB of names); back up fewer files (--include) or split the profile", len(sums)-1, names, maxMembers-3, maxNameBytes>>20)
	case len(sumsFile) > maxSumsBytes:
		return fmt.Errorf("%s would be %d bytes, more than the %d restore reads; back up fewer files (--include) or split the profile", SumsName, len(sumsFile), maxSumsBytes)
	case len(manifest) > maxManifestBytes:
		return fmt.Errorf("%s would be %d bytes, more than the %d restore reads; back up fewer files (--include) or split the profile", ManifestName, len(manifest), maxManifestBytes)
	}
	return nil
}

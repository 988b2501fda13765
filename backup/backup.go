package backup

import (
	"archive/tar"
	"compress/gzip"
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
	"time"

	"filippo.io/age"
)

// Options configure Backup.
type Options struct {
	// Configs are the profile's configuration files (YAML or env). At
	// least one of Configs and Includes is required.
	Configs []string
	// PathMap rewrites path prefixes of every path the configurations
	// reference before it is read (compose: /run/secrets is mounted from a
	// host folder). Entries are saved under the host path. Default: none.
	PathMap []PathMapping
	// Includes are further files or folders (saved recursively).
	Includes []string
	// IncludeExports adds the active export of every export root the
	// configurations name, hard-linked into the staging folder where the
	// file system allows (copied otherwise). Default: false.
	IncludeExports bool
	// OutDir receives the archive; it is created (0700) if missing. Required.
	OutDir string
	// Recipients encrypt the archive with age; none writes a plain tar.gz.
	Recipients []age.Recipient
	// Retention prunes OutDir after a successful backup. Default (nil):
	// nothing is pruned.
	Retention *Retention
	// DryRun lists what would be saved and pruned; nothing is written.
	DryRun bool
	// Now is the clock that names the archive. Default: time.Now.
	Now func() time.Time
	// Version is recorded in the manifest.
	Version string
}

// Result is what Backup did.
type Result struct {
	// Archive is the archive's path (empty for a dry run).
	Archive string
	// Manifest describes the archive's content.
	Manifest *Manifest
	// Bytes is the archive's size; ContentBytes the files' total size.
	Bytes, ContentBytes int64
	// Linked counts export files hard-linked rather than copied.
	Linked int
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
	link   bool // try a hard link (exports)
	walked bool // found in a folder walk: symlinks are saved as links
}

// Backup takes a hot backup of the profile into OutDir, then applies the
// retention policy. The archive appears under its final name only when it
// is complete; the unencrypted staging folder is removed on every return.
func Backup(o Options) (*Result, error) {
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
	p, err := LoadProfile(o.Configs)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if o.PathMap, err = sortMaps(o.PathMap); err != nil {
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
	if _, err := os.Lstat(final); err == nil {
		return nil, fmt.Errorf("backup: %s already exists (two backups in one second?)", final)
	}
	staging, err := os.MkdirTemp(o.OutDir, ".staging-"+m.Name+"-")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(staging)
	top := filepath.Join(staging, m.Name)

	sums := make(map[string]string)
	for _, s := range srcs {
		e, linked, err := stage(s, top)
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		if linked {
			res.Linked++
		}
		if e.Type == TypeFile {
			sums[member(e.Path)] = e.SHA256
			res.ContentBytes += e.Size
		}
		m.Entries = append(m.Entries, e)
	}
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
	mb, err := encodeManifest(m)
	if err != nil {
		return nil, err
	}
	ms := sha256.Sum256(mb)
	sums[ManifestName] = hex.EncodeToString(ms[:])
	var sb strings.Builder
	if err := writeSums(&sb, sums); err != nil {
		return nil, err
	}

	n, err := writeArchive(final, top, m, mb, []byte(sb.String()), o.Recipients)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	res.Archive, res.Bytes = final, n
	if err := os.RemoveAll(staging); err != nil {
		return res, fmt.Errorf("backup: removing the staging folder %s: %w", staging, err)
	}
	if o.Retention != nil {
		if res.Removed, err = Prune(o.OutDir, *o.Retention, false); err != nil {
			return res, err
		}
	}
	return res, nil
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
func plan(p *Profile, o Options) ([]source, []string, error) {
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
	walk := func(root, kind string, secret, link bool, keys []string) {
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
				if filepath.IsAbs(target) || strings.HasPrefix(filepath.Clean(target), "..") {
					warnings = append(warnings, fmt.Sprintf("%s: symlink to %s outside its folder skipped", path, target))
					return nil
				}
			} else if !d.IsDir() && !d.Type().IsRegular() {
				warnings = append(warnings, fmt.Sprintf("%s: %s skipped (not a file, folder or symlink)", path, d.Type()))
				return nil
			}
			add(source{path: path, kind: kind, secret: secret, link: link, keys: keys, walked: true})
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
		if why := unresolvable(r.Path); why != "" {
			warnings = append(warnings, what+" "+why)
			continue
		}
		if mapped := mapPath(o.PathMap, r.Path); mapped != r.Path {
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
			walk(abs, r.Kind, r.Secret, false, []string{r.Key})
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
			walk(abs, "include", fi.Mode().Perm()&0o077 == 0, false, nil)
		} else {
			add(source{path: abs, kind: "include", secret: fi.Mode().Perm()&0o077 == 0})
		}
	}
	if o.IncludeExports {
		roots := map[string]string{}
		var order []string
		for _, r := range p.Refs {
			if r.ExportRoot == "" || unresolvable(r.ExportRoot) != "" {
				continue
			}
			root := filepath.Clean(mapPath(o.PathMap, r.ExportRoot))
			if _, ok := roots[root]; !ok {
				order = append(order, root)
				roots[root] = r.ActiveExportID
			} else if r.ActiveExportID != "" {
				roots[root] = r.ActiveExportID
			}
		}
		for _, root := range order {
			id, err := activeExport(root, roots[root])
			if err != nil {
				errs = append(errs, fmt.Errorf("--include-exports: %w", err))
				continue
			}
			add(source{path: root, kind: "export"})
			if fi, err := os.Lstat(filepath.Join(root, "latest")); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				add(source{path: filepath.Join(root, "latest"), kind: "export", walked: true})
			}
			walk(filepath.Join(root, id), "export", false, true, nil)
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

// activeExport returns the export a root serves: pinned, else latest,
// else the newest non-hidden folder.
func activeExport(root, pinned string) (string, error) {
	if pinned != "" {
		if fi, err := os.Stat(filepath.Join(root, pinned)); err != nil || !fi.IsDir() {
			return "", fmt.Errorf("%s: pinned export %s not found", root, pinned)
		}
		return pinned, nil
	}
	if t, err := os.Readlink(filepath.Join(root, "latest")); err == nil {
		t = filepath.Clean(t)
		if !filepath.IsAbs(t) && !strings.Contains(t, string(filepath.Separator)) && t != ".." {
			return t, nil
		}
		return "", fmt.Errorf("%s: latest points outside the root (%s)", root, t)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return "", err
	}
	var best string
	var bestT time.Time
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if best == "" || fi.ModTime().After(bestT) {
			best, bestT = e.Name(), fi.ModTime()
		}
	}
	if best == "" {
		return "", fmt.Errorf("%s: no export to include", root)
	}
	return best, nil
}

// stage saves one source under top/files and returns its manifest entry.
func stage(s source, top string) (Entry, bool, error) {
	e := Entry{Path: s.path, Kind: s.kind, Secret: s.secret, Keys: s.keys}
	stat := os.Stat // a referenced symlink (a Kubernetes secret) is saved as its content
	if s.walked {
		stat = os.Lstat
	}
	fi, err := stat(s.path)
	if err != nil {
		return e, false, err
	}
	e.UID, e.GID = owner(fi)
	e.Mode = modeString(fi.Mode())
	e.ModTime = fi.ModTime().UTC()
	dst := filepath.Join(top, filepath.FromSlash(member(s.path)))
	switch {
	case fi.IsDir():
		e.Type, e.ModTime = TypeDir, time.Time{}
		return e, false, nil
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
		e.Target, err = os.Readlink(s.path)
		return e, false, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return e, false, err
	}
	e.Type = TypeFile
	if s.link && fi.Mode().IsRegular() {
		// Published exports are immutable: a hard link is a consistent
		// copy that costs no space.
		if err := os.Link(s.path, dst); err == nil {
			sum, n, err := hashFile(dst)
			if err != nil {
				return e, false, err
			}
			e.SHA256, e.Size = sum, n
			return e, true, nil
		}
	}
	c, err := copyStable(s.path, dst)
	if err != nil {
		return e, false, err
	}
	e.SHA256, e.Size, e.Mode, e.ModTime = c.sha256, c.size, modeString(c.mode), c.modTime.UTC()
	e.UID, e.GID = c.uid, c.gid
	return e, false, nil
}

// writeArchive writes the tar.gz (age-encrypted when recipients are given)
// to final through a temporary file in the same folder, re-hashing every
// staged file as it goes.
func writeArchive(final, top string, m *Manifest, manifest, sums []byte, recipients []age.Recipient) (n int64, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(final), "."+filepath.Base(final)+".tmp-*")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	var w io.Writer = tmp
	var enc io.WriteCloser
	if len(recipients) > 0 {
		if enc, err = age.Encrypt(tmp, recipients...); err != nil {
			return 0, fmt.Errorf("age: %w", err)
		}
		w = enc
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	hdr := func(name string, mode int64, size int64, mt time.Time) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeReg, Name: m.Name + "/" + name, Mode: mode, Size: size,
			ModTime: mt, Format: tar.FormatPAX}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{SumsName, sums}, {ManifestName, manifest}} {
		if err := tw.WriteHeader(hdr(f.name, 0o600, int64(len(f.data)), m.Created)); err != nil {
			return 0, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return 0, err
		}
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if e.Type != TypeFile {
			continue
		}
		perm, _ := e.Perm()
		mode := int64(perm)
		if e.Secret {
			mode = 0o600
		}
		if err := tw.WriteHeader(hdr(member(e.Path), mode, e.Size, e.ModTime)); err != nil {
			return 0, err
		}
		if err := copyVerified(tw, filepath.Join(top, filepath.FromSlash(member(e.Path))), e); err != nil {
			return 0, err
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	if err := gz.Close(); err != nil {
		return 0, err
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return 0, err
		}
	}
	if err := tmp.Sync(); err != nil {
		return 0, err
	}
	fi, err := tmp.Stat()
	if err != nil {
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return 0, err
	}
	return fi.Size(), syncDir(filepath.Dir(final))
}

// copyVerified copies a staged file into the archive, checking that it
// still has the size and digest the manifest records.
func copyVerified(w io.Writer, name string, e *Entry) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(f, e.Size))
	if err != nil {
		return err
	}
	if n != e.Size || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		return fmt.Errorf("%s changed in the staging folder", e.Path)
	}
	return nil
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

package backup

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/backup/inventory"
)

// FormatVersion is the archive format this package writes and reads.
const FormatVersion = 1

// Names of the members of an archive, under its top-level folder.
const (
	// SumsName is the checksum file, in sha256sum(1) format.
	SumsName = "SHA256SUMS"
	// ManifestName is the manifest (JSON, see Manifest).
	ManifestName = "MANIFEST.json"
	// filesDir holds the saved files under their original absolute paths.
	filesDir = "files"
)

// Entry types.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Manifest describes an archive: which configuration files make up the
// profile and every saved path with its original location and mode.
type Manifest struct {
	// Format is FormatVersion.
	Format int `json:"format"`
	// Name is the archive's name and top-level folder (YYYY-MM-DDTHHMMSSZ).
	Name string `json:"name"`
	// Created is when the backup started (UTC).
	Created time.Time `json:"created"`
	// Host is the host name the backup was taken on.
	Host string `json:"host,omitempty"`
	// Version is the stella-mirror version that wrote it.
	Version string `json:"version,omitempty"`
	// Configs are the profile's configuration files (also in Entries).
	Configs []ConfigRef `json:"configs"`
	// PathMap are the --map rewrites the backup applied to the paths the
	// configurations name (container path → host path); entries carry the
	// host paths.
	PathMap []PathMapping `json:"pathMap,omitempty"`
	// Includes are the --include paths (absolute). Restore accepts entries
	// under them only from a signed archive; every other entry must be a
	// path the configurations reference.
	Includes []string `json:"includes,omitempty"`
	// Entries are every saved path, sorted by Path.
	Entries []Entry `json:"entries"`
}

// PathMapping rewrites a path prefix (see inventory.PathMapping).
type PathMapping = inventory.PathMapping

// ConfigRef names one configuration file of the profile.
type ConfigRef struct {
	// Path is the file's original absolute path.
	Path string `json:"path"`
	// Format is "yaml" or "env".
	Format string `json:"format"`
}

// Entry is one saved path.
type Entry struct {
	// Path is the original absolute path; restore writes ROOT + Path.
	Path string `json:"path"`
	// Type is TypeFile, TypeDir or TypeSymlink.
	Type string `json:"type"`
	// Mode is the permission bits in octal ("0640"), as on disk.
	Mode string `json:"mode"`
	// UID and GID are the numeric owner, restored when restore runs as root.
	UID int `json:"uid"`
	GID int `json:"gid"`
	// Size is the file's size in bytes (files only).
	Size int64 `json:"size,omitempty"`
	// SHA256 is the hex SHA-256 of the content (files only).
	SHA256 string `json:"sha256,omitempty"`
	// Target is the link target (symlinks only; relative, inside the tree).
	Target string `json:"target,omitempty"`
	// ModTime is the modification time of the copied version.
	ModTime time.Time `json:"modTime,omitzero"`
	// Secret marks secrets (keys, htpasswd files, tokens, ACME storage):
	// stored with mode 0600 in the archive.
	Secret bool `json:"secret,omitempty"`
	// Kind says why the path was saved: config, tls, key, secret, state,
	// acme, export or include.
	Kind string `json:"kind"`
	// Keys are the configuration keys that reference the path.
	Keys []string `json:"keys,omitempty"`
}

// Perm returns the entry's permission bits.
func (e *Entry) Perm() (fs.FileMode, error) {
	v, err := strconv.ParseUint(e.Mode, 8, 32)
	if err != nil || v&^0o7777 != 0 {
		return 0, fmt.Errorf("manifest: %s: bad mode %q", e.Path, e.Mode)
	}
	return fs.FileMode(v) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), nil
}

// member returns the archive member name of a file entry's content,
// relative to the archive's top-level folder.
func member(abs string) string { return filesDir + abs }

// modeString formats permission bits as in the manifest.
func modeString(m fs.FileMode) string { return fmt.Sprintf("%04o", uint32(m.Perm())) }

// validate checks a manifest read from an archive: every path absolute and
// clean, no duplicates, types and modes known, configurations saved as
// files, and symlinks that cannot lead anywhere but a sibling path of the
// tree: a target is relative, made of plain names (no "." or ".."
// component), and neither a symlink's target nor any entry's path passes
// through another symlink of the archive (no chains such as /L→.,
// /a/evil→L/../L/../outside).
func (m *Manifest) validate() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("manifest: format %d, this program reads %d", m.Format, FormatVersion)
	}
	seen := make(map[string]*Entry, len(m.Entries))
	links := make(map[string]bool)
	for i := range m.Entries {
		e := &m.Entries[i]
		if !cleanAbs(e.Path) {
			return fmt.Errorf("manifest: path %q is not a clean absolute path", e.Path)
		}
		if seen[e.Path] != nil {
			return fmt.Errorf("manifest: path %q appears twice", e.Path)
		}
		seen[e.Path] = e
		if _, err := e.Perm(); err != nil {
			return err
		}
		switch e.Type {
		case TypeFile:
			if _, err := hex.DecodeString(e.SHA256); err != nil || len(e.SHA256) != 64 {
				return fmt.Errorf("manifest: %s: bad sha256 %q", e.Path, e.SHA256)
			}
			if e.Size < 0 {
				return fmt.Errorf("manifest: %s: negative size", e.Path)
			}
		case TypeDir:
		case TypeSymlink:
			if !plainRelative(e.Target) {
				return fmt.Errorf("manifest: %s: symlink target %q is not a relative path of plain names (no \".\", \"..\" or leading /)", e.Path, e.Target)
			}
			links[e.Path] = true
		default:
			return fmt.Errorf("manifest: %s: unknown type %q", e.Path, e.Type)
		}
	}
	// throughLink reports the first symlink entry among p's ancestors (and
	// p itself when self is set).
	throughLink := func(p string, self bool) string {
		if self && links[p] {
			return p
		}
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if links[d] {
				return d
			}
		}
		return ""
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if l := throughLink(e.Path, false); l != "" {
			return fmt.Errorf("manifest: %s lies under the symlink %s", e.Path, l)
		}
		if e.Type == TypeSymlink {
			to := path.Join(path.Dir(e.Path), e.Target)
			if l := throughLink(to, true); l != "" {
				return fmt.Errorf("manifest: symlink %s → %s leads through the symlink %s (chains are refused)", e.Path, e.Target, l)
			}
		}
	}
	for _, c := range m.Configs {
		if e := seen[c.Path]; e == nil || e.Type != TypeFile {
			return fmt.Errorf("manifest: configuration %q is not saved as a file", c.Path)
		}
		if c.Format != "yaml" && c.Format != "env" {
			return fmt.Errorf("manifest: configuration %s: format %q, want yaml or env", c.Path, c.Format)
		}
	}
	for _, p := range m.Includes {
		if !cleanAbs(p) {
			return fmt.Errorf("manifest: include %q is not a clean absolute path", p)
		}
	}
	for _, pm := range m.PathMap {
		if !cleanAbs(pm.From) || !cleanAbs(pm.To) {
			return fmt.Errorf("manifest: path mapping %s=%s: not clean absolute paths", pm.From, pm.To)
		}
	}
	return nil
}

// cleanAbs reports whether p is a clean absolute path other than /.
func cleanAbs(p string) bool {
	return path.IsAbs(p) && path.Clean(p) == p && p != "/" && !strings.ContainsAny(p, "\x00\n\\")
}

// plainRelative reports whether a symlink target is relative and made of
// plain names only.
func plainRelative(t string) bool {
	if t == "" || path.IsAbs(t) || strings.ContainsAny(t, "\x00\\") {
		return false
	}
	for _, c := range strings.Split(t, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

// writeSums writes sums (member name → hex digest) in sha256sum(1) format,
// sorted by name.
func writeSums(w io.Writer, sums map[string]string) error {
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	bw := bufio.NewWriter(w)
	for _, n := range names {
		fmt.Fprintf(bw, "%s  %s\n", sums[n], n)
	}
	return bw.Flush()
}

// parseSums reads a SHA256SUMS file. Names with newlines or backslashes
// (which sha256sum escapes) are never written, so they are refused.
func parseSums(data []byte) (map[string]string, error) {
	sums := make(map[string]string)
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		hexSum, name, ok := strings.Cut(string(line), "  ")
		if !ok || len(hexSum) != 64 || name == "" {
			return nil, fmt.Errorf("%s line %d: not \"<sha256>  <name>\"", SumsName, i+1)
		}
		if _, err := hex.DecodeString(hexSum); err != nil {
			return nil, fmt.Errorf("%s line %d: bad digest", SumsName, i+1)
		}
		if _, dup := sums[name]; dup {
			return nil, fmt.Errorf("%s line %d: %s listed twice", SumsName, i+1, name)
		}
		sums[name] = hexSum
	}
	return sums, nil
}

// encodeManifest returns the manifest as indented JSON.
func encodeManifest(m *Manifest) ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

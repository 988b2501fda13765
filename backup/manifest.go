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
	// Entries are every saved path, sorted by Path.
	Entries []Entry `json:"entries"`
}

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
// clean, no duplicates, types and modes known, symlink targets relative
// and inside the tree.
func (m *Manifest) validate() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("manifest: format %d, this program reads %d", m.Format, FormatVersion)
	}
	seen := make(map[string]bool, len(m.Entries))
	for i := range m.Entries {
		e := &m.Entries[i]
		if !path.IsAbs(e.Path) || path.Clean(e.Path) != e.Path || e.Path == "/" {
			return fmt.Errorf("manifest: path %q is not a clean absolute path", e.Path)
		}
		if seen[e.Path] {
			return fmt.Errorf("manifest: path %q appears twice", e.Path)
		}
		seen[e.Path] = true
		if _, err := e.Perm(); err != nil {
			return err
		}
		switch e.Type {
		case TypeFile:
			if _, err := hex.DecodeString(e.SHA256); err != nil || len(e.SHA256) != 64 {
				return fmt.Errorf("manifest: %s: bad sha256 %q", e.Path, e.SHA256)
			}
		case TypeDir:
		case TypeSymlink:
			if e.Target == "" || path.IsAbs(e.Target) || strings.HasPrefix(path.Clean(e.Target), "..") {
				return fmt.Errorf("manifest: %s: symlink target %q leaves its folder", e.Path, e.Target)
			}
		default:
			return fmt.Errorf("manifest: %s: unknown type %q", e.Path, e.Type)
		}
	}
	return nil
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

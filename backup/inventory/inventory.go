// Package inventory holds what a deployment's configuration files
// reference, as plain data: the input of a backup (Inventory) and what
// restore checks an archive against (Reference), with the path rules both
// sides share (PathMapping, Unresolvable, ActiveExport).
//
// It exists so that package backup depends on no component: package
// backup/profile loads the configurations with the origin's, gateway's
// and sync's own loaders and produces these values; package backup only
// consumes them.
package inventory

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Inventory is what a profile's configuration files reference.
type Inventory struct {
	// Configs are the configuration files, in the order given.
	Configs []Config
	// Refs are the files and folders the configurations reference.
	Refs []Ref
	// Warnings are references that cannot be followed (relative paths,
	// ${CREDENTIALS_DIRECTORY}/…): back their sources up with --include.
	Warnings []string
}

// Config is one configuration file.
type Config struct {
	// Path is the file's absolute path.
	Path string
	// Format is "yaml" or "env".
	Format string
}

// Ref is a path a configuration references.
type Ref struct {
	// Key is the configuration key, e.g. GATEWAY__SITES__0__HTPASSWDFILE.
	Key string
	// Config is the configuration file that sets it.
	Config string
	// Path is the referenced path as configured.
	Path string
	// Kind is tls, key, secret, acme or state.
	Kind string
	// Secret files are stored with mode 0600 in the archive and restored
	// 0640 or stricter.
	Secret bool
	// Dir is set for folders saved with everything in them (ACME storage).
	Dir bool
	// Optional references are skipped when absent (the sync state before
	// the first sync, the ACME storage before the first certificate).
	Optional bool
	// ExportRoot is set for the sync state reference: the export root
	// whose active export --include-exports adds.
	ExportRoot string
	// ActiveExportID is the export pinned by ACTIVEEXPORTID, if any.
	ActiveExportID string
}

// Reference is a path restored configurations reference, on this host.
type Reference struct {
	// Path is the absolute path on this host (the archive's --map
	// rewrites applied).
	Path string
	// Key is the configuration key that names it, for messages.
	Key string
	// Dir is set for folders restored with their content (ACME storage,
	// an export root).
	Dir bool
	// Secret files (keys, htpasswd files, tokens) are written 0600 or
	// 0640, whatever the archive says.
	Secret bool
}

// PathMapping rewrites a path prefix: configurations written for containers
// name /run/secrets/…, which the host holds elsewhere (compose mounts).
type PathMapping struct {
	// From is the prefix as the configurations name it, e.g. /run/secrets.
	From string `json:"from"`
	// To is where the host holds it, e.g. /opt/stella-mirror/secrets.
	To string `json:"to"`
}

// MapPath applies the first (longest) mapping whose From is p or a parent
// of p; maps must be sorted longest From first (SortPathMaps).
func MapPath(maps []PathMapping, p string) string {
	clean := filepath.Clean(p)
	for _, m := range maps {
		if clean == m.From {
			return m.To
		}
		if rest, ok := strings.CutPrefix(clean, m.From+string(filepath.Separator)); ok {
			return filepath.Join(m.To, rest)
		}
	}
	return p
}

// SortPathMaps returns maps with clean absolute paths, longest From first.
func SortPathMaps(maps []PathMapping) ([]PathMapping, error) {
	out := make([]PathMapping, 0, len(maps))
	for _, m := range maps {
		to, err := filepath.Abs(m.To)
		if err != nil || !filepath.IsAbs(m.From) {
			return nil, fmt.Errorf("path mapping %s=%s: FROM must be absolute", m.From, m.To)
		}
		out = append(out, PathMapping{From: filepath.Clean(m.From), To: to})
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].From) > len(out[j].From) })
	return out, nil
}

// Unresolvable reports why a configured path cannot be backed up as it
// stands, or "".
func Unresolvable(p string) string {
	switch {
	case strings.Contains(p, "$"):
		return "contains a variable (a systemd credential?); back up its source with --include"
	case !filepath.IsAbs(p):
		return "is relative (resolved against the working directory of the component); use absolute paths"
	}
	return ""
}

// ActiveExport returns the export a root serves: pinned, else latest,
// else the newest non-hidden folder.
func ActiveExport(root, pinned string) (string, error) {
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

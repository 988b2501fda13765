package backup

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"
)

// NameLayout is the time layout of archive names (UTC).
const NameLayout = "2006-01-02T150405Z"

// Default retention.
const (
	DefaultKeepDaily   = 30
	DefaultKeepMonthly = 12
)

// ArchiveName returns the name of an archive taken at t: its UTC time as
// YYYY-MM-DDTHHMMSSZ.
func ArchiveName(t time.Time) string { return t.UTC().Format(NameLayout) }

var archiveRE = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{6}Z)\.tar\.gz(\.age)?$`)

// Retention says which archives in the output folder to keep.
type Retention struct {
	// KeepDaily keeps the newest archive of each of the KeepDaily most
	// recent UTC days that have an archive. Default: 30.
	KeepDaily int
	// KeepMonthly keeps the newest archive of each of the KeepMonthly most
	// recent UTC months that have an archive. Default: 12.
	KeepMonthly int
}

// Archive is an archive found in the output folder.
type Archive struct {
	// Name is the file name, e.g. 2026-11-30T020000Z.tar.gz.age.
	Name string
	// Time is the time in the name.
	Time time.Time
}

// ListArchives returns the archives in dir, oldest first. Files whose
// names are not archive names are ignored (never touched by Prune).
func ListArchives(dir string) ([]Archive, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Archive
	for _, e := range ents {
		m := archiveRE.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		t, err := time.Parse(NameLayout, m[1])
		if err != nil {
			continue
		}
		out = append(out, Archive{Name: e.Name(), Time: t})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Keep returns the archives r keeps (a set of names). The newest archive
// is always kept, whatever r says. Days and months are counted only where
// an archive exists, so a stretch without backups never empties the folder.
func (r Retention) Keep(archives []Archive) map[string]bool {
	keep := make(map[string]bool)
	if len(archives) == 0 {
		return keep
	}
	sorted := append([]Archive(nil), archives...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Time.After(sorted[j].Time) })
	keep[sorted[0].Name] = true
	bucket := func(n int, key func(time.Time) string) {
		seen := make(map[string]bool)
		for _, a := range sorted {
			if len(seen) >= n {
				return
			}
			k := key(a.Time)
			if !seen[k] {
				seen[k] = true
				keep[a.Name] = true
			}
		}
	}
	bucket(r.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") })
	bucket(r.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") })
	return keep
}

// Prune removes the archives in dir that r does not keep and returns the
// names it removed (or, with dryRun, would remove), oldest first.
func Prune(dir string, r Retention, dryRun bool) ([]string, error) {
	if r.KeepDaily < 0 || r.KeepMonthly < 0 {
		return nil, fmt.Errorf("retention: keep-daily %d and keep-monthly %d must not be negative", r.KeepDaily, r.KeepMonthly)
	}
	archives, err := ListArchives(dir)
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	keep := r.Keep(archives)
	var removed []string
	for _, a := range archives {
		if keep[a.Name] {
			continue
		}
		if !dryRun {
			if err := os.Remove(filepath.Join(dir, a.Name)); err != nil {
				return removed, fmt.Errorf("retention: %w", err)
			}
		}
		removed = append(removed, a.Name)
	}
	return removed, nil
}

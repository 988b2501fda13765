package profile

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/stella-ops/stella-mirror/backup/inventory"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// Restored describes an archive restored under Root, as the checks of
// this package need it (the command fills it in from the manifest).
type Restored struct {
	// Root is the restore root.
	Root string
	// Configs are the original absolute paths of the configuration files.
	Configs []string
	// PathMap are the archive's --map rewrites.
	PathMap []PathMapping
	// Paths are the original paths of every restored entry.
	Paths []string
	// HasExports tells whether the archive held an export.
	HasExports bool
}

// LoadRestored loads the profile an archive restored under root
// describes: its configuration files (original paths) read from root,
// every referenced path rebased onto root (in memory only).
func LoadRestored(root string, configs []string, maps []PathMapping) (*Profile, error) {
	var paths []string
	for _, c := range configs {
		paths = append(paths, filepath.Join(root, c))
	}
	p, err := Load(paths)
	if err != nil {
		return nil, err
	}
	p.Rebase(root, maps)
	return p, nil
}

// CheckItem is one line of the verification checklist.
type CheckItem struct {
	// Topic is health, budgets, export or certificate.
	Topic string
	// Text says what to check, with the values the restored profile holds.
	Text string
	// Warn marks an item that already needs attention (e.g. a certificate
	// that expires within 14 days).
	Warn bool
}

// Checklist returns what an operator verifies once the restored services
// run: health, budgets, the active export and certificate expiry, filled in
// from the restored profile.
func Checklist(p *Profile, now time.Time) []CheckItem {
	var items []CheckItem
	add := func(topic string, warn bool, format string, args ...any) {
		items = append(items, CheckItem{Topic: topic, Text: fmt.Sprintf(format, args...), Warn: warn})
	}
	for _, c := range p.Configs {
		if o := c.Origin; o != nil {
			add("health", false, "origin: curl -fsS http://%s/health/ready answers 200", o.Origin.AdminListen)
			mb := func(name string, idx int, doms int) {
				add("budgets", false, "origin %s: index budget %d requests/hour per client (0 = none), %d domain(s) configured; over budget answers 429 with Retry-After", name, idx, doms)
			}
			if o.Concelier.Mirror.Enabled {
				mb("concelier", o.Concelier.Mirror.MaxIndexRequestsPerHour, len(o.Concelier.Mirror.Domains))
			}
			if o.Excititor.Mirror.Enabled {
				mb("excititor", o.Excititor.Mirror.MaxIndexRequestsPerHour, len(o.Excititor.Mirror.Domains))
			}
		}
		if g := c.Gateway; g != nil {
			add("health", false, "gateway: curl -fsS http://%s/health/ready answers 200", g.Gateway.AdminListen)
			for _, s := range g.Gateway.Sites {
				name := s.Name
				if name == "" && len(s.Hosts) > 0 {
					name = s.Hosts[0]
				}
				add("budgets", false, "gateway site %s: %d index and %d download requests/hour per user (0 = none)", name, s.MaxIndexRequestsPerHour, s.MaxDownloadRequestsPerHour)
				switch {
				case s.ACME:
					add("certificate", false, "site %s: ACME certificate from %s; check stella_mirror_gateway_certificate_expiry_timestamp_seconds", name, g.Gateway.ACME.Storage)
				case s.CertFile != "":
					exp, err := certExpiry(s.CertFile)
					switch {
					case err != nil:
						add("certificate", true, "site %s: %v", name, err)
					default:
						days := int(exp.Sub(now).Hours() / 24)
						add("certificate", days < 14, "site %s: certificate %s expires %s (%d days)", name, s.CertFile, exp.UTC().Format(time.RFC3339), days)
					}
				}
			}
		}
	}
	roots := map[string]bool{}
	for _, r := range p.Refs {
		if r.ExportRoot == "" || roots[r.ExportRoot] {
			continue
		}
		roots[r.ExportRoot] = true
		st, err := mirrorsync.ReadState(r.ExportRoot)
		switch {
		case err != nil:
			add("export", true, "%s: sync state unreadable: %v", r.ExportRoot, err)
		case st.ExportID == "":
			if id, err := inventory.ActiveExport(r.ExportRoot, r.ActiveExportID); err == nil {
				add("export", false, "%s: export %s restored (no sync state: the next sync run compares it with the upstream); the index's X-Stella-Export-Id names it", r.ExportRoot, id)
				continue
			}
			add("export", true, "%s: no sync state restored; run stella-mirror sync, then check the X-Stella-Export-Id header of the index", r.ExportRoot)
		default:
			add("export", false, "%s: last synced export %s (last success %s); the index's X-Stella-Export-Id names it once the export is present (restored with --include-exports, or re-synced)", r.ExportRoot, st.ExportID, st.LastSuccess.UTC().Format(time.RFC3339))
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return topicOrder[items[i].Topic] < topicOrder[items[j].Topic] })
	return items
}

var topicOrder = map[string]int{"health": 0, "budgets": 1, "export": 2, "certificate": 3}

// certExpiry returns the NotAfter of the first certificate in a PEM file.
func certExpiry(name string) (time.Time, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return time.Time{}, err
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return time.Time{}, fmt.Errorf("%s: no certificate", name)
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return time.Time{}, fmt.Errorf("%s: %w", name, err)
			}
			return c.NotAfter, nil
		}
	}
}

// References loads the configurations an archive restored under root
// (each read from root + its original path) with the components' loaders
// and returns every path they reference on this host: the archive's --map
// rewrites applied, each export root as a folder (its sync state and, with
// --include-exports, its active export). It is the References function
// of backup.RestoreOptions.
func References(_ context.Context, root string, configs []string, maps []PathMapping) ([]inventory.Reference, error) {
	var paths []string
	for _, c := range configs {
		paths = append(paths, filepath.Join(root, c))
	}
	p, err := Load(paths)
	if err != nil {
		return nil, err
	}
	if maps, err = inventory.SortPathMaps(maps); err != nil {
		return nil, err
	}
	var out []inventory.Reference
	for _, r := range p.Refs {
		if inventory.Unresolvable(r.Path) != "" {
			continue
		}
		out = append(out, inventory.Reference{Path: filepath.Clean(inventory.MapPath(maps, r.Path)), Key: r.Key, Dir: r.Dir, Secret: r.Secret})
		if r.ExportRoot != "" && inventory.Unresolvable(r.ExportRoot) == "" {
			out = append(out, inventory.Reference{Path: filepath.Clean(inventory.MapPath(maps, r.ExportRoot)), Key: r.Key, Dir: true})
		}
	}
	return out, nil
}

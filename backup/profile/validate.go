package profile

import (
	"context"
	"path/filepath"
	"sort"
	"strings"

	"github.com/stella-ops/stella-mirror/deploy/validate"
	"github.com/stella-ops/stella-mirror/origin"
)

// exportKeys are the keys whose findings concern the export roots.
var exportKeys = map[string]bool{
	origin.KeyConcelierRoot: true, origin.KeyExcititorRoot: true,
	"CONCELIER__MIRROR__ACTIVEEXPORTID": true, "EXCITITOR__MIRROR__ACTIVEEXPORTID": true,
	"SYNC__DEST": true,
}

// ValidateRestored runs `stella-mirror validate` (package deploy/validate)
// on the profile an archive restored under root: its env files in the
// order they were backed up, its YAML files, and every path the
// configurations reference mapped onto root (in memory; no file is
// rewritten). p is the restored profile (LoadRestored), used to tell
// which component each YAML file configures.
//
// When the archive holds no export, findings about the export roots (no
// active export can be served yet) are turned into warnings that say to
// run sync: exports are re-synced after a restore, not restored.
func ValidateRestored(ctx context.Context, r Restored, p *Profile) (validate.Report, error) {
	root := r.Root
	opts := validate.Options{}
	for _, c := range p.Configs {
		switch {
		case c.Format == "env":
			opts.EnvFiles = append(opts.EnvFiles, c.Path)
		case c.Origin != nil && opts.OriginConfig == "":
			opts.OriginConfig = c.Path
		case c.Gateway != nil && opts.GatewayConfig == "":
			opts.GatewayConfig = c.Path
		case c.Sync != nil && opts.SyncConfig == "":
			opts.SyncConfig = c.Path
		}
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return validate.Report{}, err
	}
	// The backup's own --map rewrites (container path → host path), then
	// every top-level folder the archive restored: /etc → ROOT/etc, …
	for _, pm := range r.PathMap {
		opts.PathMap = append(opts.PathMap, validate.PathMapping{From: pm.From, To: filepath.Join(abs, pm.To)})
	}
	if abs != "/" {
		tops := map[string]bool{}
		for _, p := range r.Paths {
			first, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
			tops["/"+first] = true
		}
		for _, pm := range r.PathMap {
			delete(tops, pm.From) // the mapping above wins
		}
		for t := range tops {
			opts.PathMap = append(opts.PathMap, validate.PathMapping{From: t, To: filepath.Join(abs, t)})
		}
	}
	sort.SliceStable(opts.PathMap, func(i, j int) bool { return opts.PathMap[i].From < opts.PathMap[j].From })
	rep, err := validate.Profile(ctx, opts)
	if err != nil {
		return rep, err
	}
	if !r.HasExports {
		for i := range rep.Findings {
			f := &rep.Findings[i]
			if f.Severity == validate.Error && exportKeys[f.Key] {
				f.Severity = validate.Warning
				f.Message += " (the archive holds no export: run stella-mirror sync once the services are back)"
			}
		}
		sort.SliceStable(rep.Findings, func(i, j int) bool {
			return rep.Findings[i].Severity == validate.Error && rep.Findings[j].Severity != validate.Error
		})
	}
	return rep, nil
}

package validate

import (
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/stella-ops/stella-mirror/export"
)

// excititorKeyFindings applies the Excititor key rule to an export root:
// an exportKey's bytes never change across exports (its URL is pinned by
// the key alone), so two exports of root that declare the same domain and
// exportKey with different digests are an error naming the key and both
// exports. Only the indexes are read (declared digests), never the
// exports. Each root is checked once per run.
func (c *checker) excititorKeyFindings(root, key string) {
	root = filepath.Clean(root)
	if c.keyRoots == nil {
		c.keyRoots = map[string]bool{}
	}
	if root == "" || c.keyRoots[root] {
		return
	}
	c.keyRoots[root] = true
	entries, err := os.ReadDir(root)
	if err != nil {
		return // the root's own checks report it
	}
	type exp struct {
		id  string
		gen time.Time
		ixs []*export.ExcititorIndex
	}
	var exps []exp
	for _, e := range entries {
		if !e.IsDir() || !export.ValidExportID(e.Name()) {
			continue
		}
		ixs, err := export.ReadExcititorIndexes(filepath.Join(root, e.Name()))
		if err != nil {
			c.add(Warning, root, key, "export %s: excititor index unreadable, its export keys were not compared: %v", e.Name(), err)
			continue
		}
		if len(ixs) == 0 {
			continue
		}
		x := exp{id: e.Name()}
		for _, ix := range ixs {
			if ix.GeneratedAt.After(x.gen) {
				x.gen = ix.GeneratedAt
			}
		}
		x.ixs = ixs
		exps = append(exps, x)
	}
	// Oldest first, so a reuse is blamed on the newer export.
	slices.SortFunc(exps, func(a, b exp) int {
		if c := a.gen.Compare(b.gen); c != 0 {
			return c
		}
		if a.id < b.id {
			return -1
		}
		return 1
	})
	var all []*export.ExcititorIndex
	for _, x := range exps {
		all = append(all, x.ixs...)
	}
	reuse := export.ExcititorKeyReuse(all)
	for _, e := range reuse {
		c.add(Error, root, key, "%v", e)
	}
	if len(reuse) == 0 && len(exps) > 1 {
		c.checked("excititor export keys in %s: %d exports, no exportKey reused with other bytes", root, len(exps))
	}
}

package export

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// KeyReuseError is an Excititor exportKey that two exports declare with
// different bytes. An exportKey's bytes never change across exports: its
// URL, /excititor/mirror/{domain}/export/{exportKey}, is pinned by the key
// alone, so every cache and client may keep it for good. An export that
// breaks the rule is refused by sync and reported by validate.
type KeyReuseError struct {
	// Domain and ExportKey name the key.
	Domain, ExportKey string
	// ExportID and Digest are the export that reuses the key.
	ExportID, Digest string
	// EarlierExportID and EarlierDigest are the export that declared the
	// key first.
	EarlierExportID, EarlierDigest string
}

func (e *KeyReuseError) Error() string {
	return fmt.Sprintf("excititor exportKey %q of domain %s: export %s declares %s, but export %s already declared %s for it "+
		"(an exportKey's bytes never change across exports; publish the new bytes under a new key)",
		e.ExportKey, e.Domain, e.ExportID, e.Digest, e.EarlierExportID, e.EarlierDigest)
}

// ExcititorKeyReuse walks the Excititor indexes in order and reports every
// entry whose (domain, exportKey) an earlier index of another export
// declared with another digest. Order the indexes oldest export first so
// that the reuse is blamed on the newer export.
func ExcititorKeyReuse(indexes []*ExcititorIndex) []*KeyReuseError {
	type first struct{ exportID, digest string }
	seen := map[[2]string]first{}
	var out []*KeyReuseError
	for _, ix := range indexes {
		if ix == nil {
			continue
		}
		for _, e := range ix.Exports {
			k := [2]string{ix.DomainID, e.ExportKey}
			f, ok := seen[k]
			switch {
			case !ok:
				seen[k] = first{ix.ExportID, e.Digest}
			case f.exportID != ix.ExportID && f.digest != e.Digest:
				out = append(out, &KeyReuseError{Domain: ix.DomainID, ExportKey: e.ExportKey, ExportID: ix.ExportID, Digest: e.Digest,
					EarlierExportID: f.exportID, EarlierDigest: f.digest})
			}
		}
	}
	return out
}

// ReadExcititorIndexes reads and parses the Excititor indexes of the
// export directory dir (excititor/<domain>/index.json), sorted by domain.
// A domain whose index is missing is skipped; an unparsable one is an
// error naming it.
func ReadExcititorIndexes(dir string) ([]*ExcititorIndex, error) {
	entries, err := os.ReadDir(filepath.Join(dir, "excititor"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*ExcititorIndex
	for _, e := range entries {
		if !e.IsDir() || !ValidDomainID(e.Name()) {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(ExcititorIndexPath(e.Name())))
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ix, err := ParseExcititorIndex(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, ix)
	}
	slices.SortFunc(out, func(a, b *ExcititorIndex) int {
		if a.DomainID < b.DomainID {
			return -1
		}
		if a.DomainID > b.DomainID {
			return 1
		}
		return 0
	})
	return out, nil
}

package validate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// namedKey is a configured public key: its file and the setting naming it.
type namedKey struct{ path, key string }

// activeExportKeyFindings checks that the active export of an export root
// verifies with the configured public keys, as sync would verify it: the
// index's signature chain (every Concelier bundle's and every Excititor
// export's detached JWS, under the kid its index declares). A key that no
// longer matches the served export — e.g. `fixture --seed N` wrote a new
// signing key after the public key was copied — is an error naming the key files and the export. id is the
// pinned export id ("" for the latest symlink); an export root without one
// is left to the other checks.
func (c *checker) activeExportKeyFindings(root, rootKey, id string, keys []namedKey, expectKeyID string) {
	if len(keys) == 0 {
		return
	}
	if id == "" {
		target, err := os.Readlink(filepath.Join(root, export.LatestLink))
		if err != nil {
			return // no latest yet: reported elsewhere
		}
		id = filepath.Base(target)
	}
	var paths, names []string
	for _, k := range keys {
		paths = append(paths, k.path)
		names = append(names, k.key+"="+k.path)
	}
	keyList := strings.Join(names, ", ")
	source, err := mirrorsync.KeySource(paths, "", nil, expectKeyID, nil)
	if err != nil {
		return // the key files themselves are reported by publicKey
	}
	trusted, err := source(context.Background()) // no JWKS URL: the PEM keys
	if err != nil {
		return
	}
	dir := filepath.Join(root, id)
	// Every detached JWS sync verifies: each Concelier bundle's (under the
	// index) and each Excititor export's (under its domain's index).
	type signedFile struct {
		sig, payload string
		ref          *export.SignatureRef
	}
	var files []signedFile
	bundles, vex := 0, 0
	indexFile := filepath.Join(dir, filepath.FromSlash(export.IndexPath))
	if data, err := os.ReadFile(indexFile); err == nil {
		ix, err := export.ParseIndex(data)
		if err != nil {
			c.add(Error, indexFile, rootKey, "active export %s: index: %v", id, err)
			return
		}
		for _, d := range ix.Domains {
			if ref := d.Bundle.Signature; ref != nil {
				files = append(files, signedFile{ref.Path, d.Bundle.Path, ref})
				bundles++
			}
		}
	}
	xs, err := export.ReadExcititorIndexes(dir)
	if err != nil {
		c.add(Error, filepath.Join(dir, "excititor"), rootKey, "active export %s: excititor indexes: %v", id, err)
		return
	}
	for _, x := range xs {
		for _, e := range x.Exports {
			if ref := e.Signature; ref != nil {
				files = append(files, signedFile{ref.Path, export.ExcititorExportPath(x.DomainID, e.ExportKey), ref})
				vex++
			}
		}
	}
	if len(files) == 0 {
		return // nothing signed to check here
	}
	for _, f := range files {
		sigFile := filepath.Join(dir, filepath.FromSlash(f.sig))
		h, err := jws.VerifyFile(sigFile, filepath.Join(dir, filepath.FromSlash(f.payload)), trusted)
		switch {
		case err != nil:
			c.add(Error, sigFile, rootKey, "active export %s does not verify with the configured public key(s) %s: %s (signed under kid %q): %v; copy the signing key's public half again (e.g. after `fixture --seed`) or point the setting at the right key",
				id, keyList, f.sig, f.ref.KeyID, err)
			return
		case h.Kid != f.ref.KeyID:
			c.add(Error, sigFile, rootKey, "active export %s: %s signed under kid %q, the index declares %q", id, f.sig, h.Kid, f.ref.KeyID)
			return
		}
	}
	c.checked("%s: active export %s verifies with %s (%d signed bundles, %d signed VEX exports)", root, id, keyList, bundles, vex)
}

// syncKeys are sync's configured PEM public keys, mapped.
func syncKeys(c *checker, cfg *mirrorsync.Config) []namedKey {
	var out []namedKey
	for i, p := range cfg.Sync.PublicKeys {
		out = append(out, namedKey{c.mapPath(p), fmt.Sprintf("SYNC__PUBLICKEYS__%d", i)})
	}
	if p := cfg.Concelier.Sources.StellaOpsMirror.Signature.PublicKeyPath; p != "" {
		out = append(out, namedKey{c.mapPath(p), "CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__PUBLICKEYPATH"})
	}
	return out
}

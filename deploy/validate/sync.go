package validate

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/origin"
)

// checkSync loads sync's configuration like `stella-mirror sync` does (only
// SYNC__ and CONCELIER__SOURCES__STELLAOPSMIRROR__ variables), validates it
// and checks the files it references.
func (c *checker) checkSync() {
	file := c.opts.SyncConfig
	cfg, err := mirrorsync.LoadConfig(file, c.env)
	if err != nil {
		c.addErrors(Error, err, file, "")
		return
	}
	if err := cfg.Validate(); err != nil {
		c.addErrors(Error, err, file, "")
		return
	}
	for i, p := range cfg.Sync.PublicKeys {
		c.publicKey(c.mapPath(p), fmt.Sprintf("SYNC__PUBLICKEYS__%d", i))
	}
	if p := cfg.Concelier.Sources.StellaOpsMirror.Signature.PublicKeyPath; p != "" {
		c.publicKey(c.mapPath(p), "CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__PUBLICKEYPATH")
	}
	if p := cfg.Sync.BasicAuthFile; p != "" {
		c.secretFile(c.mapPath(p), "SYNC__BASICAUTHFILE", "upstream user:password file", false)
	}
	if p := cfg.Sync.BearerTokenFile; p != "" {
		c.secretFile(c.mapPath(p), "SYNC__BEARERTOKENFILE", "upstream bearer token file", false)
	}
	if p := cfg.Sync.S3.CredentialsFile; p != "" {
		c.secretFile(c.mapPath(p), "SYNC__S3__CREDENTIALSFILE", "S3 credentials file", false)
	}
	if p := cfg.Sync.CAFile; p != "" {
		c.checkCABundle(c.mapPath(p), "SYNC__CAFILE", "upstream CA bundle")
	}
	dest := c.mapPath(cfg.Sync.Dest)
	fi, err := os.Stat(dest)
	switch {
	case err != nil:
		c.add(Error, dest, "SYNC__DEST", "export root to publish into: %v", unwrapPath(err))
	case !fi.IsDir():
		c.add(Error, dest, "SYNC__DEST", "export root to publish into is not a directory")
	default:
		if _, err := os.Lstat(filepath.Join(dest, export.LatestLink)); err != nil {
			c.add(Warning, dest, "SYNC__DEST", "no %s symlink yet: sync has not published here (the first run will)", export.LatestLink)
		}
		c.checked("sync: %s → %s", cfg.EffectiveSource(), dest)
		c.excititorKeyFindings(dest, "SYNC__DEST")
		if cfg.SignaturesEnabled() && cfg.Sync.JWKSURL == "" {
			kid := cfg.Concelier.Sources.StellaOpsMirror.Signature.KeyID
			c.activeExportKeyFindings(dest, "SYNC__DEST", "", syncKeys(c, &cfg), kid)
			// The origin's export root, when it is another directory or
			// pins an export: what clients are served must verify too.
			// Without a latest symlink the origin serves the newest
			// complete export, which the check above cannot see.
			if o := c.origin; o != nil {
				_, noLatest := os.Lstat(filepath.Join(dest, export.LatestLink))
				checked := map[string]bool{}
				for _, p := range []struct {
					product, key, root, id string
					enabled                bool
				}{
					{"concelier", origin.KeyConcelierRoot, o.cfg.Concelier.Mirror.ExportRoot, o.cfg.Concelier.Mirror.ActiveExportID, o.cfg.Concelier.Mirror.Enabled},
					{"excititor", origin.KeyExcititorRoot, o.cfg.Excititor.Artifacts.FileSystem.Root, o.cfg.Excititor.Mirror.ActiveExportID, o.cfg.Excititor.Mirror.Enabled},
				} {
					root, id := c.mapPath(p.root), p.id
					if !p.enabled || p.root == "" || (root == dest && id == "" && noLatest == nil) {
						continue
					}
					if id == "" {
						id = o.active[p.product]
					}
					if id == "" || checked[root+"\x00"+id] {
						continue
					}
					checked[root+"\x00"+id] = true
					c.activeExportKeyFindings(root, p.key, id, syncKeys(c, &cfg), kid)
				}
			}
		}
	}
}

func (c *checker) publicKey(path, key string) {
	if _, ok := c.fileExists(path, key, "public key"); !ok {
		return
	}
	if err := checkPublicKeyPEM(path); err != nil {
		c.add(Error, path, key, "public key: %v", err)
	}
}

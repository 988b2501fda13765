package validate

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/stella-ops/stella-mirror/internal/peertoken"
	"github.com/stella-ops/stella-mirror/origin"
)

// originState is what the cross checks need from the origin.
type originState struct {
	cfg origin.Config
	// peers are the tokens of ORIGIN__PEERTOKENFILE (nil: unset or
	// unreadable), for the cross check with the gateway's.
	peers *peertoken.Set
	// active is the export id each product is served from, as the origin
	// resolves it (ACTIVEEXPORTID, latest, else the newest complete
	// export), for the key check of the export that is served.
	active map[string]string
}

// checkOrigin loads the origin's configuration like `stella-mirror origin`
// does, validates it, checks the files it references and that each
// enabled product's export root holds an active export.
func (c *checker) checkOrigin() {
	file := c.opts.OriginConfig
	cfg, err := origin.LoadConfig(file, c.env)
	if err != nil {
		c.addErrors(Error, err, file, "loading origin configuration: ")
		return
	}
	if err := cfg.Validate(); err != nil {
		c.addErrors(Error, err, file, "")
		return
	}
	for _, w := range cfg.Warnings() {
		c.addMessage(Warning, w, file)
	}
	c.origin = &originState{cfg: cfg}
	c.budgetFindings("CONCELIER__MIRROR", &cfg.Concelier.Mirror, file)
	c.budgetFindings("EXCITITOR__MIRROR", &cfg.Excititor.Mirror, file)

	// The origin reads the files below at start; a mapped profile is
	// checked against the mapped paths.
	cfg.Concelier.Mirror.ExportRoot = c.mapPath(cfg.Concelier.Mirror.ExportRoot)
	cfg.Excititor.Artifacts.FileSystem.Root = c.mapPath(cfg.Excititor.Artifacts.FileSystem.Root)
	for _, a := range []struct {
		prefix string
		cfg    *origin.AuthorityConfig
	}{{"CONCELIER__AUTHORITY", &cfg.Concelier.Authority}, {"EXCITITOR__AUTHORITY", &cfg.Excititor.Authority}} {
		if a.cfg.SigningKeyFile == "" {
			continue
		}
		key := a.prefix + "__SIGNINGKEYFILE"
		a.cfg.SigningKeyFile = c.mapPath(a.cfg.SigningKeyFile)
		if _, ok := c.fileExists(a.cfg.SigningKeyFile, key, "Authority signing key"); ok {
			if err := checkPublicKeyPEM(a.cfg.SigningKeyFile); err != nil {
				c.add(Error, a.cfg.SigningKeyFile, key, "Authority signing key: %v", err)
			}
		}
	}

	if path := cfg.Origin.PeerTokenFile; path != "" {
		path = c.mapPath(path)
		cfg.Origin.PeerTokenFile = "" // origin.New below reads it only when valid (reported here)
		if c.secretFile(path, origin.KeyPeerTokenFile, "peer token file", false) {
			if toks, err := peertoken.ReadFile(path); err != nil {
				c.add(Error, path, origin.KeyPeerTokenFile, "peer token file: %v", err)
			} else {
				c.origin.peers = peertoken.NewSet(toks)
				cfg.Origin.PeerTokenFile = path
			}
		}
	}

	roots := []struct {
		product, key, idKey string
		enabled             bool
		root, id            string
	}{
		{"concelier", origin.KeyConcelierRoot, "CONCELIER__MIRROR__ACTIVEEXPORTID", cfg.Concelier.Mirror.Enabled, cfg.Concelier.Mirror.ExportRoot, cfg.Concelier.Mirror.ActiveExportID},
		{"excititor", origin.KeyExcititorRoot, "EXCITITOR__MIRROR__ACTIVEEXPORTID", cfg.Excititor.Mirror.Enabled, cfg.Excititor.Artifacts.FileSystem.Root, cfg.Excititor.Mirror.ActiveExportID},
	}
	rootsOK := true
	for _, r := range roots {
		if !r.enabled {
			continue
		}
		src := c.sourceOf(r.key, file)
		switch fi, err := os.Stat(r.root); {
		case r.root == "":
			c.add(Error, src, r.key, "not set: the %s mirror would stay not-ready", r.product)
			rootsOK = false
		case err != nil:
			c.add(Error, r.root, r.key, "export root: %v", unwrapPath(err))
			rootsOK = false
		case !fi.IsDir():
			c.add(Error, r.root, r.key, "export root is not a directory")
			rootsOK = false
		}
	}
	if !rootsOK {
		return
	}
	// The origin's own resolution (ACTIVEEXPORTID, latest, newest complete
	// export) and readiness: the indexes of the active export parse.
	o, err := origin.New(cfg, nil, nil)
	if err != nil {
		c.addErrors(Error, err, file, "invalid origin configuration: ")
		return
	}
	defer o.Close()
	readyErr := o.Ready()
	c.origin.active = map[string]string{}
	for _, p := range o.Status(context.Background()).Products {
		if p.ExportID != "" {
			c.origin.active[p.Name] = p.ExportID
		}
	}
	var failed []string
	if readyErr != nil {
		for _, line := range strings.Split(readyErr.Error(), "\n") {
			product, reason, _ := strings.Cut(line, ": ")
			for _, r := range roots {
				if r.product != product {
					continue
				}
				key := r.key
				if r.id != "" {
					key = r.idKey
				}
				c.add(Error, r.root, key, "no active %s export can be served: %s", product, reason)
				failed = append(failed, product)
			}
		}
	}
	for _, r := range roots {
		if r.enabled && !contains(failed, r.product) {
			c.checked("origin: %s export root %s holds an active export%s", r.product, r.root, pinned(r.id))
		}
		if r.enabled && r.product == "excititor" {
			c.excititorKeyFindings(r.root, r.key)
		}
	}
}

func pinned(id string) string {
	if id == "" {
		return ""
	}
	return fmt.Sprintf(" (pinned: %s)", id)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// minDownloadsPerFetch is what one domain fetch needs from the download
// budget: the manifest, the bundle and its signature.
const minDownloadsPerFetch = 3

// budgetFindings applies the budget rules to one product's MIRROR section:
//
//   - a domain download budget (set, or inherited from the index budget)
//     below 3 cannot serve one complete fetch (manifest, bundle, signature):
//     error;
//   - a domain download budget smaller than the index budget: warning (a
//     client may look for new exports more often than it may fetch them, so
//     every new export it sees can end in 429 halfway).
//
// Negative budgets are the component's own Validate errors.
func (c *checker) budgetFindings(prefix string, m *origin.MirrorConfig, file string) {
	if !m.Enabled {
		return
	}
	idx := m.MaxIndexRequestsPerHour
	if len(m.Domains) == 0 && idx > 0 && idx < minDownloadsPerFetch {
		key := prefix + "__MAXINDEXREQUESTSPERHOUR"
		c.add(Error, c.sourceOf(key, file), key, "%d: domains inherit it as their download budget, and one fetch needs %d downloads (manifest, bundle, signature)", idx, minDownloadsPerFetch)
	}
	for i, d := range m.Domains {
		key := fmt.Sprintf("%s__DOMAINS__%d__MAXDOWNLOADREQUESTSPERHOUR", prefix, i)
		dl := d.MaxDownloadRequestsPerHour
		inherited := dl == 0
		if inherited {
			dl = idx
		}
		switch {
		case dl > 0 && dl < minDownloadsPerFetch && inherited:
			ik := prefix + "__MAXINDEXREQUESTSPERHOUR"
			c.add(Error, c.sourceOf(ik, file), ik, "%d: domain %s inherits it as its download budget, and one fetch needs %d downloads (manifest, bundle, signature)", idx, d.ID, minDownloadsPerFetch)
		case dl > 0 && dl < minDownloadsPerFetch:
			c.add(Error, c.sourceOf(key, file), key, "%d: one fetch of domain %s needs %d downloads (manifest, bundle, signature)", dl, d.ID, minDownloadsPerFetch)
		case !inherited && idx > 0 && dl < idx:
			c.add(Warning, c.sourceOf(key, file), key, "%d is below the index budget %d: clients may see new exports more often than they may download them", dl, idx)
		}
	}
}

package validate

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/gateway"
	"github.com/stella-ops/stella-mirror/internal/peertoken"
	"github.com/stella-ops/stella-mirror/origin"
)

// gatewayState is what the cross checks need from the gateway.
type gatewayState struct {
	cfg  gateway.Config
	file string
	// peer is the token of GATEWAY__ORIGINPEERTOKENFILE ("": unset or
	// unreadable), for the cross check with the origin's.
	peer string
}

// checkGateway loads the gateway's configuration like `stella-mirror
// gateway` does, validates it and checks every site's files and budgets.
func (c *checker) checkGateway() {
	file := c.opts.GatewayConfig
	cfg, err := gateway.LoadConfig(file, c.env)
	if err != nil {
		c.addErrors(Error, err, file, "loading gateway configuration: ")
		return
	}
	if err := cfg.Validate(); err != nil {
		c.addErrors(Error, err, file, "")
		return
	}
	c.gateway = &gatewayState{cfg: cfg, file: file}
	g := &cfg.Gateway
	if g.OriginCAFile != "" {
		c.checkCABundle(c.mapPath(g.OriginCAFile), "GATEWAY__ORIGINCAFILE", "origin CA bundle")
	}
	if path := g.OriginPeerTokenFile; path != "" {
		path = c.mapPath(path)
		if c.secretFile(path, keyGatewayPeerToken, "peer token file", false) {
			if toks, err := peertoken.ReadFile(path); err != nil {
				c.add(Error, path, keyGatewayPeerToken, "peer token file: %v", err)
			} else {
				c.gateway.peer = toks[0]
			}
		}
	}
	if a := &g.Authority; a.Enabled {
		c.secretFile(c.mapPath(a.ClientSecretFile), "GATEWAY__AUTHORITY__CLIENTSECRETFILE", "Authority client secret", false)
		if a.CAFile != "" {
			c.checkCABundle(c.mapPath(a.CAFile), "GATEWAY__AUTHORITY__CAFILE", "Authority CA bundle")
		}
	}
	anyACME := false
	for i, s := range g.Sites {
		prefix := fmt.Sprintf("GATEWAY__SITES__%d", i)
		name := s.Name
		if name == "" {
			name = strings.ToLower(s.Hosts[0])
		}
		var parts []string
		if s.ACME {
			anyACME = true
			parts = append(parts, "certificate over ACME")
		} else if leaf, ok := c.checkCertPair(c.mapPath(s.CertFile), prefix+"__CERTFILE", c.mapPath(s.KeyFile), prefix+"__KEYFILE", s.Hosts); ok {
			parts = append(parts, "certificate valid until "+leaf.NotAfter.UTC().Format(time.DateOnly))
		}
		if !s.Anonymous {
			if n := c.checkHtpasswd(c.mapPath(s.HtpasswdFile), prefix+"__HTPASSWDFILE", g.AllowLegacyHashes); n > 0 {
				parts = append(parts, fmt.Sprintf("%d bcrypt users", n))
			}
		} else {
			parts = append(parts, "anonymous")
		}
		c.siteBudgets(prefix, &s, file)
		c.checked("gateway: site %s (%s → %s): %s", name, strings.Join(s.Hosts, ", "), strings.Join(s.Domains, ", "), strings.Join(parts, ", "))
	}
	if anyACME {
		if g.ACME.CARootFile != "" {
			c.checkCABundle(c.mapPath(g.ACME.CARootFile), "GATEWAY__ACME__CAROOTFILE", "ACME CA root")
		}
		if fi, err := os.Stat(c.mapPath(g.ACME.Storage)); err == nil && fi.Mode().Perm()&0o007 != 0 {
			c.add(Error, c.mapPath(g.ACME.Storage), "GATEWAY__ACME__STORAGE", "ACME storage holds account and certificate keys but is accessible to others (mode %04o): chmod 700", fi.Mode().Perm())
		}
	}
}

// siteBudgets applies the budget rules to a gateway site (the gateway's
// download budget is its own; 0 means none, nothing is inherited):
// a download budget below 3 cannot serve one complete fetch (error); a
// download budget below the index budget is a warning.
func (c *checker) siteBudgets(prefix string, s *gateway.SiteConfig, file string) {
	idx, dl := s.MaxIndexRequestsPerHour, s.MaxDownloadRequestsPerHour
	key := prefix + "__MAXDOWNLOADREQUESTSPERHOUR"
	switch {
	case dl > 0 && dl < minDownloadsPerFetch:
		c.add(Error, c.sourceOf(key, file), key, "%d: one fetch of a domain needs %d downloads (manifest, bundle, signature)", dl, minDownloadsPerFetch)
	case dl > 0 && idx > 0 && dl < idx:
		c.add(Warning, c.sourceOf(key, file), key, "%d is below the index budget %d: clients may see new exports more often than they may download them", dl, idx)
	}
}

// crossChecks are the exposure rules, which need both the origin's and
// the gateway's configuration:
//
//  1. Anonymous site over an authenticated domain (warning): a domain that
//     requires authentication at the origin (…__REQUIREAUTHENTICATION, the
//     domain's override or the product's), or the shared index when the
//     product requires it, reached through a gateway site with ANONYMOUS=true.
//     The gateway fetches from a bypass network or with its own token, so
//     anyone who reaches the site gets what the origin protects.
//  2. CDN in front of an authenticated site (warning): GATEWAY__TRUSTEDPROXIES
//     is set (a CDN or proxy fronts the gateway) and a site requires Basic
//     Auth. The origin marks every response `Cache-Control: public`, so a CDN
//     that caches by URL may serve a bundle fetched with credentials to a
//     client without any. Configure the CDN to forward Authorization and
//     bypass (or key) its cache on it, then say so with
//     --cdn-forwards-authorization.
//  3. Bypass for everyone (warning): a bypass network of prefix length 0
//     (0.0.0.0/0, ::/0) on a product that requires authentication.
//
// Rule 2 needs only the gateway; rule 3 only the origin.
func (c *checker) crossChecks() {
	if o := c.origin; o != nil {
		for _, p := range []struct {
			prefix string
			m      *origin.MirrorConfig
			a      *origin.AuthorityConfig
		}{{"CONCELIER", &o.cfg.Concelier.Mirror, &o.cfg.Concelier.Authority}, {"EXCITITOR", &o.cfg.Excititor.Mirror, &o.cfg.Excititor.Authority}} {
			if !p.m.Enabled || !requiresAnyAuth(p.m) {
				continue
			}
			for i, n := range p.a.BypassNetworks {
				if n.Bits() == 0 {
					key := fmt.Sprintf("%s__AUTHORITY__BYPASSNETWORKS__%d", p.prefix, i)
					c.add(Warning, c.sourceOf(key, c.opts.OriginConfig), key, "%s lets every client bypass authentication, which %s__MIRROR__REQUIREAUTHENTICATION asks for", n, p.prefix)
				}
			}
		}
	}
	g := c.gateway
	if g == nil {
		return
	}
	if len(g.cfg.Gateway.TrustedProxies) > 0 && !c.opts.CDNForwardsAuthorization {
		for i, s := range g.cfg.Gateway.Sites {
			if s.Anonymous {
				continue
			}
			key := "GATEWAY__TRUSTEDPROXIES"
			c.add(Warning, c.sourceOf(key+"__0", g.file), key,
				"site %s (GATEWAY__SITES__%d) requires Basic Auth, but a CDN or proxy fronts the gateway and the origin's responses are `Cache-Control: public`: unless the CDN forwards Authorization and never serves a response cached for one client to a client without credentials, it can hand this site's bundles to anyone (configure the CDN, then pass --cdn-forwards-authorization)",
				strings.ToLower(s.Hosts[0]), i)
		}
	}
	o := c.origin
	if o == nil {
		return
	}
	c.crossCheckPeerToken(o, g)
	for i, s := range g.cfg.Gateway.Sites {
		if !s.Anonymous {
			continue
		}
		site := fmt.Sprintf("GATEWAY__SITES__%d", i)
		for _, p := range []struct {
			prefix string
			m      *origin.MirrorConfig
		}{{"CONCELIER__MIRROR", &o.cfg.Concelier.Mirror}, {"EXCITITOR__MIRROR", &o.cfg.Excititor.Mirror}} {
			if !p.m.Enabled {
				continue
			}
			if p.prefix == "CONCELIER__MIRROR" && p.m.RequireAuthentication {
				c.add(Warning, c.sourceOf(site+"__ANONYMOUS", g.file), site+"__ANONYMOUS",
					"site %s serves the shared index without Basic Auth, but %s__REQUIREAUTHENTICATION=true: anyone reaching the site gets what the origin protects", s.Hosts[0], p.prefix)
			}
			for _, d := range s.Domains {
				if key, req := domainRequiresAuth(p.prefix, p.m, d); req {
					c.add(Warning, c.sourceOf(site+"__ANONYMOUS", g.file), site+"__ANONYMOUS",
						"site %s serves domain %s without Basic Auth, but the origin requires authentication for it (%s): anyone reaching the site gets what the origin protects", s.Hosts[0], d, key)
				}
			}
		}
	}
}

// requiresAnyAuth reports whether any path of the product requires
// authentication.
func requiresAnyAuth(m *origin.MirrorConfig) bool {
	if m.RequireAuthentication {
		return true
	}
	for _, d := range m.Domains {
		if d.RequireAuthentication != nil && *d.RequireAuthentication {
			return true
		}
	}
	return false
}

// domainRequiresAuth reports whether domain requires authentication at the
// origin and the key that says so.
func domainRequiresAuth(prefix string, m *origin.MirrorConfig, domain string) (string, bool) {
	for i, d := range m.Domains {
		if d.ID == domain && d.RequireAuthentication != nil {
			return fmt.Sprintf("%s__DOMAINS__%d__REQUIREAUTHENTICATION", prefix, i), *d.RequireAuthentication
		}
	}
	return prefix + "__REQUIREAUTHENTICATION", m.RequireAuthentication
}

// keyGatewayPeerToken is the gateway's peer token file key.
const keyGatewayPeerToken = "GATEWAY__ORIGINPEERTOKENFILE"

// crossCheckPeerToken: when the origin requires a peer token of its bypass
// peers, the gateway must send one the origin accepts (unless it presents
// an Authority token instead); a token no origin asks for is pointless.
func (c *checker) crossCheckPeerToken(o *originState, g *gatewayState) {
	originFile, gwFile := o.cfg.Origin.PeerTokenFile, g.cfg.Gateway.OriginPeerTokenFile
	switch {
	case originFile != "" && gwFile == "" && !g.cfg.Gateway.Authority.Enabled:
		c.add(Error, c.sourceOf(origin.KeyPeerTokenFile, c.opts.OriginConfig), origin.KeyPeerTokenFile,
			"the origin requires a peer token of its bypass peers, but the gateway sends none (set %s to the same file) and no Authority token: every request through the gateway would be refused where authentication is required", keyGatewayPeerToken)
	case originFile == "" && gwFile != "":
		c.add(Warning, c.sourceOf(keyGatewayPeerToken, g.file), keyGatewayPeerToken,
			"the gateway sends a peer token, but the origin does not require one (%s is unset): its bypass networks alone decide", origin.KeyPeerTokenFile)
	case o.peers != nil && g.peer != "" && !o.peers.Match(g.peer):
		c.add(Error, c.mapPath(gwFile), keyGatewayPeerToken,
			"the gateway's peer token (the file's first token) is not one %s accepts: the origin would answer every request through the gateway 401", origin.KeyPeerTokenFile)
	}
}

package origin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/ratelimit"
	"github.com/stella-ops/stella-mirror/origin/authority"
)

// ForwardedUserHeader names the user a trusted gateway authenticated (for
// example with Basic Auth). The origin honours it only from a bypass
// network (the TCP peer, never a header, decides that): the value then
// becomes the client identity that budgets are counted against and the
// access log shows. From anywhere else it is ignored.
const ForwardedUserHeader = "X-Stella-Forwarded-User"

// Realm is the realm of the origin's Bearer challenges.
const Realm = "stella-mirror"

// Scopes a bearer token must carry, per product.
const (
	ScopeConcelier = "concelier.mirror.read"
	ScopeExcititor = "excititor.mirror.read"
)

// maxForwardedUser bounds ForwardedUserHeader; longer values are ignored.
const maxForwardedUser = 256

// maxSubjectKey: longer token subjects are hashed for budget keys.
const maxSubjectKey = 128

// authorityRetryAfter is the Retry-After of a 503 when the issuer's keys
// cannot be obtained.
const authorityRetryAfter = "30"

// accessControl is the built-in Authorizer: bypass networks, bearer tokens
// (origin/authority), anonymous fallback and request budgets, configured
// per product from the CONCELIER__/EXCITITOR__ sections.
type accessControl struct {
	products [2]*productAccess // concelier, excititor; nil when disabled
	m        *accessMetrics
	peers    *peerAuth // ORIGIN__PEERTOKENFILE; nil: bypass networks alone decide
}

var _ Authorizer = (*accessControl)(nil)

// productAccess is one product's policy.
type productAccess struct {
	name      string
	validator *authority.Validator // nil when Authority is not enabled
	fallback  bool
	bypass    []netip.Prefix
	peers     *peerAuth // nil: no peer token required of bypass peers

	index     *ratelimit.Limiter            // index endpoints; nil: no budget
	inherited *ratelimit.Limiter            // downloads of domains without their own budget
	downloads map[string]*ratelimit.Limiter // domains with their own budget

	labels *domainLabels
	// Prebuilt challenges.
	missing, scopeDenial *Denial
}

// accessOptions are test knobs.
type accessOptions struct {
	now        func() time.Time // budgets and token times; default time.Now
	maxClients int              // per-budget client bound; default ratelimit.DefaultMaxKeys
	httpClient *http.Client     // key fetches; default authority's
}

// newAccessControl builds the policy of both products from cfg.
func newAccessControl(cfg *Config, logger *slog.Logger, reg prometheus.Registerer, opts accessOptions) (*accessControl, error) {
	m, err := newAccessMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering access metrics: %w", err)
	}
	ac := &accessControl{m: m}
	if cfg.Origin.PeerTokenFile != "" {
		if ac.peers, err = newPeerAuth(cfg.Origin.PeerTokenFile, logger, reg, opts.now); err != nil {
			return nil, err
		}
	}
	var errs []error
	for i, p := range []struct {
		name, prefix, scope string
		mirror              *MirrorConfig
		auth                *AuthorityConfig
	}{
		{"concelier", "CONCELIER__AUTHORITY", ScopeConcelier, &cfg.Concelier.Mirror, &cfg.Concelier.Authority},
		{"excititor", "EXCITITOR__AUTHORITY", ScopeExcititor, &cfg.Excititor.Mirror, &cfg.Excititor.Authority},
	} {
		if !p.mirror.Enabled {
			continue
		}
		pa := &productAccess{
			name: p.name, fallback: p.auth.AllowAnonymousFallback, bypass: p.auth.BypassNetworks, peers: ac.peers,
			labels: newDomainLabels(p.mirror.Domains),
			missing: &Denial{Status: http.StatusUnauthorized,
				Header:  http.Header{"Www-Authenticate": {`Bearer realm="` + Realm + `", scope="` + p.scope + `"`}},
				Code:    "unauthorized",
				Message: "authentication is required: send an OAuth2 bearer token with the scope " + p.scope},
			scopeDenial: &Denial{Status: http.StatusForbidden,
				Header:  http.Header{"Www-Authenticate": {`Bearer realm="` + Realm + `", error="insufficient_scope", scope="` + p.scope + `"`}},
				Code:    "insufficient_scope",
				Message: "the token lacks the scope " + p.scope},
		}
		if p.auth.Enabled {
			name, prefix := p.name, p.prefix
			acfg := authority.Config{
				Issuer: p.auth.Issuer, Audiences: p.auth.Audiences, JWKSURL: p.auth.JWKSURL,
				SigningKeyFile:       p.auth.SigningKeyFile,
				RequireHTTPSMetadata: p.auth.RequireHTTPSMetadata == nil || *p.auth.RequireHTTPSMetadata,
				Scope:                p.scope, Now: opts.now, HTTPClient: opts.httpClient,
				OnRefresh: func(err error) {
					m.refresh(name, err)
					if err != nil {
						logger.Warn("fetching Authority signing keys failed; the last good keys stay in use", "product", name, "error", err.Error())
					} else {
						logger.Info("fetched Authority signing keys", "product", name)
					}
				},
			}
			v, err := authority.New(acfg)
			if err != nil {
				key := prefix + "__ISSUER"
				if p.auth.SigningKeyFile != "" {
					key = prefix + "__SIGNINGKEYFILE"
				}
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
				continue
			}
			pa.validator = v
		}
		budget := func(limit int) *ratelimit.Limiter {
			if limit <= 0 {
				return nil
			}
			return ratelimit.New(ratelimit.Config{Limit: limit, Period: time.Hour, MaxKeys: opts.maxClients, Now: opts.now})
		}
		pa.index = budget(p.mirror.MaxIndexRequestsPerHour)
		pa.inherited = budget(p.mirror.MaxIndexRequestsPerHour)
		for _, d := range p.mirror.Domains {
			if d.MaxDownloadRequestsPerHour > 0 {
				if pa.downloads == nil {
					pa.downloads = map[string]*ratelimit.Limiter{}
				}
				pa.downloads[d.ID] = budget(d.MaxDownloadRequestsPerHour)
			}
		}
		ac.products[i] = pa
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ac, nil
}

// Authorize implements Authorizer.
func (ac *accessControl) Authorize(r *http.Request, a Access) (string, *Denial) {
	var pa *productAccess
	switch a.Product {
	case "concelier":
		pa = ac.products[0]
	case "excititor":
		pa = ac.products[1]
	}
	if pa == nil {
		return "", nil // the product is disabled: the handler answers 404
	}
	client, outcome, d := pa.authenticate(r, a)
	ac.m.auth(pa, a.Domain, outcome)
	if d != nil {
		return client, d
	}
	if d := pa.spend(a, client); d != nil {
		ac.m.rejected(pa, a.Domain, budgetKind(a))
		return client, d
	}
	return client, nil
}

// Outcomes of authentication, the outcome label of
// stella_mirror_origin_auth_total.
const (
	outcomeToken             = "token"              // a valid token with the scope (or on a public path)
	outcomeBypass            = "bypass"             // the peer is in a bypass network
	outcomeAnonymous         = "anonymous"          // no token on a path that requires none
	outcomeAnonymousFallback = "anonymous_fallback" // no token, required, ALLOWANONYMOUSFALLBACK
	outcomeMissing           = "missing"            // no token where one is required: 401
	outcomeInvalid           = "invalid"            // a malformed, expired, foreign … token: 401 (400)
	outcomeScope             = "insufficient_scope" // valid token without the scope: 403
	outcomeUnavailable       = "unavailable"        // issuer keys unavailable: 503
	// outcomePeerTokenInvalid (peertoken.go): a wrong peer token: 401.
)

// authenticate decides who the client is and whether it may proceed.
func (pa *productAccess) authenticate(r *http.Request, a Access) (client, outcome string, d *Denial) {
	peer, peerErr := netip.ParseAddrPort(r.RemoteAddr)
	// ipClient is built only when it is the answer (it allocates).
	ipClient := func() string {
		if peerErr != nil {
			return "ip:" + r.RemoteAddr
		}
		return "ip:" + peer.Addr().Unmap().String()
	}
	if peerErr == nil && pa.bypassed(peer.Addr().Unmap()) {
		check := peerValid
		if pa.peers != nil {
			check = pa.peers.check(r.Header)
		}
		switch check {
		case peerValid:
			if u, ok := forwardedUser(r.Header); ok {
				return "user:" + u, outcomeBypass, nil
			}
			return ipClient(), outcomeBypass, nil
		case peerInvalid:
			pa.peers.refused(pa.name, ipClient(), len(r.Header[PeerTokenHeader]))
			return ipClient(), outcomePeerTokenInvalid, pa.peers.denial
		}
		// peerAbsent: like any other client, below.
	}
	tok, err := bearerToken(r.Header)
	switch {
	case err != nil:
		return ipClient(), outcomeInvalid, challenge(http.StatusBadRequest, "invalid_request", err.Error())
	case tok == "" && !a.RequireAuthentication:
		return ipClient(), outcomeAnonymous, nil
	case tok == "" && pa.fallback:
		return ipClient(), outcomeAnonymousFallback, nil
	case tok == "":
		return ipClient(), outcomeMissing, pa.missing
	case pa.validator == nil && !a.RequireAuthentication:
		return ipClient(), outcomeAnonymous, nil // nothing to check it with; the path is public
	case pa.validator == nil:
		return ipClient(), outcomeInvalid, challenge(http.StatusUnauthorized, "invalid_token",
			"bearer tokens are not accepted here: Authority validation is not enabled")
	}
	p, err := pa.validator.Validate(tok)
	var ae *authority.Error
	if err != nil && !errors.As(err, &ae) {
		ae = &authority.Error{Kind: authority.InvalidToken, Description: "the token is invalid"}
	}
	switch {
	case err == nil:
		return subjectClient(p.Subject, ipClient), outcomeToken, nil
	case ae.Kind == authority.InsufficientScope && !a.RequireAuthentication:
		return subjectClient(p.Subject, ipClient), outcomeToken, nil // a verified subject; the path needs no scope
	case ae.Kind == authority.InsufficientScope:
		return subjectClient(p.Subject, ipClient), outcomeScope, pa.scopeDenial
	case ae.Kind == authority.Unavailable && !a.RequireAuthentication:
		return ipClient(), outcomeAnonymous, nil
	case ae.Kind == authority.Unavailable:
		return ipClient(), outcomeUnavailable, &Denial{Status: http.StatusServiceUnavailable,
			Header: http.Header{"Retry-After": {authorityRetryAfter}}, Code: "authority_unavailable",
			Message: "the token cannot be checked now: Authority's signing keys are unavailable"}
	}
	return ipClient(), outcomeInvalid, challenge(http.StatusUnauthorized, "invalid_token", ae.Description)
}

// challenge is a Bearer challenge with an RFC 6750 error. desc must not
// contain the token; quotes and backslashes are dropped from it.
func challenge(status int, code, desc string) *Denial {
	desc = strings.NewReplacer(`"`, "", `\`, "").Replace(desc)
	return &Denial{
		Status:  status,
		Header:  http.Header{"Www-Authenticate": {`Bearer realm="` + Realm + `", error="` + code + `", error_description="` + desc + `"`}},
		Code:    code,
		Message: desc,
	}
}

// bypassed reports whether addr is in one of the bypass networks.
func (pa *productAccess) bypassed(addr netip.Addr) bool {
	for _, p := range pa.bypass {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// errMalformedAuth explains a refused Authorization header; it never
// quotes the header.
var (
	errTwoAuthorizations = errors.New("more than one Authorization header")
	errEmptyBearer       = errors.New("the Bearer credentials are empty")
)

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header, "" when there is no such header or another scheme (Basic from a
// misconfigured client is "no token", not an error).
func bearerToken(h http.Header) (string, error) {
	v := h["Authorization"]
	switch len(v) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", errTwoAuthorizations
	}
	scheme, rest, _ := strings.Cut(v[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", nil
	}
	tok := strings.TrimSpace(rest)
	if tok == "" {
		return "", errEmptyBearer
	}
	return tok, nil
}

// forwardedUser returns the gateway's ForwardedUserHeader when it is one
// well-formed value: valid UTF-8, no control characters, at most
// maxForwardedUser bytes.
func forwardedUser(h http.Header) (string, bool) {
	v := h[ForwardedUserHeader]
	if len(v) != 1 || v[0] == "" || len(v[0]) > maxForwardedUser || !utf8.ValidString(v[0]) {
		return "", false
	}
	for _, r := range v[0] {
		if r < 0x20 || r == 0x7f {
			return "", false
		}
	}
	return v[0], true
}

// subjectClient is the client identity of a token subject; a long subject
// is hashed so budget keys stay small; an empty one falls back to the peer.
func subjectClient(sub string, ipClient func() string) string {
	switch {
	case sub == "":
		return ipClient()
	case len(sub) > maxSubjectKey:
		sum := sha256.Sum256([]byte(sub))
		return "sub#" + hex.EncodeToString(sum[:16])
	}
	return "sub:" + sub
}

// budgetKind is "index" for index endpoints, else "download".
func budgetKind(a Access) string {
	if a.Endpoint == "index" || a.Endpoint == "excititor_index" {
		return "index"
	}
	return "download"
}

// spend takes one request from the client's budget for a's domain.
func (pa *productAccess) spend(a Access, client string) *Denial {
	l := pa.index
	if budgetKind(a) == "download" {
		if dl, ok := pa.downloads[a.Domain]; ok {
			l = dl
		} else {
			l = pa.inherited
		}
	}
	if !l.Enabled() {
		return nil
	}
	ok, retry := l.Allow(a.Domain + "\x00" + client)
	if ok {
		return nil
	}
	return &Denial{
		Status:  http.StatusTooManyRequests,
		Header:  http.Header{"Retry-After": {strconv.Itoa(ratelimit.RetryAfterSeconds(retry))}},
		Code:    "rate_limited",
		Message: "request budget exceeded; retry after the number of seconds in Retry-After",
	}
}

// trackedClients is the number of clients all budgets remember (tests).
func (ac *accessControl) trackedClients() (n int, limiters int) {
	for _, pa := range ac.products {
		if pa == nil {
			continue
		}
		for _, l := range append([]*ratelimit.Limiter{pa.index, pa.inherited}, mapValues(pa.downloads)...) {
			if l != nil {
				n += l.Len()
				limiters++
			}
		}
	}
	return n, limiters
}

func mapValues(m map[string]*ratelimit.Limiter) []*ratelimit.Limiter {
	out := make([]*ratelimit.Limiter, 0, len(m))
	for _, l := range m {
		out = append(out, l)
	}
	return out
}

// Label values for domains in the access metrics.
const (
	labelShared  = "_shared"  // the Concelier index (no domain)
	labelUnknown = "_unknown" // a domain not in the configured list
	labelOther   = "_other"   // beyond maxOpenDomainLabels distinct domains
)

// maxOpenDomainLabels bounds the domain label values when no domain list
// is configured (the domain comes from the URL before it is known to
// exist).
const maxOpenDomainLabels = 64

// domainLabels maps a requested domain to a bounded label value.
type domainLabels struct {
	fixed map[string]bool // configured domains; nil: any domain
	mu    sync.Mutex
	seen  map[string]bool
}

func newDomainLabels(domains []DomainConfig) *domainLabels {
	dl := &domainLabels{seen: map[string]bool{}}
	if len(domains) > 0 {
		dl.fixed = make(map[string]bool, len(domains))
		for _, d := range domains {
			dl.fixed[d.ID] = true
		}
	}
	return dl
}

func (dl *domainLabels) label(domain string) string {
	switch {
	case domain == "":
		return labelShared
	case dl.fixed != nil && dl.fixed[domain]:
		return domain
	case dl.fixed != nil:
		return labelUnknown
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.seen[domain] || len(dl.seen) < maxOpenDomainLabels {
		dl.seen[domain] = true
		return domain
	}
	return labelOther
}

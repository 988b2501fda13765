package nginx

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/stella-ops/stella-mirror/gateway"
)

//go:embed mirror.conf.tmpl
var templateText string

var tmpl = template.Must(template.New("mirror.conf").Funcs(template.FuncMap{
	"join":   strings.Join,
	"budget": budgetOf,
}).Parse(templateText))

// Options are what the gateway's configuration does not say about an nginx
// front.
type Options struct {
	// Source names the gateway configuration the file is rendered from (a
	// comment in the output). Default: "the gateway configuration".
	Source string
	// CacheDir is proxy_cache_path's directory; nginx's worker user must
	// own it. Required.
	CacheDir string
	// CacheMaxSize bounds the cache (nginx size syntax). Default: 10g.
	CacheMaxSize string
	// CacheInactive drops objects not requested for this long. Default: 7d.
	CacheInactive string
	// CacheKeysZone is the shared-memory size of the keys zone (about 8000
	// keys per megabyte). Default: 50m.
	CacheKeysZone string
	// AccessLog is the access log path. Default: /var/log/nginx/
	// stella-mirror.access.log, or Prefix/access.log with Full.
	AccessLog string
	// Full renders a complete nginx.conf (main context, events, http) with
	// every runtime path under Prefix, for `nginx -p Prefix -c FILE`; the
	// default is a file for nginx's http context (conf.d).
	Full bool
	// Prefix is the directory for the pid file, logs and temp directories
	// when Full. Required with Full; absolute.
	Prefix string
	// User is the `user` directive when Full (nginx started as root).
	// Default: none.
	User string
}

// site is one server block's data.
type site struct {
	Name, Realm                     string
	Hosts, Domains                  []string
	DomainRegex                     string
	CertFile, KeyFile, HtpasswdFile string
	Upstream                        string // http://<upstream name>
	TLSUpstream                     bool
	Zone                            string // limit_req zone prefix
	BudgetKey                       string
	IndexRate, DownloadRate         int // r/m; 0: no budget
	IndexBurst, DownloadBurst       int
	IndexRetryAfter                 int // seconds
	DownloadRetryAfter              int
}

// limit is what the "budget" template renders in one location.
type limit struct {
	Zone        string
	Rate, Burst int
}

func budgetOf(s site, kind string) limit {
	if kind == "index" {
		return limit{Zone: s.Zone + "_index", Rate: s.IndexRate, Burst: s.IndexBurst}
	}
	return limit{Zone: s.Zone + "_download", Rate: s.DownloadRate, Burst: s.DownloadBurst}
}

type upstream struct{ Name, Address string }

// data is the template's input.
type data struct {
	Options
	Listen, HTTPListen, HTTPSPortSuffix      string
	HSTS                                     string
	ReadHeaderTimeout, IdleTimeout           string
	UpstreamDialTimeout, UpstreamIdleTimeout string
	TrustedProxies                           []string
	OriginCAFile                             string
	Upstreams                                []upstream
	Sites                                    []site
}

// Render returns the nginx configuration equivalent to the gateway
// configuration cfg (validated first): one server block per site with its
// certificate, htpasswd file, budgets and path policy, the shared cache,
// and the upstream(s) to the origin.
//
// What nginx cannot do is refused with an error naming the key: ACME sites
// (use certbot and CERTFILE/KEYFILE) and GATEWAY__AUTHORITY (nginx cannot
// fetch OAuth2 tokens: put it in the origin's BYPASSNETWORKS).
func Render(cfg gateway.Config, o Options) ([]byte, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d, err := newData(cfg.Gateway, o)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, d); err != nil {
		return nil, fmt.Errorf("rendering nginx configuration: %w", err)
	}
	return buf.Bytes(), nil
}

func newData(g gateway.Settings, o Options) (*data, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if o.Source == "" {
		o.Source = "a gateway configuration"
	}
	o.Source = strings.Map(func(r rune) rune {
		if r < 0x20 {
			return -1
		}
		return r
	}, o.Source)
	if o.CacheMaxSize == "" {
		o.CacheMaxSize = "10g"
	}
	if o.CacheInactive == "" {
		o.CacheInactive = "7d"
	}
	if o.CacheKeysZone == "" {
		o.CacheKeysZone = "50m"
	}
	sizeRe := regexp.MustCompile(`^[0-9]+[kKmMgG]?$`)
	for _, v := range []struct{ name, val string }{{"--cache-max-size", o.CacheMaxSize}, {"--cache-keys-zone", o.CacheKeysZone}} {
		if !sizeRe.MatchString(v.val) {
			bad(v.name, "%q is not an nginx size (e.g. 10g, 512m)", v.val)
		}
	}
	if !regexp.MustCompile(`^[0-9]+[smhdwMy]?$`).MatchString(o.CacheInactive) {
		bad("--cache-inactive", "%q is not an nginx time (e.g. 7d, 12h)", o.CacheInactive)
	}
	switch {
	case o.CacheDir == "":
		bad("--cache-dir", "required")
	case !safeWord(o.CacheDir):
		bad("--cache-dir", "%q contains a character nginx would misread", o.CacheDir)
	}
	if o.Full {
		switch {
		case o.Prefix == "" || !filepath.IsAbs(o.Prefix):
			bad("--prefix", "%q: an absolute directory is required with --full", o.Prefix)
		case !safeWord(o.Prefix):
			bad("--prefix", "%q contains a character nginx would misread", o.Prefix)
		}
		if o.User != "" && (!safeWord(o.User) || strings.ContainsAny(o.User, "/; ")) {
			bad("--user", "%q is not a plain user name", o.User)
		}
		if o.AccessLog == "" {
			o.AccessLog = o.Prefix + "/access.log"
		}
	}
	if o.AccessLog == "" {
		o.AccessLog = "/var/log/nginx/stella-mirror.access.log"
	}
	if !safeWord(o.AccessLog) {
		bad("--access-log", "%q contains a character nginx would misread", o.AccessLog)
	}
	d := &data{Options: o,
		ReadHeaderTimeout: nginxDuration(g.ReadHeaderTimeout), IdleTimeout: nginxDuration(g.IdleTimeout),
		UpstreamDialTimeout: nginxDuration(g.UpstreamDialTimeout), UpstreamIdleTimeout: nginxDuration(g.UpstreamIdleTimeout),
	}
	var err error
	if d.Listen, err = listenAddr(g.Listen); err != nil {
		bad("GATEWAY__LISTEN", "%v", err)
	}
	if g.HTTPListen != "" {
		if d.HTTPListen, err = listenAddr(g.HTTPListen); err != nil {
			bad("GATEWAY__HTTPLISTEN", "%v", err)
		}
		if _, port, _ := net.SplitHostPort(g.Listen); port != "443" {
			d.HTTPSPortSuffix = ":" + port
		}
	}
	if g.HSTSMaxAge > 0 {
		d.HSTS = fmt.Sprintf("max-age=%d", int64(g.HSTSMaxAge/time.Second))
	}
	for _, p := range g.TrustedProxies {
		d.TrustedProxies = append(d.TrustedProxies, p.String())
	}
	if g.OriginCAFile != "" {
		if !safeWord(g.OriginCAFile) {
			bad("GATEWAY__ORIGINCAFILE", "%q contains a character nginx would misread", g.OriginCAFile)
		}
		d.OriginCAFile = g.OriginCAFile
	}
	if g.Authority.Enabled {
		bad("GATEWAY__AUTHORITY__ENABLED", "nginx cannot fetch OAuth2 client-credentials tokens; run the Go gateway, or put the nginx host in the origin's …__AUTHORITY__BYPASSNETWORKS and disable it")
	}
	upstreams := map[string]string{} // origin URL → upstream name
	for i, s := range g.Sites {
		key := fmt.Sprintf("GATEWAY__SITES__%d", i)
		if s.ACME {
			bad(key+"__ACME", "the nginx front takes certificate files; obtain them with certbot (or similar) and set CERTFILE/KEYFILE")
			continue
		}
		name := s.Name
		if name == "" {
			name = strings.ToLower(s.Hosts[0])
		}
		st := site{Name: name, Realm: s.Realm, Domains: s.Domains, CertFile: s.CertFile, KeyFile: s.KeyFile,
			Zone: fmt.Sprintf("stella_mirror_site%d", i)}
		if st.Realm == "" {
			st.Realm = name
		}
		for _, h := range s.Hosts {
			st.Hosts = append(st.Hosts, strings.ToLower(h))
		}
		st.DomainRegex = strings.Join(s.Domains, "|") // domain ids are [a-z0-9-]
		for _, f := range []struct{ key, val string }{{"__CERTFILE", s.CertFile}, {"__KEYFILE", s.KeyFile}, {"__HTPASSWDFILE", s.HtpasswdFile}, {"__REALM", st.Realm}} {
			if f.val != "" && !safeWord(f.val) {
				bad(key+f.key, "%q contains a character nginx would misread", f.val)
			}
		}
		if !s.Anonymous {
			st.HtpasswdFile = s.HtpasswdFile
			st.BudgetKey = "$remote_user"
		} else {
			st.BudgetKey = "$binary_remote_addr"
		}
		st.IndexRate, st.IndexBurst, st.IndexRetryAfter = rate(s.MaxIndexRequestsPerHour)
		st.DownloadRate, st.DownloadBurst, st.DownloadRetryAfter = rate(s.MaxDownloadRequestsPerHour)
		origin := g.Origin
		if s.Origin != "" {
			origin = s.Origin
		}
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" {
			bad(key+"__ORIGIN", "%q is not a URL", origin)
			continue
		}
		if u.Path != "" && u.Path != "/" {
			bad(key+"__ORIGIN", "%q: the nginx front needs an origin URL without a path", origin)
			continue
		}
		up, ok := upstreams[origin]
		if !ok {
			up = fmt.Sprintf("stella_mirror_origin%d", len(upstreams))
			upstreams[origin] = up
			addr := u.Host
			if u.Port() == "" {
				port := "80"
				if u.Scheme == "https" {
					port = "443"
				}
				addr = net.JoinHostPort(u.Hostname(), port)
			}
			d.Upstreams = append(d.Upstreams, upstream{Name: up, Address: addr})
		}
		st.Upstream = u.Scheme + "://" + up
		st.TLSUpstream = u.Scheme == "https"
		d.Sites = append(d.Sites, st)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return d, nil
}

// rate turns an hourly budget into limit_req terms: a rate in requests per
// minute (nginx's coarsest unit, rounded up), a burst that lets the whole
// budget through at once (nodelay), and the Retry-After of a refused request
// (the time one request takes to refill). 0 means no budget.
//
// This approximates the gateway's hourly window: nginx refills
// continuously, so a client that waits gets requests back sooner.
func rate(perHour int) (perMinute, burst, retryAfter int) {
	if perHour <= 0 {
		return 0, 0, 0
	}
	perMinute = (perHour + 59) / 60
	burst = perHour - 1
	retryAfter = (60 + perMinute - 1) / perMinute
	return perMinute, burst, retryAfter
}

// listenAddr turns a Go listen address (":443", "127.0.0.1:8443",
// "[::]:443") into nginx's listen syntax.
func listenAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("%q: nginx needs a fixed port", addr)
	}
	switch {
	case host == "":
		return port, nil
	case strings.Contains(host, ":"):
		return "[" + host + "]:" + port, nil
	}
	return host + ":" + port, nil
}

// nginxDuration renders d in whole seconds (at least 1s).
func nginxDuration(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10) + "s"
}

// safeWord reports whether s can sit inside a double-quoted nginx argument
// unchanged: no quotes, backslashes, variables, braces or control bytes.
func safeWord(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || r == '"' || r == '\'' || r == '\\' || r == '$' || r == '{' || r == '}' || r == ';'
	})
}

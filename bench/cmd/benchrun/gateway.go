//go:build unix

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stella-ops/stella-mirror/bench"
	"github.com/stella-ops/stella-mirror/internal/devcert"
)

// Names of the gateway suite's servers in logs and meta.json.
const (
	gatewayAuthName = "gateway+auth"
	gatewayOpenName = "gateway"
	nginxAuthName   = "nginx-tls+auth"
	nginxOpenName   = "nginx-tls"
	// benchUser and benchPassword are the Basic Auth credentials; the
	// htpasswd file holds them as bcrypt cost 10 (htpasswd -B -C 10).
	benchUser     = "bench"
	benchPassword = "bench-password"
	bcryptCost    = 10
)

// gatewaySuite holds the servers of the gateway cases. Every field may be
// nil when start-up failed part way.
type gatewaySuite struct {
	auth, open           *server // stella-mirror gateway with and without Basic Auth
	nginxAuth, nginxOpen *server // one nginx process, two TLS ports
	authHeader           string
	roots                *x509.CertPool
	certFile, keyFile    string // the certificate every TLS server of the bench presents
}

// procs returns the servers with distinct processes, for stopping and CPU
// accounting.
func (g *gatewaySuite) procs() []*server {
	var out []*server
	for _, s := range []*server{g.auth, g.open, g.nginxAuth} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// client returns an HTTPS client trusting the suite's CA that sends
// authHeader (when set) as Authorization.
func (g *gatewaySuite) client(authHeader string) *http.Client {
	var rt http.RoundTripper = &http.Transport{Proxy: nil, DisableCompression: true,
		TLSClientConfig: &tls.Config{RootCAs: g.roots}}
	if authHeader != "" {
		rt = headerTransport{rt: rt, value: authHeader}
	}
	return &http.Client{Transport: rt, Timeout: 2 * time.Minute}
}

type headerTransport struct {
	rt    http.RoundTripper
	value string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", h.value)
	return h.rt.RoundTrip(r)
}

// startGatewaySuite writes a CA, a certificate for 127.0.0.1 and localhost
// and a bcrypt cost-10 htpasswd file, then starts two gateways (Basic Auth
// on and off) and one nginx (two TLS ports, auth_basic on and off), all in
// front of origin.
func startGatewaySuite(ctx context.Context, o options, tmp string, origin *server, client *http.Client, logf func(string, ...any)) (*gatewaySuite, error) {
	g := &gatewaySuite{authHeader: "Basic " + base64.StdEncoding.EncodeToString([]byte(benchUser+":"+benchPassword))}
	dir := filepath.Join(tmp, "gateway")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return g, err
	}
	ca, err := devcert.NewCA("stella-mirror bench CA", 0)
	if err != nil {
		return g, err
	}
	g.roots = ca.Pool()
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{"127.0.0.1", "localhost"}})
	if err != nil {
		return g, err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := leaf.WriteFiles(certFile, keyFile); err != nil {
		return g, err
	}
	g.certFile, g.keyFile = certFile, keyFile
	hash, err := bcrypt.GenerateFromPassword([]byte(benchPassword), bcryptCost)
	if err != nil {
		return g, err
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(benchUser+":"+string(hash)+"\n"), 0o644); err != nil {
		return g, fmt.Errorf("writing htpasswd: %w", err)
	}
	upstream := strings.TrimPrefix(origin.base, "http://")

	start := func(name string, auth bool) (*server, error) {
		addr, err := bench.FreeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		admin, err := bench.FreeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		site := "      anonymous: true\n"
		if auth {
			site = "      htpasswdFile: " + htpasswd + "\n"
		}
		conf := "gateway:\n  listen: " + addr + "\n  httpListen: \"\"\n  adminListen: " + admin +
			"\n  origin: " + origin.base + "\n" + benchServerLimits + "  sites:\n    - hosts: [localhost]\n      domains: [" + benchDomain + "]\n" +
			"      certFile: " + certFile + "\n      keyFile: " + keyFile + "\n" + site
		confPath := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			return nil, err
		}
		stdout, err := os.Create(filepath.Join(dir, name+"-access.log"))
		if err != nil {
			return nil, err
		}
		defer stdout.Close()
		logPath := filepath.Join(dir, name+".log")
		stderr, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		defer stderr.Close()
		cmd := exec.Command(o.bin, "gateway", "--config", confPath)
		cmd.Env = gatewayEnv()
		cmd.Stdout, cmd.Stderr = stdout, stderr
		p, err := bench.StartProcess(name, cmd)
		if err != nil {
			return nil, err
		}
		s := &server{name: name, base: httpsLocalhost(addr), proc: p}
		if err := bench.WaitReady(ctx, client, "http://"+admin+"/health/ready", p, readyInterval, readyTimeout); err != nil {
			return s, fmt.Errorf("%w\n%s", err, tail(logPath, 2048))
		}
		logf("%s ready at %s", name, s.base)
		return s, nil
	}
	if g.auth, err = start(gatewayAuthName, true); err != nil {
		return g, err
	}
	if g.open, err = start(gatewayOpenName, false); err != nil {
		return g, err
	}

	authAddr, err := bench.FreeLoopbackAddr()
	if err != nil {
		return g, err
	}
	openAddr, err := bench.FreeLoopbackAddr()
	if err != nil {
		return g, err
	}
	prefix := filepath.Join(tmp, "nginx-gateway")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return g, err
	}
	cfg := bench.NginxProxyConfig{Prefix: prefix, ListenAuth: authAddr, ListenOpen: openAddr,
		CertFile: certFile, KeyFile: keyFile, HtpasswdFile: htpasswd, Upstream: upstream}
	if os.Geteuid() == 0 {
		cfg.User = "root"
	}
	conf, err := bench.RenderNginxProxy(cfg)
	if err != nil {
		return g, err
	}
	p, err := launchNginx(ctx, o, prefix, conf, nginxAuthName, g.client(""), httpsLocalhost(openAddr)+"/concelier/exports/index.json")
	if p == nil {
		return g, err
	}
	g.nginxAuth = &server{name: nginxAuthName, base: httpsLocalhost(authAddr), proc: p}
	g.nginxOpen = &server{name: nginxOpenName, base: httpsLocalhost(openAddr), proc: p}
	if err != nil {
		return g, err
	}
	logf("nginx (TLS proxy) ready at %s (auth) and %s", g.nginxAuth.base, g.nginxOpen.base)
	return g, nil
}

// httpsLocalhost returns https://localhost:<port of addr>: the name both
// servers' certificate covers and that wrk sends as SNI (wrk connects to
// the first address of localhost that accepts, 127.0.0.1 here).
func httpsLocalhost(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "https://localhost:" + port
}

// benchServerLimits is the YAML of the bench gateways' server section:
// every load generator connects from 127.0.0.1, so the per-address
// connection cap (GATEWAY__SERVER__MAXCONNSPERIP, 256 by default) is off,
// as nginx has none; the 1,000-download RSS case would otherwise meet it.
const benchServerLimits = "  server:\n    maxConnsPerIP: -1\n"

// gatewayEnv is the parent's environment without GATEWAY__ settings.
func gatewayEnv() []string {
	var env []string
	for _, kv := range inheritedEnv() {
		if !strings.HasPrefix(strings.ToUpper(kv), "GATEWAY__") {
			env = append(env, kv)
		}
	}
	return env
}

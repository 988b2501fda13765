package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/devcert"
	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPebble runs Debian's pebble ACME test CA on loopback ports chosen
// here, validating HTTP-01 challenges against httpPort. It returns the
// directory URL, the PEM file of pebble's own HTTPS certificate's CA, and
// pebble's management URL.
func startPebble(t *testing.T, httpPort int) (dirURL, tlsCA, mgmt string, log func() string) {
	t.Helper()
	bin := testenv.Tool(t, "pebble", "pebble")
	dir := t.TempDir()
	ca, err := devcert.NewCA("pebble listener CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{"localhost", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := leaf.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	tlsCA = filepath.Join(dir, "ca.pem")
	os.WriteFile(tlsCA, ca.CertPEM, 0o644)
	port, mport := freePort(t), freePort(t)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", port),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", mport),
		"certificate":             certFile, "privateKey": keyFile,
		"httpPort": httpPort, "tlsPort": freePort(t),
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
	}}
	data, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(cfgFile, data, 0o644)
	cmd := exec.Command(bin, "-config", cfgFile)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	out := &syncBuilder{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("pebble output:\n%s", out.String())
		}
	})
	dirURL = fmt.Sprintf("https://127.0.0.1:%d/dir", port)
	mgmt = fmt.Sprintf("https://127.0.0.1:%d", mport)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	// pebble is another process: poll its directory, bounded.
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("pebble exited:\n%s", out.String())
		default:
		}
		res, err := client.Get(dirURL)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return dirURL, tlsCA, mgmt, out.String
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not ready after 30s: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestACMEIssuesFromPebble obtains a real certificate from pebble over
// HTTP-01 (answered by the gateway's HTTP listener) and serves it.
func TestACMEIssuesFromPebble(t *testing.T) {
	const host = "localhost"
	h := &harness{t: t, upstream: &seen{}}
	h.origin = newStaticOrigin(t)
	cfg := DefaultConfig()
	cfg.Gateway.Listen = "127.0.0.1:0"
	cfg.Gateway.HTTPListen = "127.0.0.1:0"
	cfg.Gateway.AdminListen = "127.0.0.1:0"
	cfg.Gateway.Origin = h.origin.URL
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	l, err := Listen(cfg.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	httpPort := l.HTTP.Addr().(*net.TCPAddr).Port
	dirURL, tlsCA, mgmt, pebbleLog := startPebble(t, httpPort)
	cfg.Gateway.ACME = ACMESettings{DirectoryURL: dirURL, Storage: t.TempDir(), CARootFile: tlsCA, HTTPPort: httpPort, Email: "ops@example.org"}
	cfg.Gateway.Sites = []SiteConfig{{Hosts: []string{host}, Domains: []string{"primary"}, ACME: true, Anonymous: true}}
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	g, err := New(cfg, Options{Registerer: reg, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	done := make(chan error, 1)
	up := make(chan struct{})
	go func() { done <- g.Serve(ctx, l, func() { close(up) }) }()
	select {
	case <-up:
	case err := <-done:
		t.Fatalf("gateway with ACME did not start: %v", err)
	}
	defer func() {
		cancel()
		<-done
	}()

	// pebble's issuing root, from its management interface.
	pem := fetch(t, mgmt+"/roots/0", tlsCA)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("pebble root: %q", pem)
	}
	conn, err := tls.Dial("tcp", l.HTTPS.Addr().String(), &tls.Config{ServerName: host, RootCAs: roots})
	if err != nil {
		// The chain may hold an intermediate only pebble's root verifies.
		t.Fatalf("TLS with the ACME certificate: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if err := leaf.VerifyHostname(host); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pebbleLog(), "set VALID by completed challenge") {
		t.Fatal("pebble did not validate an HTTP-01 challenge")
	}
	if !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Fatalf("issuer %q, want pebble's intermediate", leaf.Issuer.CommonName)
	}
	// The expiry metric reports the ACME certificate.
	res0, err := http.Get("http://" + l.Admin.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(res0.Body)
	res0.Body.Close()
	if want := fmt.Sprintf(`stella_mirror_gateway_certificate_expiry_timestamp_seconds{site="localhost"} %g`, float64(leaf.NotAfter.Unix())); !strings.Contains(string(mb), want) {
		t.Errorf("metrics lack %s", want)
	}
	// And it proxies over that certificate.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, n, l.HTTPS.Addr().String())
		}}}
	res, err := c.Get("https://" + host + "/concelier/exports/index.json")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}

	// certmagic logs through the gateway's slog logger, and the order is a
	// log line and a metric; a forced renewal is too.
	if err := g.acme.Renew(ctx, host); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, want := range []string{
		`"msg":"ACME certificate order succeeded","site":"localhost","host":"localhost","kind":"obtain"`,
		`"msg":"ACME certificate order succeeded","site":"localhost","host":"localhost","kind":"renew"`,
		`"component":"certmagic"`,                  // certmagic's own lines, through the zap→slog bridge
		`"msg":"certificate renewed successfully"`, // one of them
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	mb = scrape(t, "http://"+l.Admin.Addr().String()+"/metrics")
	for _, want := range []string{
		`stella_mirror_gateway_acme_orders_total{kind="obtain",result="success",site="localhost"} 1`,
		`stella_mirror_gateway_acme_orders_total{kind="renew",result="success",site="localhost"} 1`,
		`stella_mirror_gateway_acme_orders_total{kind="renew",result="failure",site="localhost"} 0`,
	} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func scrape(t *testing.T, url string) []byte {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fetch(t *testing.T, url, caFile string) []byte {
	t.Helper()
	data, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(data)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return b
}

// syncBuilder is a strings.Builder safe for concurrent writers and readers.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

package helm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/syncbuf"
)

// updateSecretDir replaces the files of a Secret volume the way the
// kubelet's atomic writer does: a new timestamped folder, a ..data_tmp
// symlink to it renamed over ..data, the old folder removed. The files'
// own symlinks (name -> ..data/name) never change.
func (p *podFS) updateSecretDir(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	d := p.host(dir)
	old, err := os.Readlink(filepath.Join(d, "..data"))
	if err != nil {
		t.Fatal(err)
	}
	ts := "..2026_12_07_23_30_00." + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Mkdir(filepath.Join(d, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(d, ts, name), data, 0o440); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(d, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(d, "..data_tmp"), filepath.Join(d, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(d, old)); err != nil {
		t.Fatal(err)
	}
}

// freeLoopbackPort returns a TCP port free on 127.0.0.1 right now, taken
// below the kernel's ephemeral range (ip_local_port_range) when it can: a
// port from ":0" is an ephemeral one, which any outgoing connection on the
// host (the test's own HTTP clients, the gateway's to the origin) may take
// before the component binds it ("address already in use", seen under
// load). Ports outside that range are only ever taken by listeners. Each
// port is handed out once per test binary.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		if low <= 11000 {
			break
		}
		port := 10000 + mathrand.IntN(low-10000)
		if portsGiven[port] {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			portsGiven[port] = true
			return port
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// pollUntil calls cond every 100 ms until it returns true or the deadline
// passes; it returns the last detail cond reported.
func pollUntil(deadline time.Duration, cond func() (bool, string)) (bool, string) {
	end := time.Now().Add(deadline)
	var detail string
	for i := 0; i < 10000; i++ {
		ok, d := cond()
		detail = d
		if ok || time.Now().After(end) {
			return ok, detail
		}
		time.Sleep(100 * time.Millisecond) // poll interval, not synchronisation
	}
	return false, detail
}

// start runs a component of the binary with exactly env (container paths
// mapped below the root) until the test ends, and returns its output.
func (p *podFS) start(t *testing.T, env map[string]string, args ...string) *syncbuf.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Env = []string{"HOME=" + p.root}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+p.mapValue(v))
	}
	logs := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	return logs
}

// waitStatus polls url until it answers status (bounded: 20 s).
func waitStatus(url string, status int) (bool, string) {
	client := &http.Client{Timeout: 2 * time.Second}
	return pollUntil(20*time.Second, func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == status, resp.Status
	})
}

// TestSecretRotationReachesTheGateway runs the gateway with the chart's
// rendered environment (listeners moved to loopback, the origin unreachable)
// over Secret volumes laid out as the kubelet does, then updates the
// htpasswd and the TLS Secret volumes the way the kubelet does when a
// Secret changes: the new user is admitted and the new certificate served
// without a restart (what docs/operations.md "Kubernetes" promises for
// `kubectl apply` of a Secret and cert-manager renewals).
func TestSecretRotationReachesTheGateway(t *testing.T) {
	bin := chartBinary(t)
	m := Render(t, []string{mirrorValues}, nil)
	p := newPodFS(t, bin, m)

	env := map[string]string{}
	for k, v := range p.env(t, m, "gateway-env") {
		env[k] = v
	}
	httpsPort, adminPort := freeLoopbackPort(t), freeLoopbackPort(t)
	closed := freeLoopbackPort(t) // nothing listens: the origin is down
	env["GATEWAY__LISTEN"] = fmt.Sprintf("127.0.0.1:%d", httpsPort)
	env["GATEWAY__HTTPLISTEN"] = ""
	env["GATEWAY__ADMINLISTEN"] = fmt.Sprintf("127.0.0.1:%d", adminPort)
	env["GATEWAY__ORIGIN"] = fmt.Sprintf("http://127.0.0.1:%d", closed)
	env["GATEWAY__ORIGINSTATUSURL"] = fmt.Sprintf("http://127.0.0.1:%d/status.json", closed)
	env["GATEWAY__LOGFORMAT"] = "text"

	logs := p.start(t, env, "gateway")
	if ok, d := waitStatus(fmt.Sprintf("http://127.0.0.1:%d/health/live", adminPort), 200); !ok {
		t.Fatalf("gateway not live: %s\nlogs:\n%s", d, logs.String())
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(readFile(t, filepath.Join(p.work, "tls", "ca.pem"))) {
		t.Fatal("no CA in ca.pem")
	}
	const host = "mirror-primary.example.org"
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", httpsPort))
		},
	}}
	get := func(user, pass string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, "https://"+host+"/concelier/exports/index.json", nil)
		if err != nil {
			return 0, "", err
		}
		req.SetBasicAuth(user, pass)
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
	}

	// 1. A new user arrives with an updated htpasswd Secret.
	const user, pass = "rotated-user", "correct horse battery staple"
	code, firstSerial, err := get(user, pass)
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("before the update: %d, %v; want 401", code, err)
	}
	pwFile := filepath.Join(p.work, "pw")
	if err := os.WriteFile(pwFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hp := filepath.Join(p.work, "primary.htpasswd")
	if out, err := p.run(t, nil, "passwd", "--file", hp, "--user", user, "--password-file", pwFile); err != nil {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	p.updateSecretDir(t, "/run/secrets/htpasswd", map[string][]byte{
		"primary.htpasswd":   readFile(t, hp),
		"community.htpasswd": readFile(t, filepath.Join(p.work, "community.htpasswd")),
	})
	if ok, d := pollUntil(30*time.Second, func() (bool, string) {
		code, _, err := get(user, pass)
		return err == nil && code != http.StatusUnauthorized, fmt.Sprintf("%d %v", code, err)
	}); !ok {
		t.Fatalf("the new user is still refused after the Secret volume update: %s\nlogs:\n%s", d, logs.String())
	}
	// Authenticated: the gateway went on to the (down) origin.
	if code, _, _ := get(user, pass); code != http.StatusBadGateway && code != http.StatusGatewayTimeout {
		t.Errorf("the new user got %d, want 502/504 from the unreachable origin", code)
	}
	if !strings.Contains(logs.String(), "htpasswd reloaded") {
		t.Errorf("no 'htpasswd reloaded' log line:\n%s", logs.String())
	}

	// 2. A renewed certificate arrives with an updated TLS Secret (as
	// cert-manager writes it): the gateway serves it without a restart.
	if out, err := p.run(t, nil, "dev-certs", "--out", filepath.Join(p.work, "tls"), "--site", "primary="+host); err != nil {
		t.Fatalf("dev-certs: %v\n%s", err, out)
	}
	p.updateSecretDir(t, "/etc/stella-mirror/tls/primary", map[string][]byte{
		"tls.crt": readFile(t, filepath.Join(p.work, "tls", "primary.crt")),
		"tls.key": readFile(t, filepath.Join(p.work, "tls", "primary.key")),
	})
	if ok, d := pollUntil(30*time.Second, func() (bool, string) {
		_, serial, err := get(user, pass)
		return err == nil && serial != firstSerial, fmt.Sprintf("serial %s (first %s), %v", serial, firstSerial, err)
	}); !ok {
		t.Fatalf("the renewed certificate is not served after the Secret volume update: %s\nlogs:\n%s", d, logs.String())
	}
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Errorf("no 'certificate reloaded' log line:\n%s", logs.String())
	}
	_, lastSerial, _ := get(user, pass)
	t.Logf("htpasswd and certificate updates reached the running gateway (serial %s -> %s)", firstSerial, lastSerial)
}

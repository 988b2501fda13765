package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/devcert"
)

// TestSyncThroughGateway: `stella-mirror sync` pulls the demo's primary
// domain through our own gateway (TLS with a private CA, Basic Auth from a
// file), verifies it and publishes it; a second run is a no-op; a wrong
// password publishes nothing and says why.
func TestSyncThroughGateway(t *testing.T) {
	dir := t.TempDir()
	p := startDemo(t, dir)
	st := p.state
	user := st.Users["primary"]

	// A second gateway process in front of the demo's origin, for the name
	// "localhost" (which resolves without DNS), signed by the demo's CA.
	ca, err := devcert.LoadOrCreateCA(st.CA, filepath.Join(dir, "tls", "ca.key"), "unused")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	w := t.TempDir()
	certFile, keyFile := filepath.Join(w, "localhost.crt"), filepath.Join(w, "localhost.key")
	if err := leaf.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	port, adminPort := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`gateway:
  listen: 127.0.0.1:%d
  httpListen: ""
  adminListen: 127.0.0.1:%d
  origin: %s
  sites:
    - hosts: [localhost]
      domains: [primary]
      certFile: %s
      keyFile: %s
      htpasswdFile: %s
`, port, adminPort, st.Origin, certFile, keyFile, user.Htpasswd)
	cfgFile := filepath.Join(w, "gateway.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	gw := exec.Command(bin, "gateway", "--config", cfgFile)
	var gwErr strings.Builder
	gw.Stderr = &gwErr
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Process.Kill(); gw.Wait() })
	waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/health/ready", adminPort), &gwErr)

	good := filepath.Join(w, "basic-auth")
	bad := filepath.Join(w, "basic-auth-wrong")
	os.WriteFile(good, []byte(user.User+":"+user.Password+"\n"), 0o600)
	os.WriteFile(bad, []byte(user.User+":not-the-password\n"), 0o600)
	source := fmt.Sprintf("https://localhost:%d", port)
	syncArgs := func(dest, auth string) []string {
		return []string{"sync", "--source", source, "--dest", dest, "--domain", "primary",
			"--basic-auth-file", auth, "--ca-file", st.CA, "--public-key", st.PublicKey, "--log-format", "json"}
	}

	dest := t.TempDir()
	if out, err := exec.Command(bin, syncArgs(dest, good)...).CombinedOutput(); err != nil {
		t.Fatalf("sync through the gateway: %v\n%s", err, out)
	}
	if target, _ := os.Readlink(filepath.Join(dest, "latest")); target != st.ExportID {
		t.Fatalf("latest -> %q, want %s", target, st.ExportID)
	}
	rel := filepath.Join("mirror", "primary", "bundle.json")
	if a, b := fileSum(t, filepath.Join(st.ExportRoots["concelier"], st.ExportID, rel)), fileSum(t, filepath.Join(dest, st.ExportID, rel)); a != b {
		t.Fatalf("synced bundle sha256 %s, origin's %s", b, a)
	}
	out, err := exec.Command(bin, syncArgs(dest, good)...).CombinedOutput()
	if err != nil {
		t.Fatalf("second sync: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "unchanged") && !strings.Contains(string(out), "nothing new") {
		t.Errorf("second sync did not report a no-op:\n%s", out)
	}

	dest2 := t.TempDir()
	out, err = exec.Command(bin, syncArgs(dest2, bad)...).CombinedOutput()
	if err == nil {
		t.Fatalf("sync with a wrong password succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "401") {
		t.Errorf("wrong password: the error does not say 401:\n%s", out)
	}
	if strings.Contains(string(out), "not-the-password") || strings.Contains(string(out), user.Password) {
		t.Errorf("a password reached the log:\n%s", out)
	}
	if _, err := os.Lstat(filepath.Join(dest2, "latest")); err == nil {
		t.Errorf("a failed sync published latest")
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
// freeFixedPort returns a free loopback port below the kernel's ephemeral
// range (32768–60999 on Linux), for a port a container publishes some
// seconds after it was chosen: a port from ":0" is an ephemeral one, which
// any outgoing loopback connection of a parallel test can take in the
// meantime (CI saw Docker fail with "bind: address already in use").
func freeFixedPort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := 20000 + mathrand.IntN(12000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free loopback port found in 20000-31999")
	return 0
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitReady polls url until it answers 200: the process is external, so
// there is no event to wait on. Bounded at 30 s.
func waitReady(t *testing.T, url string, logs *strings.Builder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s not ready after 30s; logs:\n%s", url, logs.String())
		case <-tick.C:
		}
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

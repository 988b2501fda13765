package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/devcert"
)

// TestPeerTokenEndToEnd runs the real binary as origin and gateways on
// loopback, the origin trusting the loopback network as bypass peers only
// with the peer token (ORIGIN__PEERTOKENFILE):
//
//   - a gateway with the token (GATEWAY__ORIGINPEERTOKENFILE) passes
//     `stella-mirror smoke`;
//   - a gateway with a wrong token does not: smoke exits 1, the origin's
//     401 surfacing through the gateway;
//   - any other process in the bypass network (curl here, a pod in a
//     cluster whose CNI ignores NetworkPolicy) that names a user without the
//     token reads nothing: 401, and 401 with a wrong token; with the token
//     it is served (what the gateway does).
func TestPeerTokenEndToEnd(t *testing.T) {
	requireTools(t, "curl")
	dir := t.TempDir()
	root := filepath.Join(dir, "exports")
	if out, err := exec.Command(bin, "fixture", "--out", root, "--domains", "primary", "--bundle-size", "64KiB", "--seed", "1").CombinedOutput(); err != nil {
		t.Fatalf("fixture: %v\n%s", err, out)
	}
	const (
		token = "e2e-peer-token-0123456789abcdef0123456789abcdef01"
		wrong = "e2e-wrong-peer-token-fedcba9876543210fedcba98765"
	)
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	originTok := write("origin-peer-token", "# gateway <-> origin\n"+token+"\n", 0o600)
	o, _ := startOrigin(t, []string{
		"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__MIRROR__EXPORTROOT=" + root,
		"CONCELIER__MIRROR__REQUIREAUTHENTICATION=true",
		"CONCELIER__AUTHORITY__BYPASSNETWORKS__0=127.0.0.0/8",
		"EXCITITOR__MIRROR__ENABLED=true", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT=" + root,
		"EXCITITOR__MIRROR__REQUIREAUTHENTICATION=true",
		"EXCITITOR__AUTHORITY__BYPASSNETWORKS__0=127.0.0.0/8",
		"ORIGIN__PEERTOKENFILE=" + originTok,
	})

	// The gateway's site: a certificate for localhost from a test CA, one user.
	ca, err := devcert.NewCA("peer token e2e CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "localhost.crt"), filepath.Join(dir, "localhost.key")
	if err := leaf.WriteFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	caFile := write("ca.pem", string(ca.CertPEM), 0o644)
	htpasswd, pwFile := filepath.Join(dir, "htpasswd"), filepath.Join(dir, "alice.pw")
	if out, err := exec.Command(bin, "passwd", "--file", htpasswd, "--user", "alice", "--generate", "24", "--password-out", pwFile).CombinedOutput(); err != nil {
		t.Fatalf("passwd: %v\n%s", err, out)
	}

	// startGateway runs a gateway whose peer token file holds tok.
	startGateway := func(name, tok string) string {
		tokFile := write(name+"-peer-token", tok+"\n", 0o600)
		cfg := write(name+".yaml", fmt.Sprintf(`gateway:
  listen: 127.0.0.1:0
  httpListen: ""
  adminListen: 127.0.0.1:0
  origin: %s
  originPeerTokenFile: %s
  sites:
    - hosts: [localhost]
      domains: [primary]
      certFile: %s
      keyFile: %s
      htpasswdFile: %s
`, o, tokFile, certFile, keyFile, htpasswd), 0o644)
		a := startListening(t, exec.Command(bin, "gateway", "--config", cfg), syscall.SIGINT, "gateway", "gateway-admin")
		return a["gateway"]
	}
	smoke := func(addr string) (string, error) {
		_, port, _ := strings.Cut(addr, ":")
		out, err := exec.Command(bin, "smoke", "--base", "https://localhost:"+port, "--domain", "primary",
			"--user", "alice", "--password-file", pwFile, "--cacert", caFile,
			"--public-key", filepath.Join(root, "fixture-signing.pub.pem"), "--connect-to", addr).CombinedOutput()
		return string(out), err
	}

	t.Run("gateway with the token passes smoke", func(t *testing.T) {
		out, err := smoke(startGateway("good", token))
		if err != nil || strings.Contains(out, "FAIL") || !strings.Contains(out, "PASS bundle-jws") {
			t.Fatalf("smoke: %v\n%s", err, out)
		}
	})
	t.Run("gateway with a wrong token fails smoke with the origin's 401", func(t *testing.T) {
		out, err := smoke(startGateway("wrong", wrong))
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit %v, want status 1:\n%s", err, out)
		}
		if !strings.Contains(out, "FAIL index") || !strings.Contains(out, "HTTP 401") {
			t.Fatalf("no FAIL index … HTTP 401 line:\n%s", out)
		}
		if strings.Contains(out, wrong) || strings.Contains(out, token) {
			t.Error("smoke's output shows a peer token")
		}
	})
	t.Run("a bypass-network peer without the token reads nothing", func(t *testing.T) {
		env := []string{"O=" + o, "TOKEN=" + token, "WRONG=" + wrong}
		for _, tc := range []struct{ name, script, want string }{
			{"forged user, no token", `curl -s -o /dev/null -w '%{http_code}' -H 'X-Stella-Forwarded-User: admin' "$O/concelier/exports/index.json"`, "401"},
			{"wrong token", `curl -s -o /dev/null -w '%{http_code}' -H "X-Stella-Peer-Token: $WRONG" "$O/excititor/mirror/primary/index"`, "401"},
			{"the token", `curl -s -o /dev/null -w '%{http_code}' -H "X-Stella-Peer-Token: $TOKEN" -H 'X-Stella-Forwarded-User: gw' "$O/concelier/exports/index.json"`, "200"},
		} {
			if got := sh(t, env, tc.script); got != tc.want {
				t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
			}
		}
	})
}

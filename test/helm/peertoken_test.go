package helm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPeerTokenRotationInThePods runs the origin and the gateway with the
// chart's rendered environments (values-mirror.yaml: peerToken on; the
// loopback network standing in for the pod CIDR, the gateway's cache off so
// every request reaches the origin) over the peer token Secret volume as
// the kubelet lays it out, and:
//
//   - a request through the gateway is served (both hold the token), while
//     another "pod" of the pod network reading the origin directly with a
//     forged X-Stella-Forwarded-User is refused;
//   - the three-step rotation of docs/operations.md §3 (OLD+NEW, NEW+OLD,
//     NEW), each written the way the kubelet updates a Secret volume,
//     reaches both processes without a restart, and no request through the
//     gateway fails meanwhile; afterwards the old token is refused.
func TestPeerTokenRotationInThePods(t *testing.T) {
	bin := chartBinary(t)
	m := Render(t, []string{mirrorValues}, nil)
	p := newPodFS(t, bin, m)
	const newToken = "peer-token-NEW-fedcba9876543210fedcba9876543210fedcba98"

	// A user with a known password (the pods' htpasswd Secret updated).
	const user, pass = "peer-user", "peer token rotation password"
	pwFile, hp := filepath.Join(p.work, "peer-pw"), filepath.Join(p.work, "primary.htpasswd")
	if err := os.WriteFile(pwFile, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := p.run(t, nil, "passwd", "--file", hp, "--user", user, "--password-file", pwFile); err != nil {
		t.Fatalf("passwd: %v\n%s", err, out)
	}
	p.updateSecretDir(t, "/run/secrets/htpasswd", map[string][]byte{
		"primary.htpasswd": readFile(t, hp), "community.htpasswd": readFile(t, filepath.Join(p.work, "community.htpasswd")),
	})

	originHTTP, originAdmin := freeLoopbackPort(t), freeLoopbackPort(t)
	originEnv := copyMap(p.env(t, m, "origin-env"))
	if originEnv["ORIGIN__PEERTOKENFILE"] != "/run/secrets/peer-token/token" {
		t.Fatalf("ORIGIN__PEERTOKENFILE = %q", originEnv["ORIGIN__PEERTOKENFILE"])
	}
	originEnv["ORIGIN__LISTEN"] = fmt.Sprintf("127.0.0.1:%d", originHTTP)
	originEnv["ORIGIN__ADMINLISTEN"] = fmt.Sprintf("127.0.0.1:%d", originAdmin)
	originEnv["CONCELIER__AUTHORITY__BYPASSNETWORKS__0"] = "127.0.0.0/8" // the "pod CIDR"
	originEnv["EXCITITOR__AUTHORITY__BYPASSNETWORKS__0"] = "127.0.0.0/8"
	originLogs := p.start(t, originEnv, "origin")

	https, admin := freeLoopbackPort(t), freeLoopbackPort(t)
	gwEnv := copyMap(p.env(t, m, "gateway-env"))
	if gwEnv["GATEWAY__ORIGINPEERTOKENFILE"] != "/run/secrets/peer-token/token" {
		t.Fatalf("GATEWAY__ORIGINPEERTOKENFILE = %q", gwEnv["GATEWAY__ORIGINPEERTOKENFILE"])
	}
	gwEnv["GATEWAY__LISTEN"] = fmt.Sprintf("127.0.0.1:%d", https)
	gwEnv["GATEWAY__HTTPLISTEN"] = ""
	gwEnv["GATEWAY__ADMINLISTEN"] = fmt.Sprintf("127.0.0.1:%d", admin)
	gwEnv["GATEWAY__ORIGIN"] = fmt.Sprintf("http://127.0.0.1:%d", originHTTP)
	gwEnv["GATEWAY__ORIGINSTATUSURL"] = fmt.Sprintf("http://127.0.0.1:%d/status.json", originAdmin)
	delete(gwEnv, "GATEWAY__CACHE__DIR") // every request reaches the origin
	delete(gwEnv, "GATEWAY__CACHE__MAXSIZE")
	gwLogs := p.start(t, gwEnv, "gateway")
	if ok, d := waitStatus(fmt.Sprintf("http://127.0.0.1:%d/health/ready", admin), 200); !ok {
		t.Fatalf("gateway not ready (its readiness follows the origin's, probed with the token): %s\norigin:\n%s\ngateway:\n%s", d, originLogs, gwLogs)
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(readFile(t, filepath.Join(p.work, "tls", "ca.pem"))) {
		t.Fatal("no CA in ca.pem")
	}
	const host = "mirror-primary.example.org"
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, fmt.Sprintf("127.0.0.1:%d", https))
		},
	}}
	t.Cleanup(client.CloseIdleConnections)
	viaGateway := func() int {
		req, _ := http.NewRequest(http.MethodGet, "https://"+host+"/concelier/exports/index.json", nil)
		req.SetBasicAuth(user, pass)
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	direct := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/concelier/exports/index.json", originHTTP), nil)
		req.Header.Set("X-Stella-Forwarded-User", "admin")
		if tok != "" {
			req.Header.Set("X-Stella-Peer-Token", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if code := viaGateway(); code != 200 {
		t.Fatalf("through the gateway: %d\norigin:\n%s\ngateway:\n%s", code, originLogs, gwLogs)
	}
	if code := direct(""); code != http.StatusUnauthorized {
		t.Errorf("another pod, forged user, no token: %d, want 401", code)
	}

	// The rotation: every step waits for both processes' reload lines
	// while requests keep going through the gateway; none may fail.
	var failed []string
	for i, step := range []string{peerToken + "\n" + newToken + "\n", newToken + "\n" + peerToken + "\n", newToken + "\n"} {
		originN := strings.Count(originLogs.String(), "peer tokens reloaded")
		gwN := strings.Count(gwLogs.String(), "origin peer token reloaded")
		p.updateSecretDir(t, "/run/secrets/peer-token", map[string][]byte{"token": []byte(step)})
		ok, d := pollUntil(30*time.Second, func() (bool, string) {
			if code := viaGateway(); code != 200 {
				failed = append(failed, fmt.Sprintf("step %d: %d", i+1, code))
			}
			o, g := strings.Count(originLogs.String(), "peer tokens reloaded"), strings.Count(gwLogs.String(), "origin peer token reloaded")
			return o > originN && g > gwN, fmt.Sprintf("origin reloads %d, gateway reloads %d", o-originN, g-gwN)
		})
		if !ok {
			t.Fatalf("step %d not reloaded by both within 30s: %s\norigin:\n%s\ngateway:\n%s", i+1, d, originLogs, gwLogs)
		}
	}
	if len(failed) > 0 {
		t.Errorf("requests through the gateway failed during the rotation: %v", failed)
	}
	if code := viaGateway(); code != 200 {
		t.Errorf("through the gateway after the rotation: %d", code)
	}
	if code := direct(peerToken); code != http.StatusUnauthorized {
		t.Errorf("the old token after the rotation: %d, want 401", code)
	}
	if code := direct(newToken); code != 200 {
		t.Errorf("the new token after the rotation: %d, want 200", code)
	}
	for _, l := range []string{originLogs.String(), gwLogs.String()} {
		if strings.Contains(l, peerToken) || strings.Contains(l, newToken) {
			t.Error("a peer token appears in a log")
		}
	}
}

package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// front is a TLS front (the Go gateway or nginx) in front of the demo's
// origin, serving the demo's sites.
type front struct {
	name string
	port string
	// expectCache: the front has a cache, so smoke runs --expect-cache.
	expectCache bool
}

// frontBudget is the primary site's index budget on both fronts: the
// index requests before smoke's probe are one policy check, smoke's index,
// its coherence check's pinned index and its Excititor index, plus (nginx
// counts before authentication) the wrong-password smoke run's index.
const frontBudget = "6"

// TestFronts runs one end-to-end suite over both fronts of the same
// origin: the Go gateway and the nginx front rendered by
// `stella-mirror nginx-conf` from the same gateway configuration. Each
// front must pass `stella-mirror smoke` (every check, including the 429
// probe) and the policy checks with curl: no credentials → 401, another
// site's user → 401, another domain's path (plain, encoded, dot-dot) → 404,
// and the same for the export-pinned URLs (smoke's coherence check must
// pass through each front: index → manifest → bundle → JWS by pinned URL).
func TestFronts(t *testing.T) {
	requireTools(t, "curl", "nginx")
	dir := t.TempDir()
	s := startDemo(t, dir).state
	env := []string{"GATEWAY__SITES__0__MAXINDEXREQUESTSPERHOUR=" + frontBudget}

	fronts := []front{
		{name: "gateway", port: startGatewayFront(t, s.Configs["gateway"], env), expectCache: true},
		{name: "nginx", port: startNginxFront(t, filepath.Join(dir, "nginx"), s.Configs["gateway"], env), expectCache: true},
	}
	pu, cu := s.Users["primary"], s.Users["community"]
	for _, f := range fronts {
		t.Run(f.name, func(t *testing.T) {
			prim := "https://mirror-primary.localhost:" + f.port
			comm := "https://mirror-community.localhost:" + f.port
			cenv := []string{"CA=" + s.CA, "P=" + prim, "C=" + comm,
				"RP=mirror-primary.localhost:" + f.port + ":127.0.0.1", "RC=mirror-community.localhost:" + f.port + ":127.0.0.1",
				"PU=" + pu.User + ":" + pu.Password, "CU=" + cu.User + ":" + cu.Password, "ID=" + s.ExportID}
			curl := `curl -sS -o /dev/null -w '%{http_code}' --cacert "$CA" --resolve "$RP" --resolve "$RC" `
			// The primary site's index budget is small: one index request
			// here, then smoke's, then its probe.
			policy := []struct{ name, args, want string }{
				{"no credentials", `"$P/concelier/exports/index.json"`, "401"},
				{"right credentials", `-u "$PU" "$P/concelier/exports/index.json"`, "200"},
				{"community user, community bundle", `-u "$CU" "$C/concelier/exports/mirror/community/bundle.json"`, "200"},
				{"primary user on community host", `-u "$PU" "$C/concelier/exports/index.json"`, "401"},
				{"community bundle via primary host", `-u "$PU" "$P/concelier/exports/mirror/community/bundle.json"`, "404"},
				{"community bundle via primary, encoded", `--path-as-is -u "$PU" "$P/concelier/exports/mirror/%63ommunity/bundle.json"`, "404"},
				{"community bundle via primary, dot-dot", `--path-as-is -u "$PU" "$P/concelier/exports/mirror/primary/../community/bundle.json"`, "404"},
				{"own bundle, encoded", `--path-as-is -u "$PU" "$P/concelier/exports/mirror/prim%61ry/bundle.json"`, "404"},
				{"community excititor index via primary", `-u "$PU" "$P/excititor/mirror/community/index"`, "404"},
				{"unknown path", `-u "$PU" "$P/metrics"`, "404"},
				{"unknown path without credentials", `"$P/metrics"`, "401"},
				{"POST", `-X POST -u "$PU" "$P/concelier/exports/mirror/primary/manifest.json"`, "405"},
				// Export-pinned URLs: same auth and domain policy. (The pinned
				// index is fetched on the community site: the primary site's
				// index budget is for smoke.)
				{"pinned index", `-u "$CU" "$C/concelier/exports/$ID/index.json"`, "200"},
				{"pinned community bundle", `-u "$CU" "$C/concelier/exports/$ID/mirror/community/bundle.json"`, "200"},
				{"pinned community signature", `-u "$CU" "$C/concelier/exports/$ID/mirror/community/bundle.json.jws"`, "200"},
				{"pinned index without credentials", `"$C/concelier/exports/$ID/index.json"`, "401"},
				{"pinned community bundle via primary host", `-u "$PU" "$P/concelier/exports/$ID/mirror/community/bundle.json"`, "404"},
				{"pinned, unknown export", `-u "$CU" "$C/concelier/exports/no-such-export/index.json"`, "404"},
				{"pinned, reserved id latest", `-u "$CU" "$C/concelier/exports/latest/mirror/community/bundle.json"`, "404"},
				{"pinned, reserved id mirror", `-u "$CU" "$C/concelier/exports/mirror/mirror/community/bundle.json"`, "404"},
				{"pinned, hidden id", `-u "$CU" "$C/concelier/exports/.staging/mirror/community/bundle.json"`, "404"},
				{"pinned, dot-dot id", `--path-as-is -u "$CU" "$C/concelier/exports/../mirror/community/bundle.json"`, "404"},
				{"pinned, encoded dot-dot id", `--path-as-is -u "$CU" "$C/concelier/exports/%2e%2e/mirror/community/bundle.json"`, "404"},
				{"pinned, encoded slash in id", `--path-as-is -u "$CU" "$C/concelier/exports/$ID%2fmirror/community/bundle.json"`, "404"},
				{"pinned, id too long", `-u "$CU" "$C/concelier/exports/` + strings.Repeat("a", 129) + `/index.json"`, "404"},
			}
			for _, tt := range policy {
				t.Run(tt.name, func(t *testing.T) {
					if got := sh(t, cenv, curl+tt.args); got != tt.want {
						t.Fatalf("HTTP %s, want %s", got, tt.want)
					}
				})
			}
			t.Run("401 carries a Basic challenge", func(t *testing.T) {
				got := sh(t, cenv, `curl -sSI --cacert "$CA" --resolve "$RP" "$P/concelier/exports/index.json" | tr -d '\r' | grep -i '^www-authenticate:'`)
				if !strings.Contains(got, `Basic realm="mirror-primary.localhost"`) {
					t.Fatalf("got %q", got)
				}
			})
			smokeArgs := func(pwFile string) []string {
				a := []string{"smoke", "--base", prim, "--domain", "primary", "--user", pu.User, "--password-file", pwFile,
					"--cacert", s.CA, "--public-key", s.PublicKey, "--connect-to", "127.0.0.1:" + f.port}
				if f.expectCache {
					a = append(a, "--expect-cache")
				}
				return a
			}
			t.Run("smoke with a wrong password fails", func(t *testing.T) {
				bad := filepath.Join(t.TempDir(), "pw")
				os.WriteFile(bad, []byte("wrong\n"), 0o600)
				out, err := exec.Command(bin, smokeArgs(bad)...).CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "FAIL index") {
					t.Fatalf("exit %v, want 1 with FAIL index:\n%s", err, out)
				}
			})
			t.Run("smoke passes, budget probe included", func(t *testing.T) {
				args := append(smokeArgs(filepath.Join(dir, "auth", "primary.password")), "--probe-budget", "--probe-limit", "10")
				out, err := exec.Command(bin, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("smoke: %v\n%s", err, out)
				}
				t.Logf("smoke against %s:\n%s", f.name, out)
				for _, want := range []string{"PASS gateway-auth", "PASS index ", "PASS manifest", "PASS bundle-jws",
					"PASS excititor ", "PASS excititor-jws", "PASS coherence export " + s.ExportID + " by pinned URLs", "PASS budget 429 after"} {
					if !strings.Contains(string(out), want) {
						t.Errorf("no %q line", want)
					}
				}
				if f.expectCache && !strings.Contains(string(out), "PASS cache-status X-Cache-Status on the manifest: MISS then HIT") &&
					!strings.Contains(string(out), "PASS cache-status X-Cache-Status on the manifest: HIT then HIT") {
					t.Errorf("cache-status did not pass with a HIT")
				}
			})
		})
	}
}

// startGatewayFront runs `stella-mirror gateway` with the demo's
// configuration on an ephemeral loopback port and returns the port.
func startGatewayFront(t *testing.T, config string, env []string) string {
	t.Helper()
	cmd := exec.Command(bin, "gateway", "--config", config)
	// Its own cache directory: the demo's gateway is running on the demo's.
	cmd.Env = append(os.Environ(), append(env, "GATEWAY__LISTEN=127.0.0.1:0", "GATEWAY__ADMINLISTEN=127.0.0.1:0",
		"GATEWAY__HTTPLISTEN=", "GATEWAY__LOGFORMAT=json", "GATEWAY__CACHE__DIR="+t.TempDir())...)
	a := startListening(t, cmd, syscall.SIGTERM, "gateway")
	_, port, _ := net.SplitHostPort(a["gateway"])
	return port
}

// startNginxFront renders the nginx front from the gateway configuration
// (--full, every runtime path under prefix), checks it with nginx -t, starts
// Debian's nginx on a free loopback port and returns the port once it
// completes a TLS handshake.
func startNginxFront(t *testing.T, prefix, config string, env []string) string {
	t.Helper()
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(prefix, "nginx.conf")
	args := []string{"nginx-conf", "--config", config, "--full", "--prefix", prefix,
		"--cache-dir", filepath.Join(prefix, "cache"), "--out", conf}
	if os.Geteuid() == 0 {
		// Workers would switch to nobody, who cannot read the demo's 0600 keys.
		args = append(args, "--user", "root")
	}
	render := exec.Command(bin, args...)
	render.Env = append(os.Environ(), append(env, "GATEWAY__LISTEN="+addr, "GATEWAY__HTTPLISTEN=")...)
	if out, err := render.CombinedOutput(); err != nil {
		t.Fatalf("nginx-conf: %v\n%s", err, out)
	}
	runNginx(t, prefix, conf, func(ctx context.Context) (net.Conn, error) {
		d := tls.Dialer{Config: &tls.Config{ServerName: "mirror-primary.localhost", InsecureSkipVerify: true}} // readiness only
		return d.DialContext(ctx, "tcp", addr)
	})
	return port
}

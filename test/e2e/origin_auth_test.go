package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/stella-ops/stella-mirror/origin/authority/authoritytest"
)

// startOrigin runs `stella-mirror origin` on ephemeral loopback ports with
// env and returns the public and admin base URLs once both listen. The
// process is stopped with SIGINT when the test ends.
func startOrigin(t *testing.T, env []string) (public, admin string) {
	t.Helper()
	cmd := exec.Command(bin, "origin", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	a := startListening(t, cmd, syscall.SIGINT, "origin", "origin-admin")
	return "http://" + a["origin"], "http://" + a["origin-admin"]
}

// TestOriginRunbookAuthChecks runs the runbook's service-level checks
// against the real binary with curl: no token where authentication is
// required → 401 with a Bearer challenge; a valid token → 200; with a
// budget of 1 the second quick call → 429 with Retry-After.
func TestOriginRunbookAuthChecks(t *testing.T) {
	requireTools(t, "curl")
	dir := t.TempDir()
	root := filepath.Join(dir, "exports")
	if out, err := exec.Command(bin, "fixture", "--out", root, "--domains", "primary", "--bundle-size", "64KiB", "--seed", "1").CombinedOutput(); err != nil {
		t.Fatalf("fixture: %v\n%s", err, out)
	}
	key := authoritytest.NewKey(t, "authority-1", jose.ES256)
	keyFile := filepath.Join(dir, "authority.pem")
	if err := os.WriteFile(keyFile, key.PublicPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	const issuer = "https://authority.example.internal"
	now := time.Now()
	token := authoritytest.SignWith(t, key, authoritytest.Claims{Claims: jwt.Claims{
		Issuer: issuer, Subject: "scanner-1", Audience: jwt.Audience{"stella-mirror"},
		Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
	}, Extra: map[string]any{"scope": "concelier.mirror.read"}})

	o, _ := startOrigin(t, []string{
		"CONCELIER__MIRROR__ENABLED=true",
		"CONCELIER__MIRROR__EXPORTROOT=" + root,
		"CONCELIER__MIRROR__REQUIREAUTHENTICATION=true",
		"CONCELIER__MIRROR__MAXINDEXREQUESTSPERHOUR=1",
		"CONCELIER__AUTHORITY__ENABLED=true",
		"CONCELIER__AUTHORITY__ISSUER=" + issuer,
		"CONCELIER__AUTHORITY__AUDIENCES__0=stella-mirror",
		"CONCELIER__AUTHORITY__SIGNINGKEYFILE=" + keyFile,
	})
	env := []string{"O=" + o, "TOKEN=" + token}

	t.Run("no token: 401 with a Bearer challenge", func(t *testing.T) {
		got := sh(t, env, `curl -s -o /dev/null -D - "$O/concelier/exports/index.json" | tr -d '\r'`)
		if !strings.HasPrefix(got, "HTTP/1.1 401") {
			t.Fatalf("status line: %q", firstLine(got))
		}
		if !strings.Contains(got, "\nWww-Authenticate: Bearer realm=") {
			t.Fatalf("no Bearer challenge in:\n%s", got)
		}
	})
	t.Run("valid token then budget of 1: 200, then 429 with Retry-After", func(t *testing.T) {
		first := sh(t, env, `curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$O/concelier/exports/index.json"`)
		if first != "200" {
			t.Fatalf("first call: %s", first)
		}
		second := sh(t, env, `curl -s -o /dev/null -D - -H "Authorization: Bearer $TOKEN" "$O/concelier/exports/index.json" | tr -d '\r'`)
		if !strings.HasPrefix(second, "HTTP/1.1 429") {
			t.Fatalf("second call status: %q", firstLine(second))
		}
		var retry int
		for _, line := range strings.Split(second, "\n") {
			if v, ok := strings.CutPrefix(line, "Retry-After: "); ok {
				fmt.Sscanf(v, "%d", &retry)
			}
		}
		if retry < 3500 || retry > 3600 {
			t.Fatalf("Retry-After = %d, want about 3600 seconds:\n%s", retry, second)
		}
	})
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

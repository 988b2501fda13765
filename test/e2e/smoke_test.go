package e2e

import (
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSmokeCommandAgainstDemo runs the `stella-mirror smoke` binary against
// the running demo the way an operator does: every check it runs passes
// and it exits 0; a wrong password makes it exit 1 with a FAIL line.
func TestSmokeCommandAgainstDemo(t *testing.T) {
	dir := t.TempDir()
	p := startDemo(t, dir)
	s := p.state
	site, err := url.Parse(s.Sites["primary"])
	if err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "auth", "primary.password")
	args := func(pw string) []string {
		return []string{"smoke", "--base", s.Sites["primary"], "--domain", "primary",
			"--user", s.Users["primary"].User, "--password-file", pw, "--cacert", s.CA,
			"--public-key", s.PublicKey, "--connect-to", "127.0.0.1:" + site.Port()}
	}
	t.Run("passes", func(t *testing.T) {
		out, err := exec.Command(bin, args(pwFile)...).CombinedOutput()
		if err != nil {
			t.Fatalf("smoke: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 11 {
			t.Fatalf("%d lines, want one per check (11):\n%s", len(lines), out)
		}
		for _, want := range []string{"PASS gateway-auth", "PASS index ", "PASS manifest", "PASS bundle-jws", "PASS coherence ", "PASS excititor ", "PASS excititor-jws"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("no %q line in:\n%s", want, out)
			}
		}
		if strings.Contains(string(out), "FAIL") {
			t.Errorf("a check failed:\n%s", out)
		}
	})
	t.Run("wrong password exits 1", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(bad, []byte("wrong\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, args(bad)...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit %v, want status 1:\n%s", err, out)
		}
		if !strings.Contains(string(out), "FAIL index") || !strings.Contains(string(out), "HTTP 401") {
			t.Fatalf("no FAIL index … HTTP 401 line:\n%s", out)
		}
	})
	t.Run("missing flags exit 2", func(t *testing.T) {
		out, err := exec.Command(bin, "smoke", "--domain", "primary").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--base: required") {
			t.Fatalf("exit %v, want status 2 naming --base:\n%s", err, out)
		}
	})
}

package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoRunbookOriginSmoke runs the runbook's origin smoke checks against
// `stella-mirror demo` with curl and jq, and verifies a served bundle's
// detached JWS with our verifier and with an independent JOSE implementation.
func TestDemoRunbookOriginSmoke(t *testing.T) {
	requireTools(t, "curl", "jq")
	dir := t.TempDir()
	p := startDemo(t, dir)
	s := p.state
	if len(s.Domains) != 2 || s.Domains[0] != "primary" {
		t.Fatalf("demo.json domains = %v, want [primary community]", s.Domains)
	}
	env := []string{"O=" + s.Origin, "A=" + s.OriginAdmin, "BIN=" + bin, "PUB=" + s.PublicKey, "W=" + t.TempDir(),
		"JWCRYPTO=" + repoPath(t, "export", "jws", "testdata", "verify_jwcrypto.py")}

	t.Run("index keys", func(t *testing.T) {
		got := sh(t, env, `curl -fsS "$O/concelier/exports/index.json" | jq -c 'keys'`)
		var keys []string
		if err := json.Unmarshal([]byte(got), &keys); err != nil {
			t.Fatalf("jq keys output %q: %v", got, err)
		}
		if !strings.Contains(got, `"domains"`) || !strings.Contains(got, `"exportId"`) {
			t.Fatalf("index keys = %s, want domains and exportId among them", got)
		}
	})
	t.Run("manifest cache-control", func(t *testing.T) {
		got := sh(t, env, `curl -fsSI "$O/concelier/exports/mirror/primary/manifest.json" | tr -d '\r' | grep -i '^cache-control:'`)
		if want := "cache-control: public, max-age=300, immutable"; !strings.EqualFold(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("index cache-control", func(t *testing.T) {
		got := sh(t, env, `curl -fsSI "$O/concelier/exports/index.json" | tr -d '\r' | grep -i '^cache-control:'`)
		if want := "cache-control: public, max-age=60"; !strings.EqualFold(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("excititor export keys", func(t *testing.T) {
		got := sh(t, env, `curl -fsS "$O/excititor/mirror/primary/index" | jq -r '.exports[].exportKey'`)
		keys := strings.Fields(got)
		if len(keys) < 2 {
			t.Fatalf("exportKeys = %q, want at least 2", got)
		}
		// Every listed export and its signature are served and verify.
		for _, k := range keys {
			sh(t, append(env, "K="+k), `cd "$W" && curl -fsSo "$K" "$O/excititor/mirror/primary/export/$K" &&
				curl -fsSo "$K.jws" "$O/excititor/mirror/primary/export/$K/signature" &&
				"$BIN" verify --public-key "$PUB" "$K"`)
		}
	})
	t.Run("bundle detached JWS verifies", func(t *testing.T) {
		out := sh(t, env, `cd "$W" &&
			curl -fsSo bundle.json "$O/concelier/exports/mirror/primary/bundle.json" &&
			curl -fsSo bundle.json.jws "$O/concelier/exports/mirror/primary/bundle.json.jws" &&
			"$BIN" verify --public-key "$PUB" bundle.json`)
		if !strings.HasPrefix(out, "OK") {
			t.Fatalf("verify output %q", out)
		}
		// The manifest's digest is the sha256 of the exact bytes served.
		sh(t, env, `cd "$W" && want=$(curl -fsS "$O/concelier/exports/mirror/primary/manifest.json" | jq -r .bundle.digest) &&
			have="sha256:$(sha256sum bundle.json | cut -d' ' -f1)" && [ "$want" = "$have" ]`)
		// A flipped byte fails verification.
		sh(t, env, `cd "$W" && printf 'X' | dd of=bundle.json bs=1 seek=100 conv=notrunc status=none &&
			! "$BIN" verify --public-key "$PUB" bundle.json 2>/dev/null`)
	})
	t.Run("independent JOSE verifies served bundle", func(t *testing.T) {
		requireTools(t, "/usr/bin/python3")
		sh(t, env, `cd "$W" &&
			curl -fsSo b2.json "$O/concelier/exports/mirror/community/bundle.json" &&
			curl -fsSo b2.json.jws "$O/concelier/exports/mirror/community/bundle.json.jws" &&
			/usr/bin/python3 "$JWCRYPTO" "$PUB" b2.json.jws b2.json | grep '^jwcrypto: OK' >/dev/null`)
	})
	t.Run("health and metrics on admin", func(t *testing.T) {
		sh(t, env, `curl -fsS "$A/health/ready" >/dev/null && curl -fsS "$A/metrics" | grep '^stella_mirror_build_info' >/dev/null`)
		sh(t, env, `code=$(curl -s -o /dev/null -w '%{http_code}' "$O/metrics"); [ "$code" = 404 ]`)
	})

	if err := p.stop(t); err != nil {
		t.Fatalf("demo did not stop cleanly on SIGINT: %v", err)
	}
}

// TestDemoReusesItsDirectory shows a second start reuses the key and export.
func TestDemoReusesItsDirectory(t *testing.T) {
	dir := t.TempDir()
	p := startDemo(t, dir)
	first := p.state
	if err := p.stop(t); err != nil {
		t.Fatalf("first demo stop: %v", err)
	}
	second := startDemo(t, dir).state
	if first.ExportID != second.ExportID || first.KeyID != second.KeyID {
		t.Fatalf("second start: export %s key %s, first: export %s key %s",
			second.ExportID, second.KeyID, first.ExportID, first.KeyID)
	}
}

// repoPath returns the absolute path of a file in the repository.
func repoPath(t *testing.T, elem ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"..", ".."}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
)

// runFixtureCLI runs the binary's entry point in-process and returns the exit code
// and both outputs.
func runFixtureCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestFixtureCommand(t *testing.T) {
	root := filepath.Join(t.TempDir(), "exports")
	small := []string{"--bundle-size", "40KiB", "--vex-size", "4KiB"}

	code, stdout, stderr := runFixtureCLI(t, append([]string{"fixture", "--out", root, "--seed", "3"}, small...)...)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	const id = "20260101T030000Z"
	pubPath := filepath.Join(root, fixture.PublicKeyFile)
	for _, want := range []string{"wrote export " + id, "primary", "community", "EdDSA", pubPath, "verify:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if target, err := os.Readlink(filepath.Join(root, export.LatestLink)); err != nil || target != id {
		t.Fatalf("latest -> %q (%v), want %s", target, err, id)
	}
	pub, err := jws.LoadPublicKeyPEM(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(root, id, filepath.FromSlash(export.BundlePath("community")))
	if _, err := jws.VerifyFile(bundle+".jws", bundle, []jws.PublicKey{{Key: pub}}); err != nil {
		t.Fatalf("bundle signature: %v", err)
	}

	t.Run("existing export needs --force", func(t *testing.T) {
		code, _, stderr := runFixtureCLI(t, append([]string{"fixture", "--out", root, "--seed", "3"}, small...)...)
		if code != 1 || !strings.Contains(stderr, filepath.Join(root, id)) || !strings.Contains(stderr, "--force") {
			t.Fatalf("exit %d, stderr %q; want 1 and a message naming %s and --force", code, stderr, filepath.Join(root, id))
		}
		code, _, stderr = runFixtureCLI(t, append([]string{"fixture", "--out", root, "--seed", "3", "--force"}, small...)...)
		if code != 0 {
			t.Fatalf("--force: exit %d, stderr:\n%s", code, stderr)
		}
	})

	t.Run("key, kid, export id, no latest", func(t *testing.T) {
		key, err := jws.GenerateKey(jws.ES256)
		if err != nil {
			t.Fatal(err)
		}
		pemData, err := jws.MarshalPrivateKeyPEM(key)
		if err != nil {
			t.Fatal(err)
		}
		keyFile := filepath.Join(t.TempDir(), "signing.key.pem")
		if err := os.WriteFile(keyFile, pemData, 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runFixtureCLI(t, append([]string{"fixture", "--out", root, "--key", keyFile, "--kid", "ops-1",
			"--export-id", "manual-1", "--domains", "eu-west", "--latest=false"}, small...)...)
		if code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		if !strings.Contains(stdout, "ES256, kid ops-1") {
			t.Errorf("stdout lacks the key description:\n%s", stdout)
		}
		ix, err := export.ParseIndex(readFixtureFile(t, filepath.Join(root, "manual-1", export.IndexPath)))
		if err != nil {
			t.Fatal(err)
		}
		sig := ix.Domain("eu-west").Bundle.Signature
		if sig.Algorithm != jws.ES256 || sig.KeyID != "ops-1" {
			t.Errorf("signature ref %+v, want ES256 / ops-1", sig)
		}
		if target, _ := os.Readlink(filepath.Join(root, export.LatestLink)); target != id {
			t.Errorf("--latest=false moved latest to %q", target)
		}
	})

	t.Run("usage errors name the value", func(t *testing.T) {
		tests := []struct {
			name string
			args []string
			want string
		}{
			{"bundle size", []string{"--out", root, "--bundle-size", "64XB"}, `"64XB"`},
			{"vex size", []string{"--out", root, "--vex-size", "-3"}, `"-3"`},
			{"domains", []string{"--out", root, "--domains", "primary,Community"}, `domain "Community"`},
			{"generated-at", []string{"--out", root, "--generated-at", "yesterday"}, `"yesterday"`},
			{"missing out", []string{"--seed", "1"}, "--out is required"},
			{"stray argument", []string{"--out", root, "extra"}, `"extra"`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, _, stderr := runFixtureCLI(t, append([]string{"fixture"}, tt.args...)...)
				if code != 2 || !strings.Contains(stderr, tt.want) {
					t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
				}
			})
		}
	})

	t.Run("bad values that reach the package", func(t *testing.T) {
		code, _, stderr := runFixtureCLI(t, "fixture", "--out", root, "--export-id", "../escape")
		if code != 1 || !strings.Contains(stderr, `export id "../escape"`) {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		code, _, stderr = runFixtureCLI(t, "fixture", "--out", root, "--key", filepath.Join(root, "missing.pem"))
		if code != 1 || !strings.Contains(stderr, "--key") {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("help", func(t *testing.T) {
		code, stdout, _ := runFixtureCLI(t, "fixture", "--help")
		if code != 0 || !strings.Contains(stdout, "--bundle-size") || !strings.Contains(stdout, "default 4MiB") {
			t.Fatalf("exit %d, help on stdout:\n%s", code, stdout)
		}
	})
}

func readFixtureFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestFixtureWarnsWhenKeyReplaced: a run with another seed replaces the
// derived public key and says so on stderr; a run with the same seed (the
// same key) says nothing.
func TestFixtureWarnsWhenKeyReplaced(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		seed     string
		wantWarn bool
	}{
		{"1", false}, // no key yet
		{"1", false}, // the same key
		{"2", true},  // another key
	}
	for i, tt := range tests {
		var out, errb bytes.Buffer
		args := []string{"fixture", "--out", dir, "--seed", tt.seed, "--domains", "primary", "--bundle-size", "8KiB", "--vex-size", "2KiB", "--export-id", "e" + strconv.Itoa(i)}
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("run %d: exit %d: %s", i, code, errb.String())
		}
		warned := strings.Contains(errb.String(), "was replaced by a different public key")
		if warned != tt.wantWarn {
			t.Errorf("run %d (seed %s): warned %v, want %v: %q", i, tt.seed, warned, tt.wantWarn, errb.String())
		}
		if warned && !strings.Contains(errb.String(), "fixture-signing.pub.pem") {
			t.Errorf("warning does not name the key file: %s", errb.String())
		}
	}
}

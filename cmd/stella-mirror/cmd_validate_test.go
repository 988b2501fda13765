package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export/fixture"
)

func TestValidateExitStatus(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "exports")
	if _, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 8 << 10, VEXSize: 2 << 10, SetLatest: true}); err != nil {
		t.Fatal(err)
	}
	env := func(t *testing.T, content string) string {
		p := filepath.Join(t.TempDir(), "mirror.env")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		args     func(t *testing.T) []string
		code     int
		contains string
	}{
		{"good profile", func(t *testing.T) []string {
			return []string{"--env-file", env(t, "CONCELIER__MIRROR__ENABLED=true\nCONCELIER__MIRROR__EXPORTROOT=/srv/exports\n"), "--map", "/srv/exports=" + root}
		}, 0, "profile OK (0 warnings)"},
		{"warnings only", func(t *testing.T) []string {
			return []string{"--env-file", env(t, "CONCELIER__MIRROR__ENABLED=true\nCONCELIER__MIRROR__EXPORTROOT="+root+"\nCONCELIER__MIRROR__REQUIREAUTHENTICATION=true\n")}
		}, 0, "warning: "},
		{"missing export root", func(t *testing.T) []string {
			return []string{"--env-file", env(t, "CONCELIER__MIRROR__ENABLED=true\nCONCELIER__MIRROR__EXPORTROOT="+filepath.Join(dir, "nope")+"\n")}
		}, 1, "CONCELIER__MIRROR__EXPORTROOT: export root: no such file or directory"},
		{"nothing to check", func(t *testing.T) []string { return nil }, 2, "nothing to check"},
		{"bad --map", func(t *testing.T) []string { return []string{"--map", "/run/secrets"} }, 2, "FROM=TO"},
		{"help", func(t *testing.T) []string { return []string{"--help"} }, 0, "--cdn-forwards-authorization"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"validate"}, tt.args(t)...), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stdout.String()+stderr.String(), tt.contains) {
				t.Fatalf("exit %d (want %d), output lacks %q?\nstdout:\n%s\nstderr:\n%s", code, tt.code, tt.contains, stdout.String(), stderr.String())
			}
		})
	}
}

func TestSmokeUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"help", []string{"--help"}, 0, "--expect-cache"},
		{"missing flags", []string{"--domain", "primary"}, 2, "--base: required"},
		{"user without password file", []string{"--base", "https://x", "--domain", "primary", "--user", "u"}, 2, "--password-file: required with --user"},
		{"missing public key file", []string{"--base", "https://x", "--domain", "primary", "--public-key", "/nonexistent.pem"}, 2, "--public-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"smoke"}, tt.args...), &stdout, &stderr)
			out := stderr.String()
			if tt.name == "help" {
				out = stdout.String() // --help goes to stdout
			}
			if code != tt.code || !strings.Contains(out, tt.contains) {
				t.Fatalf("exit %d (want %d), output lacks %q:\n%s", code, tt.code, tt.contains, out)
			}
		})
	}
}

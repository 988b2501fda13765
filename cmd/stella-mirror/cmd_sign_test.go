package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runCLI runs stella-mirror with args and returns the exit code, stdout and
// stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// mustRun runs stella-mirror and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("stella-mirror %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

var kidLine = regexp.MustCompile(`(?m)^kid: ([A-Za-z0-9_-]{43})$`)

// keygen creates a key pair under dir and returns its prefix and kid.
func keygen(t *testing.T, dir, name, alg string) (prefix, kid string) {
	t.Helper()
	prefix = filepath.Join(dir, name)
	out := mustRun(t, "keygen", "--alg", alg, "--out", prefix)
	m := kidLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keygen output has no kid line: %q", out)
	}
	return prefix, m[1]
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestKeygenSignVerify(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			prefix, kid := keygen(t, dir, "signing", alg)
			for path, want := range map[string]os.FileMode{prefix + ".key.pem": 0o600, prefix + ".pub.pem": 0o644} {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != want {
					t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), want)
				}
			}

			data := filepath.Join(dir, "bundle.json")
			writeFile(t, data, `{"advisories":[]}`)
			out := mustRun(t, "sign", "--key", prefix+".key.pem", data)
			if want := "wrote " + data + ".jws (alg=" + alg + ", kid=" + kid + ")\n"; out != want {
				t.Errorf("sign output %q, want %q", out, want)
			}
			if _, err := os.Stat(data + ".jws"); err != nil {
				t.Fatal(err)
			}

			out = mustRun(t, "verify", "--public-key", prefix+".pub.pem", data)
			if want := "OK: " + data + " verified (alg=" + alg + ", kid=" + kid + ")\n"; out != want {
				t.Errorf("verify output %q, want %q", out, want)
			}
			// The private key file serves as a public key too.
			mustRun(t, "verify", "--public-key", prefix+".key.pem", data)

			// Tampering fails with exit 1 and names the file.
			writeFile(t, data, `{"advisories":[{}]}`)
			code, out, errOut := runCLI(t, "verify", "--public-key", prefix+".pub.pem", data)
			if code != 1 || out != "" {
				t.Fatalf("verify tampered: exit %d, stdout %q; want 1 and nothing", code, out)
			}
			if !strings.Contains(errOut, data) || !strings.Contains(errOut, "signature invalid") {
				t.Errorf("verify tampered: stderr %q does not name %s and say why", errOut, data)
			}
		})
	}
}

func TestSignVerifyOptions(t *testing.T) {
	dir := t.TempDir()
	es, esKid := keygen(t, dir, "es", "ES256")
	ed, edKid := keygen(t, dir, "ed", "EdDSA")
	data := filepath.Join(dir, "data.bin")
	writeFile(t, data, "payload")
	sig := filepath.Join(dir, "sigs", "data.sig")
	if err := os.Mkdir(filepath.Dir(sig), 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("flags after FILE and --out/--sig", func(t *testing.T) {
		mustRun(t, "sign", data, "--key", ed+".key.pem", "--out", sig)
		out := mustRun(t, "verify", data, "--sig", sig, "--public-key", ed+".pub.pem")
		if !strings.Contains(out, "kid="+edKid) {
			t.Errorf("verify output %q", out)
		}
	})
	t.Run("several trusted keys", func(t *testing.T) {
		mustRun(t, "sign", "--key", es+".key.pem", data)
		out := mustRun(t, "verify", "--public-key", ed+".pub.pem", "--public-key", es+".pub.pem", data)
		if !strings.Contains(out, "alg=ES256, kid="+esKid) {
			t.Errorf("verify output %q", out)
		}
	})
	t.Run("custom kid", func(t *testing.T) {
		out := mustRun(t, "sign", "--key", es+".key.pem", "--kid", "prod-2026", data)
		if !strings.Contains(out, "kid=prod-2026") {
			t.Errorf("sign output %q", out)
		}
		// Known by its thumbprint, the key does not match kid prod-2026.
		code, _, errOut := runCLI(t, "verify", "--public-key", es+".pub.pem", data)
		if code != 1 || !strings.Contains(errOut, `kid "prod-2026" is not in the key set`) {
			t.Errorf("verify without --kid: exit %d, stderr %q", code, errOut)
		}
		out = mustRun(t, "verify", "--public-key", es+".pub.pem", "--kid", "prod-2026", data)
		if !strings.Contains(out, "kid=prod-2026") {
			t.Errorf("verify output %q", out)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		mustRun(t, "sign", "--key", es+".key.pem", data)
		other, _ := keygen(t, dir, "other", "ES256")
		code, _, errOut := runCLI(t, "verify", "--public-key", other+".pub.pem", data)
		if code != 1 || !strings.Contains(errOut, data) || !strings.Contains(errOut, "signature invalid") {
			t.Errorf("verify with wrong key: exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("missing signature", func(t *testing.T) {
		lonely := filepath.Join(dir, "unsigned.txt")
		writeFile(t, lonely, "x")
		code, _, errOut := runCLI(t, "verify", "--public-key", es+".pub.pem", lonely)
		if code != 1 || !strings.Contains(errOut, lonely+".jws") {
			t.Errorf("verify unsigned: exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "missing.bin")
		code, _, errOut := runCLI(t, "sign", "--key", es+".key.pem", missing)
		if code != 1 || !strings.Contains(errOut, missing) {
			t.Errorf("sign missing: exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("bad key file", func(t *testing.T) {
		code, _, errOut := runCLI(t, "sign", "--key", es+".pub.pem", data)
		if code != 1 || !strings.Contains(errOut, es+".pub.pem") {
			t.Errorf("sign with public key: exit %d, stderr %q", code, errOut)
		}
	})
}

func TestKeygenRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	prefix, kid := keygen(t, dir, "k", "EdDSA")
	before, _ := os.ReadFile(prefix + ".key.pem")
	code, _, errOut := runCLI(t, "keygen", "--alg", "EdDSA", "--out", prefix)
	if code != 1 || !strings.Contains(errOut, prefix+".key.pem already exists") {
		t.Fatalf("keygen over existing key: exit %d, stderr %q", code, errOut)
	}
	if after, _ := os.ReadFile(prefix + ".key.pem"); !bytes.Equal(before, after) {
		t.Fatal("existing key was changed")
	}
	// Only the public file existing also stops it.
	os.Remove(prefix + ".key.pem")
	if code, _, _ := runCLI(t, "keygen", "--out", prefix); code != 1 {
		t.Fatalf("keygen over existing public key: exit %d", code)
	}
	out := mustRun(t, "keygen", "--alg", "EdDSA", "--out", prefix, "--force")
	if strings.Contains(out, kid) {
		t.Error("--force did not make a new key")
	}
}

func TestSignCommandsHelp(t *testing.T) {
	for _, args := range [][]string{
		{"sign", "--help"}, {"verify", "--help"}, {"keygen", "--help"},
		{"help", "sign"}, {"verify", "-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("exit %d, want 0", code)
			}
			help := out
			if errOut != "" {
				t.Errorf("help wrote to stderr:\n%s", errOut)
			}
			name := args[0]
			if name == "help" {
				name = args[1]
			}
			for _, want := range []string{"Usage: stella-mirror " + name, "Example:", "stella-mirror " + name + " --"} {
				if !strings.Contains(help, want) {
					t.Errorf("help lacks %q:\n%s", want, help)
				}
			}
		})
	}
}

func TestSignCommandsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	prefix, _ := keygen(t, dir, "k", "ES256")
	data := filepath.Join(dir, "f")
	writeFile(t, data, "x")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"sign without --key", []string{"sign", data}, "--key is required"},
		{"sign without FILE", []string{"sign", "--key", prefix + ".key.pem"}, "missing FILE"},
		{"sign two files", []string{"sign", "--key", prefix + ".key.pem", data, data}, "unexpected argument"},
		{"sign over itself", []string{"sign", "--key", prefix + ".key.pem", "--out", data, data}, "would overwrite"},
		{"sign unknown flag", []string{"sign", "--kee", "x", data}, "flag provided but not defined"},
		{"verify without key", []string{"verify", data}, "--public-key is required"},
		{"verify --kid with two keys", []string{"verify", "--public-key", "a", "--public-key", "b", "--kid", "x", data}, "--kid"},
		{"keygen without --out", []string{"keygen"}, "--out is required"},
		{"keygen bad alg", []string{"keygen", "--alg", "HS256", "--out", filepath.Join(dir, "x")}, `"HS256"`},
		{"keygen positional", []string{"keygen", "--out", filepath.Join(dir, "x"), "extra"}, "unexpected argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tc.args...)
			if code != 2 || out != "" {
				t.Fatalf("exit %d, stdout %q; want 2 and nothing", code, out)
			}
			if !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "Usage:") {
				t.Errorf("stderr lacks %q and usage:\n%s", tc.want, errOut)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "x.key.pem")); err == nil {
		t.Error("keygen wrote a key despite a usage error")
	}
}

func TestSignVerifyHonourCancellation(t *testing.T) {
	dir := t.TempDir()
	prefix, _ := keygen(t, dir, "k", "EdDSA")
	data := filepath.Join(dir, "f")
	writeFile(t, data, "payload")
	mustRun(t, "sign", "--key", prefix+".key.pem", data)
	os.Remove(data + ".jws.new")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	err := runSign(ctx, []string{"--key", prefix + ".key.pem", "--out", data + ".jws.new", data}, &out, &errb)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("runSign with cancelled context = %v; want context.Canceled", err)
	}
	if _, statErr := os.Stat(data + ".jws.new"); statErr == nil {
		t.Error("cancelled sign wrote a JWS")
	}
	err = runVerify(ctx, []string{"--public-key", prefix + ".pub.pem", data}, &out, &errb)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("runVerify with cancelled context = %v; want context.Canceled", err)
	}
}

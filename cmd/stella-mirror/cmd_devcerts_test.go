package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDevCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	out := mustRun(t, "dev-certs", "--out", dir, "--site", "primary=mirror-primary.lab,127.0.0.1", "--site", "community=mirror-community.lab", "--days", "30")
	if !strings.Contains(out, "(new;") {
		t.Errorf("first run does not report a new CA: %q", out)
	}
	caPEM := []byte(readString(t, filepath.Join(dir, "ca.pem")))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	modes := map[string]os.FileMode{"ca.pem": 0o644, "ca.key.pem": 0o600, "primary.crt": 0o644, "primary.key": 0o600, "community.crt": 0o644, "community.key": 0o600}
	for name, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	check := func(t *testing.T, site, host string, days int) *x509.Certificate {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, site+".crt"), filepath.Join(dir, site+".key"))
		if err != nil {
			t.Fatalf("%s: certificate and key do not pair: %v", site, err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool}); err != nil {
			t.Fatalf("%s for %s: %v", site, host, err)
		}
		if d := time.Until(leaf.NotAfter); d > time.Duration(days+1)*24*time.Hour || d < time.Duration(days-1)*24*time.Hour {
			t.Errorf("%s valid until %s, want ~%d days", site, leaf.NotAfter, days)
		}
		return leaf
	}
	p := check(t, "primary", "mirror-primary.lab", 30)
	check(t, "primary", "127.0.0.1", 30)
	check(t, "community", "mirror-community.lab", 30)
	if _, err := p.Verify(x509.VerifyOptions{DNSName: "mirror-community.lab", Roots: pool}); err == nil {
		t.Error("primary's certificate covers community's host")
	}

	// A second run reuses the CA: clients keep trusting it.
	out = mustRun(t, "dev-certs", "--out", dir, "--site", "primary=mirror-primary.lab")
	if !strings.Contains(out, "(reused;") {
		t.Errorf("second run does not reuse the CA: %q", out)
	}
	if got := readString(t, filepath.Join(dir, "ca.pem")); got != string(caPEM) {
		t.Error("ca.pem changed on the second run")
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		t.Fatal("ca.pem")
	}
	check(t, "primary", "mirror-primary.lab", 90)
}

func TestDevCertsDefaultsAndErrors(t *testing.T) {
	dir := t.TempDir()
	out := mustRun(t, "dev-certs", "--out", dir)
	for _, want := range []string{"mirror-primary.localhost", "mirror-community.localhost"} {
		if !strings.Contains(out, want) {
			t.Errorf("default sites: output lacks %s: %q", want, out)
		}
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no host", []string{"--site", "primary="}, "malformed host"},
		{"bad name", []string{"--site", "Primary=x.lab"}, "NAME=HOST"},
		{"twice", []string{"--site", "a=x.lab", "--site", "a=y.lab"}, "given twice"},
		{"days", []string{"--days", "0"}, "--days 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"dev-certs", "--out", dir}, tt.args...)...)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q lacks %q", code, errOut, tt.want)
			}
		})
	}
}

// TestDevCertsRenewalKeepsModes: a renewal keeps the modes an operator gave
// the site's files, so the systemd layout (root:stella-mirror 0640, read by
// the gateway through its group) stays readable after a rotation; a key
// never becomes readable by others, and new files get 0600/0644.
func TestDevCertsRenewalKeepsModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	mustRun(t, "dev-certs", "--out", dir, "--site", "primary=mirror-primary.lab", "--site", "community=mirror-community.lab")
	for name, mode := range map[string]os.FileMode{"primary.key": 0o640, "primary.crt": 0o640, "community.key": 0o604} {
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "dev-certs", "--out", dir, "--site", "primary=mirror-primary.lab", "--site", "community=mirror-community.lab", "--site", "third=mirror-third.lab")
	for name, want := range map[string]os.FileMode{
		"primary.key": 0o640, "primary.crt": 0o640, // kept: group-readable for the service
		"community.key": 0o600, "community.crt": 0o644, // a key loses "others"
		"third.key": 0o600, "third.crt": 0o644, // new files
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("after renewal %s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
}

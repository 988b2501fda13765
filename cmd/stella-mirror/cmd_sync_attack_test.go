package main

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSyncMalformedSourceIsConfigError: a source URL that cannot be right
// whatever the network does (no bucket, no host, http:// to a remote host)
// is an invalid configuration: exit status 2 as documented ("bad value"),
// and --check-config says so instead of "configuration OK".
func TestSyncMalformedSourceIsConfigError(t *testing.T) {
	pub := filepath.Join(t.TempDir(), "k.pem") // never read: the run stops at the configuration
	for _, src := range []string{"s3://", "s3:///prefix", "https://[::1", "https://", "http://mirror.example.org/"} {
		for _, check := range []bool{false, true} {
			args := []string{"sync", "--source", src, "--dest", filepath.Join(t.TempDir(), "root"), "--public-key", pub}
			if check {
				args = append(args, "--check-config")
			}
			var out, errb bytes.Buffer
			code := run(args, &out, &errb)
			if code != exitConfig {
				t.Errorf("%q (check-config %v): exit %d, want %d\nstdout: %s\nstderr: %s", src, check, code, exitConfig, out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), src) {
				t.Errorf("%q: the message does not name the bad value: %s", src, errb.String())
			}
		}
	}
}

// TestSyncMetricsTextfileIsAFolder: --metrics-textfile naming an existing
// folder can never be written (the rename onto it fails on every run, and
// monitoring never sees an outcome): an invalid configuration, exit 2,
// naming the value — not a published run with an error in the log.
func TestSyncMetricsTextfileIsAFolder(t *testing.T) {
	folder := t.TempDir()
	for _, check := range []bool{false, true} {
		args := []string{"sync", "--source", t.TempDir(), "--dest", filepath.Join(t.TempDir(), "root"),
			"--public-key", filepath.Join(t.TempDir(), "k.pem"), "--metrics-textfile", folder}
		if check {
			args = append(args, "--check-config")
		}
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitConfig {
			t.Errorf("check-config %v: exit %d, want %d\nstdout: %s\nstderr: %s", check, code, exitConfig, out.String(), errb.String())
		}
		if !strings.Contains(errb.String(), folder) {
			t.Errorf("the message does not name %s: %s", folder, errb.String())
		}
	}
}

// TestSyncKeyRegistryAndTimeoutChecked: the key registry that verifies
// every export is never fetched over plain HTTP across a network, and a
// negative timeout is an error, not silently the default (exit 2 naming
// the value); http:// to a loopback registry stays allowed.
func TestSyncKeyRegistryAndTimeoutChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		bad  string // "" when valid
	}{
		{[]string{"--jwks-url", "http://keys.example.org/jwks"}, "http://keys.example.org/jwks"},
		{[]string{"--jwks-url", "http://127.0.0.1:9/jwks"}, ""},
		{[]string{"--jwks-url", "http://authority.localhost:9/jwks"}, ""},
		{[]string{"--jwks-url", "https://keys.example.org/jwks"}, ""},
		{[]string{"--http-timeout", "-1s"}, "-1s"},
	} {
		args := append([]string{"sync", "--source", t.TempDir(), "--dest", filepath.Join(t.TempDir(), "root"),
			"--public-key", filepath.Join(t.TempDir(), "k.pem"), "--check-config"}, tc.args...)
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		switch {
		case tc.bad != "" && code != exitConfig:
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, code, exitConfig, errb.String())
		case tc.bad != "" && !strings.Contains(errb.String(), tc.bad):
			t.Errorf("%v: the message does not name %q: %s", tc.args, tc.bad, errb.String())
		case tc.bad == "" && code != 0:
			t.Errorf("%v: exit %d, want 0\n%s", tc.args, code, errb.String())
		}
	}
}

// TestJWKSClientRefusesDowngrade: the key registry's client does not
// follow a redirect from https:// down to http:// (the keys that verify
// every export would travel in clear text).
func TestJWKSClientRefusesDowngrade(t *testing.T) {
	srv := httptest.NewTLSServer(http.RedirectHandler("http://keys.example.org/jwks", http.StatusFound))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := jwksClient(ca, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(srv.URL + "/jwks")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("followed the redirect to http:// (status %d)", resp.StatusCode)
	}
	if !strings.Contains(err.Error(), "refusing the redirect") {
		t.Fatalf("error %v, want the redirect refused", err)
	}
}

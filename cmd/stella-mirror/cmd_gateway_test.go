package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/devcert"
	"github.com/stella-ops/stella-mirror/internal/testenv"
)

func TestGatewayHelpListsKeys(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"gateway", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"GATEWAY__SITES__{n}__HTPASSWDFILE", "GATEWAY__ACME__DIRECTORYURL", "GATEWAY__AUTHORITY__CLIENTSECRETFILE",
		"GATEWAY__TRUSTEDPROXIES__{n}", "Example", "--check-config", "kill -HUP",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--help (stdout) lacks %q", want)
		}
	}
}

func TestGatewayCheckConfig(t *testing.T) {
	testenv.Tool(t, "htpasswd", "apache2-utils")
	dir := t.TempDir()
	ca, err := devcert.NewCA("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ca.Issue(devcert.LeafOptions{Names: []string{"mirror.example"}})
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	leaf.WriteFiles(cert, key)
	ht := filepath.Join(dir, "htpasswd")
	if out, err := exec.Command("htpasswd", "-c", "-m", "-b", ht, "old", "pw").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	site := map[string]string{
		"GATEWAY__SITES__0__HOSTS__0": "mirror.example", "GATEWAY__SITES__0__DOMAINS__0": "primary",
		"GATEWAY__SITES__0__CERTFILE": cert, "GATEWAY__SITES__0__KEYFILE": key, "GATEWAY__SITES__0__HTPASSWDFILE": ht,
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range site {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		name        string
		env         map[string]string
		code        int
		out, errOut string
	}{
		{"apr1 is an error", site, 1, "", `loading htpasswd ` + ht + `: line 1: user "old" uses apr1, not bcrypt`},
		{"apr1 warns with GATEWAY__ALLOWLEGACYHASHES", with(map[string]string{"GATEWAY__ALLOWLEGACYHASHES": "true"}), 0, `warning: ` + ht + `: line 1: user "old" uses apr1`, ""},
		{"no sites", nil, 1, "", "GATEWAY__SITES: no sites configured"},
		{"malformed names the key", with(map[string]string{"GATEWAY__SITES__0__ACME": "maybe"}), 1, "", `GATEWAY__SITES__0__ACME: invalid boolean "maybe"`},
		{"certificate not covering the host", with(map[string]string{"GATEWAY__SITES__0__HOSTS__0": "other.example"}), 1, "", "does not cover other.example"},
		{"missing htpasswd", with(map[string]string{"GATEWAY__SITES__0__HTPASSWDFILE": filepath.Join(dir, "nope")}), 1, "", "GATEWAY__SITES__0__HTPASSWDFILE: loading htpasswd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range os.Environ() {
				if strings.HasPrefix(kv, "GATEWAY__") {
					k, _, _ := strings.Cut(kv, "=")
					t.Setenv(k, "")
					os.Unsetenv(k)
				}
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run([]string{"gateway", "--check-config"}, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.errOut) {
				t.Errorf("stdout %q (want %q), stderr %q (want %q)", stdout.String(), tc.out, stderr.String(), tc.errOut)
			}
		})
	}
}

package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestSyncUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no source", []string{"sync", "--dest", "/tmp/x", "--public-key", "k.pem"}, nil, "SYNC__SOURCE (--source): required"},
		{"no key", []string{"sync", "--source", "/src", "--dest", "/tmp/x"}, nil, "no verification key"},
		{"bad domain", []string{"sync", "--source", "/src", "--dest", "/d", "--public-key", "k", "--domain", "Bad_Domain"}, nil, `"Bad_Domain" is not a valid domain id`},
		{"bad env", []string{"sync", "--check-config"}, map[string]string{"CONCELIER__SOURCES__STELLAOPSMIRROR__BASEADRESS": "x"}, "CONCELIER__SOURCES__STELLAOPSMIRROR__BASEADRESS: unknown key"},
		{"bad timeout", []string{"sync", "--check-config"}, map[string]string{"CONCELIER__SOURCES__STELLAOPSMIRROR__HTTPTIMEOUT": "30"}, "CONCELIER__SOURCES__STELLAOPSMIRROR__HTTPTIMEOUT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.want)
			}
		})
	}
}

func TestSyncRunbookEnvAccepted(t *testing.T) {
	for k, v := range map[string]string{
		"CONCELIER__SOURCES__STELLAOPSMIRROR__BASEADDRESS":              "https://mirror.example.org",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__DOMAINID":                 "primary",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__HTTPTIMEOUT":              "00:00:30",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__ENABLED":       "true",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__KEYID":         "mirror-2026",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__PROVIDER":      "default",
		"CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__PUBLICKEYPATH": "/etc/stella/mirror.pub.pem",
		"CONCELIER__MIRROR__ENABLED":                                    "true", // the origin's, ignored here
		"SYNC__DEST":                                                    "/srv/exports",
	} {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"sync", "--check-config"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "configuration OK") {
		t.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
}

func TestSyncHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"sync", "--help"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"s3://bucket/prefix", "rsync://", "Exit status", "SYNC__S3__ENDPOINT", "CONCELIER__SOURCES__STELLAOPSMIRROR__SIGNATURE__KEYID", "Examples:"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestIsRemoteShellPath(t *testing.T) {
	for s, want := range map[string]bool{
		"host:/srv/exports": true, "user@host:exports": true, "/srv/exports": false, "./a:b": false, "dir/a:b": false,
	} {
		if got := isRemoteShellPath(s); got != want {
			t.Errorf("%q: %v, want %v", s, got, want)
		}
	}
}

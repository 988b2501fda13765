package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
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

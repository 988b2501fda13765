package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestEveryHelpGoesToStdout: `stella-mirror CMD --help` (and -h, and with
// other flags before it) prints its usage on stdout, nothing on stderr, and
// exits 0, like the top-level help.
func TestEveryHelpGoesToStdout(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			if code != 0 || stderr.Len() != 0 || !strings.Contains(stdout.String(), "Usage: stella-mirror "+c.name) {
				t.Errorf("%v: exit %d, stderr %q, stdout starts %.80q", args, code, stderr.String(), stdout.String())
			}
		}
	}
	var stdout, stderr bytes.Buffer
	run([]string{"demo", "--dir", "x", "--help"}, &stdout, &stderr)
	for _, want := range []string{"--port-base", "--origin-admin-listen", "--gateway-admin-listen"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("demo --help lacks %q", want)
		}
	}
	stdout.Reset()
	run([]string{"--help"}, &stdout, &stderr)
	if !strings.Contains(stdout.String(), "origin + TLS gateway on localhost") {
		t.Errorf("top-level help does not say the demo runs the gateway:\n%s", stdout.String())
	}
}

// TestHelpRoutedByOutcome: the usage goes to stdout (exit 0) exactly when
// help was asked for and parsed as such; a mistake on a command line that
// also holds "--help" (a bad flag before it, or "--help" taken as a flag's
// value) is reported on stderr with exit 2, and stdout stays empty.
func TestHelpRoutedByOutcome(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		code         int
		stdout, errs string // substrings; "" means empty
	}{
		{[]string{"origin", "--help=true"}, 0, "Usage: stella-mirror origin", ""},
		{[]string{"verify", "--public-key", "k.pem", "file.json", "--help"}, 0, "Usage: stella-mirror verify", ""},
		{[]string{"origin", "--bogus", "--help"}, 2, "", "flag provided but not defined: -bogus"},
		{[]string{"healthcheck", "--url", "--help"}, 2, "", `--url "--help"`},
		{[]string{"sign", "--key", "--help"}, 2, "", "missing FILE"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.args, code, tc.code)
		}
		for _, c := range []struct {
			name, got, want string
		}{{"stdout", stdout.String(), tc.stdout}, {"stderr", stderr.String(), tc.errs}} {
			if (c.want == "" && c.got != "") || !strings.Contains(c.got, c.want) {
				t.Errorf("%v: %s %.200q, want %q", tc.args, c.name, c.got, c.want)
			}
		}
	}
}

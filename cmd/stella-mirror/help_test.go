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

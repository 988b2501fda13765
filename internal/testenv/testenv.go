// Package testenv is for tests that need something of the machine: a
// tool, a privilege, a container engine, a kernel feature. Outside CI a
// test that cannot run here is skipped, loudly (the message starts with
// "SKIPPING"); under CI (the environment variable CI set to anything but
// "" or "false", as .ci/run does) it fails with the same reason, so a CI
// machine that lacks what the suite needs can never pass by skipping.
//
// It is for tests only.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI set, and not "false").
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Missing ends t because something it needs is missing: Fatal under CI,
// Skip otherwise. The message says what is missing and, ideally, how to
// get it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("cannot run under CI: %s", msg)
	}
	t.Skipf("SKIPPING (would FAIL under CI=true): %s", msg)
}

// Tool returns the path of the program name, or ends t (Missing) saying
// which Debian package provides it (scripts/test-deps installs them all).
func Tool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s is not installed (apt-get install %s; scripts/test-deps installs it)", name, debianPackage)
	}
	return p
}

// Root ends t (Missing) unless the test runs as root; why says what needs it.
func Root(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "%s needs root", why)
	}
}

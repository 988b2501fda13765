package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMissingFailsUnderCI runs this test binary again with and without CI
// and checks that Missing fails the test under CI and skips it otherwise,
// naming what is missing either way.
func TestMissingFailsUnderCI(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		Tool(t, "stella-mirror-no-such-tool", "no-such-package")
		t.Fatal("Tool returned for a missing program")
	}
	for _, tc := range []struct {
		ci       string
		fail     bool
		wantText string
	}{
		{"true", true, "--- FAIL"},
		{"1", true, "--- FAIL"},
		{"", false, "--- SKIP"},
		{"false", false, "--- SKIP"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingFailsUnderCI$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if (err != nil) != tc.fail {
			t.Errorf("CI=%q: exit error %v, want failure %v\n%s", tc.ci, err, tc.fail, out)
		}
		for _, want := range []string{tc.wantText, "stella-mirror-no-such-tool is not installed", "apt-get install no-such-package"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("CI=%q: output lacks %q:\n%s", tc.ci, want, out)
			}
		}
	}
}

func TestToolFound(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", strings.TrimSuffix(exe, "/"+baseName(exe)))
	if got := Tool(t, baseName(exe), "x"); got != exe {
		t.Fatalf("Tool = %q, want %q", got, exe)
	}
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	htpasswd "github.com/tg123/go-htpasswd"

	"github.com/stella-ops/stella-mirror/gateway/basicauth"
	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// apacheVerify runs Apache's `htpasswd -vb` and reports whether it accepts
// user/password in file.
func apacheVerify(t *testing.T, file, user, password string) bool {
	t.Helper()
	requireBinary(t, "htpasswd")
	out, err := exec.Command("htpasswd", "-vb", file, user, password).CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); ok {
			return false
		}
		t.Fatalf("htpasswd -vb: %v: %s", err, out)
	}
	return strings.Contains(string(out), "correct")
}

// requireBinary skips outside CI, fails in CI, when tool is missing.
func requireBinary(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		testenv.Missing(t, "%s is not installed (scripts/test-deps installs it)", tool)
	}
}

// goHtpasswdMatch loads file with go-htpasswd (the gateway's parser) and
// checks user/password.
func goHtpasswdMatch(t *testing.T, file, user, password string) bool {
	t.Helper()
	// go-htpasswd reports comment lines as bad lines and skips them; the
	// gateway's loader accepts comments, so only other reports fail.
	f, err := htpasswd.New(file, htpasswd.DefaultSystems, func(err error) {
		if !strings.Contains(err.Error(), ": #") {
			t.Errorf("go-htpasswd: bad line: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("go-htpasswd: %v", err)
	}
	return f.Match(user, password)
}

func TestPasswdAddVerifyRotateDelete(t *testing.T) {
	dir := t.TempDir()
	ht := filepath.Join(dir, "primary.htpasswd")
	pwA := filepath.Join(dir, "a.pw")
	writeFile(t, pwA, "first secret\n")

	out := mustRun(t, "passwd", "--file", ht, "--user", "alice", "--password-file", pwA, "--cost", "5")
	if !strings.Contains(out, "added user alice") || !strings.Contains(out, "mode 0640") {
		t.Fatalf("output %q", out)
	}
	fi, err := os.Stat(ht)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("new file mode %v, want 0640", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(ht)
	if !regexp.MustCompile(`^alice:\$2y\$05\$[./A-Za-z0-9]{53}\n$`).Match(data) {
		t.Fatalf("file content %q is not one bcrypt line", data)
	}
	if !apacheVerify(t, ht, "alice", "first secret") {
		t.Error("htpasswd -vb rejects the password passwd wrote")
	}
	if apacheVerify(t, ht, "alice", "first secret\n") || apacheVerify(t, ht, "alice", "wrong") {
		t.Error("htpasswd -vb accepts a wrong password")
	}
	if !goHtpasswdMatch(t, ht, "alice", "first secret") {
		t.Error("go-htpasswd rejects the password passwd wrote")
	}

	// A second user from stdin, generated passwords, a comment kept.
	if err := os.WriteFile(ht, append([]byte("# managed by passwd\n"), data...), 0o640); err != nil {
		t.Fatal(err)
	}
	passwdStdin = strings.NewReader("bob's password\r\n")
	t.Cleanup(func() { passwdStdin = os.Stdin })
	mustRun(t, "passwd", "--file", ht, "--user", "bob", "--password-file", "-", "--cost", "5")
	genOut := filepath.Join(dir, "carol.password")
	out = mustRun(t, "passwd", "--file", ht, "--user", "carol", "--generate", "24", "--password-out", genOut, "--cost", "5")
	if strings.Contains(out, "password: ") {
		t.Errorf("generated password printed although --password-out was given: %q", out)
	}
	gen, err := os.ReadFile(genOut)
	if err != nil {
		t.Fatal(err)
	}
	carolPW := strings.TrimSuffix(string(gen), "\n")
	if len(carolPW) != 24 {
		t.Fatalf("generated password %d characters, want 24", len(carolPW))
	}
	if fi, _ := os.Stat(genOut); fi.Mode().Perm() != 0o600 {
		t.Errorf("--password-out mode %v, want 0600", fi.Mode().Perm())
	}
	out = mustRun(t, "passwd", "--file", ht, "--user", "dave", "--generate", "16", "--cost", "5")
	m := regexp.MustCompile(`(?m)^password: (\S{16})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("generated password not printed: %q", out)
	}
	for user, pw := range map[string]string{"alice": "first secret", "bob": "bob's password", "carol": carolPW, "dave": m[1]} {
		if !apacheVerify(t, ht, user, pw) {
			t.Errorf("htpasswd -vb rejects %s", user)
		}
		if !goHtpasswdMatch(t, ht, user, pw) {
			t.Errorf("go-htpasswd rejects %s", user)
		}
	}
	tab, err := basicauth.LoadFile(ht, basicauth.LoadOptions{})
	if err != nil {
		t.Fatalf("the gateway's loader refuses the file: %v", err)
	}
	if tab.Len() != 4 || len(tab.Warnings) != 0 {
		t.Errorf("gateway table: %d users, warnings %v", tab.Len(), tab.Warnings)
	}

	// Rotate alice: the old password stops working, the comment and the
	// order stay.
	pwB := filepath.Join(dir, "b.pw")
	writeFile(t, pwB, "second secret")
	out = mustRun(t, "passwd", "--file", ht, "--user", "alice", "--rotate", "--password-file", pwB, "--cost", "5")
	if !strings.Contains(out, "changed the password of alice") {
		t.Errorf("output %q", out)
	}
	if apacheVerify(t, ht, "alice", "first secret") || !apacheVerify(t, ht, "alice", "second secret") {
		t.Error("rotation did not replace alice's password")
	}
	lines := strings.Split(strings.TrimSpace(readString(t, ht)), "\n")
	if len(lines) != 5 || lines[0] != "# managed by passwd" || !strings.HasPrefix(lines[1], "alice:") || !strings.HasPrefix(lines[4], "dave:") {
		t.Errorf("lines after rotate: %q", lines)
	}

	// Delete bob; the others keep working.
	mustRun(t, "passwd", "--file", ht, "--user", "bob", "--delete")
	if apacheVerify(t, ht, "bob", "bob's password") {
		t.Error("bob still verifies after --delete")
	}
	if !apacheVerify(t, ht, "carol", carolPW) {
		t.Error("carol lost by deleting bob")
	}
	if fi, _ := os.Stat(ht); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after rewrite %v, want 0640 kept", fi.Mode().Perm())
	}
	// No temporary files left behind.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPasswdModeKeptAndSet(t *testing.T) {
	dir := t.TempDir()
	ht := filepath.Join(dir, "x.htpasswd")
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, "pw1")
	mustRun(t, "passwd", "--file", ht, "--user", "a", "--password-file", pw, "--mode", "0600", "--cost", "4")
	mustRun(t, "passwd", "--file", ht, "--user", "b", "--password-file", pw, "--cost", "4")
	if fi, _ := os.Stat(ht); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (set by --mode, kept by the next write)", fi.Mode().Perm())
	}
}

func TestPasswdErrors(t *testing.T) {
	dir := t.TempDir()
	ht := filepath.Join(dir, "x.htpasswd")
	pw := filepath.Join(dir, "pw")
	writeFile(t, pw, "pw1")
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, "\n")
	long := filepath.Join(dir, "long")
	writeFile(t, long, strings.Repeat("x", 73))
	mustRun(t, "passwd", "--file", ht, "--user", "only", "--password-file", pw, "--cost", "4")
	before := readString(t, ht)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no password source", []string{"--file", ht, "--user", "a"}, 2, "never taken from the command line"},
		{"two password sources", []string{"--file", ht, "--user", "a", "--password-file", pw, "--generate", "20"}, 2, "exactly one"},
		{"positional password", []string{"--file", ht, "--user", "a", "secret"}, 2, `unexpected argument "secret"`},
		{"colon in user", []string{"--file", ht, "--user", "a:b", "--password-file", pw}, 2, "contains ':'"},
		{"world-readable mode", []string{"--file", ht, "--user", "a", "--password-file", pw, "--mode", "0644"}, 2, "--mode 0644"},
		{"empty password", []string{"--file", ht, "--user", "a", "--password-file", empty}, 1, "password is empty"},
		{"too long", []string{"--file", ht, "--user", "a", "--password-file", long}, 1, "at most 72"},
		{"missing password file", []string{"--file", ht, "--user", "a", "--password-file", filepath.Join(dir, "nope")}, 1, "--password-file"},
		{"rotate absent user", []string{"--file", ht, "--user", "ghost", "--rotate", "--password-file", pw}, 1, `no such user "ghost"`},
		{"delete absent user", []string{"--file", ht, "--user", "ghost", "--delete"}, 1, `no such user "ghost"`},
		{"delete last user", []string{"--file", ht, "--user", "only", "--delete"}, 1, "the last user"},
		{"short generated", []string{"--file", ht, "--user", "a", "--generate", "8"}, 1, "want 12 to 72"},
		{"cost", []string{"--file", ht, "--user", "a", "--password-file", pw, "--cost", "3"}, 2, "--cost 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, append([]string{"passwd"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d (want %d), stderr %q lacks %q", code, tt.code, errOut, tt.want)
			}
			if got := readString(t, ht); got != before {
				t.Fatalf("a failed run changed the file:\n%s", got)
			}
		})
	}
}

func TestPasswdHelp(t *testing.T) {
	code, errOut, _ := runCLI(t, "passwd", "--help") // help goes to stdout
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"Usage: stella-mirror passwd", "Examples:", "htpasswd -vb", "--rotate", "never comes from the command line"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

package htpasswdfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

func TestValidateUser(t *testing.T) {
	tests := []struct {
		user string
		ok   bool
	}{
		{"alice", true},
		{"svc.scanner-01@example.org", true},
		{"", false},
		{"a:b", false},
		{"#root", false},
		{" alice", false},
		{"al\x01ice", false},
		{"al ice", false},
		{"al\tice", false},
		{"al\x7fice", false},
		{"jörg", true},
		{strings.Repeat("u", 256), false},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			if err := ValidateUser(tt.user); (err == nil) != tt.ok {
				t.Fatalf("ValidateUser(%q) = %v, want ok=%v", tt.user, err, tt.ok)
			}
		})
	}
}

func TestSetKeepsOtherLinesAndDropsDuplicates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.htpasswd")
	in := "# comment\r\nalice:$2y$05$old\nbob:$apr1$x$y\nalice:$2y$05$dup\n\n"
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.Users(), ","); got != "alice,bob,alice" {
		t.Fatalf("users %q", got)
	}
	if err := f.Set("alice", []byte("pw"), bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := f.Write(0); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 4 || lines[0] != "# comment" || !strings.HasPrefix(lines[1], "alice:$2y$04$") || lines[2] != "bob:$apr1$x$y" || lines[3] != "" {
		t.Fatalf("lines %q", lines)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(strings.TrimPrefix(lines[1], "alice:")), []byte("pw")); err != nil {
		t.Fatalf("hash does not verify: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the existing 0600", fi.Mode().Perm())
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.htpasswd")
	if err := os.WriteFile(path, []byte("alice:$2y$05$x\nnot a user line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("Read = %v, want an error naming line 2", err)
	}
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		pw, err := Generate(24)
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != 24 || strings.Trim(pw, passwordAlphabet) != "" || seen[pw] {
			t.Fatalf("Generate(24) = %q", pw)
		}
		seen[pw] = true
	}
	for _, n := range []int{0, 11, 73} {
		if _, err := Generate(n); err == nil {
			t.Errorf("Generate(%d) accepted", n)
		}
	}
}

func TestWriteKeepsOwner(t *testing.T) {
	testenv.Root(t, "giving a file to another owner")
	path := filepath.Join(t.TempDir(), "f.htpasswd")
	if err := os.WriteFile(path, []byte("alice:$2y$04$x\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Set("bob", []byte("pw"), bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := f.Write(0); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 65532 || st.Gid != 65532 || fi.Mode().Perm() != 0o640 {
		t.Fatalf("after rewrite: %d:%d %v, want 65532:65532 0640", st.Uid, st.Gid, fi.Mode().Perm())
	}
}

func TestValidatePassword(t *testing.T) {
	tests := []struct {
		pw string
		ok bool
	}{
		{"correct horse battery staple", true},
		{"pässwörd", true},
		{"", false},
		{strings.Repeat("p", 73), false},
		{strings.Repeat("p", 72), true},
		{"p\rw", false},
		{"p\nw", false},
		{"p\x00w", false},
		{"p\tw", false},
		{"p\x7fw", false},
	}
	for _, tt := range tests {
		if err := ValidatePassword([]byte(tt.pw)); (err == nil) != tt.ok {
			t.Errorf("ValidatePassword(%q) = %v, want ok=%v", tt.pw, err, tt.ok)
		}
	}
}

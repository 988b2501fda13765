package basicauth

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// htpasswdCmd runs the real htpasswd(1) with args.
func htpasswdCmd(t *testing.T, args ...string) {
	t.Helper()
	testenv.Tool(t, "htpasswd", "apache2-utils")
	out, err := exec.Command("htpasswd", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("htpasswd %v: %v\n%s", args, err, out)
	}
}

func TestSchemes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	htpasswdCmd(t, "-c", "-B", "-b", path, "bcrypt-user", "pw-b")
	htpasswdCmd(t, "-m", "-b", path, "apr1-user", "pw-m")
	htpasswdCmd(t, "-s", "-b", path, "sha-user", "pw-s")
	if _, err := LoadFile(path, LoadOptions{}); err == nil ||
		!strings.Contains(err.Error(), path) ||
		!strings.Contains(err.Error(), `line 2: user "apr1-user" uses apr1, not bcrypt`) ||
		!strings.Contains(err.Error(), `line 3: user "sha-user" uses sha, not bcrypt`) ||
		!strings.Contains(err.Error(), "GATEWAY__ALLOWLEGACYHASHES") {
		t.Fatalf("legacy hashes without the switch: err = %v, want one naming %s, line and user of each", err, path)
	}
	if _, err := Open(path, Options{}); err == nil {
		t.Fatal("Open accepted legacy hashes without AllowLegacy")
	}
	tbl, err := LoadFile(path, LoadOptions{AllowLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Len() != 3 {
		t.Fatalf("Len = %d, want 3", tbl.Len())
	}
	if len(tbl.Warnings) != 2 || !strings.Contains(strings.Join(tbl.Warnings, "\n"), `"apr1-user" uses apr1`) ||
		!strings.Contains(strings.Join(tbl.Warnings, "\n"), `"sha-user" uses sha`) {
		t.Fatalf("warnings = %q, want one for apr1-user and one for sha-user", tbl.Warnings)
	}
	f, err := Open(path, Options{AllowLegacy: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, pass string
		ok         bool
	}{
		{"bcrypt-user", "pw-b", true},
		{"apr1-user", "pw-m", true},
		{"sha-user", "pw-s", true},
		{"bcrypt-user", "wrong", false},
		{"bcrypt-user", "", false},
		{"nobody", "pw-b", false},
		{"", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.user+"/"+tt.pass, func(t *testing.T) {
			if got := f.Authenticate(tt.user, tt.pass); got != tt.ok {
				t.Fatalf("Authenticate = %v, want %v", got, tt.ok)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good := "$2y$05$abcdefghijklmnopqrstuu5Fx6Rr2wGZ0Gp7Vn0l3O2oQoDrV9f6K" // shape only
	tests := []struct{ name, content, want string }{
		{"no colon", "alice\n", "line 1: not user:hash"},
		{"empty file", "", "no users"},
		{"only comments", "# nobody\n\n", "no users"},
		{"empty user", ":" + good + "\n", "line 1: empty user name"},
		{"empty hash", "alice:\n", `line 1: user "alice" has an empty hash`},
		{"plain text", "alice:secret\n", `line 1: user "alice": unsupported hash`},
		{"crypt", "alice:abJnggxhB/yLQ\n", `line 1: user "alice": unsupported hash`},
		{"broken bcrypt", "alice:$2y$05$short\n", `line 1: user "alice": malformed bcrypt hash`},
		{"duplicate", "# c\n\nalice:" + good + "\nalice:" + good + "\n", `line 4: user "alice" appears twice`},
		{"sha without the switch", "alice:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n", `line 1: user "alice" uses sha, not bcrypt`},
		{"apr1 without the switch", "bob:$apr1$qUqP5cyx$m6YcTAhz05Hph5gvu9M.1/\n", `line 1: user "bob" uses apr1, not bcrypt`},
		{"CR in the user", "al\rice:" + good + "\n", `line 1: user "al?ice" contains a control character`},
		{"NUL in the user", "al\x00ice:" + good + "\n", `line 1: user "al?ice" contains a control character`},
		{"long user", strings.Repeat("u", 300) + ":" + good + "\n", `line 1: user "` + strings.Repeat("u", 64) + `…" is 300 bytes`},
		{"control in the hash", "alice:" + good[:20] + "\x00" + good[21:] + "\n", `line 1: user "alice": the hash contains a control character`},
		{"cost too high", "alice:$2y$18$abcdefghijklmnopqrstuu5Fx6Rr2wGZ0Gp7Vn0l3O2oQoDrV9f6K\n", `line 1: user "alice": bcrypt cost 18 is more than 17`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.content), "x", LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "qUqP5") {
				t.Fatalf("error echoes a hash: %v", err)
			}
		})
	}
}

func TestReloadKeepsLastGoodAndClearsCache(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	htpasswdCmd(t, "-c", "-B", "-b", path, "alice", "a-pass")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var reloads []error
	f, err := Open(path, Options{AllowLegacy: true, Now: func() time.Time { return now }, OnReload: func(err error) { reloads = append(reloads, err) }})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Authenticate("alice", "a-pass") {
		t.Fatal("alice refused")
	}
	if f.cache.Len() != 1 {
		t.Fatalf("cache holds %d entries after a success, want 1", f.cache.Len())
	}
	for k := range f.cache.m {
		if strings.Contains(string(k[:]), "a-pass") {
			t.Fatal("cache key holds the password")
		}
	}

	// Unchanged file: nothing happens.
	if err := f.Reload(); err != nil || len(reloads) != 0 {
		t.Fatalf("unchanged reload: err %v, reports %d", err, len(reloads))
	}

	// Add a user with htpasswd -B: works after reload.
	htpasswdCmd(t, "-B", "-b", path, "bob", "b-pass")
	if f.Authenticate("bob", "b-pass") {
		t.Fatal("bob accepted before reload")
	}
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if !f.Authenticate("bob", "b-pass") {
		t.Fatal("bob refused after reload")
	}

	// A broken file keeps the last good table.
	good, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append(good, []byte("carol:plaintext\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("broken reload err = %v, want it to name %s line 3", err, path)
	}
	if !f.Authenticate("alice", "a-pass") || !f.Authenticate("bob", "b-pass") {
		t.Fatal("a broken file changed the users in service")
	}

	// Removing alice (valid file) stops her at once despite the cache.
	htpasswdCmd(t, "-c", "-B", "-b", path, "bob", "b-pass")
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if f.Authenticate("alice", "a-pass") {
		t.Fatal("removed user still accepted (stale credential cache)")
	}
	// Changing bob's password: the old one stops working.
	htpasswdCmd(t, "-B", "-b", path, "bob", "new-pass")
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if f.Authenticate("bob", "b-pass") || !f.Authenticate("bob", "new-pass") {
		t.Fatal("password change not in effect")
	}
	if len(reloads) != 4 || reloads[1] == nil {
		t.Fatalf("reload reports = %v, want 4 with the second failing", reloads)
	}

	// The cache expires after its TTL.
	now = now.Add(DefaultCacheTTL + time.Second)
	if hit, _ := f.cache.get(f.cache.key("bob", "new-pass"), now); hit {
		t.Fatal("expired cache entry still served")
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCredCache(3)
	exp := time.Now().Add(time.Hour)
	for i := range 10 {
		c.put(c.key("u", string(rune('a'+i))), exp, 0)
	}
	if c.Len() != 3 {
		t.Fatalf("cache holds %d, want at most 3", c.Len())
	}
	c.clear()
	c.put(c.key("u", "x"), exp, 0) // verified before the clear: dropped
	if c.Len() != 0 {
		t.Fatal("an entry verified before a clear was stored")
	}
}

package htpasswdfile

import (
	"encoding/base64"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/stella-ops/stella-mirror/gateway/basicauth"
)

// FuzzSetIsAcceptedByTheGateway: whatever user and password
// `stella-mirror passwd` accepts (ValidateUser, ValidatePassword) the
// gateway accepts too: the file Set renders parses with the gateway's
// htpasswd parser (legacy hashes off) and holds the user, and the Basic
// credentials of that user and password pass the gateway's ParseBasic
// unchanged. Seeds: f.Add below and testdata/fuzz/FuzzSetIsAcceptedByTheGateway.
func FuzzSetIsAcceptedByTheGateway(f *testing.F) {
	for _, s := range []struct{ user, pw string }{
		{"alice", "pw"}, {"svc.scanner-01@example.org", "correct horse"}, {"al ice", "pw"}, {"al\tice", "pw"},
		{"al\rice", "pw"}, {"alice", "p\rw"}, {"alice", "p\x01w"}, {"alice", "p\tw"}, {"alice", "p\x7fw"},
		{"jörg", "pässwörd"}, {"#root", "pw"}, {"a:b", "pw"}, {"\xff", "\xfe"},
	} {
		f.Add(s.user, []byte(s.pw))
	}
	f.Fuzz(func(t *testing.T, user string, pw []byte) {
		if ValidateUser(user) != nil || ValidatePassword(pw) != nil {
			return
		}
		hf, err := Read(filepath.Join(t.TempDir(), "none"))
		if err != nil {
			t.Fatal(err)
		}
		if err := hf.Set(user, pw, bcrypt.MinCost); err != nil {
			t.Fatalf("Set(%q) after validation: %v", user, err)
		}
		tbl, err := basicauth.Parse(hf.Bytes(), "fuzz", basicauth.LoadOptions{})
		if err != nil {
			t.Fatalf("the gateway refuses the file passwd wrote for %q: %v", user, err)
		}
		if !tbl.Has(user) || tbl.Len() != 1 {
			t.Fatalf("the gateway's table lacks %q", user)
		}
		u, p, err := basicauth.ParseBasic("Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+string(pw))))
		if err != nil || u != user || p != string(pw) {
			t.Fatalf("the gateway refuses the credentials of %q: %q, %q, %v", user, u, p, err)
		}
	})
}

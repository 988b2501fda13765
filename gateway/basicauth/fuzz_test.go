package basicauth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// FuzzParseBasic: ParseBasic never panics; what it accepts has a user
// name of 1..MaxUserLen bytes without ':' and neither user nor password
// holds a control character; an accepted credential encoded again parses
// to the same; a refusal is ErrScheme or ErrMalformed.
// Seeds: f.Add below and testdata/fuzz/FuzzParseBasic.
func FuzzParseBasic(f *testing.F) {
	enc := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, s := range []string{
		enc("alice:pw"), enc("alice:p:w"), enc(":pw"), enc("alice"), enc("al\rice:pw"), enc("al\nice:pw"),
		enc("alice\r\nX-Injected: 1:pw"), enc("al\x00ice:pw"), enc("alice:p\x00w"), enc("jörg:pässwörd"),
		enc("\xff\xfe:\x80"), enc(strings.Repeat("u", 300) + ":" + strings.Repeat("p", 2000)),
		"Basic YWxp\r\n Y2U6cHc=", "Basic YWxp\r\nY2U6cHc=", "basic YWxpY2U6cHc=", "Basic\tYWxpY2U6cHc=",
		"Bearer x", "Basic", "", "Basic ====", "Basic YWxpY2U6cHc", "Basic  YWxpY2U6cHc=  ",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		user, pw, err := ParseBasic(header)
		if err != nil {
			if !errors.Is(err, ErrScheme) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			if user != "" || pw != "" {
				t.Fatalf("a refusal returned %q, %q", user, pw)
			}
			return
		}
		if user == "" || len(user) > MaxUserLen || len(pw) > MaxPasswordLen || strings.Contains(user, ":") {
			t.Fatalf("accepted user %q (%d bytes), password of %d bytes", user, len(user), len(pw))
		}
		for _, s := range []string{user, pw} {
			for i := 0; i < len(s); i++ {
				if s[i] < 0x20 || s[i] == 0x7f {
					t.Fatalf("accepted a control character 0x%02x in %q", s[i], s)
				}
			}
		}
		u2, p2, err := ParseBasic(enc(user + ":" + pw))
		if err != nil || u2 != user || p2 != pw {
			t.Fatalf("round trip of %q:%q gave %q:%q, %v", user, pw, u2, p2, err)
		}
	})
}

// FuzzParseHtpasswd: Parse never panics; an accepted table's users have
// no control characters, white space or ':' in their names; without
// AllowLegacy every user is bcrypt; the accepted lines rendered again
// (user:hash) parse to the same table.
// Seeds: f.Add below and testdata/fuzz/FuzzParseHtpasswd.
func FuzzParseHtpasswd(f *testing.F) {
	const b = "$2y$05$abcdefghijklmnopqrstuu5Fx6Rr2wGZ0Gp7Vn0l3O2oQoDrV9f6K"
	for _, s := range []struct {
		data  string
		allow bool
	}{
		{"alice:" + b + "\n", false},
		{"# comment\n\nalice:" + b + "\r\nbob:" + b + "\n", false},
		{"old:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n", true},
		{"old:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n", false},
		{"m:$apr1$qUqP5cyx$m6YcTAhz05Hph5gvu9M.1/\n", true},
		{"s:{SSHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=\n", true},
		{"al\rice:" + b + "\n", false},
		{"al\x00ice:" + b + "\n", false},
		{"alice:secret\n", true},
		{"alice:abJnggxhB/yLQ\n", true},
		{"alice:$2y$31$abcdefghijklmnopqrstuu5Fx6Rr2wGZ0Gp7Vn0l3O2oQoDrV9f6K\n", false},
		{"alice:$2y$05$short\n", false},
		{":" + b + "\n", false},
		{"alice:" + b + "\nalice:" + b + "\n", false},
		{"j\xc3\xb6rg:" + b + "\n", false},
		{strings.Repeat("u", 300) + ":" + b + "\n", false},
		{"", false},
	} {
		f.Add([]byte(s.data), s.allow)
	}
	f.Fuzz(func(t *testing.T, data []byte, allow bool) {
		if len(data) > 1024 {
			// A few lines show every rule; the line-length limit has its
			// own seed. Long inputs only make minimizing (quadratic) slow.
			return
		}
		tbl, err := Parse(data, "fuzz", LoadOptions{AllowLegacy: allow})
		if err != nil {
			if tbl != nil {
				t.Fatal("an error with a table")
			}
			return
		}
		if tbl.Len() == 0 {
			t.Fatal("accepted a table without users")
		}
		names := make([]string, 0, tbl.Len())
		for name := range tbl.users {
			names = append(names, name)
		}
		sort.Strings(names) // map order would make coverage flaky
		for _, name := range names {
			u := tbl.users[name]
			if name == "" || len(name) > MaxUserLen || strings.ContainsAny(name, ": \t") || hasControl(name) || hasControl(u.line) {
				t.Fatalf("accepted user %q (hash with control characters: %v)", name, hasControl(u.line))
			}
			if !allow && u.scheme != SchemeBcrypt {
				t.Fatalf("user %q uses %s without AllowLegacy", name, u.scheme)
			}
			if (u.bcrypt != nil) != (u.scheme == SchemeBcrypt) {
				t.Fatalf("user %q: scheme %s, bcrypt hash set %v", name, u.scheme, u.bcrypt != nil)
			}
		}
		var out strings.Builder
		for _, name := range names {
			fmt.Fprintf(&out, "%s:%s\n", name, tbl.users[name].line)
		}
		again, err := Parse([]byte(out.String()), "again", LoadOptions{AllowLegacy: allow})
		if err != nil {
			t.Fatalf("the accepted lines rendered again are refused: %v\n%q", err, out.String())
		}
		if again.Len() != tbl.Len() || again.cost != tbl.cost {
			t.Fatalf("round trip: %d users at cost %d, want %d at cost %d", again.Len(), again.cost, tbl.Len(), tbl.cost)
		}
		for _, name := range names {
			u := tbl.users[name]
			if v, ok := again.users[name]; !ok || v.line != u.line || v.scheme != u.scheme {
				t.Fatalf("round trip lost or changed user %q", name)
			}
		}
	})
}

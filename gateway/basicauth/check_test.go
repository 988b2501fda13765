package basicauth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// writeUsers writes an htpasswd file with a bcrypt line per user at the
// given cost (name → password) and the extra lines as they are.
func writeUsers(t *testing.T, cost int, users map[string]string, extra ...string) string {
	t.Helper()
	var b strings.Builder
	for name, pw := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", name, h)
	}
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// compareLog counts the bcrypt comparisons of a File and the costs of the
// hashes compared; with hold set, each comparison first waits on it.
type compareLog struct {
	mu       sync.Mutex
	costs    []int
	inflight atomic.Int64
	max      atomic.Int64
	hold     chan struct{}
}

func (c *compareLog) compare(hash, pw []byte) error {
	n := c.inflight.Add(1)
	defer c.inflight.Add(-1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			break
		}
	}
	cost, err := bcrypt.Cost(hash)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.costs = append(c.costs, cost)
	c.mu.Unlock()
	if c.hold != nil {
		<-c.hold
	}
	return bcrypt.CompareHashAndPassword(hash, pw)
}

func (c *compareLog) take() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.costs
	c.costs = nil
	return out
}

// waitFor polls cond (a bounded wait, not a sleep as synchronisation).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestUnknownUserCostsTheSame (F6): a known user with a wrong password, an
// unknown user and (with AllowLegacy) a legacy user with a wrong password
// each cost exactly one bcrypt comparison at the cost most of the file's
// users have. Before, an unknown user cost a bcrypt comparison at cost 10
// whatever the file held, and a legacy user none.
func TestUnknownUserCostsTheSame(t *testing.T) {
	path := writeUsers(t, 5, map[string]string{"alice": "a-pw", "bob": "b-pw"},
		"old:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", // "test"
	)
	// One more user at cost 4: the dummy follows the majority (5).
	h4, _ := bcrypt.GenerateFromPassword([]byte("c-pw"), 4)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintf(f, "carol:%s\n", h4)
	f.Close()

	log := &compareLog{}
	a, err := Open(path, Options{AllowLegacy: true, CacheTTL: -1, Compare: log.compare})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Table().Cost(); got != 5 {
		t.Fatalf("table cost %d, want 5 (two users of cost 5, one of 4)", got)
	}
	tests := []struct {
		name, user, pw string
		ok             bool
	}{
		{"known, wrong password", "alice", "nope", false},
		{"unknown", "mallory", "nope", false},
		{"legacy, wrong password", "old", "nope", false},
		{"legacy, right password", "old", "test", true},
		{"known, right password", "alice", "a-pw", true},
		{"empty user", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.Authenticate(tt.user, tt.pw); got != tt.ok {
				t.Fatalf("Authenticate = %v, want %v", got, tt.ok)
			}
			if costs := log.take(); len(costs) != 1 || costs[0] != 5 {
				t.Fatalf("bcrypt comparisons at costs %v, want exactly one at cost 5", costs)
			}
		})
	}
}

// TestGateCapsComparisons: with a Gate of 2, ten different checks never
// run more than two comparisons at once; the others wait.
func TestGateCapsComparisons(t *testing.T) {
	path := writeUsers(t, bcrypt.MinCost, map[string]string{"alice": "a-pw"})
	log := &compareLog{hold: make(chan struct{})}
	gate := NewGate(2)
	var checks atomic.Int64
	a, err := Open(path, Options{Gate: gate, Compare: log.compare, OnCheck: func() { checks.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Authenticate("alice", fmt.Sprintf("wrong-%d", i))
		}()
	}
	waitFor(t, "2 comparisons running and 8 waiting", func() bool {
		return log.inflight.Load() == 2 && gate.Waiting() == 8
	})
	close(log.hold)
	wg.Wait()
	if m := log.max.Load(); m != 2 {
		t.Fatalf("at most %d comparisons ran at once, want 2", m)
	}
	if n := checks.Load(); n != 10 {
		t.Fatalf("OnCheck counted %d comparisons, want 10", n)
	}
}

// TestIdenticalChecksCollapse: five identical checks in progress run one
// comparison and share its answer; a different password runs its own.
func TestIdenticalChecksCollapse(t *testing.T) {
	for _, pw := range []string{"a-pw", "wrong"} {
		t.Run(pw, func(t *testing.T) {
			path := writeUsers(t, bcrypt.MinCost, map[string]string{"alice": "a-pw"})
			log := &compareLog{hold: make(chan struct{})}
			var collapsed atomic.Int64
			a, err := Open(path, Options{Compare: log.compare, OnCollapsed: func() { collapsed.Add(1) }})
			if err != nil {
				t.Fatal(err)
			}
			results := make(chan bool, 5)
			for range 5 {
				go func() { results <- a.Authenticate("alice", pw) }()
			}
			waitFor(t, "one comparison running and four callers waiting for it", func() bool {
				return log.inflight.Load() == 1 && a.flight.waiting() == 4
			})
			close(log.hold)
			for range 5 {
				if got := <-results; got != (pw == "a-pw") {
					t.Fatalf("a collapsed check answered %v", got)
				}
			}
			if costs := log.take(); len(costs) != 1 {
				t.Fatalf("%d comparisons for 5 identical checks, want 1", len(costs))
			}
			if n := collapsed.Load(); n != 4 {
				t.Fatalf("OnCollapsed counted %d, want 4", n)
			}
			// Right password: remembered; wrong: checked again.
			a.Authenticate("alice", pw)
			if costs := log.take(); len(costs) != map[bool]int{true: 0, false: 1}[pw == "a-pw"] {
				t.Fatalf("%d comparisons after the collapsed check", len(costs))
			}
		})
	}
}

func TestParseBasic(t *testing.T) {
	enc := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name, header, user, pw string
		err                    error
	}{
		{"plain", enc("alice:pw"), "alice", "pw", nil},
		{"colon in password", enc("alice:p:w"), "alice", "p:w", nil},
		{"empty password", enc("alice:"), "alice", "", nil},
		{"lower-case scheme", "basic " + enc("a:b")[6:], "a", "b", nil},
		{"extra spaces", "Basic   " + enc("a:b")[6:] + " ", "a", "b", nil},
		{"non-ASCII", enc("jörg:pässwörd"), "jörg", "pässwörd", nil},
		{"bearer", "Bearer abc", "", "", ErrScheme},
		{"scheme only", "Basic", "", "", ErrScheme},
		{"empty", "", "", "", ErrScheme},
		{"no colon", enc("alice"), "", "", ErrMalformed},
		{"empty user", enc(":pw"), "", "", ErrMalformed},
		{"bad base64", "Basic %%%", "", "", ErrMalformed},
		{"empty token", "Basic  ", "", "", ErrMalformed},
		{"CR in user", enc("al\rice:pw"), "", "", ErrMalformed},
		{"LF in user", enc("al\nice:pw"), "", "", ErrMalformed},
		{"CRLF header injection", enc("alice\r\nX-Injected: 1:pw"), "", "", ErrMalformed},
		{"NUL in user", enc("al\x00ice:pw"), "", "", ErrMalformed},
		{"TAB in user", enc("al\tice:pw"), "", "", ErrMalformed},
		{"DEL in user", enc("al\x7fice:pw"), "", "", ErrMalformed},
		{"CR in password", enc("alice:p\rw"), "", "", ErrMalformed},
		{"NUL in password", enc("alice:p\x00w"), "", "", ErrMalformed},
		{"CRLF inside the token", "Basic YWxp\r\nY2U6cHc=", "", "", ErrMalformed},
		{"obs-fold inside the token", "Basic YWxp\r\n Y2U6cHc=", "", "", ErrMalformed},
		{"long user", enc(strings.Repeat("u", MaxUserLen+1) + ":pw"), "", "", ErrMalformed},
		{"longest user", enc(strings.Repeat("u", MaxUserLen) + ":pw"), strings.Repeat("u", MaxUserLen), "pw", nil},
		{"long password", enc("u:" + strings.Repeat("p", MaxPasswordLen+1)), "", "", ErrMalformed},
		{"longest credentials", enc(strings.Repeat("u", MaxUserLen) + ":" + strings.Repeat("p", MaxPasswordLen)),
			strings.Repeat("u", MaxUserLen), strings.Repeat("p", MaxPasswordLen), nil},
		{"huge token", "Basic " + strings.Repeat("QUFB", 100_000), "", "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, p, err := ParseBasic(tt.header)
			if !errors.Is(err, tt.err) || u != tt.user || p != tt.pw {
				t.Fatalf("ParseBasic = %q, %q, %v; want %q, %q, %v", u, p, err, tt.user, tt.pw, tt.err)
			}
		})
	}
}

func TestSafeUser(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"al\r\nice", "al??ice"},
		{"\x00\x7f", "??"},
		{strings.Repeat("u", 100), strings.Repeat("u", 64) + "…"},
		{strings.Repeat("u", 63) + "ö", strings.Repeat("u", 63) + "?…"},
		{"\xff", "?"},
		// C1 controls (NEL), line/paragraph separators, bidi overrides and
		// zero-width characters: a log viewer may break or reorder the
		// line, or hide part of the name.
		{"a\u0085b", "a?b"},
		{"a\u2028b\u2029c", "a?b?c"},
		{"adm\u202eni", "adm?ni"},
		{"ad\u200bmin", "ad?min"},
		{"jürgen o'neil", "jürgen o'neil"},
	}
	for _, tt := range tests {
		if got := SafeUser(tt.in); got != tt.want {
			t.Errorf("SafeUser(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestReloadRefusesLegacyKeepsLastGood: without AllowLegacy, a reload that
// finds an apr1 line fails naming the file, line and user (not the hash)
// and the last good table stays in service.
func TestReloadRefusesLegacyKeepsLastGood(t *testing.T) {
	path := writeUsers(t, bcrypt.MinCost, map[string]string{"alice": "a-pw"})
	var reports []error
	a, err := Open(path, Options{CacheTTL: -1, OnReload: func(err error) { reports = append(reports, err) }})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprintln(f, "bob:$apr1$qUqP5cyx$m6YcTAhz05Hph5gvu9M.1/")
	f.Close()
	err = a.Reload()
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `line 2: user "bob" uses apr1`) ||
		strings.Contains(err.Error(), "qUqP5cyx") {
		t.Fatalf("reload err = %v; want one naming %s, line 2 and bob, without the hash", err, path)
	}
	if len(reports) != 1 || reports[0] == nil {
		t.Fatalf("reload reports %v, want one failure", reports)
	}
	if !a.Authenticate("alice", "a-pw") || a.Table().Has("bob") {
		t.Fatal("the refused file changed the users in service")
	}
}

// TestCacheKeySeparatesUserAndPassword: a verified credential in the
// cache admits exactly that user with that password, not another split of
// the same bytes ("alic" + "esecret", "alices" + "ecret", user and
// password swapped around the separator). Each such check runs its own
// bcrypt comparison and fails. Before the key put a separator between
// the two, "alice:secret" in the cache let "alic" with "esecret" in (the
// mutation basicauth-cache-key-separator survived every test).
func TestCacheKeySeparatesUserAndPassword(t *testing.T) {
	path := writeUsers(t, bcrypt.MinCost, map[string]string{"alice": "secret", "al": "x"})
	log := &compareLog{}
	a, err := Open(path, Options{Compare: log.compare})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Authenticate("alice", "secret") {
		t.Fatal("alice with her password refused")
	}
	if n := len(log.take()); n != 1 {
		t.Fatalf("%d comparisons for the first check, want 1", n)
	}
	if !a.Authenticate("alice", "secret") || !a.Cached("alice", "secret") {
		t.Fatal("the verified credential is not remembered")
	}
	if n := len(log.take()); n != 0 {
		t.Fatalf("%d comparisons for a cached credential, want 0", n)
	}
	for _, c := range []struct{ user, pw string }{
		{"alic", "esecret"},
		{"alices", "ecret"},
		{"a", "licesecret"},
		{"alicesecret", ""},
		{"al", "icesecret"}, // a known user
	} {
		if a.Cached(c.user, c.pw) {
			t.Errorf("Cached(%q, %q) = true: the cache key does not separate user and password", c.user, c.pw)
		}
		if a.Authenticate(c.user, c.pw) {
			t.Errorf("Authenticate(%q, %q) = true after alice:secret was verified", c.user, c.pw)
		}
		if n := len(log.take()); n != 1 {
			t.Errorf("Authenticate(%q, %q): %d comparisons, want 1 (not a cache hit)", c.user, c.pw, n)
		}
	}
}

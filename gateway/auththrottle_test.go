package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/stella-ops/stella-mirror/gateway/basicauth"
	"github.com/stella-ops/stella-mirror/internal/ratelimit"
	"github.com/stella-ops/stella-mirror/internal/syncbuf"
)

// bcryptSpy counts the gateway's bcrypt comparisons and the most that ran
// at once.
type bcryptSpy struct {
	calls, inflight, max atomic.Int64
}

func (s *bcryptSpy) compare(hash, pw []byte) error {
	s.calls.Add(1)
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		m := s.max.Load()
		if n <= m || s.max.CompareAndSwap(m, n) {
			break
		}
	}
	return bcrypt.CompareHashAndPassword(hash, pw)
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer = syncbuf.Buffer

// clientFrom is an HTTPS client of the gateway whose connections come from
// the local address ip (127.0.0.2 is loopback on Linux too).
func (h *harness) clientFrom(ip string) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: h.ca.Pool()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
			return d.DialContext(ctx, network, h.addr)
		},
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConnsPerHost: 64,
	}
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// TestWrongPasswordFlood (F5): many concurrent wrong passwords from one
// address cost at most MAXFAILURES bcrypt comparisons; every later request
// from that address, right password included, is a 429 with Retry-After
// before any comparison; comparisons never exceed MAXCONCURRENTCHECKS at
// once; a client on another address with a valid password gets 200. The
// log has at most a burst of lines about it, with bounded user names and
// no passwords. Before the throttle, each of the 40 requests ran bcrypt.
func TestWrongPasswordFlood(t *testing.T) {
	for _, native := range []bool{true, false} {
		t.Run(fmt.Sprintf("native=%v", native), func(t *testing.T) { testWrongPasswordFlood(t, native) })
	}
}

func testWrongPasswordFlood(t *testing.T, native bool) {
	const maxFailures, concurrentChecks, flood = 5, 2, 40
	spy := &bcryptSpy{}
	logs := &syncBuffer{}
	frozen := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) // nothing refills during the test
	h := newHarness(t, harnessOpts{noNative: !native, edit: func(c *Config) {
		c.Gateway.AuthThrottle = AuthThrottleSettings{MaxFailures: maxFailures, Window: time.Hour, MaxConcurrentChecks: concurrentChecks}
	}, opts: Options{bcryptCompare: spy.compare, Now: func() time.Time { return frozen },
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}})
	longUser := strings.Repeat("m", 200)

	attacker := h.clientFrom("127.0.0.1")
	type answer struct {
		status     int
		retryAfter string
	}
	answers := make(chan answer, flood)
	var wg sync.WaitGroup
	for i := range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := "alice"
			if i%2 == 1 {
				user = longUser
			}
			req, _ := http.NewRequest(http.MethodGet, "https://"+hostPrimary+indexPath, nil)
			req.Header.Set("Authorization", basic(user, fmt.Sprintf("wrong-%d", i)))
			res, err := attacker.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			answers <- answer{res.StatusCode, res.Header.Get("Retry-After")}
		}()
	}
	wg.Wait()
	close(answers)
	counts := map[int]int{}
	for a := range answers {
		counts[a.status]++
		if a.status == http.StatusTooManyRequests {
			// The allowance refills one failure per window/K = 12 min.
			if s, err := strconv.Atoi(a.retryAfter); err != nil || s < 1 || s > 720 {
				t.Errorf("429 with Retry-After %q, want 1..720 seconds", a.retryAfter)
			}
		}
	}
	if counts[401] != maxFailures || counts[429] != flood-maxFailures {
		t.Fatalf("answers %v, want %d × 401 and %d × 429", counts, maxFailures, flood-maxFailures)
	}
	if n := spy.calls.Load(); n != maxFailures {
		t.Fatalf("%d bcrypt comparisons for the flood, want %d (one per allowed failure)", n, maxFailures)
	}
	if m := spy.max.Load(); m > concurrentChecks {
		t.Fatalf("%d bcrypt comparisons ran at once, cap %d", m, concurrentChecks)
	}

	// The throttled address: refused before any check, right password too.
	if r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")}); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("right password from the throttled address: %d (Retry-After %q), want 429", r.status, r.header.Get("Retry-After"))
	}
	if n := spy.calls.Load(); n != maxFailures {
		t.Fatalf("a throttled request ran bcrypt (%d comparisons)", n)
	}
	// Another address is not affected.
	req, _ := http.NewRequest(http.MethodGet, "https://"+hostPrimary+indexPath, nil)
	req.Header.Set("Authorization", basic("alice", "alice-pw"))
	res, err := h.clientFrom("127.0.0.2").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("valid password from 127.0.0.2: %d, want 200", res.StatusCode)
	}
	if n := spy.calls.Load(); n != maxFailures+1 {
		t.Fatalf("%d comparisons after the legitimate login, want %d", n, maxFailures+1)
	}

	h.waitAccess(flood + 2)
	m := h.metrics()
	for _, want := range []string{
		fmt.Sprintf(`stella_mirror_gateway_auth_throttled_total{site="mirror-primary.localhost"} %d`, flood-maxFailures+1),
		fmt.Sprintf(`stella_mirror_gateway_auth_bcrypt_checks_total{site="mirror-primary.localhost"} %d`, maxFailures+1),
		fmt.Sprintf(`stella_mirror_gateway_auth_failures_total{reason="credentials",site="mirror-primary.localhost"} %d`, maxFailures),
		fmt.Sprintf(`stella_mirror_gateway_requests_total{cache_status="",code="429",site="mirror-primary.localhost"} %d`, flood-maxFailures+1),
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Log lines: a burst at most (the clock is frozen), no password, the
	// long user name cut.
	out := logs.String()
	lines := strings.Count(out, `"msg":"login failed"`) + strings.Count(out, `"msg":"login throttled"`)
	if lines != authLogBurst {
		t.Errorf("%d login log lines for %d failures, want the burst of %d:\n%s", lines, flood+1, authLogBurst, out)
	}
	if strings.Contains(out, "wrong-") || strings.Contains(out, "alice-pw") {
		t.Errorf("the log holds a password:\n%s", out)
	}
	if strings.Contains(out, longUser) {
		t.Errorf("the log holds a 200-byte user name uncut:\n%s", out)
	}
	if !strings.Contains(out, `"client":"127.0.0.1"`) {
		t.Errorf("the log lines do not name the client address:\n%s", out)
	}
}

// TestSuccessfulLoginsNotCharged: the login throttle counts failures
// only. With the credential cache off (so every login runs bcrypt and goes
// through the throttle) and a frozen clock (nothing refills), ten correct
// logins from one address, more than MaxFailures, are all served, and the
// address still has its whole allowance of wrong ones afterwards: exactly
// MaxFailures 401s, then 429. On both engines. Before, the mutation
// gateway-throttle-success-charged (the allowance a successful login took
// not given back) survived every gateway test.
func TestSuccessfulLoginsNotCharged(t *testing.T) {
	const maxFailures = 3
	for _, native := range []bool{true, false} {
		t.Run(map[bool]string{true: "native", false: "net/http"}[native], func(t *testing.T) {
			spy := &bcryptSpy{}
			frozen := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
			h := newHarness(t, harnessOpts{noNative: !native, edit: func(c *Config) {
				c.Gateway.AuthThrottle = AuthThrottleSettings{MaxFailures: maxFailures, Window: time.Hour}
				c.Gateway.CredentialCacheTTL = -1
			}, opts: Options{bcryptCompare: spy.compare, Now: func() time.Time { return frozen }}})
			for i := range 10 {
				r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")})
				if r.status != http.StatusOK {
					t.Fatalf("correct login %d: %d %v, want 200 (successful logins must not use up the failure allowance)", i+1, r.status, r.err)
				}
			}
			if n := spy.calls.Load(); n != 10 {
				t.Fatalf("%d bcrypt comparisons for 10 logins with the credential cache off, want 10", n)
			}
			for i := range maxFailures + 1 {
				want := http.StatusUnauthorized
				if i == maxFailures {
					want = http.StatusTooManyRequests
				}
				if r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "wrong")}); r.status != want {
					t.Fatalf("wrong password %d after the correct logins: %d, want %d", i+1, r.status, want)
				}
			}
		})
	}
}

// TestThrottleNativeMatchesHandler: the 429 of the login throttle is the
// same answer, with the same access log line, on the native path and from
// the net/http handler.
func TestThrottleNativeMatchesHandler(t *testing.T) {
	edit := func(c *Config) {
		c.Gateway.AuthThrottle = AuthThrottleSettings{MaxFailures: 1, Window: time.Minute}
	}
	frozen := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return frozen }
	h := newHarness(t, harnessOpts{edit: edit, opts: Options{Now: now}})
	std := newHarness(t, harnessOpts{edit: edit, opts: Options{Now: now}, noNative: true})
	type answer struct {
		Status int
		Header http.Header
		Body   string
	}
	do := func(h *harness) answer {
		t.Helper()
		r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "nope")})
		if r.err != nil {
			t.Fatal(r.err)
		}
		a := answer{Status: r.status, Header: http.Header{}, Body: r.body}
		for _, k := range []string{"Retry-After", "Content-Type", "Cache-Control", "Strict-Transport-Security", "X-Content-Type-Options", "Www-Authenticate"} {
			if v, ok := r.header[k]; ok {
				a.Header[k] = v
			}
		}
		return a
	}
	for i, want := range []int{401, 429} {
		fast, slow := do(h), do(std)
		if fast.Status != want || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("request %d: native %+v, net/http %+v; want both %d and equal", i, fast, slow, want)
		}
	}
	strip := func(m map[string]any) map[string]any {
		for _, k := range []string{"time", "duration_ms", "upstream_ms"} {
			delete(m, k)
		}
		return m
	}
	got, want := accessLines(t, h, 2), accessLines(t, std, 2)
	for i := range got {
		if !reflect.DeepEqual(strip(got[i]), strip(want[i])) {
			t.Errorf("access line %d: native %v, net/http %v", i, got[i], want[i])
		}
	}
	if got[1]["status"] != float64(429) {
		t.Errorf("access line of the throttled request: %v", got[1])
	}
}

func TestThrottleKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not an address", "not an address"},
	}
	for _, tt := range tests {
		if got := throttleKey(tt.in); got != tt.want {
			t.Errorf("throttleKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// BenchmarkAuthenticateCached: what authenticate costs a client whose
// credentials are in the verified-credential cache, with the login
// throttle off and on (its cost is the read-only Blocked check).
func BenchmarkAuthenticateCached(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte("alice:"+string(h)+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	auth, err := basicauth.Open(path, basicauth.Options{})
	if err != nil {
		b.Fatal(err)
	}
	st := &site{name: "s", auth: auth}
	hdr := []string{basic("alice", "alice-pw")}
	client := func() string { return "192.0.2.7" }
	for _, limit := range []int{0, 10} {
		b.Run(fmt.Sprintf("maxfailures=%d", limit), func(b *testing.B) {
			g := &Gateway{logger: slog.New(slog.DiscardHandler), authLog: newLogLimiter(time.Now),
				throttle: ratelimit.New(ratelimit.Config{Limit: limit, Period: time.Minute, MaxKeys: throttleMaxKeys})}
			g.throttle.Take("198.51.100.1") // one other client is tracked
			b.ReportAllocs()
			for b.Loop() {
				if u, reason, _ := g.authenticate(st, hdr, client); u != "alice" {
					b.Fatalf("refused: %s", reason)
				}
			}
		})
	}
}

package origin

import (
	"context"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/origin/authority/authoritytest"
)

const (
	peerTokA = "peer-token-A-0123456789abcdef0123456789abcdef"
	peerTokB = "peer-token-B-fedcba9876543210fedcba9876543210"
	peerTokX = "peer-token-X-not-configured-0000000000000000"
)

// writeTokenFile replaces path atomically (temp file + rename, as an
// editor or a Kubernetes Secret update does).
func writeTokenFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// peerConfig: both products require authentication, Authority validates
// tokens of iss, the loopback peer is in both products' bypass networks,
// and ORIGIN__PEERTOKENFILE names a file holding data.
func peerConfig(t *testing.T, root string, iss *authoritytest.Issuer, data string) (Config, string) {
	t.Helper()
	cfg := authConfig(root, iss)
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.Concelier.Authority.BypassNetworks = loop
	cfg.Excititor.Authority.BypassNetworks = loop
	path := filepath.Join(t.TempDir(), "peer-token")
	writeTokenFile(t, path, data)
	cfg.Origin.PeerTokenFile = path
	return cfg, path
}

func peerHdr(tok, user string) map[string]string {
	h := map[string]string{}
	if tok != "" {
		h[PeerTokenHeader] = tok
	}
	if user != "" {
		h[ForwardedUserHeader] = user
	}
	return h
}

// TestPeerToken: with ORIGIN__PEERTOKENFILE a bypass-network peer is a
// bypass peer only with one of the file's tokens; without one it is any
// client (its forwarded user not believed), with a wrong one it is
// refused, counted and logged without the value.
func TestPeerToken(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	iss := authoritytest.NewIssuer(t)
	alice := iss.Sign(t, iss.Token(time.Now(), "alice", testAudience, ScopeConcelier+" "+ScopeExcititor))
	cfg, _ := peerConfig(t, root, iss, "# rotation: new first, old until every gateway has the new\n"+peerTokB+"\n\n"+peerTokA+"\n")
	no := false
	cfg.Concelier.Mirror.Domains = []DomainConfig{{ID: "primary"}, {ID: "community", RequireAuthentication: &no}}
	h := newHarness(t, cfg, options{})

	const (
		cIndex  = "/concelier/exports/index.json"
		cBundle = "/concelier/exports/mirror/primary/bundle.json"
		cPublic = "/concelier/exports/mirror/community/manifest.json"
		xIndex  = "/excititor/mirror/primary/index"
	)
	withBearer := func(m map[string]string, tok string) map[string]string {
		m["Authorization"] = "Bearer " + tok
		return m
	}
	tests := []struct {
		name    string
		path    string
		hdr     map[string]string
		status  int
		code    string // JSON error code of a refusal
		client  string // access-log client
		outcome string
	}{
		{"right token, forwarded user believed", cIndex, peerHdr(peerTokA, "gw-alice"), 200, "", "user:gw-alice", outcomeBypass},
		{"the other configured token", cBundle, peerHdr(peerTokB, "gw-bob"), 200, "", "user:gw-bob", outcomeBypass},
		{"right token, no user", xIndex, peerHdr(peerTokA, ""), 200, "", "ip:127.0.0.1", outcomeBypass},
		{"no token: forged user not believed", cIndex, peerHdr("", "eve"), 401, "unauthorized", "ip:127.0.0.1", outcomeMissing},
		{"no token on a public path: anonymous", cPublic, peerHdr("", "eve"), 200, "", "ip:127.0.0.1", outcomeAnonymous},
		{"no token, bearer rules apply", cBundle, withBearer(peerHdr("", "eve"), alice), 200, "", "sub:alice", outcomeToken},
		{"wrong token", cIndex, peerHdr(peerTokX, "eve"), 401, "invalid_peer_token", "ip:127.0.0.1", outcomePeerTokenInvalid},
		{"wrong token on a public path", cPublic, peerHdr(peerTokX, ""), 401, "invalid_peer_token", "ip:127.0.0.1", outcomePeerTokenInvalid},
		{"wrong token with a valid bearer", cBundle, withBearer(peerHdr(peerTokX, ""), alice), 401, "invalid_peer_token", "ip:127.0.0.1", outcomePeerTokenInvalid},
		{"a token's prefix", xIndex, peerHdr(peerTokA[:len(peerTokA)-1], ""), 401, "invalid_peer_token", "ip:127.0.0.1", outcomePeerTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			product := "concelier"
			if strings.HasPrefix(tc.path, "/excititor/") {
				product = "excititor"
			}
			before := counterWith(t, h.reg, "stella_mirror_origin_auth_total", map[string]string{"product": product, "outcome": tc.outcome})
			h.logs.mu.Lock()
			h.logs.buf.Reset()
			h.logs.mu.Unlock()
			r := do(t, h.public.Client(), http.MethodGet, h.public.URL+tc.path, tc.hdr)
			h.settle(t)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (%s)", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if got := errorCode(t, r); got != tc.code {
					t.Errorf("error %q, want %q", got, tc.code)
				}
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
					t.Errorf("401 without a Bearer challenge: %q", r.header.Get("WWW-Authenticate"))
				}
			}
			after := counterWith(t, h.reg, "stella_mirror_origin_auth_total", map[string]string{"product": product, "outcome": tc.outcome})
			if after != before+1 {
				t.Errorf("auth_total{outcome=%q} %v -> %v, want +1", tc.outcome, before, after)
			}
			lines := h.logs.lines(t, "request")
			if len(lines) != 1 || lines[0]["client"] != tc.client {
				t.Errorf("access log client = %v, want %q", lineField(lines, 0, "client"), tc.client)
			}
			refused := h.logs.lines(t, "peer token refused")
			if (tc.outcome == outcomePeerTokenInvalid) != (len(refused) == 1) {
				t.Errorf("%d \"peer token refused\" lines for outcome %s", len(refused), tc.outcome)
			}
			for _, secret := range []string{peerTokA, peerTokB, peerTokX, peerTokA[:len(peerTokA)-1]} {
				if strings.Contains(h.logs.String(), secret) || strings.Contains(string(r.body), secret) || strings.Contains(r.header.Get("WWW-Authenticate"), secret) {
					t.Errorf("a peer token appears in the logs or the answer")
				}
			}
		})
	}

	t.Run("several token headers", func(t *testing.T) {
		p := h.o.peers
		for _, tc := range []struct {
			vals []string
			want peerCheck
		}{
			{nil, peerAbsent}, {[]string{peerTokA}, peerValid}, {[]string{""}, peerInvalid},
			{[]string{peerTokA, peerTokA}, peerInvalid}, {[]string{peerTokX, peerTokA}, peerInvalid},
		} {
			hdr := http.Header{}
			if tc.vals != nil {
				hdr[PeerTokenHeader] = tc.vals
			}
			if got := p.check(hdr); got != tc.want {
				t.Errorf("check(%d values) = %v, want %v", len(tc.vals), got, tc.want)
			}
		}
	})
	t.Run("peers outside the bypass networks gain nothing", func(t *testing.T) {
		cfg, _ := peerConfig(t, root, iss, peerTokA+"\n")
		cfg.Concelier.Authority.BypassNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		h := newHarness(t, cfg, options{})
		if r := do(t, h.public.Client(), http.MethodGet, h.public.URL+cIndex, peerHdr(peerTokA, "gw-alice")); r.status != 401 {
			t.Errorf("right token from outside the bypass networks: %d, want 401", r.status)
		}
	})
}

// TestPeerTokenReload: the token file is re-read when it is replaced (the
// old token stops working, the new one works), an invalid new version
// keeps the tokens in service (logged, counted), and SIGHUP reloads it
// without ending the process.
func TestPeerTokenReload(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	iss := authoritytest.NewIssuer(t)
	cfg, path := peerConfig(t, root, iss, peerTokA+"\n")
	h := newHarness(t, cfg, options{})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h.o.watch(ctx)

	status := func(tok string) int {
		return do(t, h.public.Client(), http.MethodGet, h.public.URL+"/concelier/exports/index.json", peerHdr(tok, "gw")).status
	}
	// eventually polls cond (a bounded number of times, within a deadline).
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; i < 2000; i++ {
			if cond() {
				return
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond) // a poll interval, not synchronisation
		}
		t.Fatalf("%s: not within 10s\n%s", what, h.logs.String())
	}
	reloads := func(result string) float64 {
		return counterWith(t, h.reg, "stella_mirror_origin_peer_token_reloads_total", map[string]string{"result": result})
	}
	if got := status(peerTokA); got != 200 {
		t.Fatalf("token A at start: %d", got)
	}
	if got := status(peerTokB); got != 401 {
		t.Fatalf("token B at start: %d", got)
	}

	// Rotation, step 1: the file accepts both.
	writeTokenFile(t, path, peerTokB+"\n"+peerTokA+"\n")
	eventually("token B accepted after the file gained it", func() bool { return status(peerTokB) == 200 })
	if got := status(peerTokA); got != 200 {
		t.Errorf("token A during the rotation: %d, want 200", got)
	}
	// Step 2: the old token goes.
	writeTokenFile(t, path, peerTokB+"\n")
	eventually("token A refused after the file dropped it", func() bool { return status(peerTokA) == 401 })

	// An invalid version (a short token on line 2) keeps B in service.
	failures := reloads("failure")
	writeTokenFile(t, path, "# broken\n0123456789\n")
	eventually("the invalid file is counted as a failed reload", func() bool { return reloads("failure") > failures })
	if got := status(peerTokB); got != 200 {
		t.Errorf("token B after an invalid file: %d, want 200 (the last good set stays)", got)
	}
	if got := status("0123456789"); got != 401 {
		t.Errorf("the invalid file's token: %d, want 401", got)
	}
	h.settle(t)
	if lines := h.logs.lines(t, "peer token file not reloaded; the tokens in service stay"); len(lines) == 0 ||
		!strings.Contains(lines[0]["error"].(string), path+":2:") {
		t.Errorf("no error line naming the file and line: %v", lines)
	}
	if strings.Contains(h.logs.String(), "0123456789\"") || strings.Contains(h.logs.String(), peerTokB) {
		t.Error("a token appears in the logs")
	}

	// SIGHUP reloads (and does not end the process): the file is still
	// the invalid one, so the reload fails once more and B stays.
	failures = reloads("failure")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually("SIGHUP reloads the file", func() bool {
		return len(h.logs.lines(t, "SIGHUP: reloading the peer token file")) == 1 && reloads("failure") > failures
	})
	if got := status(peerTokB); got != 200 {
		t.Errorf("token B after SIGHUP with an invalid file: %d, want 200", got)
	}
}

// TestPeerTokenFileErrors: an invalid or missing token file stops start-up
// (and --check-config) with an error naming the key, the file and the
// line, never the token.
func TestPeerTokenFileErrors(t *testing.T) {
	root := t.TempDir()
	writeExport(t, root, "e1", treeOpts{})
	iss := authoritytest.NewIssuer(t)
	short := "short-secret-value"
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"short token", "# gateway peer token\n" + peerTokA + "\n" + short + "\n", []string{KeyPeerTokenFile, ":3: token shorter than 32 bytes"}},
		{"space inside", peerTokA[:20] + " " + peerTokA[20:] + "\n", []string{KeyPeerTokenFile, ":1: token holds a character"}},
		{"no token", "# nothing yet\n\n", []string{KeyPeerTokenFile, "no token"}},
		{"missing", "", []string{KeyPeerTokenFile, "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, path := peerConfig(t, root, iss, tc.data)
			if tc.name == "missing" {
				os.Remove(path)
			}
			_, err := newOrigin(cfg, nil, nil, options{})
			checkErr := cfg.CheckFiles()
			for _, e := range []error{err, checkErr} {
				if e == nil {
					t.Fatal("accepted")
				}
				for _, want := range append(tc.want, path) {
					if !strings.Contains(e.Error(), want) {
						t.Errorf("error %q lacks %q", e, want)
					}
				}
				if strings.Contains(e.Error(), short) || strings.Contains(e.Error(), peerTokA[:20]) {
					t.Errorf("error %q quotes a token", e)
				}
			}
		})
	}
	t.Run("warning without bypass networks", func(t *testing.T) {
		cfg, _ := peerConfig(t, root, iss, peerTokA)
		if w := strings.Join(cfg.Warnings(), "\n"); w != "" {
			t.Errorf("warnings with bypass networks: %s", w)
		}
		cfg.Concelier.Authority.BypassNetworks = nil
		cfg.Excititor.Authority.BypassNetworks = nil
		if w := strings.Join(cfg.Warnings(), "\n"); !strings.Contains(w, "ORIGIN__PEERTOKENFILE: set, but no enabled product has bypass networks") {
			t.Errorf("warnings = %q", w)
		}
	})
}

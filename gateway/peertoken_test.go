package gateway

import (
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/internal/serve"
	"github.com/stella-ops/stella-mirror/origin"
	"github.com/stella-ops/stella-mirror/origin/origintest"
)

const (
	gwPeerTok    = "gateway-peer-token-0123456789abcdef0123456789"
	gwPeerTokNew = "gateway-peer-token-rotated-fedcba9876543210fe"
	clientForged = "client-forged-peer-token-000000000000000000000"
	bundlePath   = "/concelier/exports/mirror/primary/bundle.json"
)

// peerOrigin is a real origin that requires authentication, trusts the
// loopback network as bypass peers, and requires one of toks of them
// (ORIGIN__PEERTOKENFILE).
func peerOrigin(t *testing.T, toks ...string) http.Handler {
	t.Helper()
	cfg := origintest.Config(sharedExport(t))
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.Concelier.Mirror.RequireAuthentication = true
	cfg.Excititor.Mirror.RequireAuthentication = true
	cfg.Concelier.Authority.BypassNetworks = loop
	cfg.Excititor.Authority.BypassNetworks = loop
	cfg.Origin.PeerTokenFile = filepath.Join(t.TempDir(), "origin-peer-token")
	if err := os.WriteFile(cfg.Origin.PeerTokenFile, []byte(strings.Join(toks, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := origin.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o.Handler()
}

// withPeerToken writes data as the gateway's peer token file.
func withPeerToken(dir, data string) func(*Config) {
	return func(c *Config) {
		c.Gateway.OriginPeerTokenFile = filepath.Join(dir, "peer-token")
		if err := os.WriteFile(c.Gateway.OriginPeerTokenFile, []byte(data), 0o600); err != nil {
			panic(err)
		}
	}
}

// writeAtomic replaces path (temp file + rename).
func writeAtomic(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// peerTokensOff returns how many requests reached the origin and the paths
// of those whose X-Stella-Peer-Token was anything but exactly want.
func (h *harness) peerTokensOff(want string) (n int, off []string) {
	h.upstream.mu.Lock()
	defer h.upstream.mu.Unlock()
	for _, r := range h.upstream.reqs {
		n++
		if v := r.Header.Values(peerHdrName); len(v) != 1 || v[0] != want {
			off = append(off, r.URL.Path+" ("+itoa(len(v))+" values)")
		}
	}
	return n, off
}

// peerHdrName is proxy.PeerTokenHeader, spelled out.
const peerHdrName = "X-Stella-Peer-Token"

// TestOriginPeerToken: the gateway sends its peer token on every request
// to the origin (each upstream path: the native one, the net/http proxy,
// the cache's fills, the readiness probe), never a client's copy, and a
// real origin that requires the token serves it; a wrong token surfaces
// as the origin's 401.
func TestOriginPeerToken(t *testing.T) {
	alice := map[string]string{"Authorization": basic("alice", "alice-pw"), peerHdrName: clientForged}
	for _, tc := range []struct {
		name     string
		engine   string
		noNative bool
		cache    bool
	}{
		{"native path", serve.EngineFast, false, false},
		{"net/http proxy", serve.EngineStd, true, false},
		{"cache fills", serve.EngineFast, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			edit := func(c *Config) {
				withPeerToken(dir, "# the gateway sends the first token\n"+gwPeerTok+"\n")(c)
				if tc.cache {
					withCache(dir, "")(c)
				}
			}
			h := newHarness(t, harnessOpts{engine: tc.engine, noNative: tc.noNative, edit: edit,
				upstream: peerOrigin(t, gwPeerTok, gwPeerTokNew)})
			for _, p := range []string{indexPath, bundlePath} {
				if r := h.get(hostPrimary, p, alice); r.status != 200 {
					t.Fatalf("GET %s with the token on both sides: %d %s %v", p, r.status, r.body, r.err)
				}
			}
			if u := h.upstream.last().Header.Get("X-Stella-Forwarded-User"); u != "alice" {
				t.Errorf("forwarded user %q", u)
			}
			// The readiness probe carries it too.
			res, err := http.Get("http://" + h.admin + "/health/ready")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("/health/ready: %d", res.StatusCode)
			}
			if last := h.upstream.last(); last.URL.Path != "/health/ready" {
				t.Errorf("the readiness probe did not reach the origin (last %s)", last.URL.Path)
			}
			if n, off := h.peerTokensOff(gwPeerTok); n < 2 || len(off) > 0 {
				t.Errorf("%d upstream requests; without exactly the gateway's token: %v", n, off)
			}
			if tc.cache {
				// Nothing the cache stored (keys, headers, bodies) holds it.
				stored := 0
				err := filepath.WalkDir(filepath.Join(dir, "cache"), func(path string, d os.DirEntry, err error) error {
					if err != nil || d.IsDir() {
						return err
					}
					data, err := os.ReadFile(path)
					if err != nil {
						return err
					}
					stored++
					if strings.Contains(string(data), gwPeerTok) || strings.Contains(path, gwPeerTok) {
						t.Errorf("the cache file %s holds the peer token", path)
					}
					return nil
				})
				if err != nil || stored == 0 {
					t.Errorf("cache directory: %d files, %v", stored, err)
				}
			}

			// Rotation: the file's new first token is sent after the reload.
			writeAtomic(t, filepath.Join(dir, "peer-token"), gwPeerTokNew+"\n"+gwPeerTok+"\n")
			h.waitReload("peer_token  ok")
			h.upstream.mu.Lock()
			h.upstream.reqs = nil
			h.upstream.mu.Unlock()
			if r := h.get(hostPrimary, "/concelier/exports/mirror/primary/manifest.json", alice); r.status != 200 {
				t.Fatalf("after the rotation: %d %s", r.status, r.body)
			}
			if n, off := h.peerTokensOff(gwPeerTokNew); n == 0 || len(off) > 0 {
				t.Errorf("after the rotation, %d upstream requests; without the new token: %v", n, off)
			}
			// An invalid version keeps the token in service.
			writeAtomic(t, filepath.Join(dir, "peer-token"), "too-short\n")
			h.waitReload("peer_token  fail")
			h.upstream.mu.Lock()
			h.upstream.reqs = nil
			h.upstream.mu.Unlock()
			if r := h.get(hostPrimary, "/excititor/mirror/primary/index", alice); r.status != 200 {
				t.Fatalf("after an invalid file: %d %s", r.status, r.body)
			}
			if n, off := h.peerTokensOff(gwPeerTokNew); n == 0 || len(off) > 0 {
				t.Errorf("after an invalid file, %d upstream requests; without the token in service: %v", n, off)
			}
			if m := h.metrics(); !strings.Contains(m, `stella_mirror_gateway_reloads_total{kind="peer_token",result="failure",site=""} 1`) {
				t.Errorf("failed reload not counted:\n%s", grepLines(m, "reloads_total"))
			}
		})
	}

	// A client cannot pass a token through: without a token of its own,
	// the gateway forwards none, even the right one a client sends.
	for _, engine := range []string{serve.EngineFast, serve.EngineStd} {
		t.Run("client copy stripped/"+engine, func(t *testing.T) {
			h := newHarness(t, harnessOpts{engine: engine, upstream: peerOrigin(t, gwPeerTok)})
			r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw"), peerHdrName: gwPeerTok})
			if r.status != http.StatusUnauthorized {
				t.Errorf("the client's (right) token passed through: %d %s", r.status, r.body)
			}
			if v := h.upstream.last().Header.Values(peerHdrName); len(v) != 0 {
				t.Errorf("the origin received %d peer token values", len(v))
			}
		})
	}
	t.Run("wrong gateway token", func(t *testing.T) {
		h := newHarness(t, harnessOpts{edit: withPeerToken(t.TempDir(), clientForged+"\n"), upstream: peerOrigin(t, gwPeerTok)})
		r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")})
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "invalid_peer_token") {
			t.Errorf("a wrong gateway token: %d %s, want the origin's 401 invalid_peer_token", r.status, r.body)
		}
		if strings.Contains(r.body, clientForged) {
			t.Error("the answer quotes the token")
		}
	})
	t.Run("invalid file at start", func(t *testing.T) {
		dir := t.TempDir()
		cfg := DefaultConfig()
		cfg.Gateway.Sites = []SiteConfig{{Hosts: []string{hostPrimary}, Domains: []string{"primary"}, ACME: true, Anonymous: true}}
		withPeerToken(dir, "# gateway\n\nshort-one\n")(&cfg)
		_, err := New(cfg, Options{})
		if err == nil || !strings.Contains(err.Error(), "GATEWAY__ORIGINPEERTOKENFILE") ||
			!strings.Contains(err.Error(), filepath.Join(dir, "peer-token")+":3:") || strings.Contains(err.Error(), "short-one") {
			t.Errorf("err = %v; want the key, file and line, not the token", err)
		}
	})
}

package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"
)

// tokenServer is an OAuth2 token endpoint for client credentials.
func tokenServer(t *testing.T, expiresIn int, fail *atomic.Bool) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if r.ParseForm() != nil || r.Form.Get("grant_type") != "client_credentials" || !ok ||
			id != "stella-gateway" || secret != "s3cret-from-file" || fail.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		if r.Form.Get("scope") != "concelier.mirror.read" {
			http.Error(w, "bad scope "+r.Form.Get("scope"), 400)
			return
		}
		k := n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "tok-" + itoa(int(k)), "token_type": "Bearer", "expires_in": expiresIn})
	}))
	t.Cleanup(ts.Close)
	return ts, &n
}

func TestAuthorityClientCredentials(t *testing.T) {
	tests := []struct {
		name       string
		expiresIn  int
		wantTokens []string // Authorization seen by the origin for 3 requests
		wantFetch  int64
	}{
		{"token reused while valid", 3600, []string{"Bearer tok-1", "Bearer tok-1", "Bearer tok-1"}, 1},
		{"token refreshed before expiry", 30, []string{"Bearer tok-1", "Bearer tok-2", "Bearer tok-3"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fail atomic.Bool
			ts, fetched := tokenServer(t, tt.expiresIn, &fail)
			secretFile := filepath.Join(t.TempDir(), "concelier-authority-client")
			os.WriteFile(secretFile, []byte("s3cret-from-file\n"), 0o600)
			var logs syncBuilder
			h := newHarness(t, harnessOpts{edit: func(c *Config) {
				c.Gateway.Authority = AuthoritySettings{Enabled: true, TokenURL: ts.URL, ClientID: "stella-gateway",
					ClientSecretFile: secretFile, Scopes: []string{"concelier.mirror.read"}}
			}, opts: Options{Logger: slogTo(&logs)}})
			for i, want := range tt.wantTokens {
				r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")})
				if r.status != 200 {
					t.Fatalf("request %d: %d", i, r.status)
				}
				if got := h.upstream.last().Header.Get("Authorization"); got != want {
					t.Fatalf("request %d: origin saw Authorization %q, want %q", i, got, want)
				}
			}
			if got := fetched.Load(); got != tt.wantFetch {
				t.Fatalf("token endpoint called %d times, want %d", got, tt.wantFetch)
			}
			// Authority failing: 502, counted; the secret never logged.
			fail.Store(true)
			if tt.expiresIn < 60 {
				r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")})
				if r.status != http.StatusBadGateway {
					t.Fatalf("with Authority failing: %d, want 502", r.status)
				}
				if m := h.metrics(); !strings.Contains(m, `stella_mirror_gateway_upstream_errors_total{reason="token",site="mirror-primary.localhost"} 1`) {
					t.Error("token failure not counted")
				}
				if !strings.Contains(logs.String(), "token endpoint answered 401") {
					t.Errorf("token failure not logged:\n%s", logs.String())
				}
			}
			if strings.Contains(logs.String(), "s3cret") {
				t.Fatal("client secret in the log")
			}
		})
	}
}

func TestAuthoritySecretFileMissing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Gateway.Authority = AuthoritySettings{Enabled: true, TokenURL: "https://authority.example/token", ClientID: "x",
		ClientSecretFile: filepath.Join(t.TempDir(), "missing")}
	_, err := newTokenSource(cfg.Gateway.Authority)
	if err == nil || !strings.Contains(err.Error(), "GATEWAY__AUTHORITY__CLIENTSECRETFILE") {
		t.Fatalf("err = %v, want it to name GATEWAY__AUTHORITY__CLIENTSECRETFILE", err)
	}
}

// failingTokens is a token source that fails once fail is set.
type failingTokens struct{ fail *atomic.Bool }

func (f failingTokens) Token() (*oauth2.Token, error) {
	if f.fail.Load() {
		return nil, errors.New("token endpoint down")
	}
	return &oauth2.Token{AccessToken: "tok-cache", TokenType: "Bearer"}, nil
}

// TestAuthorityWithCache: with the cache on, the origin still gets the
// bearer token on fills, and a failing token source does not stop stored
// objects from being served; what is not stored gets 502 MISS.
func TestAuthorityWithCache(t *testing.T) {
	var fail atomic.Bool
	h := newHarness(t, harnessOpts{edit: withCache(t.TempDir(), ""), opts: Options{Tokens: failingTokens{&fail}}})
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	if r := h.get(hostPrimary, primaryBundle, alice); r.status != 200 || r.header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("fill: %d %q", r.status, r.header.Get("X-Cache-Status"))
	}
	if got := h.upstream.last().Header.Get("Authorization"); got != "Bearer tok-cache" {
		t.Fatalf("origin got Authorization %q, want the token", got)
	}
	fail.Store(true)
	if r := h.get(hostPrimary, primaryBundle, alice); r.status != 200 || r.header.Get("X-Cache-Status") != "HIT" {
		t.Fatalf("stored bundle with the token source failing: %d %q", r.status, r.header.Get("X-Cache-Status"))
	}
	if r := h.get(hostCommunity, commBundle, map[string]string{"Authorization": basic("carol", "carol-pw")}); r.status != http.StatusBadGateway ||
		r.header.Get("X-Cache-Status") != "MISS" || strings.Contains(r.body, "token endpoint") {
		t.Fatalf("uncached bundle with the token source failing: %d %q %q", r.status, r.header.Get("X-Cache-Status"), r.body)
	}
}

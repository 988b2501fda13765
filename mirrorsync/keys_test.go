package mirrorsync_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

func TestKeySourceJWKSWithPEMFallback(t *testing.T) {
	pem := pubKeyFile(t)
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: testKey.Public(), KeyID: "registry-kid", Use: "sig", Algorithm: "EdDSA"}}})
	if err != nil {
		t.Fatal(err)
	}
	up := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(jwks)
	}))
	defer srv.Close()

	tests := []struct {
		name    string
		pems    []string
		up      bool
		wantKID string
		wantErr string
	}{
		{"registry reachable", []string{pem}, true, "registry-kid", ""},
		{"registry down, PEM fallback", []string{pem}, false, "pinned-kid", ""},
		{"registry down, no PEM", nil, false, "", "503"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up = tc.up
			ks, err := mirrorsync.KeySource(tc.pems, srv.URL, srv.Client(), "pinned-kid", nil)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := ks(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error %q, got %v (%v)", tc.wantErr, err, keys)
				}
				return
			}
			if err != nil || len(keys) != 1 || keys[0].KeyID != tc.wantKID {
				t.Fatalf("keys %+v, err %v; want one key with kid %q", keys, err, tc.wantKID)
			}
		})
	}
	if _, err := mirrorsync.KeySource([]string{"/nonexistent.pem"}, "", nil, "", nil); err == nil || !strings.Contains(err.Error(), "/nonexistent.pem") {
		t.Errorf("a missing PEM file: %v", err)
	}
}

// TestSyncWithSignaturesDisabled: SIGNATURE__ENABLED=false verifies
// digests only.
func TestSyncWithSignaturesDisabled(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	opts := mirrorsync.Options{Root: dst, Source: newLocal(t, src), SkipSignatures: true}
	mustRun(t, opts)
	sourcetest.CheckPublished(t, dst, fx)
}

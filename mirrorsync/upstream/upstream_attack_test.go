package upstream_test

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stella-ops/stella-mirror/mirrorsync/upstream"
)

// TestRedirectToPlainHTTPRefused: an https upstream that redirects to
// http:// (a misconfigured front, a compromised proxy) must not get the
// bearer token sent in clear text, nor downgrade the transfer: Go keeps
// Authorization across a redirect to the same host whatever the scheme.
// The redirect is refused and the run fails naming it.
func TestRedirectToPlainHTTPRefused(t *testing.T) {
	src := t.TempDir()
	writeSource(t, src, 1)
	var leaked atomic.Int32
	originH := newOrigin(t, src).Handler()
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		originH.ServeHTTP(w, r)
	}))
	defer plain.Close()
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+r.URL.RequestURI(), http.StatusFound)
	}))
	defer up.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o644)
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("s3cret-bearer\n"), 0o600)

	_, err := run(t, t.TempDir(), newSource(t, up.URL, func(o *upstream.Options) { o.CAFile, o.BearerTokenFile = ca, token }))
	if n := leaked.Load(); n > 0 {
		t.Errorf("the bearer token was sent over plain http %d time(s) after a redirect", n)
	}
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("err = %v, want the run to fail naming the https→http redirect", err)
	}
}

package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/devcert"
)

func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	ca, err := devcert.NewCA("t", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := ca.Issue(devcert.LeafOptions{Names: []string{"a.example", "www.a.example"}})
	cf, kf := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	if err := leaf.WriteFiles(cf, kf); err != nil {
		t.Fatal(err)
	}
	var loaded []string
	s, err := NewFileStore([]Pair{{Site: "a", Names: []string{"a.example", "www.a.example"}, CertFile: cf, KeyFile: kf}},
		FileOptions{OnLoaded: func(site string, l *x509.Certificate) { loaded = append(loaded, site) }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sni string
		ok  bool
	}{{"a.example", true}, {"WWW.A.example", true}, {"a.example.", true}, {"b.example", false}, {"", false}}
	for _, tt := range tests {
		t.Run("sni="+tt.sni, func(t *testing.T) {
			c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
			if (err == nil) != tt.ok || (c != nil) != tt.ok {
				t.Fatalf("cert %v err %v, want ok=%v", c != nil, err, tt.ok)
			}
		})
	}
	if len(loaded) != 1 || len(s.Files()) != 2 {
		t.Fatalf("loaded %v files %v", loaded, s.Files())
	}
	// Unchanged files: Reload reports nothing.
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 {
		t.Fatal("an unchanged pair was reloaded")
	}
}

func TestNewFileStoreErrors(t *testing.T) {
	dir := t.TempDir()
	ca, _ := devcert.NewCA("t", 0)
	write := func(name string, opts devcert.LeafOptions) (string, string) {
		l, err := ca.Issue(opts)
		if err != nil {
			t.Fatal(err)
		}
		cf, kf := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		l.WriteFiles(cf, kf)
		return cf, kf
	}
	wc, wk := write("wrong", devcert.LeafOptions{Names: []string{"other.example"}})
	ec, ek := write("expired", devcert.LeafOptions{Names: []string{"a.example"}, NotBefore: time.Now().Add(-72 * time.Hour), Validity: time.Hour})
	tests := []struct {
		name       string
		cert, key  string
		wantSubstr string
	}{
		{"missing", filepath.Join(dir, "nope.crt"), wk, "site a: reading certificate"},
		{"wrong name", wc, wk, "does not cover a.example"},
		{"expired", ec, ek, "expired at"},
		{"mismatched key", wc, ek, "private key does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewFileStore([]Pair{{Site: "a", Names: []string{"a.example"}, CertFile: tt.cert, KeyFile: tt.key}}, FileOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.wantSubstr) {
				t.Fatalf("err = %v, want %q", err, tt.wantSubstr)
			}
		})
	}
}

func TestServerConfig(t *testing.T) {
	c := ServerConfig(nil)
	if c.MinVersion != tls.VersionTLS12 {
		t.Fatal("TLS below 1.2 allowed")
	}
	for _, id := range c.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.Contains(name, "ECDHE") || !(strings.Contains(name, "GCM") || strings.Contains(name, "CHACHA20")) {
			t.Errorf("weak suite %s", name)
		}
	}
}

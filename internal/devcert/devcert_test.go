package devcert

import (
	"crypto/x509"
	"path/filepath"
	"testing"
)

func TestIssueVerifiesAgainstCA(t *testing.T) {
	ca, err := NewCA("test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(LeafOptions{Names: []string{"mirror-primary.localhost", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ok   bool
	}{
		{"mirror-primary.localhost", true},
		{"127.0.0.1", true},
		{"mirror-community.localhost", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: tt.name, Roots: ca.Pool()})
			if (err == nil) != tt.ok {
				t.Fatalf("verify %s: err=%v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
	if _, err := leaf.TLSCertificate(); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Issue(LeafOptions{}); err == nil {
		t.Fatal("Issue without names succeeded")
	}
}

func TestLoadOrCreateCAReuses(t *testing.T) {
	dir := t.TempDir()
	cp, kp := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	a, err := LoadOrCreateCA(cp, kp, "x")
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateCA(cp, kp, "x")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Cert.Equal(b.Cert) {
		t.Fatal("second load created a new CA")
	}
	leaf, err := b.Issue(LeafOptions{Names: []string{"a.localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "a.localhost", Roots: a.Pool()}); err != nil {
		t.Fatal(err)
	}
}

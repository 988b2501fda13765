// Package devcert creates a local certificate authority and server
// certificates signed by it, for the demo, tests and `make dev-certs`.
//
// It is not for production: keys are ECDSA P-256 kept in plain PEM files,
// and nothing is revoked or renewed.
package devcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/stella-ops/stella-mirror/internal/atomicfile"
)

// CA is a certificate authority that signs leaf certificates.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key signs leaf certificates.
	Key crypto.Signer
	// CertPEM is Cert in PEM form (what clients trust).
	CertPEM []byte
}

// NewCA creates a self-signed CA named name, valid for validity (ten years
// when zero).
func NewCA(name string, validity time.Duration) (*CA, error) {
	if validity == 0 {
		validity = 10 * 365 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"stella-mirror development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// LeafOptions describe a server certificate.
type LeafOptions struct {
	// Names are DNS names or IP addresses; the first is the common name.
	Names []string
	// NotBefore is the start of validity. Default: one hour ago.
	NotBefore time.Time
	// Validity is how long the certificate is valid from NotBefore.
	// Default: 825 days.
	Validity time.Duration
}

// Leaf is a signed server certificate and its key, both PEM-encoded.
type Leaf struct {
	CertPEM, KeyPEM []byte
	// Cert is the parsed certificate.
	Cert *x509.Certificate
}

// Issue signs a server certificate for opts.Names.
func (ca *CA) Issue(opts LeafOptions) (*Leaf, error) {
	if len(opts.Names) == 0 {
		return nil, errors.New("devcert: a certificate needs at least one name")
	}
	if opts.NotBefore.IsZero() {
		opts.NotBefore = time.Now().Add(-time.Hour)
	}
	if opts.Validity == 0 {
		opts.Validity = 825 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: opts.Names[0]},
		NotBefore:    opts.NotBefore,
		NotAfter:     opts.NotBefore.Add(opts.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range opts.Names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", opts.Names[0], err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Cert:    cert,
	}, nil
}

// TLSCertificate returns the leaf as a tls.Certificate.
func (l *Leaf) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(l.CertPEM, l.KeyPEM)
}

// WriteFiles writes the certificate (certPath, mode 0644) and key (keyPath,
// mode 0600) atomically.
func (l *Leaf) WriteFiles(certPath, keyPath string) error {
	if err := atomicfile.WriteFile(keyPath, l.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("writing key %s: %w", keyPath, err)
	}
	if err := atomicfile.WriteFile(certPath, l.CertPEM, 0o644); err != nil {
		return fmt.Errorf("writing certificate %s: %w", certPath, err)
	}
	return nil
}

// Pool returns a certificate pool that trusts only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// LoadOrCreateCA loads the CA from certPath and keyPath when both exist, and
// otherwise creates one named name and writes it there (key mode 0600).
func LoadOrCreateCA(certPath, keyPath, name string) (*CA, error) {
	certPEM, cerr := os.ReadFile(certPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		return parseCA(certPath, certPEM, keyPEM)
	}
	if !errors.Is(cerr, fs.ErrNotExist) && cerr != nil {
		return nil, fmt.Errorf("reading CA certificate: %w", cerr)
	}
	if !errors.Is(kerr, fs.ErrNotExist) && kerr != nil {
		return nil, fmt.Errorf("reading CA key: %w", kerr)
	}
	ca, err := NewCA(name, 0)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	for _, dir := range []string{filepath.Dir(certPath), filepath.Dir(keyPath)} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
	}
	if err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("writing CA key: %w", err)
	}
	if err := atomicfile.WriteFile(certPath, ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("writing CA certificate: %w", err)
	}
	return ca, nil
}

func parseCA(certPath string, certPEM, keyPEM []byte) (*CA, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading CA %s: %w", certPath, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("loading CA %s: %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("loading CA %s: not a CA certificate", certPath)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("loading CA %s: key cannot sign", certPath)
	}
	return &CA{Cert: cert, Key: signer, CertPEM: certPEM}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

package tlsconf

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Pair is a certificate and key in PEM files, served for Names.
type Pair struct {
	// Site names the pair in logs and metrics.
	Site string
	// Names are the SNI names the pair serves; the certificate must cover
	// every one of them.
	Names []string
	// CertFile holds the certificate chain (leaf first), KeyFile its key.
	CertFile, KeyFile string
}

// FileOptions tune a FileStore. Zero values mean the defaults beside them.
type FileOptions struct {
	// Logger receives reload results. Default: discard.
	Logger *slog.Logger
	// OnReload is called after every reload attempt of a pair with its
	// error (nil on success). Default: nothing.
	OnReload func(site string, err error)
	// OnLoaded is called with a pair's certificate whenever a new one is
	// put in service (expiry metrics). Default: nothing.
	OnLoaded func(site string, leaf *x509.Certificate)
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
}

// FileStore holds certificate pairs from PEM files and picks one by SNI.
// It is safe for concurrent use.
type FileStore struct {
	opts   FileOptions
	pairs  []*entry
	byName map[string]*entry // lower-case SNI name → entry
	mu     sync.Mutex        // serialises reloads
}

type entry struct {
	Pair
	cert atomic.Pointer[tls.Certificate]
	sum  [sha256.Size]byte // of cert+key PEM in service
}

// NewFileStore loads every pair; any error (unreadable, mismatched, expired
// or not covering its names) is returned naming the file.
func NewFileStore(pairs []Pair, opts FileOptions) (*FileStore, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &FileStore{opts: opts, byName: make(map[string]*entry)}
	var errs []error
	for _, p := range pairs {
		e := &entry{Pair: p}
		cert, sum, err := s.load(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.cert.Store(cert)
		e.sum = sum
		if opts.OnLoaded != nil {
			opts.OnLoaded(p.Site, cert.Leaf)
		}
		s.pairs = append(s.pairs, e)
		for _, n := range p.Names {
			s.byName[strings.ToLower(n)] = e
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// GetCertificate returns the certificate for hello's SNI name, or an error
// for an unknown or missing name (the handshake fails; nothing leaks).
func (s *FileStore) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.Certificate(hello.ServerName); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no certificate for server name %q", hello.ServerName)
}

// Certificate returns the certificate in service for name, or nil.
func (s *FileStore) Certificate(name string) *tls.Certificate {
	e := s.byName[strings.ToLower(strings.TrimSuffix(name, "."))]
	if e == nil {
		return nil
	}
	return e.cert.Load()
}

// Files lists every certificate and key file (for watching).
func (s *FileStore) Files() []string {
	var files []string
	for _, e := range s.pairs {
		files = append(files, e.CertFile, e.KeyFile)
	}
	return files
}

// Reload re-reads every pair. A pair whose files fail to load keeps the
// certificate in service; the errors are logged, reported to OnReload and
// returned joined. Unchanged files are not reported.
func (s *FileStore) Reload() error { return s.reload(func(*entry) bool { return true }) }

// ReloadFile re-reads the pairs that use path (as certificate or key).
func (s *FileStore) ReloadFile(path string) error {
	abs, _ := filepath.Abs(path)
	return s.reload(func(e *entry) bool {
		c, _ := filepath.Abs(e.CertFile)
		k, _ := filepath.Abs(e.KeyFile)
		return c == abs || k == abs
	})
}

func (s *FileStore) reload(match func(*entry) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, e := range s.pairs {
		if !match(e) {
			continue
		}
		cert, sum, err := s.load(e.Pair)
		if err == nil && sum == e.sum {
			continue // unchanged
		}
		if s.opts.OnReload != nil {
			s.opts.OnReload(e.Site, err)
		}
		if err != nil {
			s.opts.Logger.Error("certificate reload failed; keeping the certificate in service",
				"site", e.Site, "cert_file", e.CertFile, "error", err.Error())
			errs = append(errs, err)
			continue
		}
		e.cert.Store(cert)
		e.sum = sum
		if s.opts.OnLoaded != nil {
			s.opts.OnLoaded(e.Site, cert.Leaf)
		}
		s.opts.Logger.Info("certificate reloaded", "site", e.Site, "cert_file", e.CertFile,
			"subject", cert.Leaf.Subject.CommonName, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return errors.Join(errs...)
}

// load reads and checks a pair.
func (s *FileStore) load(p Pair) (*tls.Certificate, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, sum, fmt.Errorf("site %s: reading certificate: %w", p.Site, err)
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, sum, fmt.Errorf("site %s: reading key: %w", p.Site, err)
	}
	sum = sha256.Sum256(bytes.Join([][]byte{certPEM, keyPEM}, []byte{0}))
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, sum, fmt.Errorf("site %s: certificate %s with key %s: %w", p.Site, p.CertFile, p.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, sum, fmt.Errorf("site %s: certificate %s: %w", p.Site, p.CertFile, err)
		}
		cert.Leaf = leaf
	}
	if now := s.opts.Now(); now.After(leaf.NotAfter) {
		return nil, sum, fmt.Errorf("site %s: certificate %s expired at %s", p.Site, p.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	for _, n := range p.Names {
		if err := leaf.VerifyHostname(n); err != nil {
			return nil, sum, fmt.Errorf("site %s: certificate %s does not cover %s (it names %s)", p.Site, p.CertFile, n, strings.Join(leaf.DNSNames, ", "))
		}
	}
	return &cert, sum, nil
}

package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// ACMEOptions configure certificates obtained over ACME.
type ACMEOptions struct {
	// DirectoryURL is the CA's ACME directory, e.g. a private CA's
	// https://acme.internal/directory. Required.
	DirectoryURL string
	// Email is the ACME account contact. Default: none.
	Email string
	// StorageDir holds the account, keys and certificates. Required.
	StorageDir string
	// CARootFile, if set, is a PEM bundle trusted for the ACME directory's
	// own HTTPS (a private CA's root). Default: the system roots.
	CARootFile string
	// HTTPPort is the port the CA connects to for HTTP-01 challenges; the
	// gateway's HTTP listener must serve HTTPChallengeHandler there.
	// Default: 80.
	HTTPPort int
	// Logger receives certmagic's logs. Default: none.
	Logger *zap.Logger
	// OnResult, if set, is called after every attempt to obtain (renewal
	// false) or renew (renewal true) the certificate for name, with the
	// error of a failed attempt (nil on success). It runs synchronously in
	// certmagic's maintenance goroutine: keep it quick. Default: none.
	OnResult func(name string, renewal bool, err error)
}

// ACME obtains and renews certificates for a set of names through
// certmagic, solving HTTP-01 challenges on the gateway's HTTP listener.
type ACME struct {
	cache  *certmagic.Cache
	cfg    *certmagic.Config
	issuer *certmagic.ACMEIssuer
	names  map[string]bool
}

// NewACME prepares ACME management for names; call Manage to obtain the
// certificates.
func NewACME(names []string, o ACMEOptions) (*ACME, error) {
	if o.DirectoryURL == "" {
		return nil, errors.New("ACME: no directory URL")
	}
	if o.StorageDir == "" {
		return nil, errors.New("ACME: no storage directory")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = 80
	}
	var roots *x509.CertPool
	if o.CARootFile != "" {
		pemData, err := os.ReadFile(o.CARootFile)
		if err != nil {
			return nil, fmt.Errorf("ACME CA root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("ACME CA root %s: no PEM certificate found", o.CARootFile)
		}
	}
	a := &ACME{names: make(map[string]bool)}
	for _, n := range names {
		a.names[strings.ToLower(n)] = true
	}
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return a.cfg, nil },
		Logger:           o.Logger,
	})
	cmc := certmagic.Config{
		Storage: &certmagic.FileStorage{Path: o.StorageDir},
		Logger:  o.Logger,
	}
	if o.OnResult != nil {
		cmc.OnEvent = func(_ context.Context, event string, data map[string]any) error {
			onResult(o.OnResult, event, data)
			return nil
		}
		// Only the two events OnResult reports: handshakes emit nothing.
		cmc.ShouldEmitFunc = func(event string) bool { return event == "cert_obtained" || event == "cert_failed" }
	}
	a.cfg = certmagic.New(a.cache, cmc)
	a.issuer = certmagic.NewACMEIssuer(a.cfg, certmagic.ACMEIssuer{
		CA:                      o.DirectoryURL,
		Email:                   o.Email,
		Agreed:                  true,
		DisableTLSALPNChallenge: true,
		AltHTTPPort:             o.HTTPPort,
		TrustedRoots:            roots,
		Logger:                  o.Logger,
	})
	a.cfg.Issuers = []certmagic.Issuer{a.issuer}
	return a, nil
}

// Manage obtains (or loads from storage) a certificate for every name and
// keeps them renewed until Stop. It returns once all are in the cache.
func (a *ACME) Manage(ctx context.Context) error {
	names := make([]string, 0, len(a.names))
	for n := range a.names {
		names = append(names, n)
	}
	if err := a.cfg.ManageSync(ctx, names); err != nil {
		return fmt.Errorf("ACME: obtaining certificates for %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}

// onResult turns certmagic's cert_obtained and cert_failed events into a
// call of f; other events are ignored.
func onResult(f func(string, bool, error), event string, data map[string]any) {
	if event != "cert_obtained" && event != "cert_failed" {
		return
	}
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	var err error
	if event == "cert_failed" {
		err, _ = data["error"].(error)
		if err == nil {
			err = errors.New("certmagic reported a failure without an error")
		}
	}
	f(name, renewal, err)
}

// Renew renews the certificate for name now, even if it is not due (an
// operator's forced renewal; the tests use it to exercise renewal).
func (a *ACME) Renew(ctx context.Context, name string) error {
	if err := a.cfg.RenewCertSync(ctx, strings.ToLower(name), true); err != nil {
		return fmt.Errorf("ACME: renewing %s: %w", name, err)
	}
	return nil
}

// Stop ends renewal.
func (a *ACME) Stop() { a.cache.Stop() }

// Manages reports whether name (an SNI name) is one of the managed names.
func (a *ACME) Manages(name string) bool { return a.names[strings.ToLower(name)] }

// GetCertificate returns the managed certificate for hello's SNI name; names
// that are not managed get an error.
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if !a.names[strings.ToLower(hello.ServerName)] {
		return nil, fmt.Errorf("no certificate for server name %q", hello.ServerName)
	}
	return a.cfg.GetCertificate(hello)
}

// Leaf returns the leaf certificate in service for name, or nil.
func (a *ACME) Leaf(name string) *x509.Certificate {
	certs := a.cache.AllMatchingCertificates(strings.ToLower(name))
	if len(certs) == 0 {
		return nil
	}
	return certs[0].Leaf
}

// HTTPChallengeHandler answers ACME HTTP-01 challenges and passes every
// other request to next.
func (a *ACME) HTTPChallengeHandler(next http.Handler) http.Handler {
	return a.issuer.HTTPChallengeHandler(next)
}

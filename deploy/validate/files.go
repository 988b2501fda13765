package validate

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/gateway/basicauth"
)

// checkPublicKeyPEM accepts what the origin's Authority key loader and
// export/jws accept: SPKI public keys (EC, Ed25519, RSA), PKCS#1 RSA
// public keys and certificates.
func checkPublicKeyPEM(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return unwrapPath(err)
	}
	if _, err := jws.ParsePublicKeyPEM(data); err == nil {
		return nil
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return errors.New("no PEM block in it")
	}
	switch block.Type {
	case "PUBLIC KEY":
		_, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		_, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		_, err = x509.ParseCertificate(block.Bytes)
	default:
		err = fmt.Errorf("PEM block %q is not a public key or certificate", block.Type)
	}
	return err
}

// checkCABundle checks a PEM bundle of trusted certificates.
func (c *checker) checkCABundle(path, key, what string) {
	if _, ok := c.fileExists(path, key, what); !ok {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		c.add(Error, path, key, "%s: %v", what, unwrapPath(err))
		return
	}
	certs, err := parseCerts(data)
	switch {
	case err != nil:
		c.add(Error, path, key, "%s: %v", what, err)
	case len(certs) == 0:
		c.add(Error, path, key, "%s: no PEM certificate in it", what)
	default:
		c.checkExpiry(certs[0], path, key, what)
	}
}

// parseCerts parses every CERTIFICATE block of a PEM file.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d does not parse: %w", n, err)
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// checkExpiry records an error when cert is expired, not yet valid or
// expires within MinValidity; it returns whether it is fine.
func (c *checker) checkExpiry(cert *x509.Certificate, path, key, what string) bool {
	now := c.opts.Now()
	left := cert.NotAfter.Sub(now)
	switch {
	case left <= 0:
		c.add(Error, path, key, "%s expired on %s (subject %s)", what, cert.NotAfter.UTC().Format(time.DateOnly), cert.Subject.CommonName)
	case left < c.opts.MinValidity:
		c.add(Error, path, key, "%s expires in %d days, on %s (less than the %d days required): renew it", what,
			int(left.Hours()/24), cert.NotAfter.UTC().Format(time.DateOnly), int(c.opts.MinValidity.Hours()/24))
	case now.Before(cert.NotBefore):
		c.add(Error, path, key, "%s is not valid before %s", what, cert.NotBefore.UTC().Format(time.RFC3339))
	default:
		return true
	}
	return false
}

// checkCertPair checks a site's certificate and key files: the key is a
// private secret, the chain parses, the leaf matches the key, covers every
// host and stays valid for MinValidity. certKey and keyKey are the
// configuration keys naming the files.
func (c *checker) checkCertPair(certFile, certKey, keyFile, keyKey string, hosts []string) (*x509.Certificate, bool) {
	_, certOK := c.fileExists(certFile, certKey, "certificate")
	keyOK := c.secretFile(keyFile, keyKey, "private key", true)
	if !certOK || !keyOK {
		return nil, false
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		c.add(Error, certFile, certKey, "certificate: %v", unwrapPath(err))
		return nil, false
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		c.add(Error, keyFile, keyKey, "private key: %v", unwrapPath(err))
		return nil, false
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		c.add(Error, certFile, certKey, "certificate chain: %v", err)
		return nil, false
	}
	if len(certs) == 0 {
		c.add(Error, certFile, certKey, "no PEM certificate in it")
		return nil, false
	}
	leaf := certs[0]
	ok := true
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		msg := strings.TrimPrefix(err.Error(), "tls: ")
		if strings.Contains(msg, "does not match") {
			c.add(Error, keyFile, keyKey, "private key does not match the certificate %s (%s)", certFile, msg)
		} else {
			c.add(Error, keyFile, keyKey, "certificate and key do not load as a pair: %s", msg)
		}
		ok = false
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			c.add(Error, certFile, certKey, "certificate does not cover the site's hostname %s (it names %s)", h, strings.Join(certNames(leaf), ", "))
			ok = false
		}
	}
	if !c.checkExpiry(leaf, certFile, certKey, "certificate") {
		ok = false
	}
	return leaf, ok
}

func certNames(cert *x509.Certificate) []string {
	names := append([]string(nil), cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && cert.Subject.CommonName != "" {
		names = append(names, "CN="+cert.Subject.CommonName+" (no subjectAltName)")
	}
	if len(names) == 0 {
		names = []string{"no names"}
	}
	return names
}

// checkHtpasswd checks an htpasswd file: a secret, it parses as the
// gateway parses it, and every user is bcrypt: a legacy hash (apr1, SHA)
// is an error, as the gateway refuses to load it, or a warning when
// allowLegacy (GATEWAY__ALLOWLEGACYHASHES=true). It returns the users.
func (c *checker) checkHtpasswd(path, key string, allowLegacy bool) int {
	if !c.secretFile(path, key, "htpasswd file", false) {
		return 0
	}
	// Legacy hashes are reported below, one line each with its rehash
	// command; everything else as the gateway's loader words it.
	t, err := basicauth.LoadFile(path, basicauth.LoadOptions{AllowLegacy: true})
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "loading htpasswd "+path+": ")
		for _, line := range strings.Split(msg, "\n") {
			c.add(Error, path, key, "htpasswd: %s", line)
		}
		return 0
	}
	data, err := os.ReadFile(path)
	if err != nil {
		c.add(Error, path, key, "htpasswd: %v", unwrapPath(err))
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, _ := strings.Cut(line, ":")
		if s := hashScheme(hash); s != "bcrypt" {
			sev, tail := Error, " (or set GATEWAY__ALLOWLEGACYHASHES=true)"
			if allowLegacy {
				sev, tail = Warning, " (accepted: GATEWAY__ALLOWLEGACYHASHES=true)"
			}
			c.add(sev, path, key, "line %d: user %q uses %s, not bcrypt; rehash: htpasswd -B %s %s%s", n, user, s, path, user, tail)
		}
	}
	return t.Len()
}

// hashScheme names an htpasswd hash's scheme.
func hashScheme(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return "bcrypt"
	case strings.HasPrefix(hash, "$apr1$"):
		return "apr1-MD5 (htpasswd -m)"
	case strings.HasPrefix(hash, "$1$"):
		return "MD5-crypt"
	case strings.HasPrefix(hash, "{SHA}"):
		return "SHA-1 (htpasswd -s)"
	case strings.HasPrefix(hash, "{SSHA}"):
		return "salted SHA-1"
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return "SHA-crypt"
	}
	return "crypt or plain text"
}

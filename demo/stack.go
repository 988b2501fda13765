package demo

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/stella-ops/stella-mirror/gateway/basicauth"
	"github.com/stella-ops/stella-mirror/internal/atomicfile"
	"github.com/stella-ops/stella-mirror/internal/devcert"
)

// User is a demo user of one site.
type User struct {
	// User and Password are the Basic Auth credentials.
	User     string `json:"user"`
	Password string `json:"password"`
	// Htpasswd is the site's htpasswd file.
	Htpasswd string `json:"htpasswd"`
}

// siteHost is the demo hostname of a domain.
func siteHost(domain string) string { return "mirror-" + domain + ".localhost" }

// demoSite is what the demo prepares for one domain.
type demoSite struct {
	domain, host      string
	certFile, keyFile string
	user              User
}

// ensureCA loads or creates the demo CA in dir/tls.
func ensureCA(dir string) (*devcert.CA, string, error) {
	certPath := filepath.Join(dir, "tls", "ca.pem")
	ca, err := devcert.LoadOrCreateCA(certPath, filepath.Join(dir, "tls", "ca.key"), "stella-mirror demo CA")
	if err != nil {
		return nil, "", fmt.Errorf("demo CA: %w", err)
	}
	return ca, certPath, nil
}

// ensureSite issues a fresh certificate for the domain's host and makes
// sure its htpasswd file holds the demo user (password kept beside it so
// restarts reuse it).
func ensureSite(dir string, ca *devcert.CA, domain string) (demoSite, error) {
	s := demoSite{domain: domain, host: siteHost(domain),
		certFile: filepath.Join(dir, "tls", domain+".crt"), keyFile: filepath.Join(dir, "tls", domain+".key")}
	leaf, err := ca.Issue(devcert.LeafOptions{Names: []string{s.host}})
	if err != nil {
		return s, err
	}
	if err := leaf.WriteFiles(s.certFile, s.keyFile); err != nil {
		return s, err
	}
	authDir := filepath.Join(dir, "auth")
	if err := os.MkdirAll(authDir, 0o700); err != nil {
		return s, fmt.Errorf("creating %s: %w", authDir, err)
	}
	s.user = User{User: "demo-" + domain, Htpasswd: filepath.Join(authDir, domain+".htpasswd")}
	pwPath := filepath.Join(authDir, domain+".password")
	pw, err := os.ReadFile(pwPath)
	switch {
	case err == nil && len(strings.TrimSpace(string(pw))) > 0:
		s.user.Password = strings.TrimSpace(string(pw))
	case err == nil || errors.Is(err, fs.ErrNotExist):
		b := make([]byte, 12)
		if _, err := rand.Read(b); err != nil {
			return s, err
		}
		s.user.Password = base64.RawURLEncoding.EncodeToString(b)
		if err := atomicfile.WriteFile(pwPath, []byte(s.user.Password+"\n"), 0o600); err != nil {
			return s, fmt.Errorf("writing demo password: %w", err)
		}
	default:
		return s, fmt.Errorf("reading demo password: %w", err)
	}
	// Rewrite the htpasswd file unless it already verifies the password.
	if f, err := basicauth.Open(s.user.Htpasswd, basicauth.Options{CacheTTL: -1}); err == nil && f.Authenticate(s.user.User, s.user.Password) {
		return s, nil
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(s.user.Password), 10)
	if err != nil {
		return s, err
	}
	if err := atomicfile.WriteFile(s.user.Htpasswd, []byte(s.user.User+":"+string(hash)+"\n"), 0o600); err != nil {
		return s, fmt.Errorf("writing demo htpasswd: %w", err)
	}
	return s, nil
}

// ensureAdminToken returns the path of the gateway's admin token file in
// dir/auth, creating a random token the first time.
func ensureAdminToken(dir string) (string, error) {
	path := filepath.Join(dir, "auth", "gateway-admin.token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 16 {
		return path, nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if err := atomicfile.WriteFile(path, []byte(base64.RawURLEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing demo admin token: %w", err)
	}
	return path, nil
}

// originYAML is the origin configuration the demo writes and runs with.
type originYAML struct {
	Concelier struct {
		Mirror struct {
			Enabled    bool   `yaml:"enabled"`
			ExportRoot string `yaml:"exportRoot"`
		} `yaml:"mirror"`
	} `yaml:"concelier"`
	Excititor struct {
		Mirror struct {
			Enabled bool `yaml:"enabled"`
		} `yaml:"mirror"`
		Artifacts struct {
			FileSystem struct {
				Root string `yaml:"root"`
			} `yaml:"fileSystem"`
		} `yaml:"artifacts"`
	} `yaml:"excititor"`
	Origin struct {
		Listen      string `yaml:"listen"`
		AdminListen string `yaml:"adminListen"`
		LogFormat   string `yaml:"logFormat"`
	} `yaml:"origin"`
}

// gatewayYAML is the gateway configuration the demo writes and runs with.
type gatewayYAML struct {
	Gateway struct {
		Listen      string `yaml:"listen"`
		HTTPListen  string `yaml:"httpListen"`
		AdminListen string `yaml:"adminListen"`
		Origin      string `yaml:"origin"`
		LogFormat   string `yaml:"logFormat"`
		Cache       struct {
			Dir string `yaml:"dir"`
		} `yaml:"cache"`
		AdminTokenFile  string         `yaml:"adminTokenFile"`
		OriginStatusURL string         `yaml:"originStatusURL"`
		Sites           []gatewaySiteY `yaml:"sites"`
	} `yaml:"gateway"`
}

type gatewaySiteY struct {
	Hosts        []string `yaml:"hosts"`
	Domains      []string `yaml:"domains"`
	CertFile     string   `yaml:"certFile"`
	KeyFile      string   `yaml:"keyFile"`
	HtpasswdFile string   `yaml:"htpasswdFile"`
}

// writeYAML writes v with a header comment.
func writeYAML(path, comment string, v any) error {
	var buf bytes.Buffer
	buf.WriteString(comment)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return err
	}
	data := buf.Bytes()
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

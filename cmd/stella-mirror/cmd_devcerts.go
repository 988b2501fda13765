package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/internal/atomicfile"
	"github.com/stella-ops/stella-mirror/internal/devcert"
)

// siteSpec is one --site NAME=HOST[,HOST...] value.
type siteSpec struct {
	name  string
	hosts []string
}

// sitesFlag collects --site values.
type sitesFlag []siteSpec

var siteNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (s *sitesFlag) String() string {
	var parts []string
	for _, v := range *s {
		parts = append(parts, v.name+"="+strings.Join(v.hosts, ","))
	}
	return strings.Join(parts, " ")
}

func (s *sitesFlag) Set(v string) error {
	name, hosts, ok := strings.Cut(v, "=")
	if !ok || !siteNameRE.MatchString(name) {
		return fmt.Errorf("%q: want NAME=HOST[,HOST...] with NAME like primary ([a-z0-9-])", v)
	}
	spec := siteSpec{name: name}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" || strings.ContainsAny(h, " /@*") {
			return fmt.Errorf("%q: empty or malformed host name", v)
		}
		spec.hosts = append(spec.hosts, h)
	}
	for _, prev := range *s {
		if prev.name == name {
			return fmt.Errorf("site %q given twice", name)
		}
	}
	*s = append(*s, spec)
	return nil
}

// defaultDevSites are the sites the example env file names.
var defaultDevSites = sitesFlag{
	{"primary", []string{"mirror-primary.localhost"}},
	{"community", []string{"mirror-community.localhost"}},
}

func runDevCerts(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev-certs", "[--out tls] [--site NAME=HOST[,HOST...]]... [--days 90]",
		`Create a development certificate authority and one server certificate per
site, for a lab or test deployment of the gateway. Not for production: use
your organisation's CA or ACME (GATEWAY__SITES__{n}__ACME) there.

Files written in --out (the layout compose/ and docs/operations.md expect):
  ca.pem            the CA certificate: give it to clients (curl --cacert)
  ca.key.pem        the CA key (0600); reused by later runs, so clients keep
                    trusting the same CA; delete both to start a new CA
  <site>.crt        the site's certificate (leaf), signed by the CA
  <site>.key        its ECDSA P-256 key (0600)
Site certificates are issued anew on every run; the gateway reloads them
without a restart. Rewritten files keep their owner, group and mode (a key
never becomes readable by others), so after a one-time chown to the
containers' user (65532, see tls/README.md), or chgrp stella-mirror and
chmod 0640 (systemd, docs/operations.md), renewals stay readable by the
gateway.

Without --site the example profile's sites are used:
  primary=mirror-primary.localhost community=mirror-community.localhost
Host names may include IP addresses (127.0.0.1, ::1).

Examples:
  stella-mirror dev-certs --out tls
  stella-mirror dev-certs --out tls --site primary=mirror-primary.example.org --site community=mirror-community.example.org,mirror.example.org
  make dev-certs SITES="primary=mirror-primary.lab community=mirror-community.lab"`, stderr)
	out := fs.String("out", "tls", "output `directory` (created 0755 if missing)")
	var sites sitesFlag
	fs.Var(&sites, "site", "site `NAME=HOST[,HOST...]`; repeatable (default: primary and community on *.localhost)")
	days := fs.Int("days", 90, "validity of the site certificates in `days` (the CA: 10 years)")
	caName := fs.String("ca-name", "stella-mirror development CA", "common `name` of a new CA")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(sites) == 0 {
		sites = defaultDevSites
	}
	if *days < 1 || *days > 825 {
		fmt.Fprintf(stderr, "stella-mirror dev-certs: --days %d: want 1 to 825\n", *days)
		return errUsage
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	caCert, caKey := filepath.Join(*out, "ca.pem"), filepath.Join(*out, "ca.key.pem")
	_, statErr := os.Stat(caCert)
	ca, err := devcert.LoadOrCreateCA(caCert, caKey, *caName)
	if err != nil {
		return err
	}
	if statErr == nil {
		fmt.Fprintf(stdout, "CA:   %s (reused; subject %q)\n", caCert, ca.Cert.Subject.CommonName)
	} else {
		fmt.Fprintf(stdout, "CA:   %s (new; key %s, 0600)\n", caCert, caKey)
	}
	for _, s := range sites {
		leaf, err := ca.Issue(devcert.LeafOptions{Names: s.hosts, Validity: time.Duration(*days) * 24 * time.Hour})
		if err != nil {
			return fmt.Errorf("site %s: %w", s.name, err)
		}
		crt, key := filepath.Join(*out, s.name+".crt"), filepath.Join(*out, s.name+".key")
		// The key first: the gateway pairs files on reload, and a new
		// certificate never lands before the key it needs.
		// Rewrites keep the files' owner (e.g. the containers' uid 65532).
		// They keep their mode too (a key never readable by others): the
		// systemd layout's root:stella-mirror 0640 stays readable by the
		// gateway's group after a renewal.
		if err := atomicfile.WriteFileKeepOwner(key, leaf.KeyPEM, renewalMode(key, 0o600)&^0o007); err != nil {
			return err
		}
		if err := atomicfile.WriteFileKeepOwner(crt, leaf.CertPEM, renewalMode(crt, 0o644)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "site: %-10s %s + %s for %s (until %s)\n", s.name, crt, key,
			strings.Join(s.hosts, ", "), leaf.Cert.NotAfter.UTC().Format("2006-01-02"))
	}
	fmt.Fprintf(stdout, "trust: curl --cacert %s https://%s/...\n", caCert, sites[0].hosts[0])
	return nil
}

// renewalMode is the mode of the file at path, or def when there is none.
func renewalMode(path string, def os.FileMode) os.FileMode {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return fi.Mode().Perm()
	}
	return def
}

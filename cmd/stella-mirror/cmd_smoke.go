package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/stella-ops/stella-mirror/deploy/smoke"
	"github.com/stella-ops/stella-mirror/export/jws"
)

func runSmoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("smoke", "--base URL --domain D --public-key PEM [--user U --password-file F] [--cacert CA] [--origin URL] [--probe-budget] [--expect-cache] [--connect-to HOST:PORT]",
		`Run the runbook's smoke tests against a live site (the Go gateway or the
nginx front) and print one line per check:

  PASS name detail   the check held (detail says what was seen)
  FAIL name reason   the check failed (reason says what came back instead)
  SKIP name reason   the check did not apply (opt-in, no --origin, ...)

Checks, in order: `+strings.Join(smoke.Checks, ", ")+`.
  gateway-auth         no credentials → 401 with a Basic challenge (needs --user)
  index                index with Basic Auth parses, has the keys domains,
                       exportId, generatedAt, schemaVersion, lists --domain
  index-cache-control  Cache-Control: public, max-age=60
  manifest             Cache-Control: public, max-age=300, immutable; parses
  bundle-jws           bundle.json verifies against bundle.json.jws with
                       --public-key, and matches the manifest's digest
  coherence            index, manifest, bundle and JWS of the export the index
                       names, by its pinned URLs (/concelier/exports/{exportId}/…),
                       verified as one chain: index → manifest digest → bundle
                       digest → JWS with --public-key; Cache-Control: public,
                       max-age=31536000, immutable. SKIP when the site has no
                       pinned URLs (404 on the pinned index)
  excititor            /excititor/mirror/D/index lists .exports[].exportKey
  excititor-jws        the smallest export verifies against its signature
  cache-status         X-Cache-Status on a repeated manifest request; absent
                       is a SKIP unless --expect-cache (then a HIT is required)
  origin-auth          --origin without credentials → 401 + WWW-Authenticate:
                       Bearer (give --origin only where the origin requires auth)
  budget               --probe-budget: index requests until 429 + Retry-After
                       (at most --probe-limit; spends the user's index budget)

The exit status is 1 when any check failed, 2 on a usage error. The password
is read from a file (trailing newline trimmed) so that it never shows in ps.
Credentials go to --base only, never to --origin.

Example:
  stella-mirror smoke --base https://mirror-primary.example.org --domain primary \
    --user alice --password-file ~/.mirror-password --cacert tls/ca.pem \
    --public-key keys/signing.pub.pem --origin http://10.0.0.5:8080 --expect-cache
  # test a name DNS does not know yet against the host at 10.0.0.7:443:
  stella-mirror smoke --base https://mirror-primary.example.org --connect-to 10.0.0.7:443 ...
  # *.localhost names (the demo's) dial loopback, RFC 6761: no --connect-to
  stella-mirror smoke --base https://mirror-primary.localhost:8443 --domain primary ...`, stderr)
	base := fs.String("base", "", "site base `URL`, e.g. https://mirror-primary.example.org (required)")
	domain := fs.String("domain", "", "mirror `domain` the site serves, e.g. primary (required)")
	user := fs.String("user", "", "Basic Auth `user` (omit for an anonymous site)")
	passwordFile := fs.String("password-file", "", "`file` holding the user's password (required with --user)")
	caFile := fs.String("cacert", "", "PEM `file` of the CA that signed the site's certificate (default: system roots)")
	var pubKeys stringList
	fs.Var(&pubKeys, "public-key", "PEM public key `file` that verifies the detached JWS (required; repeatable)")
	originURL := fs.String("origin", "", "origin base `URL` to check for 401 + Bearer without credentials (default: skip)")
	probe := fs.Bool("probe-budget", false, "probe the index budget until 429 + Retry-After (spends the user's budget)")
	probeLimit := fs.Int("probe-limit", 200, "most `requests` the budget probe sends")
	expectCache := fs.Bool("expect-cache", false, "fail when X-Cache-Status is absent or a repeated request is not a HIT")
	connectTo := fs.String("connect-to", "", "connect to `host:port` instead of the --base host (TLS name and Host stay)")
	timeout := fs.Duration("timeout", 0, "per-request `timeout`, body included (default 2m)")
	skip := fs.String("skip", "", "comma-separated check `names` not to run")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts := smoke.Options{Base: *base, Domain: *domain, User: *user, Origin: *originURL,
		ProbeBudget: *probe, ProbeLimit: *probeLimit, ExpectCache: *expectCache,
		ConnectTo: *connectTo, Timeout: *timeout}
	if *skip != "" {
		opts.Skip = strings.Split(*skip, ",")
	}
	var errs []error
	if *base == "" {
		errs = append(errs, errors.New("--base: required"))
	}
	if *domain == "" {
		errs = append(errs, errors.New("--domain: required"))
	}
	switch {
	case *user != "" && *passwordFile == "":
		errs = append(errs, errors.New("--password-file: required with --user"))
	case *user == "" && *passwordFile != "":
		errs = append(errs, errors.New("--user: required with --password-file"))
	case *passwordFile != "":
		data, err := os.ReadFile(*passwordFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--password-file: %w", err))
		} else {
			opts.Password = strings.TrimRight(string(data), "\r\n")
		}
	}
	if *caFile != "" {
		data, err := os.ReadFile(*caFile)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--cacert: %w", err))
		case !pool.AppendCertsFromPEM(data):
			errs = append(errs, fmt.Errorf("--cacert %s: no PEM certificate in it", *caFile))
		default:
			opts.RootCAs = pool
		}
	}
	for _, p := range pubKeys {
		k, err := jws.LoadPublicKeyPEM(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("--public-key: %w", err))
			continue
		}
		opts.PublicKeys = append(opts.PublicKeys, jws.PublicKey{Key: k})
	}
	if len(errs) > 0 {
		fmt.Fprintf(stderr, "stella-mirror smoke: %v\n", errors.Join(errs...))
		return errUsage
	}
	rep, err := smoke.Run(ctx, opts, func(r smoke.Result) { fmt.Fprintln(stdout, r.String()) })
	if err != nil {
		fmt.Fprintf(stderr, "stella-mirror smoke: %v\n", err)
		return errUsage
	}
	if failed := rep.Failed(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, f := range failed {
			names[i] = f.Name
		}
		return fmt.Errorf("%d of %d checks failed: %s", len(failed), len(rep.Results), strings.Join(names, ", "))
	}
	return nil
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/stella-ops/stella-mirror/internal/loopname"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// healthcheckURLEnv names the environment variable that sets the default
// --url of healthcheck, so one image HEALTHCHECK line serves the origin and
// the gateway (each container sets its own admin address).
const healthcheckURLEnv = "STELLA_MIRROR_HEALTHCHECK_URL"

// defaultHealthcheckURL is the origin's readiness endpoint on its default
// admin listener.
const defaultHealthcheckURL = "http://127.0.0.1:9090/health/ready"

func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	def := os.Getenv(healthcheckURLEnv)
	if def == "" {
		def = defaultHealthcheckURL
	}
	fs := newFlagSet("healthcheck", "[--url URL] [--timeout 5s] [--cacert FILE]",
		`Probe a health endpoint once and exit 0 when it answers 200, 1 otherwise
(connection refused, timeout, TLS failure, any other status). Made for a
container HEALTHCHECK in the scratch image, which has no curl or shell.
Redirects are not followed; the response body is discarded (at most 64 KiB
is read). One line goes to stdout on success and to stderr on failure.

The default URL is $`+healthcheckURLEnv+` when set, else
`+defaultHealthcheckURL+` (the origin's admin listener; the
gateway's is http://127.0.0.1:9091/health/ready).

Examples:
  stella-mirror healthcheck
  stella-mirror healthcheck --url http://127.0.0.1:9091/health/ready --timeout 3s
  stella-mirror healthcheck --url https://mirror.example.org:8443/health/live --cacert ca.pem

Dockerfile / compose:
  HEALTHCHECK CMD ["/stella-mirror", "healthcheck"]
  healthcheck: {test: ["CMD", "/stella-mirror", "healthcheck", "--url", "http://127.0.0.1:9091/health/ready"]}`, stderr)
	target := fs.String("url", def, "http or https `URL` to probe")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on the whole probe (connect, TLS, headers)")
	cacert := fs.String("cacert", "", "PEM `file` of CAs trusted for an https URL (default: the system roots)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	u, err := url.Parse(*target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "stella-mirror healthcheck: --url %q: want an http:// or https:// URL with a host\n", *target)
		return errUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "stella-mirror healthcheck: --timeout %s: must be positive\n", *timeout)
		return errUsage
	}
	client, err := healthcheckClient(*cacert, *timeout)
	if err != nil {
		return err
	}
	status, err := probe(ctx, client, u.String(), *timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "healthy: %s answered %d\n", u.Redacted(), status)
	return nil
}

// healthcheckClient returns a client that never follows redirects and,
// when cacert is set, trusts only the CAs in it.
func healthcheckClient(cacert string, timeout time.Duration) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:                 nil,                                                        // a health probe goes to the address given, never through a proxy
		DialContext:           loopname.Wrap((&net.Dialer{Timeout: timeout}).DialContext), // *.localhost is loopback
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		DisableKeepAlives:     true,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if cacert != "" {
		pemData, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", cacert)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// probe sends one GET and returns the status when it is 200.
func probe(ctx context.Context, client *http.Client, target string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "stella-mirror-healthcheck")
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("unhealthy: %s: no answer within %s", target, timeout)
		}
		return 0, fmt.Errorf("unhealthy: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("unhealthy: %s answered %d: %s", target, resp.StatusCode, firstLine(body))
	}
	return resp.StatusCode, nil
}

// firstLine returns the first line of b, at most 200 bytes, for a log line.
func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b = b[:i]
			break
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

package loopname

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestIs(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"LOCALHOST.", true},
		{"mirror-primary.localhost", true},
		{"a.b.Localhost.", true},
		{".localhost", false},
		{"localhost.example.com", false},
		{"notlocalhost", false},
		{"example.com", false},
		{"127.0.0.1", false},
		{"", false},
	} {
		if got := Is(tc.host); got != tc.want {
			t.Errorf("Is(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

// TestWrapRewritesOnlyLocalhostNames records the addresses the wrapped
// dialer passes on.
func TestWrapRewritesOnlyLocalhostNames(t *testing.T) {
	for _, tc := range []struct {
		network, addr string
		want          []string
	}{
		{"tcp", "mirror-primary.localhost:8443", []string{"127.0.0.1:8443", "[::1]:8443"}},
		{"tcp6", "x.localhost:1", []string{"[::1]:1"}},
		{"tcp4", "x.localhost:1", []string{"127.0.0.1:1"}},
		{"tcp", "example.com:443", []string{"example.com:443"}},
		{"tcp", "localhost.example.com:443", []string{"localhost.example.com:443"}},
	} {
		var got []string
		dial := Wrap(func(_ context.Context, _, addr string) (net.Conn, error) {
			got = append(got, addr)
			return nil, &net.OpError{Op: "dial", Err: io.EOF}
		})
		if _, err := dial(context.Background(), tc.network, tc.addr); err == nil {
			t.Fatalf("%s: want the recorded dial error", tc.addr)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s %s dialled %v, want %v", tc.network, tc.addr, got, tc.want)
		}
	}
}

// TestHTTPSToLocalhostName fetches https://mirror-primary.localhost:PORT
// from a real TLS server on loopback: the dial goes to 127.0.0.1 and the
// certificate is verified for the name (httptest's certificate is for
// example.com, so the client's ServerName is checked against that).
func TestHTTPSToLocalhostName(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "host="+r.Host)
	}))
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	d := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:     Wrap(d.DialContext),
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"},
	}}
	resp, err := client.Get("https://mirror-primary.localhost:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := "host=mirror-primary.localhost:" + port; string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
}

func TestNoProxy(t *testing.T) {
	proxy, _ := url.Parse("http://proxy.example:3128")
	p := NoProxy(http.ProxyURL(proxy))
	for _, tc := range []struct {
		url  string
		want bool
	}{{"https://mirror-primary.localhost:8443/x", false}, {"http://localhost/x", false}, {"https://mirror.example.org/x", true}} {
		req, _ := http.NewRequest("GET", tc.url, nil)
		got, err := p(req)
		if err != nil || (got != nil) != tc.want {
			t.Errorf("%s: proxy %v (%v), want proxied %v", tc.url, got, err, tc.want)
		}
	}
}

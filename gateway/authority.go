package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// tokenRefreshEarly renews the token this long before it expires, so a
// request never carries one that lapses on the way.
const tokenRefreshEarly = time.Minute

// newTokenSource returns the OAuth2 client-credentials token source for
// GATEWAY__AUTHORITY: the secret is read from its file once at start (never
// logged), tokens are cached and renewed tokenRefreshEarly before expiry.
func newTokenSource(a AuthoritySettings) (oauth2.TokenSource, error) {
	data, err := os.ReadFile(a.ClientSecretFile)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY__AUTHORITY__CLIENTSECRETFILE: %w", err)
	}
	secret := strings.TrimRight(string(data), "\r\n")
	if secret == "" {
		return nil, fmt.Errorf("GATEWAY__AUTHORITY__CLIENTSECRETFILE: %s is empty", a.ClientSecretFile)
	}
	cc := &clientcredentials.Config{
		ClientID: a.ClientID, ClientSecret: secret, TokenURL: a.TokenURL, Scopes: a.Scopes,
	}
	if a.Audience != "" {
		cc.EndpointParams = url.Values{"audience": {a.Audience}}
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
	}
	if a.CAFile != "" {
		pemData, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, fmt.Errorf("GATEWAY__AUTHORITY__CAFILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("GATEWAY__AUTHORITY__CAFILE: %s holds no PEM certificate", a.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, client)
	e := &earlyRefresh{fetch: func() (*oauth2.Token, error) { return cc.Token(ctx) }, tok: make(chan *oauth2.Token, 1)}
	e.tok <- nil
	return e, nil
}

// earlyRefresh caches a token and fetches a new one tokenRefreshEarly before
// the cached one expires. Errors are wrapped without the response body
// (which could echo credentials).
type earlyRefresh struct {
	fetch func() (*oauth2.Token, error) // always asks the token endpoint
	tok   chan *oauth2.Token            // one-slot mutex holding the current token
}

func (e *earlyRefresh) Token() (*oauth2.Token, error) {
	t := <-e.tok
	defer func() { e.tok <- t }()
	if t != nil && t.AccessToken != "" && (t.Expiry.IsZero() || time.Until(t.Expiry) > tokenRefreshEarly) {
		return t, nil
	}
	nt, err := e.fetch()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			return nil, fmt.Errorf("token endpoint answered %d (%s)", re.Response.StatusCode, re.ErrorCode)
		}
		return nil, fmt.Errorf("obtaining token: %w", err)
	}
	t = nt
	return t, nil
}

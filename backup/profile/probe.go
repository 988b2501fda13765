package profile

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/stella-ops/stella-mirror/gateway"
)

// probeTimeout bounds each connection of ProbeGateways.
const probeTimeout = 10 * time.Second

// ProbeGateways starts each gateway of the profile in-process on loopback
// (ephemeral ports, no plain-HTTP listener) and checks that every site with
// certificate files presents exactly its restored certificate for its first
// host name and that a request without credentials is refused with 401 and
// a Basic challenge (anonymous sites: answered at all). Sites using ACME
// are not probed. It returns one line per check and every failure joined.
func ProbeGateways(ctx context.Context, p *Profile) ([]string, error) {
	var lines []string
	var errs []error
	for _, c := range p.Configs {
		if c.Gateway == nil {
			continue
		}
		l, err := probeGateway(ctx, *c.Gateway)
		lines = append(lines, l...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Path, err))
		}
	}
	return lines, errors.Join(errs...)
}

func probeGateway(ctx context.Context, cfg gateway.Config) ([]string, error) {
	g := &cfg.Gateway
	for _, s := range g.Sites {
		if s.ACME {
			return []string{fmt.Sprintf("gateway with ACME site %v not started (it would contact the CA)", s.Hosts)}, nil
		}
	}
	g.Listen, g.HTTPListen, g.AdminListen = "127.0.0.1:0", "", "127.0.0.1:0"
	g.ShutdownTimeout = 2 * time.Second
	gw, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		return nil, err
	}
	ls, err := gateway.Listen(*g)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	up := make(chan struct{})
	go func() { done <- gw.Serve(ctx, ls, func() { close(up) }) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-up:
	case err := <-done:
		return nil, fmt.Errorf("gateway stopped before serving: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	addr := ls.HTTPS.Addr().String()
	var lines []string
	var errs []error
	for _, s := range g.Sites {
		if len(s.Hosts) == 0 {
			continue
		}
		host := s.Hosts[0]
		if err := probeSite(ctx, addr, host, s); err != nil {
			errs = append(errs, fmt.Errorf("site %s: %w", host, err))
			continue
		}
		what := "asks for credentials (401 Basic)"
		if s.Anonymous {
			what = "answers"
		}
		lines = append(lines, fmt.Sprintf("gateway site %s presents its restored certificate and %s", host, what))
	}
	return lines, errors.Join(errs...)
}

func probeSite(ctx context.Context, addr, host string, s gateway.SiteConfig) error {
	want, err := firstCertDER(s.CertFile)
	if err != nil {
		return err
	}
	var got []byte
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: probeTimeout}).DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig: &tls.Config{
			ServerName: host,
			// The chain is checked against the restored file below, byte
			// for byte; trust in a CA is not what the drill tests.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) > 0 {
					got = cs.PeerCertificates[0].Raw
				}
				return nil
			},
		},
		TLSHandshakeTimeout: probeTimeout,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: probeTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/concelier/exports/index.json", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if !bytes.Equal(got, want) {
		return fmt.Errorf("the certificate served is not the one in %s", s.CertFile)
	}
	if !s.Anonymous && (resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "") {
		return fmt.Errorf("a request without credentials answered %s, want 401 with a Basic challenge", resp.Status)
	}
	return nil
}

// firstCertDER returns the DER of the first certificate in a PEM file.
func firstCertDER(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%s: no certificate", name)
		}
		if b.Type == "CERTIFICATE" {
			return b.Bytes, nil
		}
	}
}

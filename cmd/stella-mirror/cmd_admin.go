package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// The admin clients (purge, status) find the gateway's admin listener and
// token the way the gateway does: from GATEWAY__ADMINLISTEN and
// GATEWAY__ADMINTOKENFILE, so that inside the container
// `docker compose exec gateway stella-mirror purge --all` needs no flags
// (the scratch image has no curl and no shell).
const defaultAdminListen = "127.0.0.1:9091"

// adminBase returns the admin listener's base URL for listen (host:port;
// an unspecified host means the loopback address).
func adminBase(listen string) (string, error) {
	if strings.Contains(listen, "://") {
		u, err := url.Parse(listen)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("--admin %q: want host:port or an http:// URL", listen)
		}
		return strings.TrimSuffix(u.String(), "/"), nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--admin %q: want host:port (GATEWAY__ADMINLISTEN): %v", listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

func adminFlagsDefault() (listen, tokenFile string) {
	listen = os.Getenv("GATEWAY__ADMINLISTEN")
	if listen == "" {
		listen = defaultAdminListen
	}
	return listen, os.Getenv("GATEWAY__ADMINTOKENFILE")
}

// adminClient bounds every exchange with the admin listener.
func adminClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
		DialContext: (&net.Dialer{Timeout: timeout}).DialContext, ResponseHeaderTimeout: timeout},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// readAdminToken reads the token file as the gateway does (one token,
// trailing newline ignored). The token itself never appears in a message.
func readAdminToken(path string) (string, error) {
	if path == "" {
		return "", errors.New("no admin token file: set --token-file or GATEWAY__ADMINTOKENFILE (the gateway serves /admin/cache/purge only with one)")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimRight(string(data), "\r\n")
	if tok == "" {
		return "", fmt.Errorf("--token-file %s: is empty (write the gateway's admin token into it)", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("--token-file %s: want one token without spaces", path)
	}
	return tok, nil
}

func runPurge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	defListen, defToken := adminFlagsDefault()
	fs := newFlagSet("purge", "(--all | --path /P ...) [--admin HOST:PORT] [--token-file F]",
		`Purge the gateway's cache through its admin listener (POST
/admin/cache/purge with the admin bearer token). The admin address and the
token file default to the gateway's own settings, GATEWAY__ADMINLISTEN and
GATEWAY__ADMINTOKENFILE, so inside the gateway container no flags are needed
(the image has no shell or curl). Prints how many stored objects each purge
removed. Exit status 1 when the gateway refuses (401: wrong token; 404: no
cache, or no admin token configured).

Examples:
  docker compose exec gateway stella-mirror purge --all
  docker compose exec gateway stella-mirror purge --path /concelier/exports/index.json
  stella-mirror purge --admin 127.0.0.1:9091 --token-file secrets/admin-token --all`, stderr)
	admin := fs.String("admin", defListen, "admin listener `host:port` or URL (default $GATEWAY__ADMINLISTEN, else "+defaultAdminListen+")")
	tokenFile := fs.String("token-file", defToken, "`file` with the admin bearer token (default $GATEWAY__ADMINTOKENFILE)")
	all := fs.Bool("all", false, "purge every stored object")
	var paths stringList
	fs.Var(&paths, "path", "absolute request `path` to purge, e.g. /concelier/exports/index.json (repeatable)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on each request")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *all == (len(paths) > 0) {
		fmt.Fprintln(stderr, "stella-mirror purge: give either --all or --path (not both)")
		fs.Usage()
		return errUsage
	}
	for _, p := range paths {
		if !strings.HasPrefix(p, "/") {
			fmt.Fprintf(stderr, "stella-mirror purge: --path %q: want an absolute path starting with /\n", p)
			return errUsage
		}
	}
	base, err := adminBase(*admin)
	if err != nil {
		fmt.Fprintf(stderr, "stella-mirror purge: %v\n", err)
		return errUsage
	}
	tok, err := readAdminToken(*tokenFile)
	if err != nil {
		return err
	}
	client := adminClient(*timeout)
	queries := []string{"all=true"}
	if !*all {
		queries = queries[:0]
		for _, p := range paths {
			queries = append(queries, "path="+url.QueryEscape(p))
		}
	}
	for _, q := range queries {
		body, err := adminDo(ctx, client, http.MethodPost, base+"/admin/cache/purge?"+q, tok)
		if err != nil {
			return err
		}
		var res struct {
			Purged *int `json:"purged"`
		}
		if err := json.Unmarshal(body, &res); err != nil || res.Purged == nil {
			return fmt.Errorf("purge %s: unexpected answer %q", q, truncate(body))
		}
		what, _ := url.QueryUnescape(strings.TrimPrefix(strings.TrimPrefix(q, "path="), "all=true"))
		if what == "" {
			what = "everything"
		}
		fmt.Fprintf(stdout, "purged %d stored objects (%s)\n", *res.Purged, what)
	}
	return nil
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	defListen, _ := adminFlagsDefault()
	fs := newFlagSet("status", "[--admin HOST:PORT] [--metrics]",
		`Print the gateway's status page (/status.json on the admin listener:
sites, traffic, cache, certificates, the export served) as indented JSON,
or with --metrics its Prometheus metrics (/metrics, text format) — e.g.
stella_mirror_gateway_origin_up during an origin outage. The admin address
defaults to GATEWAY__ADMINLISTEN, so inside the gateway container no flags
are needed.

Examples:
  docker compose exec gateway /stella-mirror status
  docker compose exec gateway /stella-mirror status --metrics | grep origin_up
  stella-mirror status --admin 127.0.0.1:9091`, stderr)
	admin := fs.String("admin", defListen, "admin listener `host:port` or URL (default $GATEWAY__ADMINLISTEN, else "+defaultAdminListen+")")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the request")
	metrics := fs.Bool("metrics", false, "print the Prometheus metrics (/metrics) instead of the status page")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	base, err := adminBase(*admin)
	if err != nil {
		fmt.Fprintf(stderr, "stella-mirror status: %v\n", err)
		return errUsage
	}
	if *metrics {
		body, err := adminDo(ctx, adminClient(*timeout), http.MethodGet, base+"/metrics", "")
		if err != nil {
			return err
		}
		_, err = stdout.Write(body)
		return err
	}
	body, err := adminDo(ctx, adminClient(*timeout), http.MethodGet, base+"/status.json", "")
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return fmt.Errorf("status: not JSON: %q", truncate(body))
	}
	out.WriteByte('\n')
	_, err = stdout.Write(out.Bytes())
	return err
}

// adminDo sends one request and returns the body of a 200 answer (at most
// 1 MiB); any other status is an error with the gateway's message.
func adminDo(ctx context.Context, client *http.Client, method, target, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("User-Agent", "stella-mirror-admin")
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	switch res.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%s %s: 401: the admin token was refused (is --token-file the gateway's GATEWAY__ADMINTOKENFILE?)", method, redactQuery(target))
	case http.StatusNotFound:
		return nil, fmt.Errorf("%s %s: 404: not served (purge needs GATEWAY__CACHE__DIR and GATEWAY__ADMINTOKENFILE set on the gateway)", method, redactQuery(target))
	}
	return nil, fmt.Errorf("%s %s: %d: %s", method, redactQuery(target), res.StatusCode, truncate(body))
}

func redactQuery(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return target
	}
	return u.Redacted()
}

func truncate(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

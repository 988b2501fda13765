package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/devcert"
)

const (
	indexPath     = "/concelier/exports/index.json"
	primaryBundle = "/concelier/exports/mirror/primary/bundle.json"
	commBundle    = "/concelier/exports/mirror/community/bundle.json"
)

func TestAuthentication(t *testing.T) { forEngines(t, testAuthentication) }

func testAuthentication(t *testing.T, engine string) {
	h := newHarness(t, harnessOpts{engine: engine})
	alice := basic("alice", "alice-pw")
	tests := []struct {
		name   string
		host   string
		path   string
		auth   []string
		status int
		reason string // auth failure reason counted
	}{
		{"no credentials", hostPrimary, indexPath, nil, 401, "missing"},
		{"garbled base64", hostPrimary, indexPath, []string{"Basic %%%not-base64"}, 401, "malformed"},
		{"no colon", hostPrimary, indexPath, []string{"Basic " + "YWxpY2U="}, 401, "malformed"},
		{"wrong scheme", hostPrimary, indexPath, []string{"Bearer abc.def.ghi"}, 401, "scheme"},
		{"scheme only", hostPrimary, indexPath, []string{"Basic"}, 401, "scheme"},
		{"two headers", hostPrimary, indexPath, []string{alice, alice}, 401, "malformed"},
		{"CR in the user name", hostPrimary, indexPath, []string{basic("alice\r", "alice-pw")}, 401, "malformed"},
		{"CR LF in the user name", hostPrimary, indexPath, []string{basic("alice\r\nX-Injected: 1", "alice-pw")}, 401, "malformed"},
		{"NUL in the password", hostPrimary, indexPath, []string{basic("alice", "alice-pw\x00")}, 401, "malformed"},
		{"wrong password", hostPrimary, indexPath, []string{basic("alice", "nope")}, 401, "credentials"},
		{"unknown user", hostPrimary, indexPath, []string{basic("mallory", "alice-pw")}, 401, "credentials"},
		{"user of site A on site B", hostCommunity, indexPath, []string{alice}, 401, "credentials"},
		{"right credentials", hostPrimary, indexPath, []string{alice}, 200, ""},
		{"right credentials, own bundle", hostPrimary, primaryBundle, []string{alice}, 200, ""},
		{"community user on community", hostCommunity, commBundle, []string{basic("carol", "carol-pw")}, 200, ""},
		{"lower-case scheme", hostPrimary, indexPath, []string{"basic " + alice[6:]}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, "https://"+tt.host+tt.path, nil)
			for _, a := range tt.auth {
				req.Header.Add("Authorization", a)
			}
			res, err := h.client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", res.StatusCode, tt.status, body)
			}
			if tt.status == 401 {
				want := `Basic realm="` + tt.host + `", charset="UTF-8"`
				if got := res.Header.Get("WWW-Authenticate"); got != want {
					t.Fatalf("WWW-Authenticate %q, want %q", got, want)
				}
				if strings.Contains(string(body), "alice-pw") {
					t.Fatal("body echoes the password")
				}
				return
			}
			if res.Header.Get("Strict-Transport-Security") == "" {
				t.Fatal("no HSTS header")
			}
		})
	}
	// Every request has its line (and so its metrics) once the log has them all.
	log := h.waitAccess(len(tests))
	m := h.metrics()
	for _, want := range []string{
		`stella_mirror_gateway_auth_failures_total{reason="missing",site="mirror-primary.localhost"} 1`,
		`stella_mirror_gateway_auth_failures_total{reason="malformed",site="mirror-primary.localhost"} 6`,
		`stella_mirror_gateway_auth_failures_total{reason="scheme",site="mirror-primary.localhost"} 2`,
		`stella_mirror_gateway_auth_failures_total{reason="credentials",site="mirror-community.localhost"} 1`,
		`stella_mirror_gateway_requests_total{cache_status="",code="401",site="mirror-primary.localhost"}`,
		`stella_mirror_gateway_request_duration_seconds_bucket`,
		`stella_mirror_gateway_certificate_expiry_timestamp_seconds{site="mirror-primary.localhost"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Access log: user and status, never the password or the header.
	if !strings.Contains(log, `"user":"alice"`) || !strings.Contains(log, `"status":401`) || !strings.Contains(log, `"upstream_ms"`) {
		t.Fatalf("access log lacks user/status/upstream time:\n%s", log)
	}
	if strings.Contains(log, "alice-pw") || strings.Contains(log, alice[6:]) || strings.Contains(strings.ToLower(log), "authorization") {
		t.Fatal("access log contains credentials")
	}
	// Auth failures never reached the origin.
	for _, p := range h.upstream.paths() {
		if p != indexPath && p != primaryBundle && p != commBundle {
			t.Fatalf("origin saw %s", p)
		}
	}
	if n := len(h.upstream.paths()); n != 4 {
		t.Fatalf("origin saw %d requests, want 4 (the authorised ones)", n)
	}
}

func TestPolicy(t *testing.T) { forEngines(t, testPolicy) }

func testPolicy(t *testing.T, engine string) {
	h := newHarness(t, harnessOpts{engine: engine})
	auth := "Authorization: " + basic("alice", "alice-pw") + "\r\n"
	tests := []struct {
		name, target string
		status       int
	}{
		{"own index", indexPath, 200},
		{"own manifest", "/concelier/exports/mirror/primary/manifest.json", 200},
		{"own excititor index", "/excititor/mirror/primary/index", 200},
		{"query dropped", indexPath + "?x=1", 200},
		{"other domain bundle", commBundle, 404},
		{"other domain excititor", "/excititor/mirror/community/index", 404},
		{"percent-encoded domain", "/concelier/exports/mirror/%63ommunity/bundle.json", 404},
		{"dot-dot", "/concelier/exports/mirror/primary/../community/bundle.json", 404},
		{"encoded dot-dot", "/concelier/exports/mirror/primary/%2e%2e/community/bundle.json", 404},
		{"encoded slash", "/concelier/exports/mirror/primary%2f..%2fcommunity/bundle.json", 404},
		{"double slash", "/concelier/exports/mirror//community/bundle.json", 404},
		{"absolute form other host", "https://" + hostCommunity + commBundle, 421},
		{"metrics not proxied", "/metrics", 404},
		{"health not proxied", "/health/ready", 404},
		{"root", "/", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := h.raw(hostPrimary, "GET "+tt.target+" HTTP/1.1\r\nHost: "+hostPrimary+"\r\n"+auth+"Connection: close\r\n\r\n")
			if code != tt.status {
				t.Fatalf("status %d, want %d\n%s", code, tt.status, out)
			}
		})
	}
	for _, p := range h.upstream.paths() {
		if strings.Contains(p, "community") || strings.Contains(p, "metrics") || strings.Contains(p, "health") {
			t.Fatalf("origin was asked for %s", p)
		}
	}
	t.Run("method", func(t *testing.T) {
		code, out := h.raw(hostPrimary, "DELETE "+indexPath+" HTTP/1.1\r\nHost: "+hostPrimary+"\r\n"+auth+"Connection: close\r\n\r\n")
		if code != 405 {
			t.Fatalf("POST: %d\n%s", code, out)
		}
	})
	t.Run("unknown host header", func(t *testing.T) {
		code, _ := h.raw(hostPrimary, "GET "+indexPath+" HTTP/1.1\r\nHost: other.localhost\r\n"+auth+"Connection: close\r\n\r\n")
		if code != 404 {
			t.Fatalf("unknown Host: %d, want 404", code)
		}
	})
	t.Run("host differs from SNI", func(t *testing.T) {
		code, _ := h.raw(hostPrimary, "GET "+commBundle+" HTTP/1.1\r\nHost: "+hostCommunity+"\r\nAuthorization: "+basic("carol", "carol-pw")+"\r\nConnection: close\r\n\r\n")
		if code != 421 {
			t.Fatalf("Host community over primary's TLS: %d, want 421", code)
		}
	})
}

func TestUnknownSNIGetsNoCertificate(t *testing.T) { forEngines(t, testUnknownSNIGetsNoCertificate) }

func testUnknownSNIGetsNoCertificate(t *testing.T, engine string) {
	h := newHarness(t, harnessOpts{engine: engine})
	for _, sni := range []string{"unknown.localhost", ""} {
		t.Run("sni="+sni, func(t *testing.T) {
			var got []*x509Cert
			conn, err := tls.Dial("tcp", h.addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true,
				VerifyConnection: func(cs tls.ConnectionState) error {
					for _, c := range cs.PeerCertificates {
						got = append(got, &x509Cert{c.Subject.String()})
					}
					return nil
				}})
			if err == nil {
				conn.Close()
				t.Fatal("handshake with an unknown name succeeded")
			}
			if len(got) != 0 {
				t.Fatalf("server presented %d certificates for %q", len(got), sni)
			}
		})
	}
}

type x509Cert struct{ subject string }

func TestBadInput(t *testing.T) { forEngines(t, testBadInput) }

func testBadInput(t *testing.T, engine string) {
	h := newHarness(t, harnessOpts{engine: engine, edit: func(c *Config) { c.Gateway.ReadHeaderTimeout = 2 * time.Second }})
	auth := "Authorization: " + basic("alice", "alice-pw") + "\r\n"
	t.Run("64 KiB header", func(t *testing.T) {
		big := strings.Repeat("a", 70<<10)
		code, _ := h.raw(hostPrimary, "GET "+indexPath+" HTTP/1.1\r\nHost: "+hostPrimary+"\r\nX-Big: "+big+"\r\n"+auth+"\r\n")
		if code != 431 {
			t.Fatalf("status %d, want 431", code)
		}
	})
	t.Run("smuggling CL+TE", func(t *testing.T) {
		before := len(h.upstream.paths())
		smuggled := "GET " + commBundle + " HTTP/1.1\r\nHost: " + hostPrimary + "\r\n" + auth + "\r\n"
		body := "0\r\n\r\n" + smuggled
		req := "GET " + indexPath + " HTTP/1.1\r\nHost: " + hostPrimary + "\r\n" + auth +
			"Content-Length: " + itoa(len(body)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + body
		code, out := h.raw(hostPrimary, req)
		if code != 400 {
			t.Fatalf("status %d, want 400\n%s", code, out)
		}
		for _, p := range h.upstream.paths()[before:] {
			if p == commBundle {
				t.Fatal("smuggled request reached the origin")
			}
		}
		if strings.Count(out, "HTTP/1.1 ") > 1 {
			t.Fatalf("smuggled request was answered as a second request:\n%s", out)
		}
	})
	t.Run("slowloris", func(t *testing.T) {
		conn, err := tls.Dial("tcp", h.addr, &tls.Config{ServerName: hostPrimary, RootCAs: h.ca.Pool(), NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET "+indexPath+" HTTP/1.1\r\nHost: "+hostPrimary+"\r\nX-Slow: a")
		conn.SetReadDeadline(time.Now().Add(15 * time.Second)) // a bound, not the assertion
		_, err = io.ReadAll(conn)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the server kept a connection with unfinished headers open")
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestForwardedIdentity(t *testing.T) { forEngines(t, testForwardedIdentity) }

func testForwardedIdentity(t *testing.T, engine string) {
	for _, trusted := range []bool{false, true} {
		name := "untrusted peer"
		if trusted {
			name = "trusted proxy"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{engine: engine, edit: func(c *Config) {
				if trusted {
					c.Gateway.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
				}
			}})
			r := h.get(hostPrimary, indexPath, map[string]string{
				"Authorization":           basic("alice", "alice-pw"),
				"X-Forwarded-For":         "203.0.113.9",
				"X-Forwarded-Host":        "evil.example",
				"X-Forwarded-Proto":       "http",
				"X-Forwarded-Prefix":      "/x",
				"X-Stella-Forwarded-User": "admin",
				"Forwarded":               "for=203.0.113.9",
				"Connection":              "X-Hop",
				"X-Hop":                   "1",
				"Cookie":                  "session=1",
			})
			if r.status != 200 {
				t.Fatalf("status %d: %v", r.status, r.err)
			}
			got := h.upstream.last().Header
			want := map[string]string{
				"X-Stella-Forwarded-User": "alice",
				"Authorization":           "",
				"X-Hop":                   "",
				"Cookie":                  "",
			}
			if trusted {
				want["X-Forwarded-For"] = "203.0.113.9, 127.0.0.1"
				want["X-Forwarded-Host"] = "evil.example"
				want["X-Forwarded-Proto"] = "http"
				want["Forwarded"] = "for=203.0.113.9"
			} else {
				want["X-Forwarded-For"] = "127.0.0.1"
				want["X-Forwarded-Host"] = hostPrimary
				want["X-Forwarded-Proto"] = "https"
				want["X-Forwarded-Prefix"] = ""
				want["Forwarded"] = ""
			}
			for k, v := range want {
				if g := strings.Join(got.Values(k), ", "); g != v {
					t.Errorf("origin saw %s: %q, want %q", k, g, v)
				}
			}
		})
	}
}

// TestBudgets runs without and with the cache: with it, a MISS is admitted
// by the native path and then served by the net/http one, and must still
// be taken from the budget once.
func TestBudgets(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache=%v", cached), func(t *testing.T) { testBudgets(t, cached) })
	}
}

func testBudgets(t *testing.T, cached bool) {
	cacheDir := t.TempDir()
	h := newHarness(t, harnessOpts{edit: func(c *Config) {
		c.Gateway.Sites[0].MaxIndexRequestsPerHour = 2
		c.Gateway.Sites[0].MaxDownloadRequestsPerHour = 1
		if cached {
			withCache(cacheDir, "")(c)
		}
	}})
	htpasswd(t, "-B", "-b", h.cfg.Gateway.Sites[0].HtpasswdFile, "bob", "bob-pw")
	if err := h.gw.Reload(); err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"Authorization": basic("alice", "alice-pw")}
	bob := map[string]string{"Authorization": basic("bob", "bob-pw")}
	steps := []struct {
		who    map[string]string
		path   string
		status int
	}{
		{alice, indexPath, 200}, {alice, indexPath, 200}, {alice, indexPath, 429},
		{bob, indexPath, 200}, // per client
		{alice, primaryBundle, 200}, {alice, primaryBundle, 429},
		{bob, primaryBundle, 200},
	}
	for i, s := range steps {
		r := h.get(hostPrimary, s.path, s.who)
		if r.status != s.status {
			t.Fatalf("step %d: status %d, want %d", i, r.status, s.status)
		}
		if s.status == 429 && r.header.Get("Retry-After") == "" {
			t.Fatalf("step %d: 429 without Retry-After", i)
		}
	}
	m := h.metrics()
	for _, want := range []string{
		`stella_mirror_gateway_budget_rejections_total{budget="index",site="mirror-primary.localhost"} 1`,
		`stella_mirror_gateway_budget_rejections_total{budget="download",site="mirror-primary.localhost"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestHtpasswdHotReload(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	file := h.cfg.Gateway.Sites[0].HtpasswdFile
	site := hostPrimary
	bob := map[string]string{"Authorization": basic("bob", "bob-pw")}
	if r := h.get(hostPrimary, indexPath, bob); r.status != 401 {
		t.Fatalf("bob before: %d", r.status)
	}
	// Added with the real htpasswd -B: in effect without a restart.
	// htpasswd rewrites the file in place (truncate, then write): under
	// load the watcher may reload the intermediate state first, so wait
	// for the reload that has bob (waitReload is bounded, so is the loop).
	htpasswd(t, "-B", "-b", file, "bob", "bob-pw")
	for i := 0; ; i++ {
		h.waitReload("htpasswd " + site + " ok")
		r := h.get(hostPrimary, indexPath, bob)
		if r.status == 200 {
			break
		}
		if i == 3 {
			t.Fatalf("bob after adding: %d", r.status)
		}
	}
	// An invalid replacement (atomic rename, like editors and k8s do) changes nothing.
	tmp := filepath.Join(filepath.Dir(file), ".tmp")
	os.WriteFile(tmp, []byte("bob:plaintext-password\n"), 0o644)
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	h.waitReload("htpasswd " + site + " fail")
	if r := h.get(hostPrimary, indexPath, bob); r.status != 200 {
		t.Fatalf("bob after invalid file: %d", r.status)
	}
	if r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")}); r.status != 200 {
		t.Fatalf("alice after invalid file: %d", r.status)
	}
	if m := h.metrics(); !strings.Contains(m, `stella_mirror_gateway_reloads_total{kind="htpasswd",result="failure",site="mirror-primary.localhost"} 1`) {
		t.Error("failed reload not counted")
	}
	// A valid file without bob: bob stops at once (credential cache cleared).
	htpasswd(t, "-c", "-B", "-b", file, "alice", "alice-pw")
	h.waitReload("htpasswd " + site + " ok")
	if r := h.get(hostPrimary, indexPath, bob); r.status != 401 {
		t.Fatalf("removed bob: %d", r.status)
	}
}

func TestCertificateHotReload(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	sc := h.cfg.Gateway.Sites[0]
	first := h.serverCert(hostPrimary)

	// Replace with a new valid pair (atomic renames): served without a restart.
	leaf, err := h.ca.Issue(devcert.LeafOptions{Names: []string{hostPrimary}})
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.WriteFiles(sc.CertFile, sc.KeyFile); err != nil {
		t.Fatal(err)
	}
	// The two renames may be seen as one reload or as a failed one (new
	// certificate, old key) followed by a good one; wait for the good
	// reload that puts the new pair in service (waitReload is bounded).
	var second *x509.Certificate
	for i := 0; ; i++ {
		h.waitReload("certificate " + hostPrimary + " ok")
		second = h.serverCert(hostPrimary)
		if second.SerialNumber.Cmp(leaf.Cert.SerialNumber) == 0 {
			break
		}
		if i == 2 {
			t.Fatalf("new certificate not in service after %d good reloads (serving serial %v)", i+1, second.SerialNumber)
		}
	}
	if second.Equal(first) {
		t.Fatal("new certificate not in service")
	}

	// Invalid replacements keep the certificate in service.
	wrong, _ := h.ca.Issue(devcert.LeafOptions{Names: []string{"someone-else.localhost"}})
	expired, _ := h.ca.Issue(devcert.LeafOptions{Names: []string{hostPrimary}, NotBefore: time.Now().Add(-48 * time.Hour), Validity: time.Hour})
	other, _ := h.ca.Issue(devcert.LeafOptions{Names: []string{hostPrimary}})
	tests := []struct {
		name      string
		cert, key []byte
	}{
		{"garbage", []byte("not a certificate"), leaf.KeyPEM},
		{"wrong name", wrong.CertPEM, wrong.KeyPEM},
		{"expired", expired.CertPEM, expired.KeyPEM},
		{"key does not match", other.CertPEM, leaf.KeyPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := (&devcert.Leaf{CertPEM: tt.cert, KeyPEM: tt.key}).WriteFiles(sc.CertFile, sc.KeyFile); err != nil {
				t.Fatal(err)
			}
			h.waitReload("certificate " + hostPrimary + " fail")
			if got := h.serverCert(hostPrimary); !got.Equal(second) {
				t.Fatal("an invalid replacement changed the certificate in service")
			}
			if r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")}); r.status != 200 {
				t.Fatalf("request after invalid replacement: %d %v", r.status, r.err)
			}
		})
	}
	// SIGHUP path (Reload) after restoring a good pair.
	if err := other.WriteFiles(sc.CertFile, sc.KeyFile); err != nil {
		t.Fatal(err)
	}
	_ = h.gw.Reload()
	if got := h.serverCert(hostPrimary); got.SerialNumber.Cmp(other.Cert.SerialNumber) != 0 {
		t.Fatal("Reload did not put the restored pair in service")
	}
	if m := h.metrics(); !strings.Contains(m, `stella_mirror_gateway_reloads_total{kind="certificate",result="failure",site="mirror-primary.localhost"}`) {
		t.Error("failed certificate reloads not counted")
	}
}

func TestOperations(t *testing.T) { forEngines(t, testOperations) }

func testOperations(t *testing.T, engine string) {
	h := newHarness(t, harnessOpts{engine: engine})
	get := func(url string) int {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := get("http://" + h.admin + "/health/live"); c != 200 {
		t.Fatalf("live: %d", c)
	}
	if c := get("http://" + h.admin + "/health/ready"); c != 200 {
		t.Fatalf("ready: %d", c)
	}
	// Redirect listener.
	req, _ := http.NewRequest(http.MethodGet, "http://"+h.httpAddr+indexPath, nil)
	req.Host = hostPrimary
	res, err := (&http.Transport{}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	_, port, _ := net.SplitHostPort(h.addr)
	if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != "https://"+hostPrimary+":"+port+indexPath {
		t.Fatalf("redirect: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	req.Host = "evil.example"
	res, err = (&http.Transport{}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Fatalf("redirect for unknown host: %d", res.StatusCode)
	}
	// Origin down: not ready.
	h.origin.Close()
	if c := get("http://" + h.admin + "/health/ready"); c != 503 {
		t.Fatalf("ready with origin down: %d", c)
	}
	if r := h.get(hostPrimary, indexPath, map[string]string{"Authorization": basic("alice", "alice-pw")}); r.status != 502 {
		t.Fatalf("origin down: %d, want 502", r.status)
	}
	if m := h.metrics(); !strings.Contains(m, `stella_mirror_gateway_upstream_errors_total{reason="connect",site="mirror-primary.localhost"} 1`) {
		t.Errorf("upstream error not counted:\n%s", grep(m, "upstream_errors"))
	}
}

func grep(s, sub string) string {
	var out []string
	sc := readLines(s)
	for sc.Scan() {
		if strings.Contains(sc.Text(), sub) {
			out = append(out, sc.Text())
		}
	}
	return strings.Join(out, "\n")
}

// TestUpstreamFailsMidBody: an origin that resets or hangs mid-body gives
// the client an error, never a short 200 it could take for complete.
func TestUpstreamFailsMidBody(t *testing.T) { forEngines(t, testUpstreamFailsMidBody) }

func testUpstreamFailsMidBody(t *testing.T, engine string) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		w.WriteHeader(200)
		w.Write([]byte(strings.Repeat("x", 1000)))
		w.(http.Flusher).Flush()
		if strings.HasSuffix(r.URL.Path, "/manifest.json") { // reset
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					tc.SetLinger(0)
				}
				conn.Close()
			}
			return
		}
		select { // hang
		case <-release:
		case <-r.Context().Done():
		}
	})
	h := newHarness(t, harnessOpts{engine: engine, upstream: upstream, edit: func(c *Config) {
		c.Gateway.UpstreamIdleTimeout = time.Second
	}})
	for _, p := range []string{"/concelier/exports/mirror/primary/manifest.json", primaryBundle} {
		t.Run(p, func(t *testing.T) {
			r := h.get(hostPrimary, p, map[string]string{"Authorization": basic("alice", "alice-pw")})
			if r.err == nil {
				t.Fatalf("client read a complete response (%d, %d bytes)", r.status, len(r.body))
			}
		})
	}
	if m := h.metrics(); !strings.Contains(m, `stella_mirror_gateway_upstream_errors_total{reason="body",site="mirror-primary.localhost"} 2`) {
		t.Errorf("mid-body failures not counted:\n%s", grep(m, "upstream_errors"))
	}
}

func TestGracefulShutdownFinishesDownload(t *testing.T) {
	forEngines(t, testGracefulShutdownFinishesDownload)
}

func testGracefulShutdownFinishesDownload(t *testing.T, engine string) {
	started := make(chan struct{})
	finish := make(chan struct{})
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2000")
		w.WriteHeader(200)
		w.Write([]byte(strings.Repeat("a", 1000)))
		w.(http.Flusher).Flush()
		close(started)
		<-finish
		w.Write([]byte(strings.Repeat("b", 1000)))
	})
	h := newHarness(t, harnessOpts{engine: engine, upstream: upstream})
	got := make(chan resp, 1)
	go func() {
		got <- h.get(hostPrimary, primaryBundle, map[string]string{"Authorization": basic("alice", "alice-pw")})
	}()
	<-started
	stopped := make(chan struct{})
	go func() { h.stop(); close(stopped) }()
	// New connections are refused once shutdown begins; the download continues.
	close(finish)
	r := <-got
	<-stopped
	if r.err != nil || r.status != 200 || len(r.body) != 2000 {
		t.Fatalf("in-flight download: status %d, %d bytes, err %v", r.status, len(r.body), r.err)
	}
	h.stop = func() {}
}

// TestClientDisconnectStopsUpstream: a client that goes away in the middle
// of a large proxied download ends the origin's request too (its request
// context is cancelled), on both engines, so no one keeps paying for a
// transfer nobody reads.
func TestClientDisconnectStopsUpstream(t *testing.T) {
	forEngines(t, testClientDisconnectStopsUpstream)
}

func testClientDisconnectStopsUpstream(t *testing.T, engine string) {
	upstreamGone := make(chan struct{})
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(1<<30))
		chunk := make([]byte, 64<<10)
		for range (1 << 30) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				break
			}
			if r.Context().Err() != nil {
				break
			}
		}
		<-r.Context().Done()
		close(upstreamGone)
	})
	h := newHarness(t, harnessOpts{engine: engine, upstream: upstream})
	res, err := h.client().Do(func() *http.Request {
		req, _ := http.NewRequest(http.MethodGet, "https://"+hostPrimary+primaryBundle, nil)
		req.Header.Set("Authorization", basic("alice", "alice-pw"))
		return req
	}())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(res.Body, make([]byte, 1<<20)); err != nil {
		t.Fatalf("reading the first MiB: %v", err)
	}
	res.Body.Close() // the client goes away mid-body
	select {
	case <-upstreamGone:
	case <-time.After(20 * time.Second):
		t.Fatal("the origin's request was not cancelled within 20s of the client leaving")
	}
}

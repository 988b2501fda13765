package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export/fixture"
)

// Log messages of the drain (internal/serve/drain.go).
const (
	msgDraining   = "draining: still serving for "
	msgDrainOver  = "drain over; shutting down"
	msgDrainEarly = "draining ended early by a second signal; shutting down"
	msgStopped    = "stopped"
)

// serverProc is `stella-mirror origin|gateway` (this test binary as
// stella-mirror) run as a process; every JSON line of its stderr is kept
// in order.
type serverProc struct {
	*mainProc
	recs []logRecord // guarded by mainProc.mu
}

// startServer starts the subcommand with env (besides PATH and HOME) and
// waits until it logged a "listening" line for every endpoint in want,
// whose addresses it returns by endpoint name.
func startServer(t *testing.T, sub string, env []string, want ...string) (*serverProc, map[string]string) {
	t.Helper()
	p := &serverProc{mainProc: &mainProc{}}
	p.start(t, []string{sub}, env, func(r logRecord) {
		p.mu.Lock()
		p.recs = append(p.recs, r)
		p.mu.Unlock()
	}, nil)
	addrs := map[string]string{}
	p.waitFor(t, "listening on "+strings.Join(want, ", "), func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, r := range p.recs {
			if r.str("msg") == "listening" {
				addrs[r.str("endpoint")] = r.str("addr")
			}
		}
		for _, w := range want {
			if addrs[w] == "" {
				return false
			}
		}
		return true
	})
	return p, addrs
}

// index is the position of the first log record whose message starts
// with prefix, -1 if none.
func (p *serverProc) index(prefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range p.recs {
		if strings.HasPrefix(r.str("msg"), prefix) {
			return i
		}
	}
	return -1
}

// waitFor polls cond every 20 ms, for at most 60 s, failing early when
// the process exits first.
func (p *serverProc) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		select {
		case <-p.done:
			if cond() {
				return
			}
			t.Fatalf("exited (status %d) before: %s\n%s", p.code, what, p.stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within 60s: %s\n%s", what, p.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits for a log record whose message starts with prefix.
func (p *serverProc) waitLog(t *testing.T, prefix string) {
	t.Helper()
	p.waitFor(t, "log "+prefix, func() bool { return p.index(prefix) >= 0 })
}

// exitCode waits (at most 60 s) for the exit and returns its status.
func (p *serverProc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(60 * time.Second):
		t.Fatalf("still running 60 s later:\n%s", p.stderr())
	}
	return 0
}

func (p *serverProc) signal(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// drainTarget is a component under test: how to start it with a drain
// delay and how to reach its public and admin endpoints.
type drainTarget struct {
	name string
	// start starts it with the delay ("" leaves the key unset) and
	// returns the process, the public endpoint's base URL, the admin
	// listener's address and a client for the public endpoint that opens
	// a new connection per request (keepAlive false) or reuses one.
	start func(t *testing.T, delay string) (*serverProc, string, string, func(keepAlive bool) *http.Client)
	// path is a request the public endpoint answers 200.
	path string
}

// drainOrigin starts an origin with a fixture export and, if delay is
// set, ORIGIN__SHUTDOWNDELAY.
func drainOrigin(t *testing.T, delay string) (*serverProc, string, string, func(bool) *http.Client) {
	root := filepath.Join(t.TempDir(), "exports")
	if _, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: 8 << 10, VEXSize: 2 << 10, SetLatest: true}); err != nil {
		t.Fatal(err)
	}
	env := []string{"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__MIRROR__EXPORTROOT=" + root,
		"ORIGIN__LISTEN=127.0.0.1:0", "ORIGIN__ADMINLISTEN=127.0.0.1:0", "ORIGIN__LOGFORMAT=json"}
	if delay != "" {
		env = append(env, "ORIGIN__SHUTDOWNDELAY="+delay)
	}
	p, addrs := startServer(t, "origin", env, "origin", "origin-admin")
	client := func(keepAlive bool) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
	}
	return p, "http://" + addrs["origin"], addrs["origin-admin"], client
}

// drainGateway starts an origin (no delay) and a gateway with engine in
// front of it with, if delay is set, GATEWAY__SHUTDOWNDELAY.
func drainGateway(engine string, extraEnv ...string) func(t *testing.T, delay string) (*serverProc, string, string, func(bool) *http.Client) {
	return func(t *testing.T, delay string) (*serverProc, string, string, func(bool) *http.Client) {
		_, originURL, _, _ := drainOrigin(t, "")
		cert, key, roots := siteCert(t, "mirror.localhost")
		env := []string{"GATEWAY__LISTEN=127.0.0.1:0", "GATEWAY__HTTPLISTEN=", "GATEWAY__ADMINLISTEN=127.0.0.1:0",
			"GATEWAY__ORIGIN=" + originURL, "GATEWAY__LOGFORMAT=json", "GATEWAY__SERVER__ENGINE=" + engine,
			"GATEWAY__SITES__0__HOSTS__0=mirror.localhost", "GATEWAY__SITES__0__DOMAINS__0=primary",
			"GATEWAY__SITES__0__CERTFILE=" + cert, "GATEWAY__SITES__0__KEYFILE=" + key, "GATEWAY__SITES__0__ANONYMOUS=true"}
		if delay != "" {
			env = append(env, "GATEWAY__SHUTDOWNDELAY="+delay)
		}
		p, addrs := startServer(t, "gateway", append(env, extraEnv...), "gateway", "gateway-admin")
		gw := addrs["gateway"]
		client := func(keepAlive bool) *http.Client {
			return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				DisableKeepAlives: !keepAlive,
				// HTTP/1.1 only: Connection: close is an HTTP/1.x header.
				TLSClientConfig: &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}},
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, gw)
				}}}
		}
		return p, "https://mirror.localhost", addrs["gateway-admin"], client
	}
}

var drainTargets = []drainTarget{
	{name: "origin", start: drainOrigin, path: "/concelier/exports/index.json"},
	{name: "gateway-fast", start: drainGateway("fast"), path: "/concelier/exports/index.json"},
	{name: "gateway-std", start: drainGateway("std"), path: "/concelier/exports/index.json"},
}

// drainAdminClient reaches an admin listener, a new connection per request.
var drainAdminClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// get fetches url and returns the status, the Connection header and the
// body.
func get(c *http.Client, url string) (int, string, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	conn := resp.Header.Get("Connection")
	if resp.Close && conn == "" {
		conn = "close" // net/http's client may fold the header into Close
	}
	return resp.StatusCode, conn, string(body), err
}

// TestShutdownDelayDrains: with a shutdown delay, after SIGTERM the
// process logs "draining" and keeps accepting new connections and
// answering them 200, its /health/ready answers 503 "shutting down"
// while /health/live answers 200, and keep-alive responses carry
// Connection: close. A second SIGTERM ends the (long) delay early: the
// "ended early" line comes before "stopped", no "drain over" line, exit 0.
// For the origin, the gateway on its fast engine (the Native hook
// answers these requests) and on net/http.
func TestShutdownDelayDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers as processes")
	}
	for _, tc := range drainTargets {
		t.Run(tc.name, func(t *testing.T) {
			// Long enough that only the second SIGTERM ends it.
			p, base, admin, client := tc.start(t, "5m")
			before, conn, _, err := get(client(true), base+tc.path)
			if err != nil || before != http.StatusOK || conn == "close" {
				t.Fatalf("before SIGTERM: %d, Connection %q, %v", before, conn, err)
			}
			if st, _, _, err := get(drainAdminClient, "http://"+admin+"/health/ready"); err != nil || st != http.StatusOK {
				t.Fatalf("before SIGTERM /health/ready: %d, %v\n%s", st, err, p.stderr())
			}
			p.signal(t)
			p.waitLog(t, msgDraining)

			// New connections, one per request, are accepted and served.
			for i := range 5 {
				st, conn, _, err := get(client(false), base+tc.path)
				if err != nil || st != http.StatusOK {
					t.Fatalf("draining, new connection %d: %d, %v\n%s", i, st, err, p.stderr())
				}
				if conn != "close" {
					t.Errorf("draining, new connection %d: Connection %q, want close", i, conn)
				}
			}
			// A keep-alive client is told to go.
			st, conn, _, err := get(client(true), base+tc.path)
			if err != nil || st != http.StatusOK || conn != "close" {
				t.Errorf("draining, keep-alive client: %d, Connection %q, %v; want 200 with Connection: close", st, conn, err)
			}
			st, _, body, err := get(drainAdminClient, "http://"+admin+"/health/ready")
			if err != nil || st != http.StatusServiceUnavailable || !strings.Contains(body, `"reason":"shutting down"`) || !strings.Contains(body, `"not_ready"`) {
				t.Errorf("draining /health/ready: %d %q, %v; want 503 not_ready shutting down", st, body, err)
			}
			st, _, _, err = get(drainAdminClient, "http://"+admin+"/health/live")
			if err != nil || st != http.StatusOK {
				t.Errorf("draining /health/live: %d, %v; want 200", st, err)
			}
			if p.index(msgDrainOver) >= 0 || p.index(msgStopped) >= 0 {
				t.Fatalf("the 5m drain ended by itself:\n%s", p.stderr())
			}

			p.signal(t)
			if code := p.exitCode(t); code != 0 {
				t.Fatalf("exit status %d after the second SIGTERM:\n%s", code, p.stderr())
			}
			d, early, stopped := p.index(msgDraining), p.index(msgDrainEarly), p.index(msgStopped)
			if !(d >= 0 && d < early && early < stopped) || p.index(msgDrainOver) >= 0 {
				t.Errorf("log order: draining %d, ended early %d, stopped %d, drain over %d; want draining < ended early < stopped, no drain over\n%s",
					d, early, stopped, p.index(msgDrainOver), p.stderr())
			}
		})
	}
}

// TestShutdownDelayEnds: a short delay ends by itself ("drain over", then
// "stopped", exit 0), serving a new connection after "draining" was
// logged; with no delay set (today's behaviour) SIGTERM shuts down at
// once: no drain line, "stopped", exit 0, and the port refuses.
func TestShutdownDelayEnds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers as processes")
	}
	for _, tc := range []struct {
		name  string
		delay string
	}{{"delay-3s", "3s"}, {"unset", ""}, {"zero", "0s"}} {
		t.Run(tc.name, func(t *testing.T) {
			p, base, admin, client := drainTargets[1].start(t, tc.delay)
			p.signal(t)
			if tc.delay == "3s" {
				p.waitLog(t, msgDraining)
				st, conn, _, err := get(client(false), base+drainTargets[1].path)
				if err != nil || st != http.StatusOK || conn != "close" {
					t.Errorf("after the draining line: %d, Connection %q, %v; want 200, close\n%s", st, conn, err, p.stderr())
				}
			}
			if code := p.exitCode(t); code != 0 {
				t.Fatalf("exit status %d:\n%s", code, p.stderr())
			}
			d, over, stopped := p.index(msgDraining), p.index(msgDrainOver), p.index(msgStopped)
			if tc.delay == "3s" {
				if !(d >= 0 && d < over && over < stopped) {
					t.Errorf("log order: draining %d, drain over %d, stopped %d\n%s", d, over, stopped, p.stderr())
				}
				return
			}
			if d >= 0 || over >= 0 || stopped < 0 {
				t.Errorf("no delay: draining %d, drain over %d, stopped %d; want only stopped\n%s", d, over, stopped, p.stderr())
			}
			if c, err := net.DialTimeout("tcp", admin, 5*time.Second); err == nil {
				c.Close()
				t.Errorf("the admin port %s still accepts after the exit", admin)
			}
		})
	}
}

// TestShutdownDelayNotifiesStopping: under systemd (NOTIFY_SOCKET) the
// gateway sends STOPPING=1 when the drain starts, not when it ends: the
// datagram is there while the 5m drain still runs.
func TestShutdownDelayNotifiesStopping(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers as processes")
	}
	path := filepath.Join(t.TempDir(), "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	read := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		sock.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, err := sock.Read(buf)
		if err != nil {
			t.Fatalf("notify socket: %v", err)
		}
		return string(buf[:n])
	}
	p, _, _, _ := drainGateway("fast", "NOTIFY_SOCKET="+path)(t, "5m")
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	p.signal(t)
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("after SIGTERM: %q, want STOPPING=1", got)
	}
	p.waitLog(t, msgDraining)
	if p.index(msgDrainOver) >= 0 || p.index(msgStopped) >= 0 {
		t.Fatalf("the 5m drain is over already:\n%s", p.stderr())
	}
	p.signal(t)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit status %d:\n%s", code, p.stderr())
	}
}

// TestShutdownDelayValidated: negative or above 5m is refused by
// --check-config, naming the key.
func TestShutdownDelayValidated(t *testing.T) {
	for _, tc := range []struct{ sub, key, val string }{
		{"gateway", "GATEWAY__SHUTDOWNDELAY", "-1s"},
		{"gateway", "GATEWAY__SHUTDOWNDELAY", "6m"},
		{"origin", "ORIGIN__SHUTDOWNDELAY", "-1s"},
		{"origin", "ORIGIN__SHUTDOWNDELAY", "5m1s"},
	} {
		t.Run(fmt.Sprintf("%s=%s", tc.key, tc.val), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], tc.sub, "--check-config")
			cmd.Env = []string{"STELLA_MIRROR_TEST_RUN_MAIN=1", "HOME=" + t.TempDir(), tc.key + "=" + tc.val,
				"CONCELIER__MIRROR__ENABLED=true", "GATEWAY__SITES__0__HOSTS__0=mirror.localhost", "GATEWAY__SITES__0__DOMAINS__0=primary"}
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.key) {
				t.Errorf("%s=%s: %v, output lacks the key:\n%s", tc.key, tc.val, err, out)
			}
		})
	}
}

// TestOriginSIGHUPWhileDraining: a SIGHUP (a reload, e.g. by a config
// tool or `systemctl reload`) that arrives while the origin drains after
// SIGTERM is caught like any other SIGHUP: the origin keeps serving and
// ends normally. Before, the SIGHUP handler stopped with the first
// SIGTERM and the default action killed the origin mid-drain.
func TestOriginSIGHUPWhileDraining(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers as processes")
	}
	p, base, _, client := drainOrigin(t, "5m")
	p.signal(t)
	p.waitLog(t, msgDraining)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "SIGHUP: nothing to reload")
	if st, _, _, err := get(client(false), base+"/concelier/exports/index.json"); err != nil || st != http.StatusOK {
		t.Fatalf("after SIGHUP while draining: %d, %v\n%s", st, err, p.stderr())
	}
	p.signal(t)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit status %d after the second SIGTERM:\n%s", code, p.stderr())
	}
}

package systemd

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"

	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/origin"
	"github.com/stella-ops/stella-mirror/origin/origintest"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// unitSettings returns the values of key in a unit file, in order.
func unitSettings(t *testing.T, unit, key string) []string {
	t.Helper()
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	var vals []string
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// stellaBin returns the binary under test: $STELLA_MIRROR_BIN (make test)
// or one built now.
func stellaBin(t *testing.T) string {
	t.Helper()
	b, cleanup, err := testenv.Binary()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return b
}

// notifySocket is the test's stand-in for systemd's notification socket.
type notifySocket struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

func newNotifySocket(t *testing.T) *notifySocket {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &notifySocket{t: t, path: path, conn: c}
}

// allowAll lets another user send to the socket (its file and directory).
func (n *notifySocket) allowAll() {
	n.t.Helper()
	for _, p := range []string{n.path, filepath.Dir(n.path), filepath.Dir(filepath.Dir(n.path))} {
		mode := os.FileMode(0o755)
		if p == n.path {
			mode = 0o777
		}
		if err := os.Chmod(p, mode); err != nil {
			n.t.Fatal(err)
		}
	}
}

// copyExecutable copies the file src to dst (mode 0755, directories made).
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// mustChown changes path's owner and group.
func mustChown(t *testing.T, path string, uid, gid int) {
	t.Helper()
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// expect reads the next datagram and fails unless it starts with want.
func (n *notifySocket) expect(want string) {
	n.t.Helper()
	n.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 4096)
	k, err := n.conn.Read(buf)
	if err != nil {
		n.t.Fatalf("waiting for %q on the notify socket: %v", want, err)
	}
	if got := string(buf[:k]); !strings.HasPrefix(got, want) {
		n.t.Fatalf("notify socket got %q, want %q", got, want)
	}
}

// TestGatewayUnitReloadsRotatedFiles runs the gateway the way
// stella-mirror-gateway.service does — its ExecStart and EnvironmentFile,
// the example /etc/stella-mirror/gateway.yaml, the files where the unit's
// layout puts them (all under a temporary root) — with a notification
// socket the test listens on as systemd would. It waits for READY=1, then
// rotates the site's certificate (stella-mirror dev-certs) and its users
// (stella-mirror passwd: one rotated, one added), runs the unit's
// ExecReload, waits for RELOADING=1 and READY=1, and checks that new
// connections get the new certificate and the new passwords, and that a
// stop sends STOPPING=1 and exits 0.
func TestGatewayUnitReloadsRotatedFiles(t *testing.T) {
	runGatewayUnit(t, nil)
}

// TestGatewayUnitReloadsRotatedFilesAsServiceUser is the same run with the
// gateway as an unprivileged user, as User=stella-mirror runs it: the
// files are root:<its group> 0640 in root:<its group> 0750 directories, as
// the docs install them, and rotations (run as root, like an operator's
// dev-certs, passwd or deploy hook) must stay readable to it. A rotation
// that made a key 0600 root-owned left the old certificate in service.
func TestGatewayUnitReloadsRotatedFilesAsServiceUser(t *testing.T) {
	testenv.Root(t, "running the gateway as another user")
	runGatewayUnit(t, &syscall.Credential{Uid: 65534, Gid: 65534})
}

// runGatewayUnit is TestGatewayUnitReloadsRotatedFiles with the gateway
// run as cred (nil: as the test's user).
func runGatewayUnit(t *testing.T, cred *syscall.Credential) {
	const unit = "stella-mirror-gateway.service"
	if got := unitSettings(t, unit, "Type"); len(got) != 1 || got[0] != "notify" {
		t.Fatalf("%s Type=%v, want notify", unit, got)
	}
	execStart := unitSettings(t, unit, "ExecStart")
	envFiles := unitSettings(t, unit, "EnvironmentFile")
	reload := unitSettings(t, unit, "ExecReload")
	if len(execStart) != 1 || len(envFiles) != 1 || len(reload) != 1 || reload[0] != "/bin/kill -HUP $MAINPID" {
		t.Fatalf("ExecStart %v, EnvironmentFile %v, ExecReload %v", execStart, envFiles, reload)
	}
	bin := stellaBin(t)
	root := t.TempDir()
	at := func(p string) string { return filepath.Join(root, p) } // the unit's absolute paths, under root
	rewrite := func(s string) string {
		for _, p := range []string{"/etc/stella-mirror", "/var/cache/stella-mirror", "/srv/stella-mirror"} {
			s = strings.ReplaceAll(s, p, at(p))
		}
		return s
	}
	for _, d := range []string{"/etc/stella-mirror/tls", "/etc/stella-mirror/secrets", "/var/cache/stella-mirror/gateway"} {
		if err := os.MkdirAll(at(d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("stella-mirror %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	pw := func(name, password string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The origin the gateway proxies to (ExecStart of the origin unit is
	// on fixed ports; here it is the same code on an ephemeral one).
	exports := at("/srv/stella-mirror/exports")
	if _, err := fixture.Write(exports, fixture.Options{Domains: []string{"primary"}, BundleSize: 16 << 10, VEXSize: 4 << 10, SetLatest: true}); err != nil {
		t.Fatal(err)
	}
	o, err := origin.New(origintest.Config(exports), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	originSrv := httptest.NewServer(o.Handler())
	defer originSrv.Close()

	// /etc/stella-mirror as the docs install it.
	yaml, err := os.ReadFile("gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(at("/etc/stella-mirror/gateway.yaml"), []byte(rewrite(string(yaml))), 0o640); err != nil {
		t.Fatal(err)
	}
	tlsDir, htpasswd := at("/etc/stella-mirror/tls"), at("/etc/stella-mirror/secrets/primary.htpasswd")
	run("dev-certs", "--out", tlsDir, "--site", "primary=mirror-primary.example.org")
	run("passwd", "--file", htpasswd, "--user", "alice", "--password-file", pw("a1", "alice-first-password"))
	// The docs' install step: root:stella-mirror 0640, read by the gateway
	// through its group (the test runs as root, so only the mode is checked).
	siteFiles := []string{filepath.Join(tlsDir, "primary.crt"), filepath.Join(tlsDir, "primary.key"), htpasswd}
	for _, f := range siteFiles {
		if err := os.Chmod(f, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if cred != nil {
		// The service user's view: its group on the configuration
		// (tmpfiles: root:stella-mirror 0750, files 0640), its own cache
		// directory (CacheDirectory=), and a way down to them through the
		// test's temporary directories.
		gid := int(cred.Gid)
		for _, f := range siteFiles {
			mustChown(t, f, 0, gid)
		}
		for _, d := range []string{"/etc/stella-mirror", "/etc/stella-mirror/tls", "/etc/stella-mirror/secrets"} {
			mustChown(t, at(d), 0, gid)
			if err := os.Chmod(at(d), 0o750); err != nil {
				t.Fatal(err)
			}
		}
		mustChown(t, at("/etc/stella-mirror/gateway.yaml"), 0, gid)
		if err := os.Chmod(at("/etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		mustChown(t, at("/var/cache/stella-mirror/gateway"), int(cred.Uid), gid)
		for d := at("/var/cache/stella-mirror"); d != filepath.Dir(root); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for d := filepath.Dir(root); d != "/" && strings.HasPrefix(d, os.TempDir()) && d != filepath.Clean(os.TempDir()); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil { // the test's own t.TempDir parents
				t.Fatal(err)
			}
		}
		// ca.pem and the CA key stay root's: the gateway does not read them.
	}
	httpsAddr, adminAddr := freeAddr(t), freeAddr(t)
	envFile := strings.TrimPrefix(envFiles[0], "-") // "-": optional
	if err := os.WriteFile(rewrite(envFile), []byte("# site-specific overrides\nGATEWAY__LISTEN="+httpsAddr+
		"\nGATEWAY__HTTPLISTEN=\nGATEWAY__ADMINLISTEN="+adminAddr+"\nGATEWAY__ORIGIN="+originSrv.URL+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}

	// Start it as systemd would: ExecStart's argv, EnvironmentFile's
	// variables, $NOTIFY_SOCKET.
	argv := strings.Fields(rewrite(execStart[0]))
	if argv[0] != "/usr/local/bin/stella-mirror" {
		t.Fatalf("ExecStart runs %s", argv[0])
	}
	notify := newNotifySocket(t)
	exe := bin
	if cred != nil {
		// The binary where ExecStart has it, readable by the service user
		// (the test's build may sit in a root-only temporary directory).
		exe = at("/usr/local/bin/stella-mirror")
		copyExecutable(t, bin, exe)
		for d := filepath.Dir(exe); d != root; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.Command(exe, argv[1:]...)
	if cred != nil {
		notify.allowAll()
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.Env = append(append(os.Environ(), readEnvFile(t, rewrite(envFile))...), "NOTIFY_SOCKET="+notify.path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gateway stderr:\n%s", stderr.String())
		}
	}()
	notify.expect("READY=1")

	ca := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	if err != nil || !ca.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem: %v", err)
	}
	// get makes a new connection (no keep-alive) and returns the status
	// and the serial of the certificate served.
	get := func(user, password string) (int, string) {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca, ServerName: "mirror-primary.example.org"}, DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, network, httpsAddr)
			}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://mirror-primary.example.org/concelier/exports/index.json", nil)
		req.SetBasicAuth(user, password)
		resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("GET as %s: %v", user, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0].SerialNumber.String()
	}
	code, serial1 := get("alice", "alice-first-password")
	if code != 200 {
		t.Fatalf("before rotation: alice got %d, want 200", code)
	}

	// Rotate: a new certificate, alice's new password, a new user bob.
	run("dev-certs", "--out", tlsDir, "--site", "primary=mirror-primary.example.org")
	run("passwd", "--file", htpasswd, "--user", "alice", "--rotate", "--password-file", pw("a2", "alice-second-password"))
	run("passwd", "--file", htpasswd, "--user", "bob", "--password-file", pw("b1", "bob-password-1234"))
	// A rotation must leave the files readable by the service's group.
	for _, f := range siteFiles {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("after rotation %s has mode %v, want 0640 as installed", f, fi.Mode().Perm())
		}
	}
	// ExecReload, with $MAINPID as systemd expands it.
	reloadArgv := strings.Fields(strings.ReplaceAll(reload[0], "$MAINPID", strconv.Itoa(cmd.Process.Pid)))
	if out, err := exec.Command(reloadArgv[0], reloadArgv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %v: %v\n%s", reloadArgv, err, out)
	}
	notify.expect("RELOADING=1\nMONOTONIC_USEC=")
	notify.expect("READY=1")

	for _, c := range []struct {
		user, password string
		want           int
	}{{"alice", "alice-second-password", 200}, {"alice", "alice-first-password", 401}, {"bob", "bob-password-1234", 200}} {
		code, serial := get(c.user, c.password)
		if code != c.want {
			t.Errorf("after reload: %s/%s got %d, want %d", c.user, c.password, code, c.want)
		}
		if serial == serial1 {
			t.Errorf("after reload the old certificate (serial %s) is still served", serial1)
		}
	}

	// systemctl stop: SIGTERM; STOPPING=1, then a clean exit.
	cmd.Process.Signal(syscall.SIGTERM)
	notify.expect("STOPPING=1")
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("gateway exit: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("gateway did not exit within 60s of SIGTERM")
	}
}

// readEnvFile parses an EnvironmentFile= (KEY=VALUE lines, # comments).
func readEnvFile(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var env []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if !strings.Contains(l, "=") {
			t.Fatalf("%s: line %q is not KEY=VALUE", path, l)
		}
		env = append(env, l)
	}
	return env
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

//go:build linux

package dos

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/bench"
)

// Names and credentials of the fixture the suite builds.
const (
	serverName = "localhost"
	domain     = "primary"
	user       = "dos"
	password   = "dos-correct-horse"
	// legacyUser holds an apr1 (MD5) hash, only in the legacy htpasswd file.
	legacyUser     = "legacy"
	legacyPassword = "legacy-password"
	indexPath      = "/concelier/exports/index.json"
	bundlePath     = "/concelier/exports/mirror/" + domain + "/bundle.json"
)

// Fixture is what every scenario shares: the export tree, the certificate
// and the htpasswd files, all under Dir.
type Fixture struct {
	Dir, Exports             string
	CertFile, KeyFile        string
	Htpasswd, HtpasswdLegacy string
	Roots                    *x509.CertPool
	// GatewayKeys are the GATEWAY__ keys `gateway --help` lists.
	GatewayKeys map[string]bool

	bin       string
	checkConf string          // a valid gateway config for --check-config
	tried     map[string]bool // keys not in the help, tried with --check-config
}

// supported reports whether the gateway accepts the setting kv
// (KEY=VALUE): listed by `gateway --help`, or accepted by
// `gateway --check-config` with it set.
func (f *Fixture) supported(kv string) bool {
	k, _, _ := strings.Cut(kv, "=")
	if f.GatewayKeys[k] {
		return true
	}
	if f.checkConf == "" {
		return false
	}
	if ok, seen := f.tried[kv]; seen {
		return ok
	}
	cmd := exec.Command(f.bin, "gateway", "--config", f.checkConf, "--check-config")
	cmd.Env = append(baseEnv(), kv)
	ok := cmd.Run() == nil
	f.tried[kv] = ok
	return ok
}

// buildFixture writes the export tree, dev certificates and htpasswd files
// into dir using bin and Debian's htpasswd.
func buildFixture(ctx context.Context, bin, dir, bundleSize string, logf func(string, ...any)) (*Fixture, error) {
	for _, tool := range []string{"htpasswd", "prlimit"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found (apache2-utils, util-linux; make deps installs them): %w", tool, err)
		}
	}
	f := &Fixture{Dir: dir, Exports: filepath.Join(dir, "exports")}
	logf("writing the fixture export (%s bundle)", bundleSize)
	if _, err := runCmd(ctx, bin, "fixture", "--out", f.Exports, "--domains", domain,
		"--bundle-size", bundleSize, "--seed", "1"); err != nil {
		return nil, err
	}
	tlsDir := filepath.Join(dir, "tls")
	if _, err := runCmd(ctx, bin, "dev-certs", "--out", tlsDir, "--site", "dos="+serverName+",127.0.0.1"); err != nil {
		return nil, err
	}
	f.CertFile, f.KeyFile = filepath.Join(tlsDir, "dos.crt"), filepath.Join(tlsDir, "dos.key")
	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("reading dev CA: %w", err)
	}
	f.Roots = x509.NewCertPool()
	if !f.Roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("dev CA: no certificate in ca.pem")
	}
	f.Htpasswd = filepath.Join(dir, "htpasswd")
	if _, err := runCmd(ctx, "htpasswd", "-c", "-b", "-B", "-C", "10", f.Htpasswd, user, password); err != nil {
		return nil, err
	}
	f.HtpasswdLegacy = filepath.Join(dir, "htpasswd-legacy")
	if _, err := runCmd(ctx, "htpasswd", "-c", "-b", "-B", "-C", "10", f.HtpasswdLegacy, user, password); err != nil {
		return nil, err
	}
	if _, err := runCmd(ctx, "htpasswd", "-b", "-m", f.HtpasswdLegacy, legacyUser, legacyPassword); err != nil {
		return nil, err
	}
	f.bin, f.tried = bin, map[string]bool{}
	f.checkConf = filepath.Join(dir, "check-gateway.yaml")
	if err := os.WriteFile(f.checkConf, gatewayConfig(f, f.Htpasswd, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", filepath.Join(dir, "check-cache")), 0o644); err != nil {
		return nil, fmt.Errorf("writing gateway config: %w", err)
	}
	if _, err := runCmd(ctx, bin, "gateway", "--config", f.checkConf, "--check-config"); err != nil {
		return nil, fmt.Errorf("the suite's gateway config is invalid: %w", err)
	}
	help, _ := runCmd(ctx, bin, "gateway", "--help")
	f.GatewayKeys = map[string]bool{}
	for _, k := range regexp.MustCompile(`GATEWAY__[A-Z0-9_{}]+`).FindAllString(help, -1) {
		f.GatewayKeys[k] = true
	}
	return f, nil
}

// runCmd runs a short tool and returns its combined output.
func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tailBytes(out, 2048))
	}
	return string(out), nil
}

func tailBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// tailFile returns the last n bytes of a log file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(tailBytes(b, n))
}

// basic returns a Basic Authorization value.
func basic(u, p string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))
}

// server is a started origin or gateway.
type server struct {
	name      string
	proc      *bench.Process
	addr      string // its public listener
	admin     string // its admin listener (health)
	log       string // its stderr
	exitedBy  string // set when it exited before the suite stopped it
	stoppedAt time.Time
}

// up reports whether the process runs and its admin listener answers
// /health/live.
func (s *server) up(ctx context.Context, client *http.Client) (bool, string) {
	select {
	case <-s.proc.Done():
		return false, fmt.Sprintf("exited: %v", exitText(s.proc.ExitErr()))
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := get(ctx, client, "http://"+s.admin+"/health/live", ""); err != nil {
		return false, "running, /health/live: " + err.Error()
	}
	return true, ""
}

// exitText describes how a process ended: "status 0" for a clean exit.
func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

// startServer runs bin with args under `prlimit --nofile=N:N` (when
// nofile > 0) in its own process group and waits until its admin
// listener reports ready.
func startServer(ctx context.Context, name, dir, bin string, nofile int, env, args []string, admin string) (*server, error) {
	stdout, err := os.Create(filepath.Join(dir, name+"-access.log"))
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	logPath := filepath.Join(dir, name+".log")
	stderr, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	argv := append([]string{bin}, args...)
	if nofile > 0 {
		// prlimit sets the limits and execs the command: same pid.
		argv = append([]string{"prlimit", "--nofile=" + strconv.Itoa(nofile) + ":" + strconv.Itoa(nofile)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	p, err := bench.StartProcess(name, cmd)
	if err != nil {
		return nil, err
	}
	s := &server{name: name, proc: p, admin: admin, log: logPath}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	if err := bench.WaitReady(ctx, client, "http://"+admin+"/health/ready", p, 50*time.Millisecond, 30*time.Second); err != nil {
		return s, fmt.Errorf("%w\n%s", err, tailFile(logPath, 2048))
	}
	return s, nil
}

// baseEnv is the parent's environment without the servers' own settings.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		k = strings.ToUpper(k)
		if strings.HasPrefix(k, "GATEWAY__") || strings.HasPrefix(k, "CONCELIER__") ||
			strings.HasPrefix(k, "EXCITITOR__") || strings.HasPrefix(k, "ORIGIN__") || k == "GOMEMLIMIT" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// startOrigin starts the origin serving the fixture.
func startOrigin(ctx context.Context, f *Fixture, bin, dir string, nofile int) (*server, error) {
	addr, err := bench.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	admin, err := bench.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	env := append(baseEnv(),
		"CONCELIER__MIRROR__ENABLED=true",
		"CONCELIER__MIRROR__EXPORTROOT="+f.Exports,
		"EXCITITOR__MIRROR__ENABLED=true",
		"EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT="+f.Exports,
	)
	s, err := startServer(ctx, "origin", dir, bin, nofile, env, []string{"origin", "--listen", addr, "--admin-listen", admin}, admin)
	if s != nil {
		s.addr = addr
	}
	return s, err
}

// gatewayConfig is the YAML the suite's gateways read: one site on
// localhost with Basic Auth, the cache in cacheDir (off when ""), no
// plain-HTTP listener.
func gatewayConfig(f *Fixture, htpasswd, listen, admin, origin, cacheDir string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "gateway:\n  listen: %q\n  httpListen: \"\"\n  adminListen: %q\n  origin: %q\n", listen, admin, "http://"+origin)
	if cacheDir != "" {
		fmt.Fprintf(&b, "  cache:\n    dir: %q\n    maxSize: 2GiB\n", cacheDir)
	}
	fmt.Fprintf(&b, "  sites:\n    - hosts: [%s, 127.0.0.1]\n      domains: [%s]\n      certFile: %q\n      keyFile: %q\n      htpasswdFile: %q\n",
		serverName, domain, f.CertFile, f.KeyFile, htpasswd)
	return b.Bytes()
}

// startGateway writes the config and starts the gateway with the extra
// GATEWAY__ settings env (KEY=VALUE).
func startGateway(ctx context.Context, f *Fixture, bin, dir, htpasswd string, origin *server, nofile int, env []string, cache bool) (*server, error) {
	addr, err := bench.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	admin, err := bench.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "gateway.yaml")
	cacheDir := ""
	if cache {
		cacheDir = filepath.Join(dir, "cache")
	}
	if err := os.WriteFile(conf, gatewayConfig(f, htpasswd, addr, admin, origin.addr, cacheDir), 0o644); err != nil {
		return nil, fmt.Errorf("writing gateway config: %w", err)
	}
	s, err := startServer(ctx, "gateway", dir, bin, nofile, append(baseEnv(), env...),
		[]string{"gateway", "--config", conf}, admin)
	if s != nil {
		s.addr = addr
	}
	return s, err
}

// Target is what an attack needs to reach the gateway.
type Target struct {
	// Addr is the gateway's HTTPS listener, 127.0.0.1:port.
	Addr string
	// AttackerIP is the attackers' source address (127.0.0.1).
	AttackerIP string
	// TLS trusts the dev CA and sends SNI localhost.
	TLS *tls.Config
	// Auth is a valid Basic Authorization value.
	Auth string
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
)

// Shared by the multi-node tests (TestComposeTwoNodes, TestComposeCluster):
// the material every edge node shares, one compose project per node, the
// round-robin nginx in front of them, the client loops and their tally.

// multiNodeSetup starts a multi-node compose test: it needs a Docker
// engine (requireDockerOrCI, naming what), the programs tools and a
// Compose implementation; it builds the image from the binary under test
// as stella-mirror:<tag>-<random> (removed at the end). It returns the
// Compose tool, the repository root and the image.
func multiNodeSetup(t *testing.T, what, tag string, tools ...string) (composeTool, string, string) {
	t.Helper()
	requireDockerOrCI(t, what)
	requireTools(t, tools...)
	compose := composeTools(t)
	if len(compose) == 0 {
		t.Fatal("a Docker engine answers but neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	image := "stella-mirror:" + tag + "-" + randomHex(t, 4)
	run(t, nil, 5*time.Minute, filepath.Join(root, "compose", "build-image.sh"), bin, image, "e2e")
	t.Logf("image %s built in %.0fs", image, time.Since(start).Seconds())
	t.Cleanup(func() { _, _ = tryRun(nil, time.Minute, "docker", "rmi", "-f", image) })
	return compose[0], root, image
}

// setSync makes n.sync from runSync, which runs one sync into n.root and
// returns its output: n.sync times it and returns the export n.root's
// latest then names; a failed run or no latest fails the test. It runs
// the first sync, which must publish want.
func (n *twoNode) setSync(t *testing.T, want string, runSync func() (string, error)) {
	t.Helper()
	n.sync = func() (time.Time, time.Time, string) {
		t.Helper()
		start := time.Now()
		out, err := runSync()
		end := time.Now()
		if err != nil {
			t.Fatalf("%s: sync: %v\n%s", n.name, err, out)
		}
		id, err := os.Readlink(filepath.Join(n.root, export.LatestLink))
		if err != nil {
			t.Fatalf("%s: sync published no latest: %v\n%s", n.name, err, out)
		}
		return start, end, filepath.Base(id)
	}
	if _, _, got := n.sync(); got != want {
		t.Fatalf("%s: initial sync published %s, want %s", n.name, got, want)
	}
}

// exportWriter writes signed fixture exports into one upstream root with
// one signing key.
type exportWriter struct {
	root    string // the upstream export root
	key     string // the private key, PEM
	pubFile string // its public key, PEM
}

// newExportWriter makes a signing key under work and an empty upstream
// root.
func newExportWriter(t *testing.T, work string) *exportWriter {
	t.Helper()
	prefix := filepath.Join(work, "signing")
	run(t, nil, time.Minute, bin, "keygen", "--out", prefix)
	return &exportWriter{root: filepath.Join(work, "upstream"), key: prefix + ".key.pem", pubFile: prefix + ".pub.pem"}
}

// write writes the export of seed (bundles of 256 KiB) and returns its id.
func (w *exportWriter) write(t *testing.T, seed string) string {
	t.Helper()
	run(t, nil, 2*time.Minute, bin, "fixture", "--out", w.root, "--key", w.key, "--seed", seed,
		"--bundle-size", "256KiB", "--vex-size", "32KiB")
	id, err := os.Readlink(filepath.Join(w.root, export.LatestLink))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(id)
}

// edgeMaterial is what every edge node shares: one CA and the site
// certificates (one name for all nodes), one user list per site, the
// gateway admin token the example env file enables, and the uid the
// containers run as.
type edgeMaterial struct {
	tlsDir, secretsDir string
	user, password     string // a user of the primary site
	uid, gid           int
}

// newEdgeMaterial lays the material out under work with the documented
// commands (dev-certs, passwd --generate), owned by the containers' user.
func newEdgeMaterial(t *testing.T, work string) edgeMaterial {
	t.Helper()
	m := edgeMaterial{tlsDir: filepath.Join(work, "tls"), secretsDir: filepath.Join(work, "secrets")}
	run(t, nil, time.Minute, bin, "dev-certs", "--out", m.tlsDir)
	if err := os.MkdirAll(m.secretsDir, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, site := range []string{"primary", "community"} {
		run(t, nil, time.Minute, bin, "passwd", "--file", filepath.Join(m.secretsDir, site+".htpasswd"),
			"--user", "user-"+site, "--generate", "24", "--password-out", filepath.Join(work, site+".password"))
	}
	// The admin token the example env enables (GATEWAY__ADMINTOKENFILE).
	if err := os.WriteFile(filepath.Join(m.secretsDir, "gateway-admin-token"), []byte(randomHex(t, 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(filepath.Join(work, "primary.password"))
	if err != nil {
		t.Fatal(err)
	}
	m.user, m.password = "user-primary", strings.TrimSpace(string(pw))
	m.uid, m.gid = os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		m.uid, m.gid = 65532, 65532
		m.chown(t)
	}
	for _, d := range []string{m.tlsDir, m.secretsDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// chown gives the certificates, keys and secrets to the containers' user
// (as root; otherwise they already belong to it). Call it again after
// adding a secret.
func (m edgeMaterial) chown(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	for _, pattern := range []string{filepath.Join(m.tlsDir, "*.crt"), filepath.Join(m.tlsDir, "*.key"), filepath.Join(m.secretsDir, "*")} {
		matches, _ := filepath.Glob(pattern)
		for _, f := range matches {
			if err := os.Chown(f, m.uid, m.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// newEdgeStacks makes one compose project of the shipped file with the
// example env file per node — what an edge host runs — each with its
// gateway published on a loopback port and its own backend subnet, and
// registers their `down -v`. Nothing is started yet (upEdgeStacks).
// prefix starts the project names.
func newEdgeStacks(t *testing.T, tool composeTool, root, image, prefix string, m edgeMaterial, nodes []*twoNode) {
	t.Helper()
	b := randomHex(t, 2)
	netA, _ := strconv.ParseUint(b[:2], 16, 8)
	netB, _ := strconv.ParseUint(b[2:], 16, 8)
	for i, n := range nodes {
		n.port = freeFixedPort(t)
		subnet := fmt.Sprintf("10.%d.%d", 200+netA%50, (netB+uint64(i))%256)
		n.stack = &stack{t: t, tool: tool, root: root, project: prefix + strconv.Itoa(i+1) + randomHex(t, 3), env: []string{
			"MIRROR_IMAGE=" + image,
			"MIRROR_BIND_ADDRESS=127.0.0.1",
			"MIRROR_HTTPS_PORT=" + strconv.Itoa(n.port),
			"MIRROR_HTTP_PORT=" + strconv.Itoa(freeFixedPort(t)),
			"MIRROR_EXPORT_ROOT=" + n.root,
			"MIRROR_TLS_DIR=" + m.tlsDir,
			"MIRROR_SECRETS_DIR=" + m.secretsDir,
			"MIRROR_UID=" + strconv.Itoa(m.uid),
			"MIRROR_GID=" + strconv.Itoa(m.gid),
			"MIRROR_BACKEND_SUBNET=" + subnet + ".0/24",
			"MIRROR_GATEWAY_BACKEND_IP=" + subnet + ".10",
			"MIRROR_HEALTHCHECK_INTERVAL=1s",
		}}
		s := n.stack
		t.Cleanup(func() {
			if t.Failed() {
				logs, _ := s.compose(time.Minute, "logs", "--no-color", "--tail", "40")
				t.Logf("%s compose logs:\n%s", s.project, logs)
			}
			if out, err := s.compose(2*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
				t.Errorf("%s: compose down -v: %v\n%s", s.project, err, out)
			}
		})
	}
}

// upEdgeStacks runs every node's `up -d` at once (each returns once its
// origin is healthy) and waits for the gateways' health.
func upEdgeStacks(t *testing.T, nodes []*twoNode) {
	t.Helper()
	upErrs := make([]error, len(nodes))
	var upWG sync.WaitGroup
	for i, n := range nodes {
		upWG.Add(1)
		go func() {
			defer upWG.Done()
			if out, err := n.stack.compose(3*time.Minute, "up", "-d"); err != nil {
				upErrs[i] = fmt.Errorf("%s: compose up -d: %w\n%s", n.name, err, out)
			}
		}()
	}
	upWG.Wait()
	if err := errors.Join(upErrs...); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitHealthy(t, n.stack.container("gateway"), 90*time.Second)
	}
}

// newTwoNodeClient is a client of the round-robin on lbPort (and of each
// node's gateway directly, set as n.direct) with the primary site's user,
// verifying signatures with the key in pubFile.
func newTwoNodeClient(t *testing.T, m edgeMaterial, lbPort int, pubFile string, nodes []*twoNode) *twoNodeClient {
	t.Helper()
	ca := filepath.Join(m.tlsDir, "ca.pem")
	pub, err := jws.LoadPublicKeyPEM(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	c := &twoNodeClient{
		user: m.user, password: m.password,
		lb:     &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}},
		lbURL:  "http://127.0.0.1:" + strconv.Itoa(lbPort),
		keys:   []jws.PublicKey{{Key: pub}},
		nodeOf: map[string]string{},
	}
	t.Cleanup(c.lb.CloseIdleConnections)
	for _, n := range nodes {
		n.direct = demoClient(t, ca, fmt.Sprintf("https://mirror-primary.localhost:%d", n.port))
		c.nodeOf["127.0.0.1:"+strconv.Itoa(n.port)] = n.name
	}
	return c
}

// clientLoops runs the client loops and observers of a scenario until
// end (or the test's end).
type clientLoops struct {
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// newClientLoops returns loops that end with the test at the latest.
func newClientLoops(t *testing.T) *clientLoops {
	l := &clientLoops{}
	l.ctx, l.stop = context.WithCancel(context.Background())
	t.Cleanup(l.end)
	return l
}

// every runs f every period, the first time after offset (the loops'
// phases, not synchronisation), until end.
func (l *clientLoops) every(period, offset time.Duration, f func(ctx context.Context)) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(offset):
		}
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			f(l.ctx)
			select {
			case <-l.ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// end stops the loops and waits for them.
func (l *clientLoops) end() {
	l.stop()
	l.wg.Wait()
}

// waitFor polls cond (state kept by the loops) until it holds or the
// deadline passes; then the test fails with the client's summary.
func (c *twoNodeClient) waitFor(t *testing.T, what string, deadline time.Time, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached by the deadline (%s)", what, c.summary())
		}
		<-tick.C
	}
}

// switchSpan is the span from the first node's switch (the earliest lo)
// to the last node's (the latest hi).
func switchSpan(sw map[string]twoNodeSwitch) (minLo, maxHi time.Time) {
	for _, s := range sw {
		if minLo.IsZero() || s.lo.Before(minLo) {
			minLo = s.lo
		}
		if s.hi.After(maxHi) {
			maxHi = s.hi
		}
	}
	return minLo, maxHi
}

// setTally counts the recorded sets of a scenario from export A to B.
type setTally struct {
	pinned, pinnedBad, retried, retries404, unavailable int
	unv, unvBad, inWindow                               int
	failed                                              int // sets with a failed request (any kind)
	requests, lbRetried                                 int // requests answered; of them, tried on another node by nginx
	firstBad, lastBad                                   time.Time
	sawA, sawB                                          bool
}

// tally counts the sets and fails the test for each failed request, each
// mixed pinned set and each mixed unversioned set outside [minLo, maxHi]
// (the nodes' switches); rel turns a time into the scenario's seconds.
func (c *twoNodeClient) tally(t *testing.T, idA, idB string, minLo, maxHi time.Time, rel func(time.Time) float64) setTally {
	t.Helper()
	res := c.results()
	var n setTally
	for _, r := range res {
		n.requests += len(r.nodes)
		n.lbRetried += r.lbRetried
		if r.fetchErr != nil {
			n.failed++
			if r.kind == "pinned" {
				n.unavailable++
			}
			t.Errorf("%s set at %.1fs: %v", r.kind, rel(r.start), r.fetchErr)
			continue
		}
		switch r.kind {
		case "pinned":
			n.pinned++
			n.retries404 += r.retries404
			if r.retries404 > 0 {
				n.retried++
			}
			if r.err != nil {
				n.pinnedBad++
				t.Errorf("pinned set at %.1fs mixed exports (%s): %v", rel(r.start), r.route(), r.err)
			}
		case "unversioned":
			n.unv++
			n.sawA = n.sawA || r.indexID == idA
			n.sawB = n.sawB || r.indexID == idB
			if r.err == nil {
				continue
			}
			n.unvBad++
			if n.firstBad.IsZero() || r.start.Before(n.firstBad) {
				n.firstBad = r.start
			}
			if r.end.After(n.lastBad) {
				n.lastBad = r.end
			}
			// Only while the nodes disagree: the set overlaps the span
			// from the first node's switch to the last node's.
			if r.end.Before(minLo) || r.start.After(maxHi) {
				t.Errorf("unversioned set at %.1fs–%.1fs mixed exports outside the switches (%.1fs–%.1fs): %s: %v",
					rel(r.start), rel(r.end), rel(minLo), rel(maxHi), r.route(), r.err)
			}
		}
	}
	for _, r := range res {
		if r.kind == "unversioned" && r.fetchErr == nil && !r.start.Before(n.firstBad) && !r.end.After(n.lastBad) {
			n.inWindow++
		}
	}
	return n
}

// check fails the test for a mixed pinned set, for fewer than minSets
// sets of a kind, and when the unversioned sets did not span the switch.
func (n setTally) check(t *testing.T, minSets int) {
	t.Helper()
	if n.pinnedBad != 0 {
		t.Errorf("%d of %d pinned sets mixed two exports, want 0", n.pinnedBad, n.pinned)
	}
	if n.pinned < minSets || n.unv < minSets {
		t.Errorf("only %d pinned and %d unversioned sets, want %d of each", n.pinned, n.unv, minSets)
	}
	if !n.sawA || !n.sawB {
		t.Errorf("the unversioned sets did not span the switch (saw A %v, B %v)", n.sawA, n.sawB)
	}
}

// checkSwitches bounds each node's switch from A to B, logs it beside the
// end of the node's sync (syncEnds[i] for nodes[i]) and fails the test for
// a node that did not switch exactly once.
func (c *twoNodeClient) checkSwitches(t *testing.T, nodes []*twoNode, idA, idB string, syncEnds []time.Time, rel func(time.Time) float64) map[string]twoNodeSwitch {
	t.Helper()
	sw := c.switches(nodes, idA, idB)
	for i, n := range nodes {
		s := sw[n.name]
		t.Logf("%s: sync ended at %.1fs, switched to B in (%.1fs, %.1fs]", n.name, rel(syncEnds[i]), rel(s.lo), rel(s.hi))
		if s.lo.IsZero() || s.hi.IsZero() || !s.lo.Before(s.hi) {
			t.Errorf("%s: did not switch once from A to B: last answer of A began at %.1fs, first answer of B ended at %.1fs", n.name, rel(s.lo), rel(s.hi))
		}
	}
	return sw
}

// startRoundRobin runs nginx on a loopback port as a plain-HTTP round-robin
// in front of the gateways on ports (HTTPS on loopback, verified against
// ca, SNI and Host = the client's Host). Basic Auth passes through; each
// answer names the gateway(s) nginx tried in X-Upstream. locationExtra is
// added to the location (e.g. proxy_next_upstream). It returns the port.
func startRoundRobin(t *testing.T, prefix, ca, locationExtra string, ports ...int) int {
	t.Helper()
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	var servers strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&servers, "        server 127.0.0.1:%d;\n", p)
	}
	conf := fmt.Sprintf(`# Round-robin over edge nodes (test/e2e/edgenodes_test.go).
%sdaemon off;
worker_processes 1;
pid "%[2]s/nginx.pid";
events { worker_connections 256; }
http {
    access_log "%[2]s/access.log";
    client_body_temp_path "%[2]s/temp_client_body";
    proxy_temp_path "%[2]s/temp_proxy";
    fastcgi_temp_path "%[2]s/temp_fastcgi";
    uwsgi_temp_path "%[2]s/temp_uwsgi";
    scgi_temp_path "%[2]s/temp_scgi";
    upstream edge_nodes {
%[3]s        keepalive 8;
    }
    server {
        listen 127.0.0.1:%[4]d;
        location / {
            proxy_pass https://edge_nodes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_ssl_server_name on;
            proxy_ssl_name $host;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate "%[5]s";
            proxy_ssl_session_reuse on;
            proxy_max_temp_file_size 0;
            add_header X-Upstream $upstream_addr always;
%[6]s
        }
    }
}
`, user, prefix, servers.String(), port, ca, locationExtra)
	confFile := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	runNginx(t, prefix, confFile, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
	})
	return port
}

// checkEnd asserts a node's state at the end of a scenario: asked
// directly, it serves idB as one chain, and still serves idA under A's
// pinned URLs (sync keeps the previous export).
func (c *twoNodeClient) checkEnd(t *testing.T, n *twoNode, idA, idB string) {
	t.Helper()
	id, err := c.directChain(n)
	if err != nil || id != idB {
		t.Errorf("%s at the end: index names %s (want %s): %v", n.name, id, idB, err)
	}
	status, _, _, err := c.get(context.Background(), n.direct, "https://mirror-primary.localhost", export.PinnedFileURL(idA, "primary", export.BundleName))
	if err != nil || status != http.StatusOK {
		t.Errorf("%s at the end: A's pinned bundle: HTTP %d, %v; want 200 (sync keeps the previous export)", n.name, status, err)
	}
}

// runNginx checks the configuration file conf with `nginx -t`, runs nginx
// with it (runtime files under prefix) until the test ends — SIGQUIT, then
// SIGKILL of its process group after 30 s — and returns once dial
// connects to it: nginx is another process, so it is polled, for 30 s at
// most.
func runNginx(t *testing.T, prefix, conf string, dial func(ctx context.Context) (net.Conn, error)) {
	t.Helper()
	nargs := []string{"-p", prefix + "/", "-c", conf, "-e", filepath.Join(prefix, "error.log")}
	if out, err := exec.Command("nginx", append([]string{"-t"}, nargs...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command("nginx", nargs...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, time.Second)
		c, err := dial(attempt)
		cancelAttempt()
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-done:
			t.Fatalf("nginx exited: %v\n%s", err, out.String())
		case <-ctx.Done():
			t.Fatalf("nginx not serving after 30s: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

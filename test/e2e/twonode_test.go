package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// Timing of the two-node scenario. indexTTL is the origin's fixed
// `Cache-Control: public, max-age=60` on index.json (there is no setting to
// lower it, so the test runs for real minutes); the margin covers the
// observer's period, a set's own duration and a loaded machine.
const (
	twoNodeIndexTTL  = 60 * time.Second
	twoNodeMargin    = 15 * time.Second
	twoNodeObserve   = 2 * time.Second  // each node's index, polled directly
	twoNodeSetPeriod = time.Second      // each client loop starts a set this often
	twoNodeTail      = 5 * time.Second  // sets after the last node switched
	twoNodePrime     = 30 * time.Second // bound on reaching the starting state
)

// TestComposeTwoNodes is issue 15 item 5: two edge nodes, each the shipped
// compose/docker-compose.mirror.yaml (origin + gateway with its cache) as a
// compose project of its own, behind one nginx round-robin; both nodes
// sync from one upstream at different moments. A client loops through
// nginx, for longer than the index's TTL, over two kinds of sets:
//
//   - pinned: index.json, then the manifest, bundle and JWS of the export
//     the index names by their export-pinned URLs. Must verify as one chain
//     every time (0 mismatches). A 404 for a pinned URL (the other node
//     does not hold that export yet) is retried, as a client must.
//   - unversioned: index.json, then the unversioned manifest, bundle and
//     JWS. Sets that straddle the two nodes' switches mix exports; they
//     are counted, and every one must fall between the first node's switch
//     and the last node's, which comes at most one index TTL (+ margin)
//     after that node's sync.
//
// Scenario: both nodes synced to export A and serving it; export B is
// published upstream; node 1 syncs; once node 1's gateway serves B (its
// cached index expired) and node 2's gateway has re-confirmed A at its
// origin after node 1's sync, node 2 syncs — the worst case: node 2 keeps
// A for up to a whole TTL after its sync while node 1 serves B. At the end both nodes serve B and A's pinned URLs
// still answer. The figures (sets, mismatches, the window) are logged and
// written up in docs/operations.md, "Several edge nodes".
//
// The Docker engine here pulls no images, so the upstream (a
// `stella-mirror origin` on 127.0.0.1), the syncs (the binary under test,
// writing into each node's bind-mounted export root) and the round-robin
// nginx (Debian's nginx-light on a loopback port, proxying to the two
// gateways' published loopback ports over TLS) run on the host; the nodes
// run in containers from the FROM-scratch image.
func TestComposeTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("takes two index TTLs (about two minutes)")
	}
	requireDockerOrCI(t, "the two-node compose test")
	requireTools(t, "nginx")
	tools := composeTools(t)
	if len(tools) == 0 {
		t.Fatal("a Docker engine answers but neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	testStart := time.Now()

	image := "stella-mirror:e2e2n-" + randomHex(t, 4)
	run(t, nil, 5*time.Minute, filepath.Join(root, "compose", "build-image.sh"), bin, image, "e2e")
	t.Logf("image built in %.0fs", time.Since(testStart).Seconds())
	t.Cleanup(func() { _, _ = tryRun(nil, time.Minute, "docker", "rmi", "-f", image) })

	work := t.TempDir()
	tlsDir, secretsDir, upRoot := filepath.Join(work, "tls"), filepath.Join(work, "secrets"), filepath.Join(work, "upstream")
	keyPrefix := filepath.Join(work, "signing")
	run(t, nil, time.Minute, bin, "keygen", "--out", keyPrefix)
	pubFile := keyPrefix + ".pub.pem"
	fixture := func(seed string) string {
		t.Helper()
		run(t, nil, 2*time.Minute, bin, "fixture", "--out", upRoot, "--key", keyPrefix+".key.pem", "--seed", seed,
			"--bundle-size", "256KiB", "--vex-size", "32KiB")
		id, err := os.Readlink(filepath.Join(upRoot, export.LatestLink))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Base(id)
	}
	idA := fixture("1")

	// The upstream: one origin on loopback, open (the nodes' syncs are the
	// only clients).
	upstream, _ := startOrigin(t, []string{
		"CONCELIER__MIRROR__ENABLED=true", "CONCELIER__MIRROR__EXPORTROOT=" + upRoot,
		"CONCELIER__MIRROR__REQUIREAUTHENTICATION=false",
		"EXCITITOR__MIRROR__ENABLED=true", "EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT=" + upRoot,
		"EXCITITOR__MIRROR__REQUIREAUTHENTICATION=false",
	})
	nodes := []*twoNode{{name: "node1"}, {name: "node2"}}
	for _, n := range nodes {
		n.root = filepath.Join(work, n.name+"-exports")
		n.sync = func() (time.Time, time.Time, string) {
			t.Helper()
			start := time.Now()
			out := run(t, nil, 2*time.Minute, bin, "sync", "--source", upstream, "--dest", n.root,
				"--public-key", pubFile, "--log-format", "json")
			end := time.Now()
			id, err := os.Readlink(filepath.Join(n.root, export.LatestLink))
			if err != nil {
				t.Fatalf("%s: sync published no latest: %v\n%s", n.name, err, out)
			}
			return start, end, filepath.Base(id)
		}
		if _, _, got := n.sync(); got != idA {
			t.Fatalf("%s: initial sync published %s, want %s", n.name, got, idA)
		}
		// The origin container reads the bind mount as MIRROR_UID.
		if err := os.Chmod(n.root, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// TLS and users, shared by both nodes (one name, one CA, one user list).
	run(t, nil, time.Minute, bin, "dev-certs", "--out", tlsDir)
	if err := os.MkdirAll(secretsDir, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, site := range []string{"primary", "community"} {
		run(t, nil, time.Minute, bin, "passwd", "--file", filepath.Join(secretsDir, site+".htpasswd"),
			"--user", "user-"+site, "--generate", "24", "--password-out", filepath.Join(work, site+".password"))
	}
	// The admin token the example env enables (GATEWAY__ADMINTOKENFILE).
	if err := os.WriteFile(filepath.Join(secretsDir, "gateway-admin-token"), []byte(randomHex(t, 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, err := os.ReadFile(filepath.Join(work, "primary.password"))
	if err != nil {
		t.Fatal(err)
	}
	user, password := "user-primary", strings.TrimSpace(string(pw))
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		uid, gid = 65532, 65532
		for _, pattern := range []string{"tls/*.crt", "tls/*.key", "secrets/*"} {
			matches, _ := filepath.Glob(filepath.Join(work, pattern))
			for _, m := range matches {
				if err := os.Chown(m, uid, gid); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, d := range []string{tlsDir, secretsDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// Two compose projects of the shipped file with the example env file:
	// what two edge hosts run. Each publishes its gateway on loopback.
	b := randomHex(t, 2)
	netA, _ := strconv.ParseUint(b[:2], 16, 8)
	netB, _ := strconv.ParseUint(b[2:], 16, 8)
	for i, n := range nodes {
		n.port = freeFixedPort(t)
		subnet := fmt.Sprintf("10.%d.%d", 200+netA%50, (netB+uint64(i))%256)
		n.stack = &stack{t: t, tool: tools[0], root: root, project: "sm2n" + strconv.Itoa(i+1) + randomHex(t, 3), env: []string{
			"MIRROR_IMAGE=" + image,
			"MIRROR_BIND_ADDRESS=127.0.0.1",
			"MIRROR_HTTPS_PORT=" + strconv.Itoa(n.port),
			"MIRROR_HTTP_PORT=" + strconv.Itoa(freeFixedPort(t)),
			"MIRROR_EXPORT_ROOT=" + n.root,
			"MIRROR_TLS_DIR=" + tlsDir,
			"MIRROR_SECRETS_DIR=" + secretsDir,
			"MIRROR_UID=" + strconv.Itoa(uid),
			"MIRROR_GID=" + strconv.Itoa(gid),
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
	// Both `up -d` at once (each returns once its origin is healthy).
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
	t.Logf("two nodes healthy %.0fs after the test started", time.Since(testStart).Seconds())

	ca := filepath.Join(tlsDir, "ca.pem")
	lbPort := startRoundRobin(t, filepath.Join(work, "nginx"), ca, nodes[0].port, nodes[1].port)
	for _, n := range nodes {
		n.direct = demoClient(t, ca, fmt.Sprintf("https://mirror-primary.localhost:%d", n.port))
	}
	pub, err := jws.LoadPublicKeyPEM(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	c := &twoNodeClient{
		user: user, password: password,
		lb:    &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}},
		lbURL: "http://127.0.0.1:" + strconv.Itoa(lbPort),
		keys:  []jws.PublicKey{{Key: pub}},
		nodeOf: map[string]string{
			"127.0.0.1:" + strconv.Itoa(nodes[0].port): nodes[0].name,
			"127.0.0.1:" + strconv.Itoa(nodes[1].port): nodes[1].name,
		},
	}
	t.Cleanup(c.lb.CloseIdleConnections)

	// The client loops and the observer run until the scenario is over.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	loop := func(period time.Duration, offset time.Duration, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(offset): // the loops' phases, not synchronisation
			}
			tick := time.NewTicker(period)
			defer tick.Stop()
			for {
				f()
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	loop(twoNodeSetPeriod, 0, func() { c.pinnedSet(ctx) })
	loop(twoNodeSetPeriod, twoNodeSetPeriod/2, func() { c.unversionedSet(ctx) })
	for _, n := range nodes {
		loop(twoNodeObserve, 0, func() { c.observe(ctx, n) })
	}

	// waitFor polls cond (state kept by the loops) until it holds or the
	// deadline passes.
	waitFor := func(what string, deadline time.Time, cond func() bool) {
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
	waitFor("both nodes serving A, sets verifying", time.Now().Add(twoNodePrime), func() bool {
		return c.seen(nodes[0].name, idA) && c.seen(nodes[1].name, idA) && c.okSets("pinned") >= 3 && c.okSets("unversioned") >= 3
	})

	// Export B upstream; node 1 syncs now, node 2 once node 1 serves B.
	idB := fixture("2")
	if idB == idA {
		t.Fatalf("the second export has the first one's id %s", idA)
	}
	var sync1Start, sync1End, sync2Start, sync2End time.Time
	var got string
	if sync1Start, sync1End, got = nodes[0].sync(); got != idB {
		t.Fatalf("node1 synced %s, want %s", got, idB)
	}
	// The worst case for node 2: it syncs just after its gateway confirmed
	// A at its origin (A fresh there for a whole TTL more), while node 1
	// already serves B.
	waitFor("node1 serving B, node2 re-confirmed A", sync1End.Add(twoNodeIndexTTL+twoNodeMargin), func() bool {
		return c.seen(nodes[0].name, idB) && c.refreshedSince(nodes[1].name, idA, sync1End)
	})
	if sync2Start, sync2End, got = nodes[1].sync(); got != idB {
		t.Fatalf("node2 synced %s, want %s", got, idB)
	}
	waitFor("node2 serving B", sync2End.Add(twoNodeIndexTTL+twoNodeMargin), func() bool { return c.seen(nodes[1].name, idB) })
	// A few more sets with both nodes on B, and in all longer than the
	// index TTL since the first sync.
	tailEnd := time.Now().Add(twoNodeTail)
	if atLeast := sync1Start.Add(twoNodeIndexTTL + twoNodeTail); tailEnd.Before(atLeast) {
		tailEnd = atLeast
	}
	waitFor("the tail", tailEnd.Add(time.Minute), func() bool { return time.Now().After(tailEnd) })
	stop()
	wg.Wait()

	// The figures.
	rel := func(tm time.Time) float64 { return tm.Sub(sync1Start).Seconds() }
	sw := c.switches(nodes, idA, idB)
	for _, n := range nodes {
		s := sw[n.name]
		t.Logf("%s: switched to B in (%.1fs, %.1fs] (times from node1's sync start; sync ended %.1fs / %.1fs)",
			n.name, rel(s.lo), rel(s.hi), rel(sync1End), rel(sync2End))
		if s.lo.IsZero() || s.hi.IsZero() || !s.lo.Before(s.hi) {
			t.Errorf("%s: did not switch once from A to B: last answer of A began at %.1fs, first answer of B ended at %.1fs", n.name, rel(s.lo), rel(s.hi))
		}
	}
	res := c.results()
	var pinned, unv, pinnedBad, unvBad, retried, retries, unavailable int
	var firstBad, lastBad time.Time
	var sawA, sawB bool
	minLo, maxHi := sw[nodes[0].name].lo, sw[nodes[0].name].hi
	for _, n := range nodes[1:] {
		if s := sw[n.name]; s.lo.Before(minLo) {
			minLo = s.lo
		}
		if s := sw[n.name]; s.hi.After(maxHi) {
			maxHi = s.hi
		}
	}
	for _, r := range res {
		if r.fetchErr != nil {
			if r.kind == "pinned" {
				unavailable++
			}
			t.Errorf("%s set at %.1fs: %v", r.kind, rel(r.start), r.fetchErr)
			continue
		}
		switch r.kind {
		case "pinned":
			pinned++
			retries += r.retries404
			if r.retries404 > 0 {
				retried++
			}
			if r.err != nil {
				pinnedBad++
				t.Errorf("pinned set at %.1fs mixed exports (%s): %v", rel(r.start), r.route(), r.err)
			}
		case "unversioned":
			unv++
			sawA = sawA || r.indexID == idA
			sawB = sawB || r.indexID == idB
			if r.err == nil {
				continue
			}
			unvBad++
			if firstBad.IsZero() || r.start.Before(firstBad) {
				firstBad = r.start
			}
			if r.end.After(lastBad) {
				lastBad = r.end
			}
			// Only while the nodes disagree: the set overlaps the span
			// from the first node's switch to the last node's.
			if r.end.Before(minLo) || r.start.After(maxHi) {
				t.Errorf("unversioned set at %.1fs–%.1fs mixed exports outside the switches (%.1fs–%.1fs): %s: %v",
					rel(r.start), rel(r.end), rel(minLo), rel(maxHi), r.route(), r.err)
			}
		}
	}
	window := lastBad.Sub(firstBad)
	inWindow := 0
	for _, r := range res {
		if r.kind == "unversioned" && r.fetchErr == nil && !r.start.Before(firstBad) && !r.end.After(lastBad) {
			inWindow++
		}
	}
	t.Logf("pinned sets: %d, mismatches %d, sets that retried a 404 %d (%d retries), unavailable %d",
		pinned, pinnedBad, retried, retries, unavailable)
	t.Logf("unversioned sets: %d, mismatches %d (of %d sets inside the window), window %.1fs (%.1fs–%.1fs after node1's sync started; node2 synced at %.1fs–%.1fs)",
		unv, unvBad, inWindow, window.Seconds(), rel(firstBad), rel(lastBad), rel(sync2Start), rel(sync2End))
	t.Logf("loop ran %.0fs; test %.0fs", time.Since(sync1Start).Seconds(), time.Since(testStart).Seconds())

	if pinnedBad != 0 {
		t.Errorf("%d of %d pinned sets mixed two exports, want 0", pinnedBad, pinned)
	}
	if pinned < 20 || unv < 20 {
		t.Errorf("only %d pinned and %d unversioned sets", pinned, unv)
	}
	if !sawA || !sawB {
		t.Errorf("the unversioned sets did not span the switch (saw A %v, B %v)", sawA, sawB)
	}
	for i, n := range nodes {
		end := []time.Time{sync1End, sync2End}[i]
		if late := sw[n.name].hi.Sub(end); late > twoNodeIndexTTL+twoNodeMargin {
			t.Errorf("%s served A until %.1fs after its sync, want at most the index TTL %v + %v", n.name, late.Seconds(), twoNodeIndexTTL, twoNodeMargin)
		}
	}
	if unvBad > 0 {
		// The window opens at node1's switch and closes at node2's, at
		// most one TTL after node2's gateway last confirmed A, which was
		// before node2's sync: so at most the TTL plus the time from
		// node1's switch to node2's sync (the reaction).
		reaction := sync2End.Sub(sw[nodes[0].name].lo)
		if limit := twoNodeIndexTTL + reaction + twoNodeMargin; window > limit {
			t.Errorf("unversioned mismatches spanned %.1fs, want at most the index TTL + %.1fs reaction + %v", window.Seconds(), reaction.Seconds(), twoNodeMargin)
		}
		if firstBad.Before(sync1Start) || lastBad.After(sync2End.Add(twoNodeIndexTTL+twoNodeMargin)) {
			t.Errorf("unversioned mismatches at %.1fs–%.1fs, want within node1's sync and node2's sync + TTL", rel(firstBad), rel(lastBad))
		}
	}

	// At the end: each node, asked directly, serves B as one chain, and
	// still serves A under A's pinned URLs.
	for _, n := range nodes {
		id, err := c.directChain(n)
		if err != nil || id != idB {
			t.Errorf("%s at the end: index names %s (want %s): %v", n.name, id, idB, err)
		}
		status, _, _, err := c.get(context.Background(), n.direct, "https://mirror-primary.localhost", export.PinnedFileURL(idA, "primary", export.BundleName))
		if err != nil || status != http.StatusOK {
			t.Errorf("%s at the end: A's pinned bundle: HTTP %d, %v; want 200 (sync keeps the previous export)", n.name, status, err)
		}
	}
}

// requireDockerOrCI skips the test when no Docker engine answers, loudly;
// in CI (CI set) it fails instead, so the test cannot silently vanish.
func requireDockerOrCI(t *testing.T, what string) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		testenv.Missing(t, format, args...)
	}
	if _, err := exec.LookPath("docker"); err != nil {
		missing("%s needs Docker: no docker CLI on this host (apt-get install docker.io)", what)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missing("%s needs a Docker engine: none answers (docker info: %v: %s)", what, err, bytes.TrimSpace(out))
	}
}

// waitHealthy polls Docker's health verdict on a container, bounded.
func waitHealthy(t *testing.T, id string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		st := strings.TrimSpace(run(t, nil, time.Minute, "docker", "inspect", "--format", "{{.State.Health.Status}}", id))
		if st == "healthy" {
			return
		}
		if st == "unhealthy" || time.Now().After(deadline) {
			t.Fatalf("container %s is %s", id, st)
		}
		<-tick.C
	}
}

// startRoundRobin runs nginx on a loopback port as a plain-HTTP round-robin
// in front of the two gateways (HTTPS on loopback, verified against ca,
// SNI and Host = the client's Host). Basic Auth passes through; each answer
// names the gateway that served it in X-Upstream. It returns the port.
func startRoundRobin(t *testing.T, prefix, ca string, port1, port2 int) int {
	t.Helper()
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	conf := fmt.Sprintf(`# Round-robin over two edge nodes (test/e2e/twonode_test.go).
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
        server 127.0.0.1:%[3]d;
        server 127.0.0.1:%[4]d;
        keepalive 8;
    }
    server {
        listen 127.0.0.1:%[5]d;
        location / {
            proxy_pass https://edge_nodes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_ssl_server_name on;
            proxy_ssl_name $host;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate "%[6]s";
            proxy_ssl_session_reuse on;
            proxy_max_temp_file_size 0;
            add_header X-Upstream $upstream_addr always;
        }
    }
}
`, user, prefix, port1, port2, port, ca)
	confFile := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	nargs := []string{"-p", prefix + "/", "-c", confFile, "-e", filepath.Join(prefix, "error.log")}
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
	// nginx is another process: poll its port, bounded.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return port
		}
		select {
		case err := <-done:
			t.Fatalf("nginx exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not listening on %d after 30s: %v\n%s", port, err, out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling another process's port, bounded above
	}
}

// twoNode is one edge node: its export root, sync, compose project and a
// client that reaches its gateway directly.
type twoNode struct {
	name   string
	root   string
	port   int
	stack  *stack
	direct *http.Client
	sync   func() (start, end time.Time, exportID string)
}

// twoNodeSet is one client set: four answers and the verdict.
type twoNodeSet struct {
	kind       string // "pinned" or "unversioned"
	start, end time.Time
	indexID    string
	nodes      []string // the node that answered each request, in order
	ids        []string // each answer's X-Stella-Export-Id
	retries404 int
	err        error // the four answers are not one export
	fetchErr   error // a request failed (not a verdict on coherence)
}

// route is the set's answers, for a log line: node:exportId per request.
func (s twoNodeSet) route() string {
	parts := make([]string, len(s.nodes))
	for i := range s.nodes {
		parts[i] = s.nodes[i] + ":" + s.ids[i]
	}
	return strings.Join(parts, " → ")
}

// twoNodeObs is one unversioned answer's generation at one node: the node
// served exportID at some moment between start and end.
type twoNodeObs struct {
	start, end time.Time
	node, id   string
	// refresh: an index answer the gateway fetched from its origin for
	// it (MISS, EXPIRED, REVALIDATED), fresh for a whole TTL from then.
	refresh bool
}

// refreshed reports whether an index answer says the gateway fetched or
// revalidated it at its origin.
//
// A HIT whose Age is at most 2 s counts too: the gateway revalidates an
// expired index for an unversioned file request as well (docs/cache.md),
// and the index answer that follows such a revalidation is a HIT with a
// fresh Age (the observers poll every twoNodeObserve = 2 s).
func refreshed(path string, h http.Header) bool {
	if path != export.IndexURL {
		return false
	}
	switch h.Get("X-Cache-Status") {
	case "MISS", "EXPIRED", "REVALIDATED":
		return true
	case "HIT":
		age, err := strconv.Atoi(h.Get("Age"))
		return err == nil && age <= 2
	}
	return false
}

// twoNodeClient fetches sets through the round-robin and records them.
type twoNodeClient struct {
	user, password string
	lb             *http.Client
	lbURL          string
	keys           []jws.PublicKey
	nodeOf         map[string]string // nginx's $upstream_addr → node

	mu   sync.Mutex
	sets []twoNodeSet
	obs  []twoNodeObs
}

// get fetches path from base with the client's Host and credentials and
// returns the status, body, headers and the node that answered.
func (c *twoNodeClient) get(ctx context.Context, cl *http.Client, base, path string) (int, []byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Host = "mirror-primary.localhost"
	req.SetBasicAuth(c.user, c.password)
	resp, err := cl.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, resp.Header, fmt.Errorf("%s: %w", path, err)
	}
	return resp.StatusCode, body, resp.Header, nil
}

// fetch is one request of a set through the round-robin; unversioned
// answers are also recorded as observations of their node's generation.
func (c *twoNodeClient) fetch(ctx context.Context, set *twoNodeSet, path string, unversioned bool) (int, []byte, error) {
	start := time.Now()
	status, body, h, err := c.get(ctx, c.lb, c.lbURL, path)
	if err != nil {
		return 0, nil, err
	}
	addr := h.Get("X-Upstream")
	if i := strings.LastIndex(addr, ", "); i >= 0 { // nginx tried another node
		addr = addr[i+2:]
	}
	node := c.nodeOf[addr]
	if node == "" {
		node = "?" + addr
	}
	id := h.Get("X-Stella-Export-Id")
	set.nodes = append(set.nodes, node)
	set.ids = append(set.ids, id)
	if unversioned && status == http.StatusOK && id != "" {
		c.mu.Lock()
		c.obs = append(c.obs, twoNodeObs{start: start, end: time.Now(), node: node, id: id, refresh: refreshed(path, h)})
		c.mu.Unlock()
	}
	return status, body, nil
}

// record stores a finished set (unless the scenario was stopped during it).
func (c *twoNodeClient) record(ctx context.Context, s twoNodeSet) {
	if ctx.Err() != nil {
		return
	}
	s.end = time.Now()
	c.mu.Lock()
	c.sets = append(c.sets, s)
	c.mu.Unlock()
}

// indexOf fetches and parses the unversioned index through the round-robin.
func (c *twoNodeClient) indexOf(ctx context.Context, s *twoNodeSet) (*export.Index, *export.IndexDomain, error) {
	status, body, err := c.fetch(ctx, s, export.IndexURL, true)
	if err != nil {
		return nil, nil, err
	}
	if status != http.StatusOK {
		return nil, nil, fmt.Errorf("index.json: HTTP %d", status)
	}
	ix, err := export.ParseIndex(body)
	if err != nil {
		return nil, nil, fmt.Errorf("index.json: %w", err)
	}
	dom := ix.Domain("primary")
	if dom == nil {
		return nil, nil, fmt.Errorf("index of %s has no domain primary", ix.ExportID)
	}
	return ix, dom, nil
}

// pinnedSet: index, then the pinned manifest, bundle and JWS of the export
// it names. A 404 (the node that answered does not hold that export yet)
// is retried, up to 6 attempts per file.
func (c *twoNodeClient) pinnedSet(ctx context.Context) {
	s := twoNodeSet{kind: "pinned", start: time.Now()}
	defer func() { c.record(ctx, s) }()
	ix, dom, err := c.indexOf(ctx, &s)
	if err != nil {
		s.fetchErr = err
		return
	}
	s.indexID = ix.ExportID
	var files [3][]byte
	for i, name := range []string{export.ManifestName, export.BundleName, export.BundleSignatureName} {
		path := export.PinnedFileURL(ix.ExportID, "primary", name)
		for attempt := 1; ; attempt++ {
			status, body, err := c.fetch(ctx, &s, path, false)
			if err != nil {
				s.fetchErr = err
				return
			}
			if status == http.StatusNotFound && attempt < 6 {
				s.retries404++
				continue
			}
			if status != http.StatusOK {
				s.fetchErr = fmt.Errorf("%s: HTTP %d after %d attempts", path, status, attempt)
				return
			}
			if got := s.ids[len(s.ids)-1]; got != ix.ExportID {
				s.err = fmt.Errorf("%s answered with X-Stella-Export-Id %q", path, got)
			}
			files[i] = body
			break
		}
	}
	if err := c.verify(ix, dom, files); err != nil {
		s.err = err
	}
}

// unversionedSet: index, then the unversioned manifest, bundle and JWS.
func (c *twoNodeClient) unversionedSet(ctx context.Context) {
	s := twoNodeSet{kind: "unversioned", start: time.Now()}
	defer func() { c.record(ctx, s) }()
	ix, dom, err := c.indexOf(ctx, &s)
	if err != nil {
		s.fetchErr = err
		return
	}
	s.indexID = ix.ExportID
	var files [3][]byte
	for i, name := range []string{export.ManifestName, export.BundleName, export.BundleSignatureName} {
		path := export.ConcelierURLPrefix + "mirror/primary/" + name
		status, body, err := c.fetch(ctx, &s, path, true)
		if err != nil {
			s.fetchErr = err
			return
		}
		if status != http.StatusOK {
			s.fetchErr = fmt.Errorf("%s: HTTP %d", path, status)
			return
		}
		files[i] = body
	}
	s.err = c.verify(ix, dom, files)
}

// verify checks manifest, bundle and JWS as the chain the index starts.
func (c *twoNodeClient) verify(ix *export.Index, dom *export.IndexDomain, f [3][]byte) error {
	m, err := export.ParseManifest(f[0])
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if got := export.Digest(f[0]); got != dom.Manifest.Digest {
		return fmt.Errorf("index of %s names manifest %s, got the manifest of %s", ix.ExportID, dom.Manifest.Digest, m.ExportID)
	}
	if got := export.Digest(f[1]); got != m.Bundle.Digest {
		return fmt.Errorf("manifest of %s names bundle %s, got %s", m.ExportID, m.Bundle.Digest, got)
	}
	if _, err := jws.Verify(f[2], bytes.NewReader(f[1]), c.keys); err != nil {
		return fmt.Errorf("the JWS does not verify over the bundle of %s: %w", m.ExportID, err)
	}
	return nil
}

// observe asks one node's gateway directly for the index: other clients'
// index traffic at that node, and the node's generation over time.
func (c *twoNodeClient) observe(ctx context.Context, n *twoNode) {
	start := time.Now()
	status, _, h, err := c.get(ctx, n.direct, "https://mirror-primary.localhost", export.IndexURL)
	if err != nil || status != http.StatusOK || h.Get("X-Stella-Export-Id") == "" {
		return
	}
	c.mu.Lock()
	c.obs = append(c.obs, twoNodeObs{start: start, end: time.Now(), node: n.name, id: h.Get("X-Stella-Export-Id"),
		refresh: refreshed(export.IndexURL, h)})
	c.mu.Unlock()
}

// directChain fetches index → manifest → bundle → JWS from one node's
// gateway and verifies it; it returns the export the index names.
func (c *twoNodeClient) directChain(n *twoNode) (string, error) {
	base := "https://mirror-primary.localhost"
	var got [4][]byte
	for i, p := range []string{export.IndexURL, "/concelier/exports/mirror/primary/manifest.json",
		"/concelier/exports/mirror/primary/bundle.json", "/concelier/exports/mirror/primary/bundle.json.jws"} {
		status, body, _, err := c.get(context.Background(), n.direct, base, p)
		if err != nil {
			return "", err
		}
		if status != http.StatusOK {
			return "", fmt.Errorf("%s: HTTP %d", p, status)
		}
		got[i] = body
	}
	ix, err := export.ParseIndex(got[0])
	if err != nil {
		return "", err
	}
	dom := ix.Domain("primary")
	if dom == nil {
		return ix.ExportID, errors.New("no domain primary")
	}
	return ix.ExportID, c.verify(ix, dom, [3][]byte{got[1], got[2], got[3]})
}

// seen reports whether node has served exportID to anyone.
func (c *twoNodeClient) seen(node, id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.obs {
		if o.node == node && o.id == id {
			return true
		}
	}
	return false
}

// refreshedSince reports whether node's gateway fetched or revalidated an
// index naming id at its origin after since.
func (c *twoNodeClient) refreshedSince(node, id string, since time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.obs {
		if o.node == node && o.id == id && o.refresh && o.start.After(since) {
			return true
		}
	}
	return false
}

// okSets counts verified sets of a kind.
func (c *twoNodeClient) okSets(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.sets {
		if s.kind == kind && s.err == nil && s.fetchErr == nil {
			n++
		}
	}
	return n
}

// summary is the state so far, for a failure message.
func (c *twoNodeClient) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := map[string]string{}
	for _, o := range c.obs {
		last[o.node] = o.id
	}
	var errs []string
	for _, s := range c.sets {
		if s.fetchErr != nil && len(errs) < 3 {
			errs = append(errs, s.fetchErr.Error())
		}
	}
	return fmt.Sprintf("%d sets, last generation seen per node %v, request errors %q", len(c.sets), last, errs)
}

// results returns the recorded sets in start order.
func (c *twoNodeClient) results() []twoNodeSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]twoNodeSet(nil), c.sets...)
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// twoNodeSwitch bounds one node's switch from A to B: it happened after lo
// (an answer of A began then) and by hi (an answer of B had ended).
type twoNodeSwitch struct{ lo, hi time.Time }

// switches bounds each node's switch from the observations. A node that
// answered A after it had answered B has lo after hi.
func (c *twoNodeClient) switches(nodes []*twoNode, idA, idB string) map[string]twoNodeSwitch {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]twoNodeSwitch{}
	for _, n := range nodes {
		var s twoNodeSwitch
		for _, o := range c.obs {
			if o.node != n.name {
				continue
			}
			switch o.id {
			case idA:
				if o.start.After(s.lo) {
					s.lo = o.start
				}
			case idB:
				if s.hi.IsZero() || o.end.Before(s.hi) {
					s.hi = o.end
				}
			}
		}
		out[n.name] = s
	}
	return out
}

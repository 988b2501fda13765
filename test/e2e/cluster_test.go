package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterEnv opts in to TestComposeCluster (`make e2e-cluster` sets it).
const clusterEnv = "STELLA_MIRROR_CLUSTER"

// Timing of the cluster scenario (the index TTL, margin and priming bound
// are the two-node test's).
const (
	// Node i's gateway first caches the index i×stagger after the first
	// node's (its index phase: it refreshes the index every TTL from
	// then), and node i syncs i×stagger after the publish.
	clusterStagger   = 20 * time.Second
	clusterLead      = 12 * time.Second // the publish comes this long before node 1's index expires
	clusterSetPeriod = 2 * time.Second  // each of the four client loops starts a set this often
	clusterObserve   = 2 * time.Second  // each node's index, polled directly
	clusterTail      = 5 * time.Second  // sets after the last node switched
	clusterRestart   = 90 * time.Second // bound on a stopped node's return to health
)

// clusterNextUpstream is what the load balancer does when a node fails: a
// GET or HEAD (idempotent) whose connection fails, times out or closes
// before the answer's header, or that gets a 502/503/504 (the gateway
// cache's answers when its origin is unreachable and nothing stale is
// held), goes to the next node before anything was sent to the client; at
// most 3 nodes, within 10 s. error and timeout are nginx's default; the
// 5xx cases are ours (docs/operations.md, "Scaling out").
const clusterNextUpstream = `            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
            proxy_connect_timeout 2s;`

// TestComposeCluster is issue 19 item 3: three edge nodes, each the
// shipped compose/docker-compose.mirror.yaml (origin + gateway with its
// cache volume, and the file's `sync` service run with `--profile sync
// run --rm sync`) as a compose project of its own, behind one nginx
// round-robin; all three sync from one S3-compatible upstream — gofakes3
// (internal/tools/s3server) in a FROM-scratch container on a network the
// test creates — at different moments. Four client loops (two pinned, two
// unversioned; the sets of TestComposeTwoNodes) run through nginx all the
// while.
//
// Scenario: every node synced to export A and serving it, the nodes'
// gateways having first cached the index one stagger apart (edge hosts
// started at different moments refresh their index at different moments;
// otherwise all would switch at once). Export B is uploaded to the bucket
// the way a publisher should (`aws s3 sync` of the files, the index last
// with `aws s3 cp`), shortly before node 1's index expires; node 1 syncs
// at once; node 3 (gateway and origin) is stopped; node 2 syncs one
// stagger after the upload; node 3 is started again (`up -d`, its cache
// volume kept) and, once it serves again, syncs two staggers after the
// upload. The scenario ends when every node serves B.
//
// Assertions: 0 failed requests (nginx passes a failed request to another
// node: clusterNextUpstream); 0 mixed pinned sets; every mixed unversioned
// set overlaps the span from the first node's switch to the last node's;
// node 3 serves again after its restart; at the end every node serves B
// as one chain and A under its pinned URLs. The figures (requests, nginx
// retries, mixed sets, the time from the publish until every node served
// B) are logged and written up in docs/operations.md, "Scaling out".
//
// It runs for about 2.5 minutes (the index's max-age is a fixed 60 s), so
// it is opt-in: `make e2e-cluster` (STELLA_MIRROR_CLUSTER=1).
func TestComposeCluster(t *testing.T) {
	if os.Getenv(clusterEnv) == "" {
		t.Skipf("three edge nodes, an S3 upstream and a node restart take about 2.5 minutes: run `make e2e-cluster` (or set %s=1)", clusterEnv)
	}
	testStart := time.Now()
	tool, root, image := multiNodeSetup(t, "the cluster test", "e2ecl", "nginx", "aws")
	work := t.TempDir()
	suffix := randomHex(t, 3)
	s3 := startS3Container(t, root, filepath.Join(work, "s3image"), "smcl-"+suffix)
	t.Logf("images built and S3 up in %.0fs", time.Since(testStart).Seconds())

	ew := newExportWriter(t, work)
	idA := ew.write(t, "1")
	s3.publish(t, ew.root, idA)

	m := newEdgeMaterial(t, work)
	// What each node's sync reads: the public key the example env names
	// (SYNC__PUBLICKEYS__0) and S3 credentials (gofakes3 accepts any).
	pub, err := os.ReadFile(ew.pubFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"signing.pub.pem":     pub,
		"sync-s3-credentials": []byte("[default]\naws_access_key_id = cluster\naws_secret_access_key = cluster-test\n"),
	} {
		if err := os.WriteFile(filepath.Join(m.secretsDir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m.chown(t)

	nodes := []*twoNode{{name: "node1"}, {name: "node2"}, {name: "node3"}}
	for _, n := range nodes {
		n.root = filepath.Join(work, n.name+"-exports")
		if err := os.MkdirAll(n.root, 0o755); err != nil {
			t.Fatal(err)
		}
		// The sync container writes the bind mount as MIRROR_UID.
		if err := os.Chown(n.root, m.uid, m.gid); err != nil {
			t.Fatal(err)
		}
	}
	newEdgeStacks(t, tool, root, image, "smcl", m, nodes)
	for _, n := range nodes {
		// Create the project (containers, networks) without starting it,
		// so the S3 container can join the project's frontend network —
		// where the sync service runs — as "s3".
		n.stack.mustCompose(3*time.Minute, "up", "--no-start")
		s3.join(t, n.stack.project+"_frontend")
		n.setSync(t, idA, func() (string, error) {
			return n.stack.compose(3*time.Minute, "--profile", "sync", "run", "--rm",
				"-e", "SYNC__SOURCE=s3://"+s3.bucket+"/stella",
				"-e", "SYNC__S3__ENDPOINT=http://s3:9000",
				"-e", "SYNC__S3__CREDENTIALSFILE=/run/secrets/sync-s3-credentials",
				"sync")
		})
	}
	upEdgeStacks(t, nodes)
	t.Logf("three nodes healthy %.0fs after the test started", time.Since(testStart).Seconds())

	ports := make([]int, len(nodes))
	for i, n := range nodes {
		ports[i] = n.port
	}
	lbPort := startRoundRobin(t, filepath.Join(work, "nginx"), filepath.Join(m.tlsDir, "ca.pem"), clusterNextUpstream, ports...)
	c := newTwoNodeClient(t, m, lbPort, ew.pubFile, nodes)

	at := func(what string, when time.Time) {
		t.Helper()
		c.waitFor(t, what, when.Add(time.Minute), func() bool { return time.Now().After(when) })
	}
	idB := ew.write(t, "2") // not uploaded yet
	if idB == idA {
		t.Fatalf("the second export has the first one's id %s", idA)
	}

	// The nodes' index phases: edge hosts started at different moments
	// refresh their cached index at different moments. Each gateway is
	// asked for the index first at its own time (no client has asked any
	// yet); from then on it refreshes every TTL.
	phase0 := time.Now()
	for i, n := range nodes {
		at(n.name+"'s first index request", phase0.Add(time.Duration(i)*clusterStagger))
		c.observe(context.Background(), n)
		if !c.seen(n.name, idA) {
			t.Fatalf("%s does not serve A (%s)", n.name, c.summary())
		}
	}
	loops := newClientLoops(t)
	for i := range 2 {
		off := time.Duration(i) * clusterSetPeriod / 2
		loops.every(clusterSetPeriod, off, c.pinnedSet)
		loops.every(clusterSetPeriod, off+clusterSetPeriod/4, c.unversionedSet)
	}
	for _, n := range nodes {
		loops.every(clusterObserve, 0, func(ctx context.Context) { c.observe(ctx, n) })
	}
	c.waitFor(t, "sets verifying through nginx", time.Now().Add(twoNodePrime), func() bool {
		return c.okSets("pinned") >= 3 && c.okSets("unversioned") >= 3
	})

	// Export B upstream, shortly before node 1's index expires. The times
	// below count from the moment its index was uploaded (B visible to
	// sync).
	at("the publish time", phase0.Add(twoNodeIndexTTL-clusterLead))
	s3.publish(t, ew.root, idB)
	published := time.Now()
	rel := func(tm time.Time) float64 { return tm.Sub(published).Seconds() }
	var syncs [3]struct{ start, end time.Time }
	syncNode := func(i int) {
		t.Helper()
		var got string
		if syncs[i].start, syncs[i].end, got = nodes[i].sync(); got != idB {
			t.Fatalf("%s synced %s, want %s", nodes[i].name, got, idB)
		}
	}
	syncNode(0)

	// Node 3 goes down (gateway first, then origin: compose's order), still
	// on A; node 2 syncs; node 3 comes back and syncs once it serves.
	n3 := nodes[2]
	stopStart := time.Now()
	n3.stack.mustCompose(2*time.Minute, "stop", "-t", "20")
	stopEnd := time.Now()
	at("node2's sync time", published.Add(clusterStagger))
	syncNode(1)
	startStart := time.Now()
	n3.stack.mustCompose(3*time.Minute, "up", "-d")
	waitHealthy(t, n3.stack.container("gateway"), clusterRestart)
	healthy := time.Now()
	c.waitFor(t, "node3 serving again after its restart", healthy.Add(30*time.Second), func() bool { return c.seenSince(n3.name, startStart) })
	servedAgain := time.Now()
	at("node3's sync time", published.Add(2*clusterStagger))
	syncNode(2)
	for i, n := range nodes {
		c.waitFor(t, n.name+" serving B", syncs[i].end.Add(twoNodeIndexTTL+twoNodeMargin), func() bool { return c.seen(n.name, idB) })
	}
	tailEnd := time.Now().Add(clusterTail)
	at("the tail", tailEnd)
	loops.end()

	// The figures.
	t.Logf("times in seconds from B's upload (index last) at %s:", published.Format(time.RFC3339))
	t.Logf("node3 stopped in %.1f–%.1f, started at %.1f, healthy at %.1f, answered again by %.1f",
		rel(stopStart), rel(stopEnd), rel(startStart), rel(healthy), rel(servedAgain))
	ends := make([]time.Time, len(nodes))
	for i := range nodes {
		t.Logf("%s synced %.1fs–%.1fs", nodes[i].name, rel(syncs[i].start), rel(syncs[i].end))
		ends[i] = syncs[i].end
	}
	sw := c.checkSwitches(t, nodes, idA, idB, ends, rel)
	minLo, maxHi := switchSpan(sw)
	n := c.tally(t, idA, idB, minLo, maxHi, rel)
	perNode := map[string]int{}
	for _, s := range c.results() {
		for _, nd := range s.nodes {
			perNode[nd]++
		}
	}
	t.Logf("requests through nginx: %d (per node %v), failed %d, passed to another node by nginx %d",
		n.requests, perNode, n.failed, n.lbRetried)
	t.Logf("pinned sets: %d, mixed %d, sets that retried a 404 %d (%d retries)", n.pinned, n.pinnedBad, n.retried, n.retries404)
	t.Logf("unversioned sets: %d, mixed %d (of %d sets inside the window), window %.1f–%.1f; switches span %.1f–%.1f",
		n.unv, n.unvBad, n.inWindow, rel(n.firstBad), rel(n.lastBad), rel(minLo), rel(maxHi))
	t.Logf("every node served B by %.1f s after the upload (the last switch after %.1f s); loop ran %.0f s; test %.0f s",
		rel(maxHi), rel(maxLoOf(sw)), time.Since(published).Seconds(), time.Since(testStart).Seconds())

	// Why nginx passed requests on: its error log names each failure.
	if data, err := os.ReadFile(filepath.Join(work, "nginx", "error.log")); err == nil {
		var lines []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, "upstream") && len(lines) < 6 {
				lines = append(lines, l)
			}
		}
		t.Logf("nginx error log, upstream lines (first %d):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	if n.failed != 0 {
		t.Errorf("%d sets had a failed request, want 0 (nginx passes failed requests to another node)", n.failed)
	}
	n.check(t, 40)
	for _, nd := range nodes {
		c.checkEnd(t, nd, idA, idB)
	}
}

// maxLoOf is the latest lo of the switches: the last node's last answer of
// the old export began then.
func maxLoOf(sw map[string]twoNodeSwitch) time.Time {
	var out time.Time
	for _, s := range sw {
		if s.lo.After(out) {
			out = s.lo
		}
	}
	return out
}

// seenSince reports whether node answered anyone after since.
func (c *twoNodeClient) seenSince(node string, since time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.obs {
		if o.node == node && o.start.After(since) {
			return true
		}
	}
	return false
}

// s3Container is the S3-compatible upstream: internal/tools/s3server in a
// FROM-scratch container, on a network of the test's, published on a
// loopback port for the publisher (the AWS CLI on the host).
type s3Container struct {
	name, bucket string
	url          string   // http://127.0.0.1:port
	awsEnv       []string // the AWS CLI's environment
}

// startS3Container builds internal/tools/s3server (CGO_ENABLED=0) into a
// FROM-scratch image in dir, runs it as name on a network of the same name
// and waits until it answers.
func startS3Container(t *testing.T, root, dir, name string) *s3Container {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goTool, "build", "-trimpath", "-o", filepath.Join(dir, "s3server"), "./internal/tools/s3server")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building s3server: %v\n%s", err, out)
	}
	dockerfile := "# gofakes3 for the cluster test (test/e2e/cluster_test.go); pulls nothing.\n" +
		"FROM scratch\nCOPY s3server /s3server\nUSER 65532:65532\nEXPOSE 9000\nENTRYPOINT [\"/s3server\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	image := "stella-mirror-s3:" + name
	buildkit := "DOCKER_BUILDKIT=0"
	if _, err := tryRun(nil, 30*time.Second, "docker", "buildx", "version"); err == nil {
		buildkit = "DOCKER_BUILDKIT=1"
	}
	run(t, []string{buildkit}, 3*time.Minute, "docker", "build", "--pull=false", "-t", image, dir)
	t.Cleanup(func() { _, _ = tryRun(nil, time.Minute, "docker", "rmi", "-f", image) })

	run(t, nil, time.Minute, "docker", "network", "create", name)
	t.Cleanup(func() {
		if out, err := tryRun(nil, time.Minute, "docker", "network", "rm", name); err != nil {
			t.Errorf("docker network rm %s: %v\n%s", name, err, out)
		}
	})
	port := freeFixedPort(t)
	s := &s3Container{name: name + "-s3", bucket: "exports", url: "http://127.0.0.1:" + strconv.Itoa(port)}
	run(t, nil, time.Minute, "docker", "run", "-d", "--name", s.name, "--network", name, "--network-alias", "s3",
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
		"-p", "127.0.0.1:"+strconv.Itoa(port)+":9000", image, "-listen", ":9000", "-bucket", s.bucket)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := tryRun(nil, time.Minute, "docker", "logs", "--tail", "20", s.name)
			t.Logf("%s logs:\n%s", s.name, logs)
		}
		_, _ = tryRun(nil, time.Minute, "docker", "rm", "-f", s.name)
	})
	none := filepath.Join(dir, "none")
	s.awsEnv = []string{"AWS_ACCESS_KEY_ID=cluster", "AWS_SECRET_ACCESS_KEY=cluster-test", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none, "AWS_EC2_METADATA_DISABLED=true",
		// gofakes3 does not take the CLI's default CRC32 trailers.
		"AWS_REQUEST_CHECKSUM_CALCULATION=when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION=when_required"}
	// Another process: poll the bucket, bounded.
	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := hc.Get(s.url + "/" + s.bucket)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			logs, _ := tryRun(nil, time.Minute, "docker", "logs", s.name)
			t.Fatalf("S3 container not answering after 30s: %v\n%s", err, logs)
		}
		time.Sleep(100 * time.Millisecond) // polling another process's port, bounded above
	}
}

// join connects the S3 container to network as "s3", until the test ends.
func (s *s3Container) join(t *testing.T, network string) {
	t.Helper()
	run(t, nil, time.Minute, "docker", "network", "connect", "--alias", "s3", network, s.name)
	// Registered after the compose projects' `down`, so it runs first.
	t.Cleanup(func() { _, _ = tryRun(nil, time.Minute, "docker", "network", "disconnect", "-f", network, s.name) })
}

// publish uploads export id from root to s3://bucket/stella/ the way an
// upstream should: every file with `aws s3 sync`, then the index with
// `aws s3 cp`, so sync never sees the export incomplete.
func (s *s3Container) publish(t *testing.T, root, id string) {
	t.Helper()
	dst := "s3://" + s.bucket + "/stella/" + id
	aws := []string{"aws", "--endpoint-url", s.url, "s3"}
	run(t, s.awsEnv, 2*time.Minute, append(aws, "sync", filepath.Join(root, id), dst,
		"--exclude", "mirror/index.json", "--only-show-errors", "--no-progress")...)
	run(t, s.awsEnv, 2*time.Minute, append(aws, "cp", filepath.Join(root, id, "mirror", "index.json"), dst+"/mirror/index.json",
		"--only-show-errors", "--no-progress")...)
	if out := run(t, s.awsEnv, time.Minute, append(aws, "ls", "--recursive", dst+"/")...); !strings.Contains(out, id+"/mirror/index.json") {
		t.Fatalf("%s: the index is not listed after the upload:\n%s", dst, out)
	}
}

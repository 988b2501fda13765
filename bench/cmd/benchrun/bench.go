//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/bench"
	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
)

// Names used in the table, results.json and meta.json.
const (
	oursName   = "stella-mirror"
	anchorName = "nginx"
	// authName is our origin requiring a bearer token (validated against a
	// SIGNINGKEYFILE); noauthName is the plain origin as the anchor of the
	// token case.
	authName   = "origin-bearer"
	noauthName = "origin-noauth"
	// benchDomain is the one fixture domain the bundle case downloads.
	benchDomain = "primary"
)

// Bounds on the waits around the measurements.
const (
	readyTimeout  = 30 * time.Second
	readyInterval = 50 * time.Millisecond
	stopGrace     = 10 * time.Second
	// wrkTimeout is wrk's per-request timeout: generous, so that a slow
	// 64 MiB response shows up as low MB/s, not as a socket error.
	wrkTimeout = 30 * time.Second
	// wrkSlack bounds a wrk run beyond its -d.
	wrkSlack = 30 * time.Second
	// authConns caps wrk's connections for the Basic Auth case.
	authConns = 8
	// disturbedPercent: a run during which other processes used more of
	// the machine's CPU than this is flagged as disturbed.
	disturbedPercent = 10
)

// server is one side of the comparison.
type server struct {
	name string
	base string // http://127.0.0.1:port
	proc *bench.Process
}

// benchCase is one row of the table.
type benchCase struct {
	name    string
	unit    string
	path    string // URL path, the same on both servers
	file    string // the file on disk behind path
	conns   int
	threads int
	target  float64
	metric  func(bench.WrkResult) float64
	// bearer: measure the origin that requires a token (sent by wrk as
	// an Authorization header to both sides) against the plain origin,
	// instead of the origin against nginx.
	bearer bool
	// ours and anchor are the two servers compared; set once they run.
	ours, anchor *server
	// header, if set, is sent with every request ("Name: value").
	header string
	// client fetches the same-bytes check; nil means the plain HTTP client.
	client *http.Client
	// hit: both servers must answer X-Cache-Status: HIT before the runs.
	hit bool
}

// benchmark runs the whole suite and returns the results it printed and wrote.
func benchmark(ctx context.Context, o options, stdout, stderr io.Writer) (results []bench.Result, err error) {
	if err := checkTools(&o); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "benchrun: "+format+"\n", args...) }
	meta := bench.Meta{Time: time.Now().UTC().Truncate(time.Second)}

	tmp, err := os.MkdirTemp("", "stella-mirror-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	defer func() {
		if o.keep {
			logf("kept %s (fixture, nginx.conf, logs)", tmp)
			return
		}
		if rmErr := os.RemoveAll(tmp); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("removing temp dir: %w", rmErr))
		}
	}()

	// 0. Is the machine quiet? Sampled before we start anything.
	otherBusy, err := quietCheck(ctx)
	if err != nil {
		return nil, err
	}
	if o.only == "sync" {
		return nil, runSyncCases(ctx, o, tmp, stdout, logf)
	}
	if otherBusy > disturbedPercent {
		logf("note: the CPUs were %.0f%% busy before the bench started: other processes compete with the servers and the figures will be noisy", otherBusy)
	}

	// 1. The fixture both servers serve.
	root := filepath.Join(tmp, "exports")
	logf("writing fixture (%s bundle) into %s", fixture.FormatSize(o.bundleSize), root)
	if _, _, err := runTool(ctx, "fixture", o.bin, "fixture", "--out", root, "--domains", benchDomain,
		"--bundle-size", o.bundleSizeArg, "--seed", "1"); err != nil {
		return nil, err
	}
	active := filepath.Join(root, export.LatestLink)
	cases := []benchCase{
		{
			name: "index.json req/s", unit: "req/s", path: "/concelier/exports/index.json",
			file:  filepath.Join(active, filepath.FromSlash(export.IndexPath)),
			conns: o.smallConns, threads: o.smallThreads, target: 0.6, // the origin is net/http alone (issue 14)
			metric: func(r bench.WrkResult) float64 { return r.RequestsPerSec },
		},
		{
			name: "bundle " + strings.ReplaceAll(fixture.FormatSize(o.bundleSize), " ", "") + " MB/s", unit: "MB/s",
			path:  "/concelier/exports/" + export.BundlePath(benchDomain),
			file:  filepath.Join(active, filepath.FromSlash(export.BundlePath(benchDomain))),
			conns: o.largeConns, threads: o.largeThreads, target: 0.95,
			metric: func(r bench.WrkResult) float64 { return r.BytesPerSec / 1e6 },
		},
		{
			name: "index.json bearer req/s", unit: "req/s", path: "/concelier/exports/index.json",
			file:  filepath.Join(active, filepath.FromSlash(export.IndexPath)),
			conns: o.smallConns, threads: o.smallThreads, target: 0.9, bearer: true,
			metric: func(r bench.WrkResult) float64 { return r.RequestsPerSec },
		},
	}
	keyFile, token, err := benchToken(tmp)
	if err != nil {
		return nil, err
	}

	// 2. Both servers, each in its own process group, stopped on return.
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 2},
		Timeout:   2 * time.Minute,
	}
	defer client.CloseIdleConnections()
	ours, err := startOrigin(ctx, o, tmp, root, client, oursName, nil)
	if ours != nil {
		defer stopServer(ours, &err)
	}
	if err != nil {
		return nil, err
	}
	logf("%s origin ready at %s", oursName, ours.base)
	authOrigin, err := startOrigin(ctx, o, tmp, root, client, authName, bearerEnv(keyFile))
	if authOrigin != nil {
		defer stopServer(authOrigin, &err)
	}
	if err != nil {
		return nil, err
	}
	logf("%s origin (bearer tokens required) ready at %s", authName, authOrigin.base)
	// The plain origin under its anchor name for the token case.
	noauth := &server{name: noauthName, base: ours.base, proc: ours.proc}
	anchor, err := startNginx(ctx, o, tmp, root, client)
	if anchor != nil {
		defer stopServer(anchor, &err)
	}
	if err != nil {
		return nil, err
	}
	logf("nginx ready at %s", anchor.base)
	servers := []*server{ours, anchor, authOrigin} // every process, for CPU accounting
	for i := range cases {
		cases[i].ours, cases[i].anchor = ours, anchor
		if cases[i].bearer {
			cases[i].ours, cases[i].anchor = authOrigin, noauth
			cases[i].header = "Authorization: Bearer " + token
		}
	}

	// 2b. The gateway cases: stella-mirror gateway vs nginx, both TLS in
	// front of the same origin, with and without Basic Auth.
	gw, err := startGatewaySuite(ctx, o, tmp, ours, client, logf)
	for _, p := range gw.procs() {
		defer stopServer(p, &err)
	}
	if err != nil {
		return nil, err
	}
	gwFile := filepath.Join(active, filepath.FromSlash(export.IndexPath))
	cases = append(cases,
		benchCase{
			name: "gateway TLS+auth index.json req/s", unit: "req/s", path: "/concelier/exports/index.json", file: gwFile,
			// nginx runs bcrypt inside its event loop: with many connections
			// one loop turn verifies every pending request before it sends
			// any answer, and short runs complete nothing. authConns keeps
			// its runs measurable; both servers get the same.
			conns: min(o.smallConns, authConns), threads: o.smallThreads, target: 20,
			metric: func(r bench.WrkResult) float64 { return r.RequestsPerSec },
			ours:   gw.auth, anchor: gw.nginxAuth, header: "Authorization: " + gw.authHeader, client: gw.client(gw.authHeader),
		},
		benchCase{
			name: "gateway TLS index.json req/s", unit: "req/s", path: "/concelier/exports/index.json", file: gwFile,
			conns: o.smallConns, threads: o.smallThreads, target: 0.8,
			metric: func(r bench.WrkResult) float64 { return r.RequestsPerSec },
			ours:   gw.open, anchor: gw.nginxOpen, client: gw.client(""),
		})
	servers = append(servers, gw.procs()...)

	// 2c. The cache cases: the gateway with its cache vs nginx proxy_cache,
	// TLS with the same certificate, in front of the same origin (through
	// one counting, throttling proxy).
	cs, err := startCacheSuite(ctx, o, tmp, ours, gw, client, logf)
	for _, p := range cs.procs() {
		defer stopServer(p, &err)
	}
	if cs.up != nil {
		defer cs.up.srv.Close()
	}
	if err != nil {
		return nil, err
	}
	servers = append(servers, cs.procs()...)
	bundlePath := "/concelier/exports/" + export.BundlePath(benchDomain)
	cases = append(cases,
		benchCase{
			name: "cache index.json HIT req/s", unit: "req/s", path: "/concelier/exports/index.json", file: gwFile,
			conns: 64, threads: o.smallThreads, target: 0.9, hit: true,
			metric: func(r bench.WrkResult) float64 { return r.RequestsPerSec },
			ours:   cs.gw, anchor: cs.nginx, client: gw.client(""),
		},
		benchCase{
			name: "cache bundle " + strings.ReplaceAll(fixture.FormatSize(o.bundleSize), " ", "") + " HIT MB/s", unit: "MB/s",
			path: bundlePath, file: filepath.Join(active, filepath.FromSlash(export.BundlePath(benchDomain))),
			conns: 8, threads: o.largeThreads, target: 1.0, hit: true,
			metric: func(r bench.WrkResult) float64 { return r.BytesPerSec / 1e6 },
			ours:   cs.gw, anchor: cs.nginx, client: gw.client(""),
		})
	if o.cases != "" {
		var keep []benchCase
		for _, c := range cases {
			if strings.Contains(c.name, o.cases) {
				keep = append(keep, c)
			}
		}
		if len(keep) == 0 && !cacheExtraSelected(o.cases) {
			return nil, fmt.Errorf("--cases %q matches no case", o.cases)
		}
		cases = keep
	}

	// 3. Same bytes from both, equal to the file on disk.
	sizes := map[string]int64{}
	for _, c := range cases {
		if c.bearer {
			if err := checkBearer(ctx, client, c, c.ours, c.anchor, token); err != nil {
				return nil, err
			}
			continue
		}
		cl := client
		if c.client != nil {
			cl = c.client
		}
		size, warnings, err := checkSameBytes(ctx, cl, c, []*server{c.ours, c.anchor})
		if err != nil {
			return nil, err
		}
		sizes[c.path] = size
		if c.hit {
			for _, srv := range []*server{c.ours, c.anchor} {
				if err := requireHit(ctx, cl, srv, c.path); err != nil {
					return nil, err
				}
			}
		}
		for _, w := range warnings {
			logf("note: %s: headers differ (%s vs %s): %s", c.path, oursName, anchorName, w)
		}
	}
	client.CloseIdleConnections()

	script := filepath.Join(tmp, "summary.lua")
	if err := os.WriteFile(script, []byte(bench.WrkScript), 0o644); err != nil {
		return nil, fmt.Errorf("writing wrk script: %w", err)
	}
	meta.Versions = versions(ctx, o)
	meta.Host = hostInfo()
	meta.Params = map[string]any{
		"durationSeconds":       o.duration.Seconds(),
		"warmupSeconds":         o.warmup.Seconds(),
		"smallThreads":          o.smallThreads,
		"largeThreads":          o.largeThreads,
		"wrkTimeout":            wrkTimeout.String(),
		"smallConnections":      o.smallConns,
		"largeConnections":      o.largeConns,
		"bundleBytes":           sizes["/concelier/exports/"+export.BundlePath(benchDomain)],
		"indexBytes":            sizes["/concelier/exports/index.json"],
		"rounds":                o.rounds,
		"order":                 "ABBA per case: " + oursName + ", " + anchorName + ", " + anchorName + ", " + oursName + ", … (bearer case: " + authName + ", " + noauthName + ", …)",
		"bearerToken":           "ES256 JWT (iss, aud, exp, scope concelier.mirror.read) verified with CONCELIER__AUTHORITY__SIGNINGKEYFILE; REQUIREAUTHENTICATION=true; same Authorization header sent to both sides",
		"loadavgBefore":         loadavg(),
		"otherCpuPercentBefore": round1(otherBusy),
	}
	meta.Method = fmt.Sprintf("per case: one warm-up run per server, then %d measured runs per server in ABBA order "+
		"(ours, nginx, nginx, ours, …); each server's figure is its best run; rates from wrk's exact totals "+
		"(done() script); MB = 10^6 bytes", o.rounds)

	// 4. Measure.
	disturbed := 0
	for _, c := range cases {
		if o.warmup > 0 {
			for _, s := range []*server{c.ours, c.anchor} {
				logf("%s: warm-up %s (%s)", c.name, s.name, o.warmup)
				if _, _, err := runWrk(ctx, o, c, s, servers, script, o.warmup, token); err != nil {
					return nil, fmt.Errorf("%s warm-up: %w", c.name, err)
				}
			}
		}
		best := map[*server]float64{}
		rounds := map[string]int{}
		for _, s := range abba(c.ours, c.anchor, o.rounds) {
			rounds[s.name]++
			res, other, err := runWrk(ctx, o, c, s, servers, script, o.duration, token)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			v := c.metric(res)
			note := ""
			if other > disturbedPercent {
				disturbed++
				note = fmt.Sprintf(", DISTURBED: other processes used %.0f%% of the CPUs", other)
			}
			logf("%s: %-13s round %d: %10.2f %s (%d requests, p99 %s%s)", c.name, s.name, rounds[s.name], v, c.unit, res.Requests, res.LatencyP99, note)
			meta.Runs = append(meta.Runs, bench.Run{Case: c.name, Server: s.name, Round: rounds[s.name], Wrk: res, OtherCPUPercent: round1(other)})
			best[s] = max(best[s], v)
		}
		anchorLabel := anchorName
		if c.bearer || c.hit {
			anchorLabel = c.anchor.name
		}
		r, err := bench.NewResult(c.name, c.unit, best[c.ours], best[c.anchor], anchorLabel, c.target)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}

	// 4b. The cache cases that wrk cannot measure: HTTP/2 (h2load), the
	// cold stampede and the gateway's peak RSS under 1,000 downloads.
	extras, err := runCacheExtras(ctx, o, cs, servers, bundlePath, &meta, logf)
	if err != nil {
		return nil, err
	}
	results = append(results, extras.results...)

	meta.Params["loadavgAfter"] = loadavg()

	// 5. Report.
	fmt.Fprintln(stdout)
	if err := bench.WriteTable(stdout, results); err != nil {
		return nil, fmt.Errorf("printing table: %w", err)
	}
	if err := bench.WriteResults(o.out, results, meta); err != nil {
		return nil, err
	}
	extras.print(stdout)
	if disturbed > 0 {
		fmt.Fprintf(stdout, "\nnote: %d of %d measured runs were disturbed (other processes used more than %d%% of the CPUs);\n"+
			"      the ratios are unreliable: re-run on a quiet host (see bench/README.md, Known noise)\n",
			disturbed, len(meta.Runs), disturbedPercent)
	}
	fmt.Fprintf(stdout, "\nwrote %s and %s\n", filepath.Join(o.out, bench.ResultsFile), filepath.Join(o.out, bench.MetaFile))
	if o.only == "all" {
		if err := runSyncCases(ctx, o, tmp, stdout, logf); err != nil {
			return results, err
		}
	}
	return results, nil
}

// runSyncCases runs the sync cases and reports them (table and sync.json).
func runSyncCases(ctx context.Context, o options, tmp string, stdout io.Writer, logf func(string, ...any)) error {
	rs, err := syncBench(ctx, o, tmp, logf)
	if err != nil {
		return fmt.Errorf("sync cases: %w", err)
	}
	fmt.Fprintln(stdout)
	if err := writeSyncTable(stdout, rs); err != nil {
		return err
	}
	if err := writeSyncResults(o.out, rs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s\n", filepath.Join(o.out, SyncFile))
	return nil
}

// abba returns the order of the measured runs: a, b, b, a, a, b, … with
// rounds runs of each, so a drift over the case affects both alike.
func abba(a, b *server, rounds int) []*server {
	order := make([]*server, 0, 2*rounds)
	for i := range 2 * rounds {
		if i%4 == 0 || i%4 == 3 {
			order = append(order, a)
		} else {
			order = append(order, b)
		}
	}
	return order
}

// loadavg returns /proc/loadavg's 1-, 5- and 15-minute averages ("" when
// unreadable).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// startOrigin starts `stella-mirror origin` on two free loopback ports with
// the runbook's env names, access log (stdout) and log (stderr) in files.
func startOrigin(ctx context.Context, o options, tmp, root string, client *http.Client, name string, extraEnv []string) (*server, error) {
	addr, err := bench.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	admin, err := bench.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	stdout, err := os.Create(filepath.Join(tmp, name+"-access.log"))
	if err != nil {
		return nil, fmt.Errorf("creating origin access log: %w", err)
	}
	defer stdout.Close() // the child holds its own descriptor
	logPath := filepath.Join(tmp, name+".log")
	stderr, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating origin log: %w", err)
	}
	defer stderr.Close()

	cmd := exec.Command(o.bin, "origin", "--listen", addr, "--admin-listen", admin)
	cmd.Env = append(inheritedEnv(),
		"CONCELIER__MIRROR__ENABLED=true",
		"CONCELIER__MIRROR__EXPORTROOT="+root,
		"EXCITITOR__MIRROR__ENABLED=true",
		"EXCITITOR__ARTIFACTS__FILESYSTEM__ROOT="+root,
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	p, err := bench.StartProcess(name, cmd)
	if err != nil {
		return nil, err
	}
	s := &server{name: name, base: "http://" + addr, proc: p}
	if err := bench.WaitReady(ctx, client, "http://"+admin+"/health/ready", p, readyInterval, readyTimeout); err != nil {
		return s, fmt.Errorf("%w\n%s", err, tail(logPath, 2048))
	}
	return s, nil
}

// startNginx renders the anchor's config under tmp/nginx and runs Debian's
// nginx in the foreground (master + workers in one process group).
func startNginx(ctx context.Context, o options, tmp, root string, client *http.Client) (*server, error) {
	addr, err := bench.FreeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	prefix := filepath.Join(tmp, "nginx")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return nil, fmt.Errorf("creating nginx prefix: %w", err)
	}
	cfg := bench.NginxConfig{Prefix: prefix, Listen: addr, ExportRoot: root}
	if os.Geteuid() == 0 {
		cfg.User = "root" // else workers become nobody, who cannot read the 0700 temp dir
	}
	conf, err := bench.RenderNginx(cfg)
	if err != nil {
		return nil, err
	}
	s := &server{name: anchorName, base: "http://" + addr}
	s.proc, err = launchNginx(ctx, o, prefix, conf, anchorName, client, s.base+"/concelier/exports/index.json")
	if s.proc == nil {
		return nil, err
	}
	return s, err
}

// launchNginx writes conf into prefix, starts nginx on it (output to
// prefix/stderr.log) and waits until readyURL answers. The process is
// returned whenever it started, so the caller stops it even when it never
// became ready; that error carries the tails of nginx's logs.
func launchNginx(ctx context.Context, o options, prefix string, conf []byte, name string, client *http.Client, readyURL string) (*bench.Process, error) {
	if err := os.WriteFile(filepath.Join(prefix, bench.NginxConfName), conf, 0o644); err != nil {
		return nil, fmt.Errorf("writing nginx config: %w", err)
	}
	outPath := filepath.Join(prefix, "stderr.log")
	out, err := os.Create(outPath)
	if err != nil {
		return nil, fmt.Errorf("creating nginx output log: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(o.nginx, bench.NginxArgs(prefix)...)
	cmd.Stdout, cmd.Stderr = out, out
	p, err := bench.StartProcess(name, cmd)
	if err != nil {
		return nil, err
	}
	if err := bench.WaitReady(ctx, client, readyURL, p, readyInterval, readyTimeout); err != nil {
		return p, fmt.Errorf("%w\n%s%s", err, tail(outPath, 1024), tail(filepath.Join(prefix, bench.NginxErrorLog), 2048))
	}
	return p, nil
}

// stopServer stops s and adds a failure to stop to *err.
func stopServer(s *server, err *error) {
	if stopErr := s.proc.Stop(stopGrace); stopErr != nil {
		*err = errors.Join(*err, stopErr)
	}
}

// checkSameBytes fetches c.path from every server and fails unless all
// bodies have the SHA-256 of the file on disk. It returns the size and the
// contract headers that differ between the first server and the others.
func checkSameBytes(ctx context.Context, client *http.Client, c benchCase, servers []*server) (int64, []string, error) {
	want, err := bench.FileBody(c.file)
	if err != nil {
		return 0, nil, err
	}
	var warnings []string
	var first *bench.Body
	for _, s := range servers {
		got, err := bench.FetchBody(ctx, client, s.base+c.path)
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if got.SHA256 != want.SHA256 || got.Size != want.Size {
			return 0, nil, fmt.Errorf("%s serves different bytes for %s: sha256 %s (%d bytes), file on disk sha256 %s (%d bytes)",
				s.name, c.path, got.SHA256, got.Size, want.SHA256, want.Size)
		}
		if first == nil {
			first = &got
			continue
		}
		warnings = append(warnings, bench.HeaderDiffs(first.Header, got.Header)...)
	}
	return want.Size, warnings, nil
}

// runWrk runs one wrk measurement of c against s and fails loudly on any
// socket or status error, or when the server died meanwhile. It also returns
// how much of the machine's CPU went to processes other than the servers and
// wrk during the run, in percent (-1 when unknown).
func runWrk(ctx context.Context, o options, c benchCase, s *server, servers []*server, script string, d time.Duration, token string) (bench.WrkResult, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, d+wrkSlack)
	defer cancel()
	url := s.base + c.path
	var pgids []int
	seen := map[int]bool{}
	for _, srv := range servers {
		if pid := srv.proc.Pid(); !seen[pid] {
			seen[pid] = true
			pgids = append(pgids, pid)
		}
	}
	before, sampleErr := bench.SampleCPU(pgids...)
	args := []string{"-t", strconv.Itoa(c.threads), "-c", strconv.Itoa(c.conns),
		"-d", strconv.Itoa(int(d/time.Second)) + "s", "--timeout", strconv.Itoa(int(wrkTimeout/time.Second)) + "s",
		"-s", script}
	if c.header != "" {
		args = append(args, "-H", c.header)
	}
	out, wrkCPU, err := runTool(ctx, "wrk", o.wrk, append(args, url)...)
	if err != nil {
		return bench.WrkResult{}, 0, fmt.Errorf("against %s: %w", s.name, err)
	}
	other := -1.0
	if after, err := bench.SampleCPU(pgids...); err == nil && sampleErr == nil {
		if p, err := bench.OtherPercent(before, after, uint64(wrkCPU/(10*time.Millisecond))); err == nil {
			other = p
		}
	}
	select {
	case <-s.proc.Done():
		return bench.WrkResult{}, 0, fmt.Errorf("%s exited during the run: %v", s.name, s.proc.ExitErr())
	default:
	}
	res, err := bench.ParseWrk(string(out))
	if err != nil {
		return bench.WrkResult{}, 0, fmt.Errorf("against %s: %w\n%s", s.name, err, out)
	}
	if err := res.Err(); err != nil {
		return bench.WrkResult{}, 0, fmt.Errorf("against %s (%s): the run is not a valid measurement: %w\n%s", s.name, url, err, out)
	}
	return res, other, nil
}

// quietCheck samples the machine for a second before anything starts and
// returns how busy it was, in percent (-1 when unknown).
func quietCheck(ctx context.Context) (float64, error) {
	before, err := bench.SampleCPU()
	if err != nil {
		return -1, nil
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-t.C:
	}
	after, err := bench.SampleCPU()
	if err != nil {
		return -1, nil
	}
	p, err := bench.OtherPercent(before, after, 0)
	if err != nil {
		return -1, nil
	}
	return p, nil
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// runTool runs a short-lived child in its own process group and returns its
// combined output (also when it exits non-zero) and the CPU time it used;
// cancelling ctx stops the group.
func runTool(ctx context.Context, name, bin string, args ...string) ([]byte, time.Duration, error) {
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	p, err := bench.StartProcess(name, cmd)
	if err != nil {
		return nil, 0, err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		if stopErr := p.Stop(5 * time.Second); stopErr != nil {
			return nil, 0, errors.Join(ctx.Err(), stopErr)
		}
		return nil, 0, fmt.Errorf("%s: %w", name, ctx.Err())
	}
	if err := p.ExitErr(); err != nil {
		return out.Bytes(), p.CPUTime(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.Bytes())
	}
	return out.Bytes(), p.CPUTime(), nil
}

// inheritedEnv is the parent's environment without Concelier/Excititor
// settings, so a developer's shell cannot change what is measured.
func inheritedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONCELIER__") && !strings.HasPrefix(kv, "EXCITITOR__") {
			env = append(env, kv)
		}
	}
	return env
}

// versions asks every tool for its version (best effort).
func versions(ctx context.Context, o options) map[string]string {
	first := func(b []byte) string {
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return strings.TrimSpace(line)
	}
	v := map[string]string{"go": runtime.Version()}
	if out, _, err := runTool(ctx, "version", o.bin, "version"); err == nil {
		v[oursName] = first(out)
	}
	if out, _, err := runTool(ctx, "nginx -v", o.nginx, "-v"); err == nil {
		v[anchorName] = first(out)
	}
	// wrk -v prints its version and usage, then exits 1.
	out, _, _ := runTool(ctx, "wrk -v", o.wrk, "-v")
	if line := first(out); strings.HasPrefix(line, "wrk ") {
		v["wrk"] = line
	}
	return v
}

// hostInfo describes the machine for meta.json (best effort, Linux files).
func hostInfo() map[string]string {
	h := map[string]string{
		"cpus":       strconv.Itoa(runtime.NumCPU()),
		"goos":       runtime.GOOS,
		"goarch":     runtime.GOARCH,
		"gomaxprocs": strconv.Itoa(runtime.GOMAXPROCS(0)),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h["cpuModel"] = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}

// tail returns up to the last n bytes of a log file, labelled, for error
// messages; empty when the file is empty or unreadable.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return ""
	}
	off := max(0, st.Size()-n)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return fmt.Sprintf("--- %s (last %d bytes) ---\n%s\n", path, len(b), b)
}

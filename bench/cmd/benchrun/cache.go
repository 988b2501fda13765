//go:build unix

package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stella-ops/stella-mirror/bench"
	"github.com/stella-ops/stella-mirror/export"
)

// Names of the cache suite's servers.
const (
	gatewayCacheName = "gateway-cache"
	nginxCacheName   = "nginx-cache"
	// stampedePath is the cold object of the stampede case: fetched by
	// nothing else, throttled by the counting upstream.
	stampedePath = "/concelier/exports/mirror/" + benchDomain + "/manifest.json"
	// stampedeClients request the cold object at once.
	stampedeClients = 100
	// stampedeHeaderDelay and stampedeChunk/stampedeChunkDelay throttle
	// the upstream's answer for stampedePath: a slow origin.
	stampedeHeaderDelay = 300 * time.Millisecond
	stampedeChunk       = 256
	stampedeChunkDelay  = 20 * time.Millisecond
	// rssClients download the bundle at once; each reads rssReadBytes of
	// it (bounded: 1,000 × 4 MiB over loopback).
	rssClients   = 1000
	rssReadBytes = 4 << 20
)

// cacheSuite holds the servers of the cache cases: the gateway with its
// cache and nginx with proxy_cache, both TLS with the gateway suite's
// certificate, both in front of one counting, throttling upstream that
// forwards to the origin.
type cacheSuite struct {
	gw, nginx *server
	up        *countingUpstream
	roots     *tls.Config
}

func (c *cacheSuite) procs() []*server {
	var out []*server
	for _, s := range []*server{c.gw, c.nginx} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// countingUpstream forwards to the origin, counts requests per path and
// throttles stampedePath (a slow origin for the stampede).
type countingUpstream struct {
	srv   *http.Server
	addr  string
	mu    sync.Mutex
	count map[string]int
}

func (u *countingUpstream) fetches(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.count[path]
}

func startCountingUpstream(origin string) (*countingUpstream, error) {
	target, err := url.Parse(origin)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &countingUpstream{addr: ln.Addr().String(), count: map[string]int{}}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		FlushInterval: -1,
		Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true},
		ModifyResponse: func(resp *http.Response) error {
			if unpinned(resp.Request.URL.Path) == stampedePath {
				time.Sleep(stampedeHeaderDelay) // the slow origin, not synchronisation
				resp.Body = &slowBody{rc: resp.Body}
			}
			return nil
		},
	}
	u.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u.mu.Lock()
			u.count[unpinned(r.URL.Path)]++
			u.mu.Unlock()
			rp.ServeHTTP(w, r)
		})}
	go u.srv.Serve(ln)
	return u, nil
}

// unpinned is the unversioned twin of an export-pinned Concelier path
// (/concelier/exports/{id}/index.json, /concelier/exports/{id}/mirror/…),
// and path itself otherwise: the gateway's coherent cache fills an
// unversioned file from its pinned URL (docs/cache.md), nginx from the
// unversioned one, and the counts and the throttle must see both as the
// same object.
func unpinned(path string) string {
	if unversioned, _, ok := export.UnpinURL(path); ok {
		return unversioned
	}
	return path
}

// slowBody returns at most stampedeChunk bytes per Read, one every
// stampedeChunkDelay.
type slowBody struct{ rc io.ReadCloser }

func (b *slowBody) Read(p []byte) (int, error) {
	time.Sleep(stampedeChunkDelay)
	return b.rc.Read(p[:min(len(p), stampedeChunk)])
}

func (b *slowBody) Close() error { return b.rc.Close() }

// startCacheSuite starts the counting upstream, the gateway with its cache
// (anonymous site, cache in TMP/gateway-cache/cache) and nginx with
// proxy_cache (TMP/nginx-cache, bench/nginx_cache.go).
func startCacheSuite(ctx context.Context, o options, tmp string, origin *server, gs *gatewaySuite, client *http.Client, logf func(string, ...any)) (*cacheSuite, error) {
	cs := &cacheSuite{roots: &tls.Config{RootCAs: gs.roots}}
	up, err := startCountingUpstream(origin.base)
	if err != nil {
		return cs, err
	}
	cs.up = up
	dir := filepath.Join(tmp, "gateway-cache")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cs, err
	}
	addr, err := bench.FreeLoopbackAddr()
	if err != nil {
		return cs, err
	}
	admin, err := bench.FreeLoopbackAddr()
	if err != nil {
		return cs, err
	}
	conf := "gateway:\n  listen: " + addr + "\n  httpListen: \"\"\n  adminListen: " + admin +
		"\n  origin: http://" + up.addr + "\n" + benchServerLimits + "  cache:\n    dir: " + filepath.Join(dir, "cache") + "\n    maxSize: 4GiB\n" +
		"  sites:\n    - hosts: [localhost]\n      domains: [" + benchDomain + "]\n" +
		"      certFile: " + gs.certFile + "\n      keyFile: " + gs.keyFile + "\n      anonymous: true\n"
	confPath := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return cs, err
	}
	stdout, err := os.Create(filepath.Join(dir, "access.log"))
	if err != nil {
		return cs, err
	}
	defer stdout.Close()
	logPath := filepath.Join(dir, "gateway.log")
	stderr, err := os.Create(logPath)
	if err != nil {
		return cs, err
	}
	defer stderr.Close()
	cmd := exec.Command(o.bin, "gateway", "--config", confPath)
	cmd.Env = gatewayEnv()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	p, err := bench.StartProcess(gatewayCacheName, cmd)
	if err != nil {
		return cs, err
	}
	cs.gw = &server{name: gatewayCacheName, base: httpsLocalhost(addr), proc: p}
	if err := bench.WaitReady(ctx, client, "http://"+admin+"/health/ready", p, readyInterval, readyTimeout); err != nil {
		return cs, fmt.Errorf("%w\n%s", err, tail(logPath, 2048))
	}
	logf("%s ready at %s (upstream: counting proxy %s → %s)", gatewayCacheName, cs.gw.base, up.addr, origin.base)

	naddr, err := bench.FreeLoopbackAddr()
	if err != nil {
		return cs, err
	}
	prefix := filepath.Join(tmp, "nginx-cache")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return cs, err
	}
	ncfg := bench.NginxCacheConfig{Prefix: prefix, Listen: naddr, Upstream: up.addr, MaxSize: "4g",
		CertFile: gs.certFile, KeyFile: gs.keyFile}
	if os.Geteuid() == 0 {
		ncfg.User = "root"
	}
	nconf, err := bench.RenderNginxCache(ncfg)
	if err != nil {
		return cs, err
	}
	np, err := launchNginx(ctx, o, prefix, nconf, nginxCacheName, gs.client(""), httpsLocalhost(naddr)+"/concelier/exports/index.json")
	if np == nil {
		return cs, err
	}
	cs.nginx = &server{name: nginxCacheName, base: httpsLocalhost(naddr), proc: np}
	if err != nil {
		return cs, err
	}
	logf("%s ready at %s", nginxCacheName, cs.nginx.base)
	return cs, nil
}

// requireHit fetches path from s until it answers X-Cache-Status: HIT (at
// most 3 tries: MISS, then HIT) and fails otherwise: a HIT case must
// measure hits.
func requireHit(ctx context.Context, client *http.Client, s *server, path string) error {
	var last string
	for range 3 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
		res, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", s.name, path, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		last = res.Header.Get("X-Cache-Status")
		if res.StatusCode == http.StatusOK && last == "HIT" {
			return nil
		}
	}
	return fmt.Errorf("%s %s: X-Cache-Status %q, want HIT", s.name, path, last)
}

// h2loadResult is what one h2load run reports.
type h2loadResult struct {
	ReqPerSec float64 `json:"reqPerSec"`
	Succeeded int64   `json:"succeeded"`
	Failed    int64   `json:"failed"`
}

var (
	h2Finished = regexp.MustCompile(`finished in [0-9.]+m?s, ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Codes    = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// parseH2load reads h2load's summary; a run with failures, errors,
// timeouts or non-2xx answers is not a measurement.
func parseH2load(out string) (h2loadResult, error) {
	var r h2loadResult
	m := h2Finished.FindStringSubmatch(out)
	q := h2Requests.FindStringSubmatch(out)
	c := h2Codes.FindStringSubmatch(out)
	if m == nil || q == nil || c == nil {
		return r, errors.New("h2load output has no summary")
	}
	r.ReqPerSec, _ = strconv.ParseFloat(m[1], 64)
	r.Succeeded, _ = strconv.ParseInt(q[1], 10, 64)
	for _, s := range append(q[2:5], c[2:5]...) {
		n, _ := strconv.ParseInt(s, 10, 64)
		r.Failed += n
	}
	if r.Failed > 0 || r.Succeeded == 0 {
		return r, fmt.Errorf("h2load: %d succeeded, %d failed/errored/timed out/non-2xx", r.Succeeded, r.Failed)
	}
	return r, nil
}

// runH2 measures path over HTTP/2 with h2load against both servers in ABBA
// order (best run each, as for wrk).
func runH2(ctx context.Context, o options, h2load string, cs *cacheSuite, servers []*server, path string, logf func(string, ...any)) (bench.Result, []bench.Run, error) {
	const name = "cache h2 index.json HIT req/s"
	var pgids []int
	for _, srv := range servers {
		if pid := srv.proc.Pid(); !slices.Contains(pgids, pid) {
			pgids = append(pgids, pid)
		}
	}
	run := func(s *server, d time.Duration) (h2loadResult, float64, error) {
		rctx, cancel := context.WithTimeout(ctx, d+wrkSlack)
		defer cancel()
		before, sampleErr := bench.SampleCPU(pgids...)
		out, toolCPU, err := runTool(rctx, "h2load", h2load, "-c", "64", "-m", "10", "-t", "1",
			"-D", strconv.Itoa(int(d/time.Second)), s.base+path)
		if err != nil {
			return h2loadResult{}, 0, fmt.Errorf("h2load against %s: %w", s.name, err)
		}
		other := -1.0
		if after, err := bench.SampleCPU(pgids...); err == nil && sampleErr == nil {
			if p, err := bench.OtherPercent(before, after, uint64(toolCPU/(10*time.Millisecond))); err == nil {
				other = p
			}
		}
		if !strings.Contains(string(out), "Application protocol: h2") {
			return h2loadResult{}, 0, fmt.Errorf("h2load against %s did not negotiate HTTP/2:\n%s", s.name, out)
		}
		r, err := parseH2load(string(out))
		return r, other, err
	}
	for _, s := range []*server{cs.gw, cs.nginx} {
		if _, _, err := run(s, max(o.warmup, time.Second)); err != nil {
			return bench.Result{}, nil, fmt.Errorf("%s warm-up: %w", name, err)
		}
	}
	best := map[*server]float64{}
	var runs []bench.Run
	rounds := map[string]int{}
	for _, s := range abba(cs.gw, cs.nginx, o.rounds) {
		rounds[s.name]++
		r, other, err := run(s, o.duration)
		if err != nil {
			return bench.Result{}, nil, err
		}
		note := ""
		if other > disturbedPercent {
			note = fmt.Sprintf(", DISTURBED: other processes used %.0f%% of the CPUs", other)
		}
		logf("%s: %-13s round %d: %10.2f req/s (%d requests%s)", name, s.name, rounds[s.name], r.ReqPerSec, r.Succeeded, note)
		runs = append(runs, bench.Run{Case: name, Server: s.name, Round: rounds[s.name],
			Wrk: bench.WrkResult{Requests: r.Succeeded, RequestsPerSec: r.ReqPerSec}, OtherCPUPercent: round1(other)})
		best[s] = max(best[s], r.ReqPerSec)
	}
	res, err := bench.NewResult(name, "req/s", best[cs.gw], best[cs.nginx], nginxCacheName, 0.5)
	return res, runs, err
}

// stampedeResult is one server's cold stampede.
type stampedeResult struct {
	Server         string  `json:"server"`
	UpstreamFetch  int     `json:"upstreamFetches"`
	WorstTTFBMs    float64 `json:"worstTtfbMs"`
	MedianTTFBMs   float64 `json:"medianTtfbMs"`
	WorstTotalMs   float64 `json:"worstTotalMs"`
	DistinctBodies int     `json:"distinctBodies"`
}

// stampede sends stampedeClients simultaneous requests for the cold,
// throttled stampedePath to s, each on its own connection set up (TLS
// included) beforehand, and measures each client's time to first byte.
func stampede(ctx context.Context, cs *cacheSuite, s *server) (stampedeResult, error) {
	res := stampedeResult{Server: s.name}
	before := cs.up.fetches(stampedePath)
	clients := make([]*http.Client, stampedeClients)
	for i := range clients {
		tr := &http.Transport{Proxy: nil, TLSClientConfig: cs.roots.Clone(), DisableCompression: true,
			MaxIdleConnsPerHost: 1, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		defer tr.CloseIdleConnections()
		clients[i] = &http.Client{Transport: tr, Timeout: time.Minute}
		if err := requireOK(ctx, clients[i], s.base+"/concelier/exports/index.json"); err != nil { // connect now
			return res, err
		}
	}
	start := make(chan struct{})
	type one struct {
		ttfb, total time.Duration
		sum         string
		err         error
	}
	results := make([]one, stampedeClients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			t0 := time.Now()
			var first atomic.Int64
			trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first.Store(int64(time.Since(t0))) }}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, s.base+stampedePath, nil)
			r, err := clients[i].Do(req)
			if err != nil {
				results[i].err = err
				return
			}
			h := sha256.New()
			_, err = io.Copy(h, r.Body)
			r.Body.Close()
			if err == nil && r.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", r.StatusCode)
			}
			results[i] = one{ttfb: time.Duration(first.Load()), total: time.Since(t0), sum: hex.EncodeToString(h.Sum(nil)), err: err}
		}(i)
	}
	close(start)
	wg.Wait()
	var ttfbs []time.Duration
	sums := map[string]bool{}
	for _, r := range results {
		if r.err != nil {
			return res, fmt.Errorf("stampede against %s: %w", s.name, r.err)
		}
		ttfbs = append(ttfbs, r.ttfb)
		sums[r.sum] = true
		res.WorstTotalMs = max(res.WorstTotalMs, ms(r.total))
	}
	slices.Sort(ttfbs)
	res.WorstTTFBMs, res.MedianTTFBMs = ms(ttfbs[len(ttfbs)-1]), ms(ttfbs[len(ttfbs)/2])
	res.DistinctBodies = len(sums)
	res.UpstreamFetch = cs.up.fetches(stampedePath) - before
	if res.DistinctBodies != 1 {
		return res, fmt.Errorf("stampede against %s: clients got %d different bodies", s.name, res.DistinctBodies)
	}
	return res, nil
}

func ms(d time.Duration) float64 { return round1(float64(d.Microseconds()) / 1000) }

func requireOK(ctx context.Context, client *http.Client, u string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	r, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", u, r.StatusCode)
	}
	return nil
}

// rssResult is the gateway's memory while rssClients download the bundle.
type rssResult struct {
	Clients      int     `json:"clients"`
	BytesPerConn int     `json:"bytesReadPerClient"`
	PeakRSSMiB   float64 `json:"peakRssMiB"` // VmHWM, reset (clear_refs 5) before the run
	Concurrent   int     `json:"concurrentAtPeak"`
	Failed       int     `json:"failedClients"`
	FirstError   string  `json:"firstError,omitempty"`
}

// rssUnderLoad resets the gateway's peak RSS, opens rssClients
// connections, sends every request, waits until every response has begun
// (all downloads in flight at once), lets each read rssReadBytes of the
// body, and returns the gateway's VmHWM.
func rssUnderLoad(ctx context.Context, cs *cacheSuite, path string) (rssResult, error) {
	res := rssResult{Clients: rssClients, BytesPerConn: rssReadBytes}
	pid := cs.gw.proc.Pid()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return res, fmt.Errorf("resetting the peak RSS of %s: %w", cs.gw.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var begun sync.WaitGroup
	begun.Add(rssClients)
	release := make(chan struct{})
	errs := make(chan error, rssClients)
	var inFlight atomic.Int64
	var wg sync.WaitGroup
	for range rssClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{Proxy: nil, TLSClientConfig: cs.roots.Clone(), DisableCompression: true,
				TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cs.gw.base+path, nil)
			r, err := (&http.Client{Transport: tr}).Do(req)
			if err == nil {
				inFlight.Add(1)
			}
			begun.Done()
			if err != nil {
				errs <- err
				return
			}
			defer r.Body.Close()
			<-release
			if r.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("status %d", r.StatusCode)
				return
			}
			if _, err := io.CopyN(io.Discard, r.Body, rssReadBytes); err != nil {
				errs <- err
			}
		}()
	}
	begun.Wait()
	res.Concurrent = int(inFlight.Load())
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if res.Failed == 0 {
			res.FirstError = err.Error()
		}
		res.Failed++
	}
	// A client that could not connect on a loaded host does not change
	// what is measured (memory with the others in flight); many do.
	if res.Failed > rssClients/100 {
		return res, fmt.Errorf("rss run against %s: %d of %d clients failed, first: %s", cs.gw.name, res.Failed, rssClients, res.FirstError)
	}
	hwm, err := vmHWM(pid)
	if err != nil {
		return res, err
	}
	res.PeakRSSMiB = round1(float64(hwm) / (1 << 20))
	return res, nil
}

// vmHWM reads a process's peak resident set size in bytes.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseInt(f[0], 10, 64)
				return n << 10, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

// cacheExtraNames are the cases runCacheExtras runs.
var cacheExtraNames = []string{"cache h2 index.json HIT req/s", "cache stampede", "cache gateway peak RSS"}

// cacheExtraSelected reports whether --cases selects one of them.
func cacheExtraSelected(filter string) bool {
	for _, n := range cacheExtraNames {
		if strings.Contains(n, filter) {
			return true
		}
	}
	return false
}

// cacheExtras are the results of runCacheExtras.
type cacheExtras struct {
	ran      bool
	results  []bench.Result
	stampede []stampedeResult
	rss      *rssResult
}

// runCacheExtras runs the cache cases wrk cannot measure, those selected
// by --cases: "cache h2 index.json HIT req/s", "cache stampede" and
// "cache gateway peak RSS". They are recorded in meta.
func runCacheExtras(ctx context.Context, o options, cs *cacheSuite, servers []*server, bundlePath string, meta *bench.Meta, logf func(string, ...any)) (cacheExtras, error) {
	var x cacheExtras
	want := func(name string) bool { return o.cases == "" || strings.Contains(name, o.cases) }
	if want("cache h2 index.json HIT req/s") {
		x.ran = true
		r, runs, err := runH2(ctx, o, o.h2load, cs, servers, "/concelier/exports/index.json", logf)
		if err != nil {
			return x, err
		}
		x.results = append(x.results, r)
		meta.Runs = append(meta.Runs, runs...)
	}
	if want("cache stampede") {
		x.ran = true
		for _, s := range []*server{cs.gw, cs.nginx} {
			r, err := stampede(ctx, cs, s)
			if err != nil {
				return x, err
			}
			logf("cache stampede: %-13s %d upstream fetch(es), TTFB worst %.1f ms, median %.1f ms, worst complete %.1f ms",
				s.name, r.UpstreamFetch, r.WorstTTFBMs, r.MedianTTFBMs, r.WorstTotalMs)
			x.stampede = append(x.stampede, r)
		}
		meta.Params["cacheStampede"] = map[string]any{"clients": stampedeClients, "path": stampedePath,
			"upstreamHeaderDelayMs": stampedeHeaderDelay.Milliseconds(), "upstreamBody": fmt.Sprintf("%d bytes per %s", stampedeChunk, stampedeChunkDelay),
			"results": x.stampede}
	}
	if want("cache gateway peak RSS") {
		x.ran = true
		r, err := rssUnderLoad(ctx, cs, bundlePath)
		if err != nil {
			return x, err
		}
		logf("cache gateway peak RSS: %.1f MiB with %d downloads in flight (%d bytes read each; %d clients failed%s)",
			r.PeakRSSMiB, r.Concurrent, r.BytesPerConn, r.Failed, strings.TrimSuffix(": "+r.FirstError, ": "))
		x.rss = &r
		meta.Params["cacheGatewayPeakRSS"] = r
	}
	return x, nil
}

// print writes the stampede and RSS figures below the table.
func (x cacheExtras) print(w io.Writer) {
	if len(x.stampede) == 2 {
		g, n := x.stampede[0], x.stampede[1]
		verdict := "PASS"
		if !(g.WorstTTFBMs < n.WorstTTFBMs) || g.UpstreamFetch != 1 {
			verdict = "BELOW"
		}
		fmt.Fprintf(w, "\ncache stampede (%d clients, cold %s, throttled origin): upstream fetches %d vs %d; "+
			"worst TTFB %.1f ms vs %.1f ms (median %.1f vs %.1f); worst complete %.1f vs %.1f ms  [%s vs %s] %s\n",
			stampedeClients, stampedePath, g.UpstreamFetch, n.UpstreamFetch, g.WorstTTFBMs, n.WorstTTFBMs,
			g.MedianTTFBMs, n.MedianTTFBMs, g.WorstTotalMs, n.WorstTotalMs, g.Server, n.Server, verdict)
	}
	if x.rss != nil {
		verdict := "PASS"
		if x.rss.PeakRSSMiB >= 256 {
			verdict = "BELOW"
		}
		fmt.Fprintf(w, "cache gateway peak RSS (VmHWM) with %d bundle downloads in flight: %.1f MiB (target < 256 MiB) %s\n",
			x.rss.Concurrent, x.rss.PeakRSSMiB, verdict)
	}
}

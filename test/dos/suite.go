//go:build linux

package dos

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Pass thresholds and the suite's timing.
const (
	// MaxRSSMiB bounds the gateway's peak RSS (VmHWM).
	MaxRSSMiB = 256
	// MaxLegitMedian bounds the legitimate client's median latency.
	MaxLegitMedian = 100 * time.Millisecond
	// FDSlack is how many descriptors above the pre-attack baseline still
	// count as "back to baseline".
	FDSlack = 8
	// ProgressDeadline is the write-progress deadline (and the idle and
	// header timeouts) the suite configures on the gateway.
	ProgressDeadline = 5 * time.Second
	// RecoveryMargin is added to ProgressDeadline to give the wait for the
	// descriptors to return to baseline once the attack stopped: the
	// issue's condition is "within the progress deadline"; the margin is
	// for timers and the 100 ms sampling on a loaded two-core machine
	// (it was 10 s, which hid HTTP/1.1 slow readers held for 2-3 deadlines).
	RecoveryMargin = 2 * time.Second
	// probeInterval is the legitimate client's request rate.
	probeInterval = 100 * time.Millisecond
	// probeTimeout is the latency recorded for a failed legitimate request.
	probeTimeout = 2 * time.Second
	// defaultNofile is the descriptor limit of the origin and the gateway
	// unless a scenario sets one (systemd's default soft limit).
	defaultNofile = 1024
	// legitIP is the legitimate client's source address.
	legitIP = "127.0.0.2"
	// attackerIP is the attackers' source address.
	attackerIP = "127.0.0.1"
)

// BaseEnv are the gateway settings of every scenario; keys the binary does
// not list in `gateway --help` are dropped (and reported), so the suite
// runs against builds from before and after the limits existed.
var BaseEnv = []string{
	"GATEWAY__IDLETIMEOUT=5s",
	"GATEWAY__READHEADERTIMEOUT=5s",
	"GATEWAY__SERVER__WRITEPROGRESSTIMEOUT=5s",
}

// Scenario is one attack and the gateway settings it runs with.
type Scenario struct {
	// Name identifies the scenario in the table, results.json and --scenarios.
	Name string
	// What describes the attack in one line.
	What string
	// Nofile is the gateway's descriptor limit (prlimit); 0: defaultNofile.
	Nofile int
	// Env are GATEWAY__ settings on top of BaseEnv (KEY=VALUE).
	Env []string
	// Legacy serves the htpasswd file that also holds an apr1 hash.
	Legacy bool
	// NoCache runs the gateway without its cache (every request goes to
	// the origin).
	NoCache bool
	attack  attackFunc
}

// Scenarios returns the suite's scenarios in run order.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "idle-fd", What: "1,000 idle TCP connections, gateway under prlimit --nofile=256 (F1)",
			Nofile: 256, Env: []string{"GATEWAY__SERVER__MAXCONNS=200"}, attack: idleConns(1000, 50)},
		{Name: "h2-zero-window-anon", What: "20 h2 conns × 128 streams, SETTINGS_INITIAL_WINDOW_SIZE=0, index.json without credentials, no WINDOW_UPDATE (F2)",
			attack: h2Stall(20, 128, indexPath, false, 0, 0, true)},
		{Name: "h2-zero-window-bundle", What: "20 h2 conns × 128 streams, window 0, 64 MiB bundle with credentials (F3)",
			attack: h2Stall(20, 128, bundlePath, true, 0, 0, true)},
		{Name: "h2-zero-window-nocache", What: "the same without the gateway cache: each stalled stream holds an origin connection (F3)",
			NoCache: true, attack: h2Stall(20, 128, bundlePath, true, 0, 0, true)},
		{Name: "h1-slow-read", What: "300 TLS HTTP/1.1 clients request the bundle and never read (F4)",
			attack: h1NoRead(300, 1, func(t *Target) string { return h1Request(bundlePath, t.Auth) })},
		{Name: "h2-slow-read", What: "20 h2 conns × 16 bundle streams, 2 GiB windows, the client never reads the socket",
			attack: h2Stall(20, 16, bundlePath, true, 1<<31-1, 1<<31-1-65535, false)},
		{Name: "h1-pipeline", What: "20 TLS clients pipeline 20,000 index.json requests each without reading (F4)",
			attack: h1NoRead(20, 20000, func(*Target) string { return h1Request(indexPath, "") })},
		{Name: "h2-rapid-reset", What: "8 h2 conns × up to 20,000 HEADERS+RST_STREAM (bundle, with credentials)",
			attack: rapidReset(8, 20000, bundlePath)},
		{Name: "h2-continuation", What: "20 h2 conns: HEADERS without END_HEADERS, then endless 16 KiB CONTINUATION",
			attack: continuationFlood(20, 20000)},
		{Name: "h1-header-bomb", What: "8 workers: 1 MiB header value / 10,000 headers per request, new TLS connection each",
			attack: h1HeaderBomb(8, 400)},
		{Name: "h2-header-bomb", What: "8 workers: 800 KiB header blocks and HPACK bombs (64 MB decoded), new h2 connection each",
			attack: h2HeaderBomb(8, 80)},
		{Name: "slowloris", What: "400 TLS connections drip headers one byte per second",
			attack: slowloris(400)},
		{Name: "auth-flood", What: "64 keep-alive connections from 127.0.0.1 send wrong passwords (F5)",
			attack: authFlood(64)},
		{Name: "auth-timing", What: "known apr1 user vs unknown user, wrong passwords: timing must match (F6)",
			// The login throttle off: every wrong password must reach the
			// password check, whose cost is what is compared (with the
			// throttle, 70 of the 80 requests were 429s before any hash).
			Legacy: true, Env: []string{"GATEWAY__ALLOWLEGACYHASHES=true", "GATEWAY__AUTHTHROTTLE__MAXFAILURES=0"}, attack: authTiming(40)},
	}
}

// Options configure a run.
type Options struct {
	// Bin is the stella-mirror binary.
	Bin string
	// Out is the directory for results.json (created).
	Out string
	// Engines are the GATEWAY__SERVER__ENGINE values to run every scenario
	// on; ignored (one run, the default engine) when the binary has no such key.
	Engines []string
	// Scenarios selects scenarios by name; empty: all.
	Scenarios []string
	// Attack is how long each attack phase lasts.
	Attack time.Duration
	// BundleSize is the fixture bundle's size ("64MiB").
	BundleSize string
	// Env are extra GATEWAY__ settings for every scenario (KEY=VALUE),
	// after BaseEnv and the scenario's own.
	Env []string
	// Keep keeps the temp dir (logs, configs).
	Keep bool
}

// Result is one scenario on one engine; its JSON form is an element of
// results.json.
type Result struct {
	Scenario string `json:"scenario"`
	Engine   string `json:"engine"`
	What     string `json:"what"`
	Pass     bool   `json:"pass"`
	// Failures says which pass conditions failed.
	Failures []string `json:"failures,omitempty"`
	// GatewayUp and OriginUp: the process runs and /health/live answers
	// after the attack; Exit says how a dead one ended.
	GatewayUp   bool   `json:"gatewayUp"`
	GatewayExit string `json:"gatewayExit,omitempty"`
	OriginUp    bool   `json:"originUp"`
	OriginExit  string `json:"originExit,omitempty"`
	// PeakRSSMiB is the gateway's VmHWM; OriginPeakRSSMiB the origin's.
	PeakRSSMiB       float64 `json:"peakRssMiB"`
	OriginPeakRSSMiB float64 `json:"originPeakRssMiB"`
	// FDs: the gateway's descriptors before, at peak, and at the end of the
	// recovery wait; FDRecoveredSec is how long after the attack stopped
	// they were back at baseline+FDSlack (-1: not within the wait).
	FDBaseline     int     `json:"fdBaseline"`
	FDPeak         int     `json:"fdPeak"`
	FDAfter        int     `json:"fdAfter"`
	FDRecoveredSec float64 `json:"fdRecoveredSec"`
	// OriginFDBaseline/OriginFDPeak: the origin's descriptors.
	OriginFDBaseline int `json:"originFdBaseline"`
	OriginFDPeak     int `json:"originFdPeak"`
	// The legitimate client (127.0.0.2, new TLS connection per request,
	// authenticated GET of index.json every 100 ms during the attack).
	LegitMedianMs float64 `json:"legitMedianMs"`
	LegitP95Ms    float64 `json:"legitP95Ms"`
	LegitSamples  int     `json:"legitSamples"`
	LegitErrors   int     `json:"legitErrors"`
	LegitFirstErr string  `json:"legitFirstError,omitempty"`
	// Attack is what the attackers did and saw.
	Attack AttackReport `json:"attack"`
	// Env are the GATEWAY__ settings used; Dropped those the binary lacks.
	Env     []string `json:"env"`
	Dropped []string `json:"dropped,omitempty"`
	Nofile  int      `json:"nofile"`
	NoCache bool     `json:"noCache,omitempty"`
	// LoadAvg is /proc/loadavg's 1-minute figure when the attack ended: a
	// machine busy with other work inflates the latencies.
	LoadAvg string `json:"loadAvg"`
	// CPU seconds used during the attack phase by the gateway, the origin,
	// the suite itself (attackers and legitimate client: they share the
	// gateway's cores) and every other process of the machine
	// (OtherCPUSec, e.g. compilers); AttackSec wall seconds × the CPUs is
	// what there was.
	GatewayCPUSec float64 `json:"gatewayCpuSec"`
	OriginCPUSec  float64 `json:"originCpuSec"`
	SuiteCPUSec   float64 `json:"suiteCpuSec"`
	OtherCPUSec   float64 `json:"otherCpuSec"`
	CPUs          int     `json:"cpus"`
	// Metrics are the gateway's counters (…_total) that grew from the
	// baseline to the end of the recovery wait, by how much; LogLines the
	// WARN and ERROR lines it wrote meanwhile, by message: what an
	// operator sees.
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	LogLines map[string]int     `json:"logLines,omitempty"`
}

// AttackReport is a snapshot of Stats.
type AttackReport struct {
	Conns      int64            `json:"conns"`
	DialErrors int64            `json:"dialErrors"`
	Requests   int64            `json:"requests"`
	Frames     int64            `json:"frames,omitempty"`
	Bytes      int64            `json:"bytes,omitempty"`
	Cut        int64            `json:"cutByServer"`
	GoAway     int64            `json:"goAway,omitempty"`
	RSTStream  int64            `json:"rstStream,omitempty"`
	Held       int              `json:"heldAfterAttack"`
	Statuses   map[string]int64 `json:"statuses,omitempty"`
	Notes      []string         `json:"notes,omitempty"`
	Seconds    float64          `json:"seconds"`
}

// Run builds the fixture, runs the selected scenarios on every engine,
// prints the table to stdout and writes Out/results.json. It returns the
// results; a scenario failing is not an error.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) (results []Result, err error) {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "dos: "+format+"\n", args...) }
	if err := checkLoopback(); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "stella-mirror-dos-")
	if err != nil {
		return nil, fmt.Errorf("creating temp dir: %w", err)
	}
	defer func() {
		if o.Keep {
			logf("kept %s", tmp)
			return
		}
		if rmErr := os.RemoveAll(tmp); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("removing temp dir: %w", rmErr))
		}
	}()
	f, err := buildFixture(ctx, o.Bin, tmp, o.BundleSize, logf)
	if err != nil {
		return nil, err
	}
	engines := o.Engines
	if !f.supported("GATEWAY__SERVER__ENGINE=std") {
		logf("the gateway has no GATEWAY__SERVER__ENGINE: one run on its only engine")
		engines = []string{"default"}
	}
	var selected []Scenario
	for _, s := range Scenarios() {
		if len(o.Scenarios) == 0 || slices.Contains(o.Scenarios, s.Name) {
			selected = append(selected, s)
		}
	}
	if len(selected) == 0 {
		return nil, fmt.Errorf("no scenario matches %v", o.Scenarios)
	}
	for _, eng := range engines {
		for _, s := range selected {
			if ctx.Err() != nil {
				return results, ctx.Err()
			}
			dir := filepath.Join(tmp, eng+"-"+s.Name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return results, err
			}
			logf("%s / %s: %s", eng, s.Name, s.What)
			if _, dropped := envFor(f, o, s, eng); len(dropped) > 0 {
				logf("%s / %s: the gateway lacks %s (not set)", eng, s.Name, strings.Join(dropped, " "))
			}
			r, err := runScenario(ctx, o, f, s, eng, dir, logf)
			if err != nil {
				return results, fmt.Errorf("scenario %s (%s): %w", s.Name, eng, err)
			}
			logf("%s / %s: %s", eng, s.Name, verdict(r))
			results = append(results, r)
		}
	}
	printTable(stdout, results)
	if o.Out != "" {
		if err := writeResults(o.Out, results); err != nil {
			return results, err
		}
	}
	return results, nil
}

// checkLoopback fails unless the addresses the suite uses are local.
func checkLoopback() error {
	for _, a := range []string{attackerIP, legitIP, "127.0.0.3"} {
		ln, err := net.Listen("tcp", a+":0")
		if err != nil {
			return fmt.Errorf("loopback address %s is not usable: %w", a, err)
		}
		ln.Close()
	}
	return nil
}

// envFor returns the gateway settings of s on engine: BaseEnv, the
// scenario's, the run's, split into those the binary knows and the rest.
func envFor(f *Fixture, o Options, s Scenario, engine string) (use, dropped []string) {
	all := slices.Concat(BaseEnv, s.Env, o.Env)
	if engine != "default" {
		all = append(all, "GATEWAY__SERVER__ENGINE="+engine)
	}
	for _, kv := range all {
		if f.supported(kv) {
			use = append(use, kv)
		} else {
			dropped = append(dropped, kv)
		}
	}
	return use, dropped
}

// runScenario starts a fresh origin and gateway, measures the baseline,
// runs the attack with the legitimate client timed alongside, waits for the
// descriptors to return, checks both processes and stops them.
func runScenario(ctx context.Context, o Options, f *Fixture, s Scenario, engine, dir string, logf func(string, ...any)) (r Result, err error) {
	r = Result{Scenario: s.Name, Engine: engine, What: s.What, FDRecoveredSec: -1}
	r.Env, r.Dropped = envFor(f, o, s, engine)
	r.Nofile, r.NoCache = s.Nofile, s.NoCache
	if r.Nofile == 0 {
		r.Nofile = defaultNofile
	}
	origin, err := startOrigin(ctx, f, o.Bin, dir, defaultNofile)
	if origin != nil {
		defer stop(origin, &err)
	}
	if err != nil {
		return r, err
	}
	htpasswd := f.Htpasswd
	if s.Legacy {
		htpasswd = f.HtpasswdLegacy
	}
	gw, err := startGateway(ctx, f, o.Bin, dir, htpasswd, origin, r.Nofile, r.Env, !s.NoCache)
	if gw != nil {
		defer stop(gw, &err)
	}
	if err != nil {
		return r, err
	}
	tlsConf := &tls.Config{RootCAs: f.Roots, ServerName: serverName}
	t := &Target{Addr: gw.addr, AttackerIP: attackerIP, TLS: tlsConf, Auth: basic(user, password)}
	legit := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{
		Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tlsConf.Clone(),
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		DialContext:  (&net.Dialer{Timeout: probeTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(legitIP)}}).DialContext,
	}}
	base := "https://" + gw.addr
	// Warm the cache (index and bundle) so that attacks hit cached objects.
	// Without the cache this checks that both answer.
	for _, p := range []string{indexPath, bundlePath} {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		werr := get(wctx, &http.Client{Transport: legit.Transport}, base+p, t.Auth)
		cancel()
		if werr != nil {
			return r, fmt.Errorf("warming %s: %w", p, werr)
		}
	}
	r.FDBaseline, err = settledFDs(ctx, gw.proc.Pid())
	if err != nil {
		return r, err
	}
	r.OriginFDBaseline, _ = settledFDs(ctx, origin.proc.Pid())
	countersBefore, _ := scrapeCounters(ctx, gw.admin)
	logFrom := fileSize(gw.log)

	// The attack phase, the legitimate client and the descriptor samplers.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var gwFDs, originFDs fdSampler
	go gwFDs.run(sampleCtx, gw.proc.Pid(), 100*time.Millisecond)
	go originFDs.run(sampleCtx, origin.proc.Pid(), 100*time.Millisecond)
	defer stopSampling()
	h := &held{}
	defer h.closeAll()
	st := &Stats{}
	attackCtx, cancel := context.WithTimeout(ctx, o.Attack)
	defer cancel()
	probed := make(chan probeResult, 1)
	go func() { probed <- probe(attackCtx, legit, base+indexPath, t.Auth, probeInterval) }()
	cpu0 := cpuNow(gw.proc.Pid(), origin.proc.Pid())
	start := time.Now()
	attackDone := make(chan struct{})
	go func() { s.attack(attackCtx, t, h, st); close(attackDone) }()
	select {
	case <-attackDone:
	case <-time.After(o.Attack + 30*time.Second):
		logf("%s: the attack did not stop 30 s after its deadline; closing its connections", s.Name)
		h.closeAll()
		<-attackDone
	}
	<-attackCtx.Done() // an attack that finished early still leaves the client timing to the end
	cancel()
	pr := <-probed
	r.LoadAvg = loadavg()
	cpu1 := cpuNow(gw.proc.Pid(), origin.proc.Pid())
	r.GatewayCPUSec = round(cpu1.gw-cpu0.gw, 2)
	r.OriginCPUSec = round(cpu1.origin-cpu0.origin, 2)
	r.SuiteCPUSec = round(cpu1.self-cpu0.self, 2)
	r.OtherCPUSec = round(max(0, (cpu1.machine-cpu0.machine)-(cpu1.gw-cpu0.gw)-(cpu1.origin-cpu0.origin)-(cpu1.self-cpu0.self)), 2)
	r.CPUs = runtime.NumCPU()
	r.Attack = st.report(time.Since(start), h.count())

	// Recovery: the attackers keep their connections open and do nothing;
	// the gateway must let go of them by itself.
	stopped := time.Now()
	wait := ProgressDeadline + RecoveryMargin
	for {
		n, ferr := fdCount(gw.proc.Pid())
		if ferr != nil {
			break // the gateway is gone
		}
		r.FDAfter = n
		if n <= r.FDBaseline+FDSlack {
			r.FDRecoveredSec = round(time.Since(stopped).Seconds(), 1)
			break
		}
		if time.Since(stopped) > wait {
			break
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	stopSampling()
	r.FDPeak, r.OriginFDPeak = gwFDs.max(), originFDs.max()
	h.closeAll()

	admin := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var why string
	r.GatewayUp, why = gw.up(ctx, admin)
	if !r.GatewayUp {
		r.GatewayExit = why
	}
	r.OriginUp, why = origin.up(ctx, admin)
	if !r.OriginUp {
		r.OriginExit = why
	}
	if r.GatewayUp && countersBefore != nil {
		if after, err := scrapeCounters(ctx, gw.admin); err == nil {
			r.Metrics = counterIncreases(countersBefore, after)
		}
	}
	r.LogLines = logMessages(gw.log, logFrom)
	gwKiB, originKiB := gwFDs.hwm(), originFDs.hwm()
	if kb, err := statusKiB(gw.proc.Pid(), "VmHWM"); err == nil {
		gwKiB = max(gwKiB, kb)
	}
	if kb, err := statusKiB(origin.proc.Pid(), "VmHWM"); err == nil {
		originKiB = max(originKiB, kb)
	}
	r.PeakRSSMiB = round(float64(gwKiB)/1024, 1)
	r.OriginPeakRSSMiB = round(float64(originKiB)/1024, 1)
	r.LegitSamples, r.LegitErrors, r.LegitFirstErr = len(pr.Latencies), pr.Errors, pr.FirstErr
	r.LegitMedianMs = round(ms(median(pr.Latencies)), 1)
	r.LegitP95Ms = round(ms(percentile(pr.Latencies, 95)), 1)
	r.judge(st)
	if !r.GatewayUp {
		r.Attack.Notes = append(r.Attack.Notes, "gateway log tail: "+tailFile(gw.log, 600))
	}
	return r, nil
}

// judge sets Pass and Failures from the measurements.
func (r *Result) judge(st *Stats) {
	var f []string
	if !r.GatewayUp {
		f = append(f, "gateway down ("+r.GatewayExit+")")
	}
	if !r.OriginUp {
		f = append(f, "origin down ("+r.OriginExit+")")
	}
	if r.PeakRSSMiB == 0 {
		f = append(f, "gateway RSS unknown")
	} else if r.PeakRSSMiB >= MaxRSSMiB {
		f = append(f, fmt.Sprintf("peak RSS %.0f MiB ≥ %d MiB", r.PeakRSSMiB, MaxRSSMiB))
	}
	if r.FDRecoveredSec < 0 && r.GatewayUp {
		f = append(f, fmt.Sprintf("descriptors %d, baseline %d: not back within %s", r.FDAfter, r.FDBaseline, ProgressDeadline+RecoveryMargin))
	}
	if r.LegitSamples == 0 {
		f = append(f, "no legitimate request measured")
	} else if time.Duration(r.LegitMedianMs*float64(time.Millisecond)) >= MaxLegitMedian {
		f = append(f, fmt.Sprintf("legitimate median %.0f ms ≥ %s (%d/%d failed)", r.LegitMedianMs, MaxLegitMedian, r.LegitErrors, r.LegitSamples))
	}
	st.mu.Lock()
	f = append(f, st.failed...)
	st.mu.Unlock()
	r.Failures = f
	r.Pass = len(f) == 0
}

// settledFDs returns the lowest descriptor count of pid over a short
// window (connections of the warm-up may still be closing).
func settledFDs(ctx context.Context, pid int) (int, error) {
	best := math.MaxInt
	for i := 0; i < 5; i++ {
		n, err := fdCount(pid)
		if err != nil {
			return 0, err
		}
		best = min(best, n)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return best, nil
}

func (st *Stats) report(d time.Duration, held int) AttackReport {
	st.mu.Lock()
	defer st.mu.Unlock()
	return AttackReport{Conns: st.Conns.Load(), DialErrors: st.DialErrors.Load(), Requests: st.Requests.Load(),
		Frames: st.Frames.Load(), Bytes: st.Bytes.Load(), Cut: st.Cut.Load(), GoAway: st.GoAway.Load(),
		RSTStream: st.RSTStream.Load(), Held: held, Statuses: st.statuses, Notes: slices.Clone(st.notes),
		Seconds: round(d.Seconds(), 1)}
}

// stop stops s, noting in *err when it would not stop; a process that had
// already exited was recorded by the caller.
func stop(s *server, err *error) {
	if stopErr := s.proc.Stop(5 * time.Second); stopErr != nil {
		*err = errors.Join(*err, stopErr)
	}
}

// cpuTimes are CPU seconds used so far (cpuNow).
type cpuTimes struct{ gw, origin, self, machine float64 }

// cpuNow reads the CPU seconds of the gateway, the origin, this process
// and the machine (0 for what cannot be read).
func cpuNow(gwPid, originPid int) cpuTimes {
	var t cpuTimes
	t.gw, _ = cpuSeconds(gwPid)
	t.origin, _ = cpuSeconds(originPid)
	t.self = selfCPUSeconds()
	t.machine, _ = machineBusySeconds()
	return t
}

// loadavg returns the 1-minute load average ("" if unknown).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func verdict(r Result) string {
	if r.Pass {
		return "PASS"
	}
	return "FAIL: " + strings.Join(r.Failures, "; ")
}

//go:build linux

package dos

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStatusKiB(t *testing.T) {
	const status = "Name:\tstella-mirror\nVmPeak:\t 1234 kB\nVmHWM:\t   52340 kB\nVmRSS:\t 40000 kB\n"
	tests := []struct {
		field   string
		want    int64
		wantErr bool
	}{
		{"VmHWM", 52340, false},
		{"VmRSS", 40000, false},
		{"VmSwap", 0, true},
		{"Name", 0, true}, // not a kB field
	}
	for _, tc := range tests {
		got, err := parseStatusKiB(bufio.NewScanner(strings.NewReader(status)), tc.field)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d (error %v)", tc.field, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestOwnProcess(t *testing.T) {
	kb, err := statusKiB(os.Getpid(), "VmHWM")
	if err != nil || kb <= 0 {
		t.Fatalf("VmHWM of this process: %d, %v", kb, err)
	}
	n, err := fdCount(os.Getpid())
	if err != nil || n < 3 {
		t.Fatalf("descriptors of this process: %d, %v", n, err)
	}
}

func TestMedianPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		in          []time.Duration
		median, p95 time.Duration
	}{
		{nil, 0, 0},
		{ms(5), 5 * time.Millisecond, 5 * time.Millisecond},
		{ms(9, 1, 5), 5 * time.Millisecond, 9 * time.Millisecond},
		{ms(4, 1, 3, 2), 2500 * time.Microsecond, 4 * time.Millisecond},
	}
	for _, tc := range tests {
		in := slices.Clone(tc.in)
		if got := median(tc.in); got != tc.median {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.median)
		}
		if got := percentile(tc.in, 95); got != tc.p95 {
			t.Errorf("p95(%v) = %v, want %v", tc.in, got, tc.p95)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("input reordered: %v", tc.in)
		}
	}
}

func TestEnvForDropsUnknownKeys(t *testing.T) {
	f := &Fixture{GatewayKeys: map[string]bool{"GATEWAY__IDLETIMEOUT": true, "GATEWAY__SERVER__ENGINE": true}}
	s := Scenario{Env: []string{"GATEWAY__SERVER__MAXCONNS=200"}}
	use, dropped := envFor(f, Options{Env: []string{"GATEWAY__IDLETIMEOUT=7s"}}, s, "std")
	wantUse := []string{"GATEWAY__IDLETIMEOUT=5s", "GATEWAY__IDLETIMEOUT=7s", "GATEWAY__SERVER__ENGINE=std"}
	if !slices.Equal(use, wantUse) {
		t.Errorf("use = %v, want %v", use, wantUse)
	}
	if !slices.Contains(dropped, "GATEWAY__SERVER__MAXCONNS=200") || slices.Contains(dropped, "GATEWAY__IDLETIMEOUT=5s") {
		t.Errorf("dropped = %v", dropped)
	}
	if _, dropped := envFor(f, Options{}, Scenario{}, "default"); slices.ContainsFunc(dropped, func(s string) bool { return strings.Contains(s, "ENGINE") }) {
		t.Errorf("engine default must set no key: %v", dropped)
	}
}

func TestJudge(t *testing.T) {
	good := Result{GatewayUp: true, OriginUp: true, PeakRSSMiB: 40, FDRecoveredSec: 1, LegitSamples: 80, LegitMedianMs: 5}
	tests := []struct {
		name   string
		change func(*Result)
		st     func(*Stats)
		pass   bool
	}{
		{"all good", func(*Result) {}, nil, true},
		{"gateway down", func(r *Result) { r.GatewayUp, r.GatewayExit = false, "status 0" }, nil, false},
		{"origin down", func(r *Result) { r.OriginUp = false }, nil, false},
		{"rss over", func(r *Result) { r.PeakRSSMiB = MaxRSSMiB }, nil, false},
		{"fds held", func(r *Result) { r.FDRecoveredSec = -1 }, nil, false},
		{"slow legit", func(r *Result) { r.LegitMedianMs = 100 }, nil, false},
		{"no samples", func(r *Result) { r.LegitSamples = 0 }, nil, false},
		{"scenario check", func(*Result) {}, func(s *Stats) { s.fail("timing") }, false},
	}
	for _, tc := range tests {
		r := good
		tc.change(&r)
		st := &Stats{}
		if tc.st != nil {
			tc.st(st)
		}
		r.judge(st)
		if r.Pass != tc.pass || r.Pass != (len(r.Failures) == 0) {
			t.Errorf("%s: pass %v, failures %v; want pass %v", tc.name, r.Pass, r.Failures, tc.pass)
		}
	}
}

func TestGatewayConfigIsLoopbackSite(t *testing.T) {
	f := &Fixture{CertFile: "/c.crt", KeyFile: "/k.key"}
	got := string(gatewayConfig(f, "/h", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "/cache"))
	for _, want := range []string{`listen: "127.0.0.1:1"`, `httpListen: ""`, `origin: "http://127.0.0.1:3"`, `htpasswdFile: "/h"`, `dir: "/cache"`} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %s:\n%s", want, got)
		}
	}
	if got := string(gatewayConfig(f, "/h", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "")); strings.Contains(got, "cache:") {
		t.Errorf("config without a cache dir has a cache:\n%s", got)
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name, stat string
		want       float64
		wantErr    bool
	}{
		{"plain", "4242 (stella-mirror) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 75 0 0 20 0 9 0 100 0 0", 3.25, false},
		{"name with spaces and parens", "7 (a b) c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 0 0", 0.03, false},
		{"no name", "7 R 1 7", 0, true},
		{"short", "7 (x) R 1 7 7", 0, true},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 x 2 0", 0, true},
	}
	for _, tc := range tests {
		got, err := parseStatCPU(tc.stat)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v (error %v)", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
	if s, err := cpuSeconds(os.Getpid()); err != nil || s < 0 {
		t.Errorf("cpuSeconds of this process: %v, %v", s, err)
	}
}

func TestParseProcStatBusy(t *testing.T) {
	got, err := parseProcStatBusy("cpu  100 20 30 5000 70 1 2 3 40 50")
	if err != nil || got != 1.56 { // 100+20+30+1+2+3, not idle, iowait or the guest times
		t.Errorf("got %v, %v; want 1.56", got, err)
	}
	if _, err := parseProcStatBusy("intr 1 2 3"); err == nil {
		t.Error("a line that is not the cpu line: no error")
	}
	if s, err := machineBusySeconds(); err != nil || s <= 0 {
		t.Errorf("machineBusySeconds: %v, %v", s, err)
	}
}

func TestParseCountersAndIncreases(t *testing.T) {
	const text = `# HELP stella_mirror_gateway_connections_rejected_total x
# TYPE stella_mirror_gateway_connections_rejected_total counter
stella_mirror_gateway_connections_rejected_total{reason="max_conns"} 0
stella_mirror_gateway_connections_rejected_total{reason="max_conns_per_ip"} 12
stella_mirror_gateway_connections_open 5
stella_mirror_gateway_request_duration_seconds_count{site="a"} 9
go_gc_duration_seconds_total 3
stella_mirror_gateway_write_timeouts_total{scope="connection"} 2
`
	got, err := parseCounters(bufio.NewScanner(strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[`stella_mirror_gateway_connections_rejected_total{reason="max_conns_per_ip"}`] != 12 {
		t.Fatalf("got %v", got)
	}
	inc := counterIncreases(map[string]float64{`stella_mirror_gateway_write_timeouts_total{scope="connection"}`: 2}, got)
	if len(inc) != 1 || inc[`stella_mirror_gateway_connections_rejected_total{reason="max_conns_per_ip"}`] != 12 {
		t.Fatalf("increases %v", inc)
	}
}

func TestCountLogMessages(t *testing.T) {
	const log = `{"level":"INFO","msg":"listening"}
{"level":"WARN","msg":"login failed","user":"x"}
{"level":"WARN","msg":"login failed"}
not json
{"level":"ERROR","msg":"accept failed; retrying"}
{"level":"WARN","msg":"http2: server connection error from 127.0.0.1:33759: connection error: ENHANCE_YOUR_CALM"}
{"level":"WARN","msg":"http: TLS handshake error from [::1]:4711: raw-read tcp 127.0.0.1:38425->127.0.0.1:33447: i/o timeout"}
{"level":"WARN","msg":"http2: server connection error from 127.0.0.1:40000: connection error: ENHANCE_YOUR_CALM"}
`
	got := countLogMessages(bufio.NewScanner(strings.NewReader(log)))
	if len(got) != 4 || got["WARN login failed"] != 2 || got["ERROR accept failed; retrying"] != 1 ||
		got["WARN http2: server connection error from ADDR: connection error: ENHANCE_YOUR_CALM"] != 2 ||
		got["WARN http: TLS handshake error from ADDR: raw-read tcp ADDR->ADDR: i/o timeout"] != 1 {
		t.Fatalf("got %v", got)
	}
}

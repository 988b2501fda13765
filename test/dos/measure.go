//go:build linux

package dos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// statusKiB returns a "Vm…:  N kB" field of /proc/PID/status in KiB.
func statusKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading status of pid %d: %w", pid, err)
	}
	defer f.Close()
	return parseStatusKiB(bufio.NewScanner(f), field)
}

// parseStatusKiB finds field ("VmHWM") in the lines of a /proc status file.
func parseStatusKiB(sc *bufio.Scanner, field string) (int64, error) {
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("status field %s: unexpected %q", field, rest)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("status field %s: %w", field, err)
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("status field %s not found", field)
}

// fdCount returns the number of open descriptors of pid.
func fdCount(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("listing descriptors of pid %d: %w", pid, err)
	}
	return len(ents), nil
}

// median returns the median of d (0 for none).
func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile returns the p-th percentile (nearest rank) of d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// fdSampler records the peak descriptor count of a process and its last
// VmHWM (so that a process that dies during the attack still has a figure).
type fdSampler struct {
	mu     sync.Mutex
	peak   int
	hwmKiB int64
}

// run samples pid every interval until ctx is done.
func (s *fdSampler) run(ctx context.Context, pid int, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := fdCount(pid)
		hwm, herr := statusKiB(pid, "VmHWM")
		s.mu.Lock()
		if err == nil {
			s.peak = max(s.peak, n)
		}
		if herr == nil {
			s.hwmKiB = max(s.hwmKiB, hwm)
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *fdSampler) max() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// hwm returns the highest VmHWM sampled, in KiB.
func (s *fdSampler) hwm() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hwmKiB
}

// probeResult is what the legitimate client measured.
type probeResult struct {
	Latencies []time.Duration
	Errors    int
	FirstErr  string
}

// probe sends one authenticated GET of url every interval until ctx is
// done, each on a new connection from the legitimate client's address,
// and records every request's latency; a failed request counts as
// probeTimeout. It returns when the last request has finished.
func probe(ctx context.Context, client *http.Client, url, auth string, interval time.Duration) probeResult {
	var (
		mu  sync.Mutex
		res probeResult
		wg  sync.WaitGroup
	)
	one := func() {
		defer wg.Done()
		rctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		start := time.Now()
		err := get(rctx, client, url, auth)
		d := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			res.Errors++
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			d = probeTimeout
		}
		res.Latencies = append(res.Latencies, d)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		wg.Add(1)
		go one()
		select {
		case <-ctx.Done():
			wg.Wait()
			return res
		case <-t.C:
		}
	}
}

// get fetches url with auth as Authorization and reads the whole body; any
// status but 200 is an error.
func get(ctx context.Context, client *http.Client, url, auth string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).WriteTo(discard{}); err != nil {
		return fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %s", url, resp.Status)
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// userHZ is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on every
// Linux architecture Go supports).
const userHZ = 100

// cpuSeconds returns the user + system CPU time pid has used so far.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading stat of pid %d: %w", pid, err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU returns utime + stime of a /proc/PID/stat line in seconds.
// The command name (field 2) may hold spaces and parentheses: the fields
// are counted from the last ')'.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat line without a command name: %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("stat line with %d fields after the command name", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat line: cpu time %q: %w", s, err)
		}
		ticks += n
	}
	return float64(ticks) / userHZ, nil
}

// selfCPUSeconds returns the CPU time (user + system) this process —
// the attackers and the legitimate client — has used so far.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// machineBusySeconds returns the CPU time all processes of the machine
// have used so far (/proc/stat's first line: every field but idle and
// iowait), summed over the CPUs.
func machineBusySeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("reading /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseProcStatBusy(line)
}

// parseProcStatBusy parses /proc/stat's "cpu  user nice system idle iowait
// irq softirq steal …" line into busy seconds.
func parseProcStatBusy(line string) (float64, error) {
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy int64
	for i, s := range f[1:] {
		if i >= 8 { // guest times are already in user and nice
			break
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %q: %w", s, err)
		}
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += n
	}
	return float64(busy) / userHZ, nil
}

// metricsPrefix selects the gateway's own series in /metrics.
const metricsPrefix = "stella_mirror_gateway_"

// scrapeCounters returns the gateway's counters (series named …_total)
// from its admin listener's /metrics.
func scrapeCounters(ctx context.Context, admin string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping metrics: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping metrics: status %s", res.Status)
	}
	return parseCounters(bufio.NewScanner(res.Body))
}

// parseCounters reads Prometheus text lines and keeps the series of
// metricsPrefix whose name ends in _total.
func parseCounters(sc *bufio.Scanner) (map[string]float64, error) {
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	out := map[string]float64{}
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metricsPrefix) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series, value := line[:i], line[i+1:]
		name, _, _ := strings.Cut(series, "{")
		if !strings.HasSuffix(name, "_total") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[series] = v
	}
	return out, sc.Err()
}

// counterIncreases returns the series that grew from before to after, by
// how much.
func counterIncreases(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// logMessages counts the WARN and ERROR lines of a JSON log file from
// byte offset from on, by message.
func logMessages(path string, from int64) map[string]int {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(from, 0); err != nil {
		return nil
	}
	return countLogMessages(bufio.NewScanner(f))
}

// countLogMessages counts the WARN and ERROR lines of JSON log lines by msg.
func countLogMessages(sc *bufio.Scanner) map[string]int {
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	out := map[string]int{}
	for sc.Scan() {
		var l struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || (l.Level != "WARN" && l.Level != "ERROR") {
			continue
		}
		out[l.Level+" "+peerAddr.ReplaceAllString(l.Msg, "ADDR")]++
	}
	return out
}

// peerAddr matches the client addresses net/http's server puts in its
// messages ("TLS handshake error from 127.0.0.1:40122: …"), so that they
// are counted as one message.
var peerAddr = regexp.MustCompile(`\[?[0-9a-fA-F:.]+\]?:[0-9]+`)

// fileSize is the size of path (0 if unknown).
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

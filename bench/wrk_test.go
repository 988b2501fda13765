package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// near reports whether got is within rel (relative) of want.
func near(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)
}

// The testdata files are real wrk 4.1.0 (Debian) outputs against nginx.
func TestParseWrkSamples(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	tests := []struct {
		file     string
		requests int64
		duration time.Duration
		bytes    float64 // approximate unless exact
		rps, bps float64
		errs     WrkErrors
		exact    bool
		p99      time.Duration
		wantErr  string // from Err(); "" for a valid measurement
	}{
		{file: "wrk_index_t1.txt", requests: 157468, duration: 3 * time.Second, bytes: 649.80 * mib,
			rps: 52452.04, bps: 216.45 * mib},
		{file: "wrk_latency.txt", requests: 103380, duration: 2100 * time.Millisecond, bytes: 426.60 * mib,
			rps: 49226.65, bps: 203.14 * mib},
		{file: "wrk_bundle.txt", requests: 59, duration: 3090 * time.Millisecond, bytes: 3.91 * gib,
			rps: 19.10, bps: 1.26 * gib},
		{file: "wrk_index_t2_summary.txt", requests: 160777, duration: 3101966 * time.Microsecond, bytes: 695682079,
			rps: 160777 / 3.101966, bps: 695682079 / 3.101966, exact: true, p99: 3485 * time.Microsecond},
		{file: "wrk_bundle_t2_summary.txt", requests: 71, duration: 2086301 * time.Microsecond, bytes: 4917098706,
			rps: 71 / 2.086301, bps: 4917098706 / 2.086301, exact: true, p99: 595267 * time.Microsecond},
		{file: "wrk_non2xx.txt", requests: 138957, duration: 2100 * time.Millisecond, bytes: 38.96 * mib,
			rps: 66181.09, bps: 18.56 * mib, errs: WrkErrors{Status: 138957}, wantErr: "138957 responses with status >= 400"},
		{file: "wrk_non2xx_summary.txt", requests: 51404, duration: 1099519 * time.Microsecond, bytes: 15112776,
			rps: 51404 / 1.099519, bps: 15112776 / 1.099519, errs: WrkErrors{Status: 51404}, exact: true,
			p99: 369 * time.Microsecond, wantErr: "51404 responses with status >= 400"},
		{file: "wrk_socket_errors.txt", requests: 17, duration: 3040 * time.Millisecond, bytes: 1.23 * gib,
			rps: 5.58, bps: 412.95 * mib, errs: WrkErrors{Read: 8, Write: 81365},
			wantErr: "socket errors: connect 0, read 8, write 81365, timeout 0"},
		{file: "wrk_timeouts.txt", requests: 12, duration: 3160 * time.Millisecond, bytes: 3.16 * gib,
			rps: 3.80, bps: 1.00 * gib, errs: WrkErrors{Timeout: 4}, wantErr: "timeout 4"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseWrk(string(out))
			if err != nil {
				t.Fatalf("ParseWrk: %v", err)
			}
			if r.Requests != tt.requests {
				t.Errorf("Requests = %d, want %d", r.Requests, tt.requests)
			}
			if r.Duration != tt.duration {
				t.Errorf("Duration = %s, want %s", r.Duration, tt.duration)
			}
			rel := 0.005 // two printed decimals
			if tt.exact {
				rel = 1e-12
			}
			if !near(float64(r.Bytes), tt.bytes, rel) {
				t.Errorf("Bytes = %d, want about %.0f", r.Bytes, tt.bytes)
			}
			if !near(r.RequestsPerSec, tt.rps, 1e-9) {
				t.Errorf("RequestsPerSec = %f, want %f", r.RequestsPerSec, tt.rps)
			}
			if !near(r.BytesPerSec, tt.bps, 1e-9) {
				t.Errorf("BytesPerSec = %f, want %f", r.BytesPerSec, tt.bps)
			}
			if r.Errors != tt.errs {
				t.Errorf("Errors = %+v, want %+v", r.Errors, tt.errs)
			}
			if r.Exact != tt.exact {
				t.Errorf("Exact = %v, want %v", r.Exact, tt.exact)
			}
			if r.LatencyP99 != tt.p99 {
				t.Errorf("LatencyP99 = %s, want %s", r.LatencyP99, tt.p99)
			}
			err = r.Err()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Err() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Err() = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseWrkRejects(t *testing.T) {
	index, err := os.ReadFile(filepath.Join("testdata", "wrk_index_t1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	refused, err := os.ReadFile(filepath.Join("testdata", "wrk_connect_refused.txt"))
	if err != nil {
		t.Fatal(err)
	}
	without := func(s, line string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.Contains(l, line) {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	tests := []struct {
		name, out, want string
	}{
		{"connect refused", string(refused), "unable to connect to 127.0.0.1:18099"},
		{"empty", "", "not a finished run"},
		{"usage text", "Usage: wrk <options> <url>\n  Options:\n", "not a finished run"},
		{"no totals", without(string(index), "requests in"), `without "N requests in T, B read"`},
		{"no requests/sec", without(string(index), "Requests/sec"), "without Requests/sec"},
		{"no transfer/sec", without(string(index), "Transfer/sec"), "without Transfer/sec"},
		{"bad rate", strings.Replace(string(index), "52452.04", "fast", 1), `"Requests/sec:  fast"`},
		{"negative rate", strings.Replace(string(index), "52452.04", "-1", 1), "non-negative"},
		{"bad unit", strings.Replace(string(index), "216.45MB", "216.45XB", 1), "byte count"},
		{"bad duration", strings.Replace(string(index), "in 3.00s", "in 3.00d", 1), "duration"},
		{"bad socket errors", string(index) + "  Socket errors: connect 0, read x, write 0, timeout 0\n", "socket error read"},
		{"unknown socket error", string(index) + "  Socket errors: connect 0, flood 3\n", `unknown socket error kind "flood"`},
		{"summary field unknown", string(index) + WrkSummaryPrefix + " duration_us=1 colour=3\n", `summary field "colour=3"`},
		{"summary fields missing", string(index) + WrkSummaryPrefix + " duration_us=1 requests=3\n", "misses 8 fields"},
		{"summary zero duration", string(index) + WrkSummaryPrefix +
			" duration_us=0 requests=1 bytes=1 connect=0 read=0 write=0 status=0 timeout=0 p50_us=1 p99_us=1\n", "want > 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseWrk(tt.out)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseWrk = %+v, %v; want an error containing %q", r, err, tt.want)
			}
		})
	}
}

func TestWrkResultErrNoRequests(t *testing.T) {
	r := WrkResult{Duration: time.Second}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "no request completed") {
		t.Fatalf("Err() = %v, want no request completed", err)
	}
}

func TestWrkScriptPrintsParsableSummary(t *testing.T) {
	// The script's format string must produce what parseWrkSummary reads:
	// every %d key, and the same prefix.
	for _, key := range []string{"duration_us", "requests", "bytes", "connect", "read", "write", "status", "timeout", "p50_us", "p99_us"} {
		if !strings.Contains(WrkScript, " "+key+"=%d") {
			t.Errorf("WrkScript does not print %s=%%d", key)
		}
	}
	if !strings.Contains(WrkScript, `"`+WrkSummaryPrefix+" ") {
		t.Errorf("WrkScript does not start its line with %q", WrkSummaryPrefix)
	}
	if strings.Contains(WrkScript, "request =") || strings.Contains(WrkScript, "response =") {
		t.Error("WrkScript must not define request or response: that makes wrk run Lua per request")
	}
}

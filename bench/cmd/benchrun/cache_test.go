//go:build unix

package main

import (
	"strings"
	"testing"
)

func TestParseH2load(t *testing.T) {
	ok := `finished in 10.00s, 23456.70 req/s, 60.12MB/s
requests: 234567 total, 234567 started, 234567 done, 234567 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 234567 2xx, 0 3xx, 0 4xx, 0 5xx
`
	tests := []struct {
		name, out, err string
		rps            float64
	}{
		{"ok", ok, "", 23456.70},
		{"failures", strings.Replace(ok, "0 failed", "3 failed", 1), "3 failed", 0},
		{"non-2xx", strings.Replace(ok, "0 4xx", "5 4xx", 1), "5 failed", 0},
		{"no summary", "connect error\n", "no summary", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseH2load(tt.out)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || r.ReqPerSec != tt.rps || r.Succeeded != 234567 {
				t.Fatalf("got %+v, %v", r, err)
			}
		})
	}
}

func TestCacheExtraSelected(t *testing.T) {
	for filter, want := range map[string]bool{"cache": true, "stampede": true, "peak RSS": true, "h2": true, "origin": false} {
		if got := cacheExtraSelected(filter); got != want {
			t.Errorf("cacheExtraSelected(%q) = %v, want %v", filter, got, want)
		}
	}
}

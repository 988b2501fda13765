package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestTuneGC: without GOGC the servers run at serverGCPercent and, unless
// GOMEMLIMIT is set, with serverMemoryLimit (without it, an attack's
// garbage took the gateway past its 256 MiB RSS budget); the operator's
// settings win.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(prev); debug.SetMemoryLimit(prevLimit) })
	tests := []struct {
		name      string
		gogc, lim string
		set       bool
		want      int
		wantLimit int64
	}{
		{"GOGC unset", "", "", true, serverGCPercent, serverMemoryLimit},
		{"GOMEMLIMIT set by the operator", "", "1GiB", true, serverGCPercent, math.MaxInt64},
		{"GOGC set by the operator", "50", "", false, 100, math.MaxInt64},
		{"GOGC=off", "off", "", false, 100, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			if got := tuneGC(func(k string) string {
				switch k {
				case "GOGC":
					return tt.gogc
				case "GOMEMLIMIT":
					return tt.lim
				}
				return ""
			}); got != tt.set {
				t.Fatalf("tuneGC = %v, want %v", got, tt.set)
			}
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Fatalf("GC percent %d, want %d", got, tt.want)
			}
			if got := debug.SetMemoryLimit(-1); got != tt.wantLimit {
				t.Fatalf("memory limit %d, want %d", got, tt.wantLimit)
			}
		})
	}
}

// TestMemoryLimitFor: the gateway's memory tier raises the soft limit
// tuneGC set (a 1 GiB tier under a 192 MiB limit would keep the collector
// running back to back), unless the operator chose GOGC or GOMEMLIMIT.
func TestMemoryLimitFor(t *testing.T) {
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit) })
	for _, tt := range []struct {
		name      string
		env       map[string]string
		extra     int64
		wantLimit int64
	}{
		{"memory tier", nil, 1 << 30, serverMemoryLimit + 1<<30},
		{"no memory tier", nil, 0, serverMemoryLimit},
		{"GOMEMLIMIT set by the operator", map[string]string{"GOMEMLIMIT": "1GiB"}, 1 << 30, serverMemoryLimit},
		{"GOGC set by the operator", map[string]string{"GOGC": "100"}, 1 << 30, serverMemoryLimit},
	} {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetMemoryLimit(serverMemoryLimit)
			memoryLimitFor(tt.extra, func(k string) string { return tt.env[k] })
			if got := debug.SetMemoryLimit(-1); got != tt.wantLimit {
				t.Fatalf("memory limit %d, want %d", got, tt.wantLimit)
			}
		})
	}
}

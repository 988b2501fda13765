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

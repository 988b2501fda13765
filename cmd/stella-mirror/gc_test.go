package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	tests := []struct {
		name string
		gogc string
		set  bool
		want int
	}{
		{"GOGC unset", "", true, serverGCPercent},
		{"GOGC set by the operator", "50", false, 100},
		{"GOGC=off", "off", false, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			if got := tuneGC(func(k string) string {
				if k == "GOGC" {
					return tt.gogc
				}
				return ""
			}); got != tt.set {
				t.Fatalf("tuneGC = %v, want %v", got, tt.set)
			}
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Fatalf("GC percent %d, want %d", got, tt.want)
			}
		})
	}
}

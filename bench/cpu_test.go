//go:build linux

package bench

import (
	"os"
	"syscall"
	"testing"
)

func TestParseCPULine(t *testing.T) {
	tests := []struct {
		name        string
		line        string
		busy, total uint64
		ok          bool
	}{
		// user nice system idle iowait irq softirq steal guest guest_nice
		{"kernel 6", "cpu  100 5 50 800 20 3 2 10 40 0", 165, 990, true},
		{"no guest columns", "cpu  100 5 50 800 20 3 2 10", 165, 990, true},
		{"per-cpu line", "cpu0 100 5 50 800 20 3 2 10 0 0", 0, 0, false},
		{"too short", "cpu  1 2 3", 0, 0, false},
		{"garbage", "cpu  1 2 x 4 5 6 7 8", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			busy, total, ok := ParseCPULine(tt.line)
			if busy != tt.busy || total != tt.total || ok != tt.ok {
				t.Errorf("ParseCPULine = %d, %d, %v; want %d, %d, %v", busy, total, ok, tt.busy, tt.total, tt.ok)
			}
		})
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name  string
		stat  string
		pgrp  int
		ticks uint64
		ok    bool
	}{
		{"nginx worker", "4242 (nginx) S 4240 4240 4240 0 -1 4194624 212 0 0 0 173 412 0 0 20 0 1 0 123 10000 200", 4240, 585, true},
		{"comm with ') ' inside", "77 (evil) S 1 2 3) R 1 5 5 0 -1 0 0 0 0 0 7 8 0 0", 5, 15, true},
		{"truncated", "77 (x) S 1 5", 0, 0, false},
		{"no comm", "77 x S 1 5 5 0 -1 0 0 0 0 0 7 8", 0, 0, false},
		{"bad number", "77 (x) S 1 five 5 0 -1 0 0 0 0 0 7 8 0", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pgrp, ticks, ok := ParseProcStat(tt.stat)
			if pgrp != tt.pgrp || ticks != tt.ticks || ok != tt.ok {
				t.Errorf("ParseProcStat = %d, %d, %v; want %d, %d, %v", pgrp, ticks, ok, tt.pgrp, tt.ticks, tt.ok)
			}
		})
	}
}

func TestOtherPercent(t *testing.T) {
	tests := []struct {
		name          string
		before, after CPUSample
		extra         uint64
		want          float64
		wantErr       bool
	}{
		{"all ours", CPUSample{Busy: 0, Total: 0, Groups: 10}, CPUSample{Busy: 150, Total: 200, Groups: 110}, 50, 0, false},
		{"a quarter other", CPUSample{Busy: 0, Total: 0}, CPUSample{Busy: 150, Total: 200, Groups: 60}, 40, 25, false},
		{"never negative", CPUSample{}, CPUSample{Busy: 10, Total: 200, Groups: 50}, 0, 0, false},
		{"out of order", CPUSample{Total: 5}, CPUSample{Total: 5}, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OtherPercent(tt.before, tt.after, tt.extra)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("OtherPercent = %v, %v; want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSampleCPUCountsOwnGroup(t *testing.T) {
	before, err := SampleCPU(syscall.Getpgrp())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU in this process until its tick counter moves; bounded by the
	// number of iterations, not by time.
	var after CPUSample
	for i := 0; i < 2000; i++ {
		x := 0
		for j := range 1_000_000 {
			x += j
		}
		_ = x
		if after, err = SampleCPU(syscall.Getpgrp()); err != nil {
			t.Fatal(err)
		}
		if after.Groups > before.Groups {
			break
		}
	}
	if after.Groups <= before.Groups {
		t.Fatalf("own process group ticks did not grow: %d -> %d (pid %d)", before.Groups, after.Groups, os.Getpid())
	}
	if after.Total <= before.Total || after.Busy < before.Busy {
		t.Fatalf("machine counters did not advance: %+v -> %+v", before, after)
	}
}

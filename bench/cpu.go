package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CPUSample is a snapshot of CPU time in clock ticks (USER_HZ, 100 per
// second on Linux): the whole machine's, and that of some process groups
// (the servers under test). Two samples around a run tell how much CPU
// *other* processes took from it.
type CPUSample struct {
	// Busy and Total are all CPUs' non-idle and total ticks (/proc/stat).
	Busy, Total uint64
	// Groups is user+system ticks of the live processes in the sampled
	// process groups (/proc/<pid>/stat).
	Groups uint64
}

// SampleCPU reads /proc for a CPUSample of the given process groups.
func SampleCPU(pgids ...int) (CPUSample, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUSample{}, fmt.Errorf("sampling cpu: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	busy, total, ok := ParseCPULine(line)
	if !ok {
		return CPUSample{}, fmt.Errorf("sampling cpu: unexpected /proc/stat line %q", line)
	}
	s := CPUSample{Busy: busy, Total: total}
	if len(pgids) == 0 {
		return s, nil
	}
	want := map[int]bool{}
	for _, g := range pgids {
		want[g] = true
	}
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return CPUSample{}, fmt.Errorf("sampling cpu: %w", err)
	}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // exited meanwhile
		}
		if pgrp, ticks, ok := ParseProcStat(string(b)); ok && want[pgrp] {
			s.Groups += ticks
		}
	}
	return s, nil
}

// OtherPercent returns the share of the machine's CPU capacity between two
// samples that went neither to the sampled groups nor to extraTicks (a
// finished child's rusage, e.g. wrk's), in percent. It is the measure of
// how much a run was disturbed.
func OtherPercent(before, after CPUSample, extraTicks uint64) (float64, error) {
	if after.Total <= before.Total || after.Busy < before.Busy {
		return 0, errors.New("cpu samples out of order")
	}
	busy := float64(after.Busy - before.Busy)
	ours := float64(extraTicks)
	if after.Groups > before.Groups {
		ours += float64(after.Groups - before.Groups)
	}
	other := (busy - ours) / float64(after.Total-before.Total) * 100
	return max(0, other), nil
}

// ParseCPULine parses the "cpu" line of /proc/stat: user nice system idle
// iowait irq softirq steal [guest guest_nice]. Busy is user + nice + system
// + steal (steal: the hypervisor gave our time to another guest). irq and
// softirq are left out: on loopback they are mostly the benchmark's own
// packets, which no process is charged for. Guest time is already inside
// user and nice.
func ParseCPULine(line string) (busy, total uint64, ok bool) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		switch i {
		case 0, 1, 2, 7:
			busy += n
		}
	}
	return busy, total, true
}

// ParseProcStat parses /proc/<pid>/stat for the process group and the
// user+system clock ticks. The command name may contain spaces and
// parentheses, so fields are counted from the last ')'.
func ParseProcStat(s string) (pgrp int, ticks uint64, ok bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	// After ") ": state ppid pgrp session tty_nr tpgid flags minflt cminflt
	// majflt cmajflt utime stime …
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, 0, false
	}
	g, err1 := strconv.Atoi(f[2])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return g, ut + st, true
}

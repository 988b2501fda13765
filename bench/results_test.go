package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestNewResult(t *testing.T) {
	tests := []struct {
		name          string
		ours, anchor  float64
		target        float64
		wantRatio     float64
		wantOurs      float64
		wantVerdict   string
		wantErrSubstr string
	}{
		{name: "faster", ours: 1300, anchor: 1250, target: 1.0, wantRatio: 1.04, wantOurs: 1300, wantVerdict: "PASS"},
		{name: "exactly at target after rounding", ours: 79999.6, anchor: 100000, target: 0.8, wantRatio: 0.8, wantOurs: 79999.6, wantVerdict: "PASS"},
		{name: "below", ours: 41234.5678, anchor: 58000, target: 0.8, wantRatio: 0.711, wantOurs: 41234.57, wantVerdict: "BELOW"},
		{name: "zero ours is a result", ours: 0, anchor: 10, target: 1, wantRatio: 0, wantOurs: 0, wantVerdict: "BELOW"},
		{name: "zero anchor", ours: 1, anchor: 0, target: 1, wantErrSubstr: "cannot compare"},
		{name: "NaN anchor", ours: 1, anchor: math.NaN(), target: 1, wantErrSubstr: "cannot compare"},
		{name: "infinite ours", ours: math.Inf(1), anchor: 1, target: 1, wantErrSubstr: "cannot compare"},
		{name: "negative ours", ours: -1, anchor: 1, target: 1, wantErrSubstr: "cannot compare"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewResult("case", "req/s", tt.ours, tt.anchor, "nginx", tt.target)
			if tt.wantErrSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
					t.Fatalf("NewResult = %+v, %v; want error %q", r, err, tt.wantErrSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Ratio != tt.wantRatio || r.Ours != tt.wantOurs || r.Verdict() != tt.wantVerdict {
				t.Errorf("got ratio %v ours %v verdict %s, want %v %v %s", r.Ratio, r.Ours, r.Verdict(), tt.wantRatio, tt.wantOurs, tt.wantVerdict)
			}
			if r.Pass() != (tt.wantVerdict == "PASS") {
				t.Errorf("Pass() = %v with verdict %s", r.Pass(), tt.wantVerdict)
			}
		})
	}
}

func sampleResults(t *testing.T) []Result {
	t.Helper()
	a, err := NewResult("index.json req/s", "req/s", 45000, 50000, "nginx", 0.8)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewResult("bundle 64MiB MB/s", "MB/s", 1500, 1600, "nginx", 1.0)
	if err != nil {
		t.Fatal(err)
	}
	return []Result{a, b}
}

// TestResultsJSONShape pins the acceptance criterion: results.json is a list
// of objects with exactly {case, unit, ours, anchor, anchorName, ratio,
// target}; metadata lives in meta.json.
func TestResultsJSONShape(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	meta := Meta{
		Time:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Versions: map[string]string{"nginx": "nginx version: nginx/1.22.1"},
		Params:   map[string]any{"durationSeconds": 10},
		Runs:     []Run{{Case: "index.json req/s", Server: "nginx", Round: 1, Wrk: WrkResult{Requests: 5, Duration: time.Second, Exact: true}}},
	}
	if err := WriteResults(dir, sampleResults(t), meta); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("results.json is not a JSON list of objects: %v\n%s", err, b)
	}
	if len(list) != 2 {
		t.Fatalf("results.json has %d entries, want 2", len(list))
	}
	wantKeys := []string{"anchor", "anchorName", "case", "ours", "ratio", "target", "unit"}
	for i, obj := range list {
		var keys []string
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, wantKeys) {
			t.Errorf("entry %d keys = %v, want %v", i, keys, wantKeys)
		}
	}
	want := map[string]any{"case": "index.json req/s", "unit": "req/s", "ours": 45000.0, "anchor": 50000.0,
		"anchorName": "nginx", "ratio": 0.9, "target": 0.8}
	if !reflect.DeepEqual(list[0], want) {
		t.Errorf("entry 0 = %v, want %v", list[0], want)
	}

	mb, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatalf("meta.json: %v", err)
	}
	if m["time"] != "2026-01-02T03:04:05Z" {
		t.Errorf("meta time = %v", m["time"])
	}
	runs, ok := m["runs"].([]any)
	if !ok || len(runs) != 1 {
		t.Fatalf("meta runs = %v, want one run", m["runs"])
	}
}

func TestWriteResultsEmptyIsList(t *testing.T) {
	dir := t.TempDir()
	if err := WriteResults(dir, nil, Meta{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "[]" {
		t.Errorf("results.json = %q, want []", got)
	}
}

func TestWriteTable(t *testing.T) {
	rs := sampleResults(t)
	var b bytes.Buffer
	if err := WriteTable(&b, rs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want header + 2:\n%s", len(lines), b.String())
	}
	for _, want := range []string{"case", "ours", "ratio", "target", "verdict"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header %q lacks %q", lines[0], want)
		}
	}
	for i, want := range [][]string{
		{"index.json req/s", "45000.00", "50000.00 (nginx)", "0.900", ">= 0.80", "PASS"},
		{"bundle 64MiB MB/s", "1500.00", "1600.00 (nginx)", "0.938", ">= 1.00", "BELOW"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}
	// Columns line up: "ratio" starts at the same offset in every line.
	col := strings.Index(lines[0], "ratio")
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], "0.9") {
			t.Errorf("ratio column misaligned in %q", l)
		}
	}
}

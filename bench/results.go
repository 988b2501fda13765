package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/stella-ops/stella-mirror/internal/atomicfile"
)

// File names written into the output directory.
const (
	// ResultsFile is the list of Result, the file compared over time.
	ResultsFile = "results.json"
	// MetaFile holds Meta: when, on what and how the results were measured.
	MetaFile = "meta.json"
)

// Result is one benchmark case: our origin against the anchor (nginx) from
// the same run. Its JSON form is one element of results.json.
type Result struct {
	// Case names what was measured, e.g. "index.json req/s".
	Case string `json:"case"`
	// Unit is the unit of Ours and Anchor: "req/s" or "MB/s" (10^6 bytes).
	Unit string `json:"unit"`
	// Ours is the origin's figure; higher is better.
	Ours float64 `json:"ours"`
	// Anchor is the anchor's figure for the same case in the same run.
	Anchor float64 `json:"anchor"`
	// AnchorName names the anchor, "nginx".
	AnchorName string `json:"anchorName"`
	// Ratio is Ours / Anchor, rounded to three decimals.
	Ratio float64 `json:"ratio"`
	// Target is the lowest acceptable Ratio.
	Target float64 `json:"target"`
}

// NewResult returns the Result for a case, rounding the figures to two
// decimals and the ratio to three. The anchor figure must be positive.
func NewResult(name, unit string, ours, anchor float64, anchorName string, target float64) (Result, error) {
	if !(anchor > 0) || math.IsInf(anchor, 0) || !(ours >= 0) || math.IsInf(ours, 0) {
		return Result{}, fmt.Errorf("case %s: cannot compare %v against %s %v", name, ours, anchorName, anchor)
	}
	return Result{
		Case:       name,
		Unit:       unit,
		Ours:       round(ours, 2),
		Anchor:     round(anchor, 2),
		AnchorName: anchorName,
		Ratio:      round(ours/anchor, 3),
		Target:     target,
	}, nil
}

// Pass reports whether the ratio reaches the target.
func (r Result) Pass() bool { return r.Ratio >= r.Target }

// Verdict is "PASS" or "BELOW" (the ratio is under the target).
func (r Result) Verdict() string {
	if r.Pass() {
		return "PASS"
	}
	return "BELOW"
}

func round(f float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(f*p) / p
}

// WriteTable prints the results as an aligned text table.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tunit\tours\tanchor\tratio\ttarget\tverdict\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f (%s)\t%.3f\t>= %.2f\t%s\t\n",
			r.Case, r.Unit, r.Ours, r.Anchor, r.AnchorName, r.Ratio, r.Target, r.Verdict())
	}
	return tw.Flush()
}

// Meta describes a run: when, on what, with which tools and parameters, and
// every raw wrk measurement behind the results.
type Meta struct {
	// Time is when the run started (UTC).
	Time time.Time `json:"time"`
	// Versions of what ran: "stella-mirror", "nginx", "wrk", "go".
	Versions map[string]string `json:"versions"`
	// Host describes the machine: CPU count and model, kernel.
	Host map[string]string `json:"host"`
	// Params are the run parameters (durations, connections, threads, …).
	Params map[string]any `json:"params"`
	// Method says in words how the figures were picked from the runs.
	Method string `json:"method"`
	// Runs are every measured (not warm-up) wrk run in order.
	Runs []Run `json:"runs"`
}

// Run is one measured wrk run against one server.
type Run struct {
	// Case is the Result.Case it belongs to.
	Case string `json:"case"`
	// Server is "stella-mirror" or the anchor's name.
	Server string `json:"server"`
	// Round counts the runs of this case and server from 1.
	Round int `json:"round"`
	// Wrk is what wrk reported.
	Wrk WrkResult `json:"wrk"`
	// OtherCPUPercent is the share of the machine's CPU that processes
	// other than the two servers and wrk used during the run (see
	// OtherPercent); -1 when unknown.
	OtherCPUPercent float64 `json:"otherCpuPercent"`
}

// WriteResults writes dir/results.json (the list of results) and
// dir/meta.json, creating dir. Each file is replaced atomically.
func WriteResults(dir string, results []Result, meta Meta) error {
	if results == nil {
		results = []Result{}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	var errs []error
	for _, f := range []struct {
		name string
		v    any
	}{{ResultsFile, results}, {MetaFile, meta}} {
		b, err := json.MarshalIndent(f.v, "", "  ")
		if err != nil {
			errs = append(errs, fmt.Errorf("encoding %s: %w", f.name, err))
			continue
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), append(b, '\n'), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("writing %s: %w", f.name, err))
		}
	}
	return errors.Join(errs...)
}

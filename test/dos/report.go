//go:build linux

package dos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/stella-ops/stella-mirror/internal/atomicfile"
)

// ResultsFile is the file Run writes into Options.Out.
const ResultsFile = "results.json"

// printTable writes one row per result and the failures below.
func printTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tengine\tgateway\torigin\tpeak RSS MiB\tfds base/peak/after\tfds back (s)\tlegit median ms\tlegit p95 ms\tlegit errors\tload\tcpu s gw/origin/suite/other\tresult")
	for _, r := range results {
		back := "no"
		if r.FDRecoveredSec >= 0 {
			back = fmt.Sprintf("%.1f", r.FDRecoveredSec)
		}
		res := "PASS"
		if !r.Pass {
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%d/%d/%d\t%s\t%.1f\t%.1f\t%d/%d\t%s\t%.1f/%.1f/%.1f/%.1f\t%s\n", r.Scenario, r.Engine,
			upText(r.GatewayUp), upText(r.OriginUp), r.PeakRSSMiB, r.FDBaseline, r.FDPeak, r.FDAfter, back,
			r.LegitMedianMs, r.LegitP95Ms, r.LegitErrors, r.LegitSamples, r.LoadAvg,
			r.GatewayCPUSec, r.OriginCPUSec, r.SuiteCPUSec, r.OtherCPUSec, res)
	}
	tw.Flush()
	for _, r := range results {
		if len(r.Failures) > 0 {
			fmt.Fprintf(w, "FAIL %s (%s): %s\n", r.Scenario, r.Engine, strings.Join(r.Failures, "; "))
		}
		for _, n := range r.Attack.Notes {
			fmt.Fprintf(w, "note %s (%s): %s\n", r.Scenario, r.Engine, n)
		}
	}
}

func upText(up bool) string {
	if up {
		return "up"
	}
	return "DOWN"
}

// writeResults writes results as indented JSON into dir/results.json.
func writeResults(dir string, results []Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ResultsFile), append(b, '\n'), 0o644)
}

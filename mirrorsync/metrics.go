package mirrorsync

import (
	"bytes"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/stella-ops/stella-mirror/internal/atomicfile"
)

// Results of a run, the values of the result label.
const (
	ResultPublished = "published"
	ResultUnchanged = "unchanged"
	ResultVerify    = "verify_failed"
	ResultNoSpace   = "no_space"
	ResultFailed    = "failed"
	// ResultLocked: another run held the root's lock (ErrLocked); this
	// run changed nothing. Several in a row mean a run holds it too long.
	ResultLocked = "locked"
	ResultKilled = "killed"
)

// results lists every value of the result label.
var results = []string{ResultPublished, ResultUnchanged, ResultVerify, ResultNoSpace, ResultFailed, ResultLocked, ResultKilled}

// ResultOf classifies a run's outcome.
func ResultOf(res *Result, err error) string {
	var ve *VerifyError
	switch {
	case errors.As(err, &ve):
		return ResultVerify
	case errors.Is(err, ErrLocked):
		return ResultLocked
	case errors.Is(err, ErrKilled):
		return ResultKilled
	case isNoSpace(err):
		return ResultNoSpace
	case err != nil:
		return ResultFailed
	case res.Skipped || !res.Published:
		return ResultUnchanged
	}
	return ResultPublished
}

// WriteMetrics writes the run's Prometheus textfile to path atomically,
// for node_exporter's textfile collector. st is the state after the run
// (its LastSuccess survives failed runs); a successful run counts as the
// last success even when the state could not be rewritten (full disk).
// ErrKilled as err records a killed previous run (res.Started is when it
// started). The file is about 3 KiB.
func WriteMetrics(path string, res *Result, err error, st State) error {
	if end := res.Started.Add(res.Duration); err == nil && end.After(st.LastSuccess) {
		st.LastSuccess = end
	}
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, v float64) {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "stella_mirror", Subsystem: "sync", Name: name, Help: help})
		g.Set(v)
		reg.MustRegister(g)
	}
	gauge("last_attempt_timestamp_seconds", "When the last sync run started (Unix time).", float64(res.Started.UnixNano())/1e9)
	if !st.LastSuccess.IsZero() {
		gauge("last_success_timestamp_seconds", "When a sync run last ended successfully, published or unchanged (Unix time).", float64(st.LastSuccess.UnixNano())/1e9)
	}
	if !st.LastPublish.IsZero() {
		gauge("last_publish_timestamp_seconds", "When a sync run last published an export (Unix time).", float64(st.LastPublish.UnixNano())/1e9)
	}
	if !st.GeneratedAt.IsZero() {
		gauge("export_generated_timestamp_seconds", "generatedAt of the export the last successful run found current (Unix time).", float64(st.GeneratedAt.Unix()))
	}
	gauge("last_duration_seconds", "Duration of the last sync run.", res.Duration.Seconds())
	gauge("last_downloaded_bytes", "Bytes of export files the last run fetched from the source (indexes excluded).", float64(res.BytesDownloaded))
	gauge("last_index_bytes", "Bytes of indexes the last run read to compute the upstream fingerprint.", float64(res.IndexBytes))
	gauge("last_files_downloaded", "Files the last run fetched from the source.", float64(res.FilesDownloaded))
	gauge("last_files_reused", "Files the last run hard-linked from a published export.", float64(res.FilesReused))
	gauge("last_files_resumed", "Files the last run found intact in staging from an interrupted run.", float64(res.FilesResumed))
	gauge("last_pruned_exports", "Exports the last run removed before downloading because the file system lacked space.", float64(len(res.Pruned)))
	killed := 0.0
	if res.PreviousRunKilled {
		killed = 1
	}
	gauge("previous_run_killed", "1 when the last run found that the run before it was killed before it finished.", killed)
	result := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "stella_mirror", Subsystem: "sync", Name: "last_result",
		Help: "Outcome of the last sync run: 1 for the result that happened, 0 for the others.",
	}, []string{"result"})
	got := ResultOf(res, err)
	for _, r := range results {
		v := 0.0
		if r == got {
			v = 1
		}
		result.WithLabelValues(r).Set(v)
	}
	reg.MustRegister(result)
	mfs, gerr := reg.Gather()
	if gerr != nil {
		return gerr
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return atomicfile.WriteFile(path, buf.Bytes(), 0o644)
}

package statuspage

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MaxTextfile bounds what ReadTextfile reads, in bytes: a sync textfile
// is a few kilobytes.
const MaxTextfile = 1 << 20

// ReadTextfile reads and parses a Prometheus textfile of at most
// MaxTextfile bytes. A missing file's error satisfies
// errors.Is(err, fs.ErrNotExist); errors name the file.
func ReadTextfile(path string) (map[string]*dto.MetricFamily, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sync textfile: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxTextfile+1)); err != nil {
		return nil, fmt.Errorf("sync textfile %s: %w", path, err)
	}
	if buf.Len() > MaxTextfile {
		return nil, fmt.Errorf("sync textfile %s: larger than %d bytes", path, MaxTextfile)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		return nil, fmt.Errorf("sync textfile %s: %w", path, err)
	}
	return mfs, nil
}

// maxStamp is the last second of year 9999 (Unix time), the latest
// instant a time.Time encodes as JSON.
const maxStamp = 253402300799

// ReadSyncTextfile reads the Prometheus textfile a sync run wrote
// (stella-mirror sync --metrics-textfile) with ReadTextfile and returns its
// last result and times. Errors name the file.
func ReadSyncTextfile(path string) (*Sync, error) {
	mfs, err := ReadTextfile(path)
	if err != nil {
		return nil, err
	}
	s := &Sync{Textfile: path}
	stamp := func(name string) time.Time {
		mf := mfs[name]
		if mf == nil || len(mf.Metric) == 0 {
			return time.Time{}
		}
		v, ok := gaugeValue(mf.Metric[0])
		// NaN, ±Inf and stamps past year 9999 (a garbled file) count as
		// unknown: time.Time's JSON encoding refuses such years.
		if !ok || !(v > 0 && v <= maxStamp) {
			return time.Time{}
		}
		sec, frac := math.Modf(v)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC()
	}
	s.LastAttempt = stamp("stella_mirror_sync_last_attempt_timestamp_seconds")
	s.LastSuccess = stamp("stella_mirror_sync_last_success_timestamp_seconds")
	s.LastPublish = stamp("stella_mirror_sync_last_publish_timestamp_seconds")
	s.UpstreamGeneratedAt = stamp("stella_mirror_sync_export_generated_timestamp_seconds")
	if mf := mfs["stella_mirror_sync_last_result"]; mf != nil {
		for _, m := range mf.Metric {
			if v, ok := gaugeValue(m); !ok || v != 1 {
				continue
			}
			for _, l := range m.Label {
				if l.GetName() == "result" {
					s.LastResult = l.GetValue()
				}
			}
		}
	}
	if s.LastAttempt.IsZero() && s.LastResult == "" {
		return nil, fmt.Errorf("sync textfile %s: no stella_mirror_sync_ metrics in it", path)
	}
	return s, nil
}

// gaugeValue is the value of a gauge, or of an untyped sample (a textfile
// without # TYPE lines).
func gaugeValue(m *dto.Metric) (float64, bool) {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case m.Untyped != nil:
		return m.Untyped.GetValue(), true
	}
	return 0, false
}

package mirrorsync_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// TestMetricsLockedResult: a run that found the lock held writes
// last_result{result="locked"} 1 (the alert on a lock held too long
// counts these), not "failed".
func TestMetricsLockedResult(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sync.prom")
	err := &mirrorsync.LockedError{Path: "/srv/exports/.sync.lock"}
	if got := mirrorsync.ResultOf(&mirrorsync.Result{}, err); got != mirrorsync.ResultLocked {
		t.Fatalf("ResultOf = %q, want %q", got, mirrorsync.ResultLocked)
	}
	if werr := mirrorsync.WriteMetrics(path, &mirrorsync.Result{Started: time.Unix(1700000000, 0)}, err, mirrorsync.State{}); werr != nil {
		t.Fatal(werr)
	}
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, want := range []string{`stella_mirror_sync_last_result{result="locked"} 1`, `stella_mirror_sync_last_result{result="failed"} 0`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("textfile lacks %s:\n%s", want, data)
		}
	}
}

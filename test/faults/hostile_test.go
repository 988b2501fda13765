package faults

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export/fixture"
)

// hostileOpts are small exports: the hostile cases are about refusals.
var hostileOpts = fixture.Options{BundleSize: 64 << 10, VEXSize: 4 << 10}

// oversize is how much the oversized object grows beyond what the
// export declares (the issue's "1 GiB declared 4 MiB", scaled down).
const oversize = 32 << 20

// TestHostileSourceFailsLoudly publishes a good export, then a newer one
// whose bundle is missing or far larger than its manifest declares, on
// every source kind. Each run from it must fail loudly — exit 1, a log
// line naming the export and the file, stella_mirror_sync_last_result
// failed or verify_failed — twice in a row (never "nothing new"), keep the
// good export published, and never store more than the declared bytes of
// the object. Issue 16 items 1 (rsync size bound) and 2 (S3: today such an
// export is skipped with exit 0).
func TestHostileSourceFailsLoudly(t *testing.T) {
	cases := []struct {
		name string
		// tamper breaks file of the export in dir.
		tamper func(t *testing.T, path string)
	}{
		{"missing object", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"oversized object", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(bytes.Repeat([]byte(" "), oversize)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, kind := range kinds {
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				src, first := newSource(t, kind, hostileOpts, hostile)
				dest := filepath.Join(t.TempDir(), "exports")
				metrics := filepath.Join(t.TempDir(), "sync.prom")
				if out, err := src.command(dest, "--metrics-textfile", metrics).CombinedOutput(); err != nil {
					t.Fatalf("first sync: %v\n%s", err, out)
				}
				bad := src.write(t, 2, hostileOpts)
				const file = "mirror/primary/bundle.json"
				tc.tamper(t, filepath.Join(bad.Dir, filepath.FromSlash(file)))
				src.publish(t, bad.ExportID)
				if src.sent != nil {
					src.sent.Store(0)
				}
				var declared int64
				for _, f := range append(first.Files, bad.Files...) {
					declared = max(declared, f.SizeBytes)
				}
				for run := 1; run <= 2; run++ {
					cmd := src.command(dest, "--metrics-textfile", metrics)
					var stderr bytes.Buffer
					cmd.Stderr = &stderr
					code := exitCode(cmd.Run())
					log := stderr.String()
					if code != 1 {
						t.Errorf("run %d: exit %d, want 1; log:\n%s", run, code, log)
					}
					if !hasLine(log, bad.ExportID, "primary/bundle.json") {
						t.Errorf("run %d: no log line names export %s and file %s; log:\n%s", run, bad.ExportID, file, log)
					}
					m, _ := os.ReadFile(metrics)
					if !failedResult(string(m)) {
						t.Errorf("run %d: metrics do not record a failure:\n%s", run, m)
					}
					if target, _ := os.Readlink(filepath.Join(dest, "latest")); target != first.ExportID {
						t.Errorf("run %d: latest -> %q, want the good export %s kept", run, target, first.ExportID)
					}
					if src.sent != nil {
						// Bounded by the declared size (--max-size), not sent whole.
						if sent := src.sent.Swap(0); sent >= oversize {
							t.Errorf("run %d: the rsync daemon sent %d bytes: the oversized object was transferred whole", run, sent)
						}
					}
					if big := largestFile(t, dest); big > declared {
						t.Errorf("run %d: the destination holds a %d-byte file; no object of either export is declared larger than %d", run, big, declared)
					}
				}
			})
		}
	}
}

// hasLine reports whether one line of log contains every one of words.
func hasLine(log string, words ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			return true
		}
	}
	return false
}

// failedResult reports whether a sync metrics textfile says the last run
// failed (failed or verify_failed set to 1).
func failedResult(m string) bool {
	return strings.Contains(m, `stella_mirror_sync_last_result{result="failed"} 1`) ||
		strings.Contains(m, `stella_mirror_sync_last_result{result="verify_failed"} 1`)
}

// resultIs reports whether a sync metrics textfile says the last run's
// result was r.
func resultIs(m, r string) bool {
	return strings.Contains(m, fmt.Sprintf(`stella_mirror_sync_last_result{result=%q} 1`, r))
}

// largestFile is the size of the largest regular file under root.
func largestFile(t *testing.T, root string) int64 {
	t.Helper()
	var big int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			big = max(big, fi.Size())
		}
		return nil
	})
	return big
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
	"github.com/stella-ops/stella-mirror/origin/origintest"
)

// TestSyncNewerExportBrokenFailsLoudly: a newer export with a missing or
// oversized bundle, from each source kind, fails the run: exit 1, one
// error-level log line naming the export and the file, the metrics
// textfile says the run failed, and the older export stays published.
// (S3 used to skip such an export with exit 0 and "nothing new".)
func TestSyncNewerExportBrokenFailsLoudly(t *testing.T) {
	bundle := export.BundlePath("primary")
	const gib = 1 << 30
	for _, tc := range []struct {
		kind, fault string
		// result is the last_result label set to 1.
		result string
		// says are further substrings of the error line.
		says []string
	}{
		{"local", "missing", "failed", []string{"no such file"}},
		{"local", "oversized", "verify_failed", []string{"the source has 1073741824 bytes, the index declares"}},
		{"s3", "missing", "verify_failed", []string{"is incomplete", "is missing"}},
		{"s3", "oversized", "verify_failed", []string{"has 8388608 bytes, the index declares"}},
		{"upstream", "missing", "failed", []string{"404"}},
		{"upstream", "oversized", "verify_failed", []string{"the source has 1073741824 bytes, the index declares"}},
		{"upstream", "oversized-chunked", "verify_failed", []string{"more than the", "bytes the index declares"}},
	} {
		t.Run(tc.kind+"/"+tc.fault, func(t *testing.T) {
			root := t.TempDir()
			write, fx1, pub := exportWriter(t, root, 5, 16<<10)
			dst := t.TempDir()
			prom := filepath.Join(t.TempDir(), "sync.prom")
			args := []string{"sync", "--dest", dst, "--public-key", pub, "--log-format", "json", "--metrics-textfile", prom}

			var (
				source   string
				publish  func(fx *fixture.Result) // makes export 2 (with its fault) visible
				served   *sourcetest.ServedBytes
				declared int64
			)
			switch tc.kind {
			case "local":
				source = root
				publish = func(fx *fixture.Result) {
					p := filepath.Join(fx.Dir, filepath.FromSlash(bundle))
					switch tc.fault {
					case "missing":
						os.Remove(p)
					case "oversized":
						if err := os.Truncate(p, gib); err != nil { // sparse: no disk used
							t.Fatal(err)
						}
					}
				}
			case "s3":
				// Objects written an hour ago: past the upload grace, so a
				// missing object is a stopped upload, not one in progress.
				clock := gofakes3.FixedTimeSource(time.Now().Add(-time.Hour))
				srv := httptest.NewServer(gofakes3.New(s3mem.New(s3mem.WithTimeSource(clock)),
					gofakes3.WithTimeSource(clock), gofakes3.WithTimeSkewLimit(0)).Server())
				t.Cleanup(srv.Close)
				c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true, Credentials: aws.AnonymousCredentials{}})
				bucket := "faults"
				if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
					t.Fatal(err)
				}
				put := func(key string, data []byte) {
					if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
						t.Fatal(err)
					}
				}
				publish = func(fx *fixture.Result) {
					for _, f := range fx.Files {
						data, err := os.ReadFile(filepath.Join(fx.Dir, filepath.FromSlash(f.Path)))
						if err != nil {
							t.Fatal(err)
						}
						if fx != fx1 && f.Path == bundle {
							if tc.fault == "missing" {
								continue
							}
							data = make([]byte, 8<<20)
						}
						put("pfx/"+fx.ExportID+"/"+f.Path, data)
					}
				}
				creds := filepath.Join(t.TempDir(), "aws-credentials")
				os.WriteFile(creds, []byte("[default]\naws_access_key_id = k\naws_secret_access_key = s\n"), 0o600)
				t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
				t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
				source = "s3://faults/pfx"
				args = append(args, "--s3-endpoint", srv.URL, "--s3-region", "us-east-1", "--s3-credentials-file", creds)
			case "upstream":
				o := origintest.New(t, root)
				var broken atomic.Value // pinned URL path of export 2's bundle
				broken.Store("")
				served = &sourcetest.ServedBytes{Next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if b := broken.Load().(string); b == "" || r.URL.Path != b {
						o.Handler().ServeHTTP(w, r)
						return
					}
					switch tc.fault {
					case "missing":
						http.NotFound(w, r)
						return
					case "oversized":
						w.Header().Set("Content-Length", strconv.Itoa(gib))
					}
					// A hostile upstream streaming 1 GiB; the run must stop it early.
					zeros := make([]byte, 64<<10)
					for sent := 0; sent < gib; sent += len(zeros) {
						if _, err := w.Write(zeros); err != nil {
							return
						}
					}
				})}
				srv := httptest.NewServer(served)
				t.Cleanup(srv.Close)
				source = srv.URL
				publish = func(fx *fixture.Result) {
					broken.Store(export.ConcelierURLPrefix + fx.ExportID + "/" + bundle)
				}
			}
			args = append(args, "--source", source)
			if tc.kind == "s3" {
				publish(fx1)
			}
			var out, errb bytes.Buffer
			if code := run(args, &out, &errb); code != 0 {
				t.Fatalf("first sync: exit %d\n%s", code, errb.String())
			}

			fx2 := write(2)
			for _, f := range fx2.Files {
				if f.Path == bundle {
					declared = f.SizeBytes
				}
			}
			publish(fx2)
			out.Reset()
			errb.Reset()
			code := run(args, &out, &errb)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, errb.String())
			}
			var errorLines []string
			for _, line := range strings.Split(strings.TrimSpace(errb.String()), "\n") {
				var rec struct{ Level string }
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Errorf("stderr line is not a JSON log record: %q", line)
				}
				if rec.Level == "ERROR" {
					errorLines = append(errorLines, line)
				}
			}
			if len(errorLines) != 1 {
				t.Fatalf("%d error-level log lines, want 1:\n%s", len(errorLines), errb.String())
			}
			says := append([]string{fx2.ExportID, bundle}, tc.says...)
			if strings.HasPrefix(tc.fault, "oversized") && tc.kind != "s3" {
				says = append(says, strconv.FormatInt(declared, 10))
			}
			for _, s := range says {
				if !strings.Contains(errorLines[0], s) {
					t.Errorf("the error line does not say %q:\n%s", s, errorLines[0])
				}
			}
			metrics, err := os.ReadFile(prom)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []string{"published", "unchanged", "failed", "verify_failed"} {
				want := "0"
				if r == tc.result {
					want = "1"
				}
				if line := `stella_mirror_sync_last_result{result="` + r + `"} ` + want; !strings.Contains(string(metrics), line+"\n") {
					t.Errorf("metrics textfile lacks %q:\n%s", line, metrics)
				}
			}
			if target, _ := os.Readlink(filepath.Join(dst, export.LatestLink)); target != fx1.ExportID {
				t.Errorf("latest -> %q, want the older export %s", target, fx1.ExportID)
			}
			if served != nil && strings.HasPrefix(tc.fault, "oversized") {
				// What the upstream managed to write before the run hung up
				// (socket buffers); without the bound it would be 1 GiB.
				if n := served.Bytes("/" + bundle); n > 64<<20 {
					t.Errorf("the upstream wrote %d bytes of the oversized bundle before the run stopped it", n)
				} else {
					t.Logf("the upstream wrote %d bytes of a 1 GiB bundle declared %d before the run stopped it", n, declared)
				}
			}
		})
	}
}

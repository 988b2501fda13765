package upstream_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

// TestBadRangeAnswerFallsBackToFull: a partial download is left by an
// interrupted run, and the upstream (a proxy in front of it) then answers
// every Range request wrongly — a 206 whose Content-Range starts
// elsewhere, or does not parse. The run refuses those bytes, throws the
// partial file away and downloads the file whole (no Range): it used to
// fail every run, forever, on the same partial file.
func TestBadRangeAnswerFallsBackToFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		// contentRange is the answer to "Range: bytes=off-" for a file of
		// size bytes.
		contentRange func(off string, size int64) string
	}{
		{"range from elsewhere", func(_ string, size int64) string { return "bytes 0-99/" + itoa(size) }},
		{"malformed Content-Range", func(string, int64) string { return "bytes x-y/z" }},
		// The range starts right, but the complete length is not the
		// declared size: refused (VerifyError) without reading; since the
		// bytes were to be spliced onto a partial file, the file is
		// fetched once more whole, which then verifies.
		{"complete length wrong", func(off string, size int64) string {
			return "bytes " + off + "-" + itoa(size+999) + "/" + itoa(size+1000)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			fx, size := bigExport(t, src, 1<<20)
			origin := newOrigin(t, src).Handler()
			bad := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Range") == "" {
					origin.ServeHTTP(w, r)
					return
				}
				off := strings.TrimSuffix(strings.TrimPrefix(r.Header.Get("Range"), "bytes="), "-")
				w.Header().Set("Content-Range", tc.contentRange(off, size))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(make([]byte, 100))
			})
			served := &sourcetest.ServedBytes{Next: bad}
			up := httptest.NewServer(served)
			defer up.Close()
			bundle := export.BundlePath("primary")

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_, err := mirrorsync.Run(ctx, mirrorsync.Options{Root: dst, Keys: keys,
				Source: sourcetest.Interrupt(newSource(t, up.URL, nil), bundle, size/2, cancel)})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted run: %v", err)
			}
			part := filepath.Join(dst, export.StagingDir, fx.ExportID, "mirror", "primary", ".bundle.json.part")
			if _, err := os.Stat(part); err != nil {
				t.Fatalf("no partial file after the interrupted run: %v", err)
			}
			served.Reset()
			res, err := run(t, dst, newSource(t, up.URL, nil))
			if err != nil || !res.Published {
				t.Fatalf("run against the bad Range answers: %+v %v", res, err)
			}
			sourcetest.CheckPublished(t, dst, fx)
			// One range request (answered wrongly), then the whole file.
			if r := served.Ranges("/primary/bundle.json"); len(r) != 2 || r[0] != "bytes="+itoa(size/2)+"-" || r[1] != "" {
				t.Errorf("bundle requests' Range headers: %q", r)
			}
			if res.BytesResumed != 0 {
				t.Errorf("%d bytes of the partial file kept; want none", res.BytesResumed)
			}
		})
	}
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}

package s3src_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

// TestS3ObjectGrowsBeforeGET: the listing (what Resolve checked) shows the
// bundle at its declared size, but by the time the run GETs it the object
// has been replaced by one 8 MiB larger. The run fails with a
// VerifyError naming the bundle, reads nothing of the body, and
// publishes nothing; the export already published stays.
func TestS3ObjectGrowsBeforeGET(t *testing.T) {
	served := &sourcetest.ServedBytes{Next: gofakes3.New(s3mem.New()).Server()}
	var (
		once     sync.Once
		endpoint string
		growErr  error
	)
	bundle := export.BundlePath("primary")
	var id2 string
	grow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && id2 != "" && strings.HasSuffix(r.URL.Path, "/"+id2+"/"+bundle) {
			once.Do(func() {
				key := "stella/" + id2 + "/" + bundle
				_, growErr = s3Client(t, endpoint).PutObject(r.Context(), &s3.PutObjectInput{Bucket: aws.String("exports"), Key: &key,
					Body: bytes.NewReader(make([]byte, 8<<20))})
			})
		}
		served.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(grow)
	t.Cleanup(srv.Close)
	endpoint = srv.URL
	newS3(t) // credentials and region in the environment
	src, dst := t.TempDir(), t.TempDir()
	fx1 := writeSource(t, src, 1)
	putTree(t, endpoint, "exports", "stella/", src)
	if res, err := mirrorsync.Run(context.Background(), mirrorsync.Options{Root: dst, Keys: keys, Source: newSource(t, endpoint, "s3://exports/stella")}); err != nil || !res.Published {
		t.Fatalf("first run: %+v %v", res, err)
	}
	os.RemoveAll(filepath.Join(src, fx1.ExportID))
	fx2 := writeSource(t, src, 2)
	putTree(t, endpoint, "exports", "stella/", src)
	id2 = fx2.ExportID
	served.Reset()
	res, err := mirrorsync.Run(context.Background(), mirrorsync.Options{Root: dst, Keys: keys, Source: newSource(t, endpoint, "s3://exports/stella")})
	if growErr != nil {
		t.Fatal(growErr)
	}
	var ve *mirrorsync.VerifyError
	if !errors.As(err, &ve) || ve.Path != bundle || !strings.Contains(err.Error(), "8388608") {
		t.Fatalf("second run: %+v, %v; want a VerifyError for %s naming the 8388608 bytes at the source", res, err, bundle)
	}
	t.Log(err)
	// The server may have pushed some of the body into the socket before
	// the client closed it; what counts is what the run read and stored.
	if res == nil || res.BytesDownloaded >= 8<<20 {
		t.Errorf("result %+v: the grown bundle was read; want it refused before reading", res)
	}
	if ents, _ := filepath.Glob(filepath.Join(dst, ".staging", "*", "mirror", "primary", ".bundle.json.part*")); len(ents) > 0 {
		t.Errorf("a partial download of the grown bundle was kept: %v", ents)
	}
	if l, _ := os.Readlink(filepath.Join(dst, export.LatestLink)); l != fx1.ExportID {
		t.Errorf("latest → %q, want the first export %s", l, fx1.ExportID)
	}
	if _, err := os.Stat(filepath.Join(dst, fx2.ExportID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the grown export was published: %v", err)
	}
}

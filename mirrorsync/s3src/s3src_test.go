package s3src_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/mirrorsync/s3src"
	"github.com/stella-ops/stella-mirror/mirrorsync/sourcetest"
)

var testKey = fixture.DerivedKey(7)

func keys(context.Context) ([]jws.PublicKey, error) {
	return []jws.PublicKey{{Key: testKey.Public().(ed25519.PublicKey)}}, nil
}

// newS3 starts an in-process S3 server (gofakes3) on 127.0.0.1 with one
// bucket and static credentials in the environment.
func newS3(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	return srv.URL
}

func newSource(t *testing.T, endpoint, url string) *s3src.Source {
	t.Helper()
	s, err := s3src.New(context.Background(), s3src.Options{URL: url, Endpoint: endpoint})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// putTree uploads every regular file under dir to bucket/prefix with the
// SDK (creating the bucket).
func putTree(t *testing.T, endpoint, bucket, prefix, dir string) {
	t.Helper()
	c := s3Client(t, endpoint)
	c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket})
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		key := prefix + filepath.ToSlash(rel)
		_, err = c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func s3Client(t *testing.T, endpoint string) *s3.Client {
	return s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		Credentials:                aws.AnonymousCredentials{},
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired})
}

func writeSource(t *testing.T, root string, seed uint64) *fixture.Result {
	t.Helper()
	res, err := fixture.Write(root, fixture.Options{Domains: []string{"primary", "community"}, BundleSize: 32 << 10,
		VEXSize: 4 << 10, Seed: seed, Key: testKey, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestS3SDKUpload(t *testing.T) {
	endpoint := newS3(t)
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	putTree(t, endpoint, "exports", "stella/", src)

	opts := mirrorsync.Options{Root: dst, Source: newSource(t, endpoint, "s3://exports/stella"), Keys: keys}
	res, err := mirrorsync.Run(context.Background(), opts)
	if err != nil || !res.Published {
		t.Fatalf("first sync: %+v %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, fx)
	if res, err = mirrorsync.Run(context.Background(), opts); err != nil || !res.Skipped || res.BytesDownloaded != 0 {
		t.Fatalf("no-op: %+v %v", res, err)
	}

	// A newer export whose upload is incomplete (no bundles yet) is skipped.
	fx2 := writeSource(t, src, 2)
	c := s3Client(t, endpoint)
	for _, f := range fx2.Files {
		if !strings.HasSuffix(f.Path, "bundle.json") {
			data, _ := os.ReadFile(filepath.Join(fx2.Dir, filepath.FromSlash(f.Path)))
			key := "stella/" + fx2.ExportID + "/" + f.Path
			c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("exports"), Key: &key, Body: bytes.NewReader(data)})
		}
	}
	opts.Source = newSource(t, endpoint, "s3://exports/stella")
	if res, err = mirrorsync.Run(context.Background(), opts); err != nil || !res.Skipped {
		t.Fatalf("incomplete upload: %+v %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, fx)
	putTree(t, endpoint, "exports", "stella/", src)
	if res, err = mirrorsync.Run(context.Background(), opts); err != nil || !res.Published {
		t.Fatalf("completed upload: %+v %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, fx2)
}

// TestS3AWSCLIUpload fills the bucket with the real aws CLI (`aws s3
// sync`, which copies latest/ as a directory) and syncs from it.
func TestS3AWSCLIUpload(t *testing.T) {
	awsBin := "/usr/bin/aws"
	if _, err := os.Stat(awsBin); err != nil {
		t.Skip("the aws CLI is not installed (apt-get install awscli)")
	}
	endpoint := newS3(t)
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(awsBin, append([]string{"--endpoint-url", endpoint}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "AWS_CONFIG_FILE=/dev/null", "AWS_PAGER=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("s3", "mb", "s3://cli")
	run("s3", "sync", "--only-show-errors", src, "s3://cli/exports")

	opts := mirrorsync.Options{Root: dst, Source: newSource(t, endpoint, "s3://cli/exports/"), Keys: keys}
	res, err := mirrorsync.Run(context.Background(), opts)
	if err != nil || !res.Published {
		t.Fatalf("sync from the aws-CLI bucket: %+v %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, fx)
}

func TestConformance(t *testing.T) {
	endpoint := newS3(t)
	sourcetest.Run(t, func(t *testing.T, root string) mirrorsync.Source {
		putTree(t, endpoint, "conf", "x/", root)
		return newSource(t, endpoint, "s3://conf/x")
	})
}

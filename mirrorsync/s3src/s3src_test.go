package s3src_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/internal/syncbuf"
	"github.com/stella-ops/stella-mirror/internal/testenv"
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

	// A newer export whose upload is incomplete (no bundles yet): by
	// default a failure naming the export and the file.
	fx2 := writeSource(t, src, 2)
	c := s3Client(t, endpoint)
	for _, f := range fx2.Files {
		if !strings.HasSuffix(f.Path, "bundle.json") {
			data, _ := os.ReadFile(filepath.Join(fx2.Dir, filepath.FromSlash(f.Path)))
			key := "stella/" + fx2.ExportID + "/" + f.Path
			c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("exports"), Key: &key, Body: bytes.NewReader(data)})
		}
	}
	var ve *mirrorsync.VerifyError
	if _, err = mirrorsync.Run(context.Background(), opts); !errors.As(err, &ve) || !strings.Contains(err.Error(), fx2.ExportID+" is incomplete") ||
		!strings.Contains(err.Error(), "bundle.json is missing") {
		t.Fatalf("incomplete upload, no grace: %v", err)
	}
	sourcetest.CheckPublished(t, dst, fx)
	// With an upload grace, an export younger than it is an upload in
	// progress: said at info level, and the previous export is offered.
	var logs syncbuf.Buffer
	s, err := s3src.New(context.Background(), s3src.Options{URL: "s3://exports/stella", Endpoint: endpoint,
		UploadGrace: 10 * time.Minute, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	opts.Source = s
	if res, err = mirrorsync.Run(context.Background(), opts); err != nil || !res.Skipped {
		t.Fatalf("incomplete upload: %+v %v", res, err)
	}
	if l := logs.String(); !strings.Contains(l, "upload in progress") || !strings.Contains(l, "export_id="+fx2.ExportID) ||
		!strings.Contains(l, "missing=mirror/") {
		t.Errorf("no info line about the upload in progress:\n%s", l)
	}
	// The same export past the grace is a stopped upload: a failure.
	s, err = s3src.New(context.Background(), s3src.Options{URL: "s3://exports/stella", Endpoint: endpoint,
		UploadGrace: 10 * time.Minute, Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	opts.Source = s
	if _, err = mirrorsync.Run(context.Background(), opts); !errors.As(err, &ve) || !strings.Contains(err.Error(), fx2.ExportID+" is incomplete") {
		t.Fatalf("stopped upload: %v", err)
	}
	opts.Source = newSource(t, endpoint, "s3://exports/stella")
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
	awsBin := testenv.Tool(t, "aws", "awscli")
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

// TestS3ResumeRangedGET: a run stopped half-way through a bundle leaves a
// .part; the next run asks the S3 server for the rest only (ranged GET).
func TestS3ResumeRangedGET(t *testing.T) {
	served := &sourcetest.ServedBytes{Next: gofakes3.New(s3mem.New()).Server()}
	srv := httptest.NewServer(served)
	t.Cleanup(srv.Close)
	newS3(t) // credentials and region in the environment
	src, dst := t.TempDir(), t.TempDir()
	fx, err := fixture.Write(src, fixture.Options{Domains: []string{"primary"}, BundleSize: 4 << 20, VEXSize: 4 << 10,
		Seed: 1, Key: testKey, SetLatest: true})
	if err != nil {
		t.Fatal(err)
	}
	putTree(t, srv.URL, "exports", "stella/", src)
	bundle := export.BundlePath("primary")
	var size int64
	for _, f := range fx.Files {
		if f.Path == bundle {
			size = f.SizeBytes
		}
	}
	cut := size/2 + 7

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = mirrorsync.Run(ctx, mirrorsync.Options{Root: dst, Keys: keys,
		Source: sourcetest.Interrupt(newSource(t, srv.URL, "s3://exports/stella"), bundle, cut, cancel)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	served.Reset()
	res, err := mirrorsync.Run(context.Background(), mirrorsync.Options{Root: dst, Keys: keys,
		Source: newSource(t, srv.URL, "s3://exports/stella")})
	if err != nil || !res.Published {
		t.Fatalf("resumed run: %+v %v", res, err)
	}
	sourcetest.CheckPublished(t, dst, fx)
	got := served.Bytes("/" + bundle)
	t.Logf("bundle %d bytes, interrupted at %d: the second run fetched %d bytes of it", size, cut, got)
	if got != size-cut || res.BytesResumed != cut {
		t.Errorf("second run: %d bundle bytes served, %d resumed; want %d and %d", got, res.BytesResumed, size-cut, cut)
	}
	if r := served.Ranges("/" + bundle); len(r) != 1 || r[0] != fmt.Sprintf("bytes=%d-", cut) {
		t.Errorf("bundle requests' Range headers: %q", r)
	}
}

// TestS3CandidateRule checks Resolve's choice when the newest export's
// listing disagrees with its indexes (see the package documentation).
func TestS3CandidateRule(t *testing.T) {
	src := t.TempDir()
	fx1 := writeSource(t, src, 1)
	fx2 := writeSource(t, src, 2)
	bundle := export.BundlePath("primary")
	var vex string
	for _, f := range fx2.Files {
		if strings.HasPrefix(f.Path, "excititor/primary/exports/") && !strings.HasSuffix(f.Path, export.SignatureSuffix) {
			vex = f.Path
		}
	}
	if vex == "" {
		t.Fatal("no Excititor export in the fixture")
	}
	later := func() time.Time { return time.Now().Add(time.Hour) }
	for _, tc := range []struct {
		name   string
		change map[string][]byte // rel path of export 2 → new bytes; nil removes
		grace  time.Duration
		now    func() time.Time
		want   string // the export offered, or
		err    string // the error
		logged string
	}{
		{name: "complete", want: fx2.ExportID},
		{name: "bundle missing, no grace", change: map[string][]byte{bundle: nil},
			err: fx2.ExportID + " is incomplete: s3://exports/stella/" + fx2.ExportID + "/" + bundle + " is missing"},
		{name: "bundle missing, young index", change: map[string][]byte{bundle: nil}, grace: 10 * time.Minute, want: fx1.ExportID,
			logged: "missing=" + bundle},
		{name: "bundle missing, old index", change: map[string][]byte{bundle: nil}, grace: 10 * time.Minute, now: later,
			err: fx2.ExportID + " is incomplete: s3://exports/stella/" + fx2.ExportID + "/" + bundle + " is missing"},
		{name: "excititor export missing, no grace", change: map[string][]byte{vex: nil},
			err: fx2.ExportID + "/" + vex + " is missing"},
		{name: "excititor export missing, old index", change: map[string][]byte{vex: nil}, grace: 10 * time.Minute, now: later,
			err: fx2.ExportID + "/" + vex + " is missing"},
		{name: "excititor export missing, young index", change: map[string][]byte{vex: nil}, grace: 10 * time.Minute, want: fx1.ExportID,
			logged: "missing=" + vex},
		{name: "bundle oversized", change: map[string][]byte{bundle: make([]byte, 1<<20)},
			err: "has 1048576 bytes, the index declares"},
		{name: "index unparseable", change: map[string][]byte{export.IndexPath: []byte("{")}, want: fx2.ExportID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			endpoint := newS3(t)
			putTree(t, endpoint, "exports", "stella/", src)
			c := s3Client(t, endpoint)
			for rel, data := range tc.change {
				key := "stella/" + fx2.ExportID + "/" + rel
				var err error
				if data == nil {
					_, err = c.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String("exports"), Key: &key})
				} else {
					_, err = c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("exports"), Key: &key, Body: bytes.NewReader(data)})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			var logs syncbuf.Buffer
			s, err := s3src.New(context.Background(), s3src.Options{URL: "s3://exports/stella", Endpoint: endpoint,
				UploadGrace: tc.grace, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: tc.now})
			if err != nil {
				t.Fatal(err)
			}
			id, err := s.Resolve(context.Background())
			if tc.err != "" {
				var ve *mirrorsync.VerifyError
				if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Resolve: %q, %v; want a VerifyError containing %q", id, err, tc.err)
				}
				return
			}
			if err != nil || id != tc.want {
				t.Fatalf("Resolve: %q, %v; want %s", id, err, tc.want)
			}
			if tc.logged != "" && (!strings.Contains(logs.String(), "upload in progress") || !strings.Contains(logs.String(), tc.logged)) {
				t.Errorf("log lacks the upload-in-progress line with %q:\n%s", tc.logged, logs.String())
			}
		})
	}
}

// TestS3EndpointLocalhostName: an S3 endpoint named s3.localhost (RFC 6761
// §6.3, as the demo's and compose's *.localhost names) is dialled on
// loopback, as sync's upstream source, smoke and healthcheck do, instead
// of failing with "no such host" from the system resolver.
func TestS3EndpointLocalhostName(t *testing.T) {
	endpoint := newS3(t)
	src, dst := t.TempDir(), t.TempDir()
	fx := writeSource(t, src, 1)
	putTree(t, endpoint, "exports", "stella/", src)
	named := strings.Replace(endpoint, "127.0.0.1", "s3-upstream.localhost", 1)
	opts := mirrorsync.Options{Root: dst, Source: newSource(t, named, "s3://exports/stella"), Keys: keys}
	res, err := mirrorsync.Run(context.Background(), opts)
	if err != nil || !res.Published {
		t.Fatalf("sync from %s: %+v %v", named, res, err)
	}
	sourcetest.CheckPublished(t, dst, fx)
}

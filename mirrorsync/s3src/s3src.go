// Package s3src is the mirrorsync source for an S3 bucket prefix holding
// export directories as the origin reads them (<prefix>/<exportId>/…), on
// AWS or any S3-compatible store (MinIO, Ceph RGW, Garage, SeaweedFS, …).
//
// It offers the newest complete export: among the prefix's export
// directories whose mirror/index.json exists, newest by that object's
// LastModified (ties by name), the first whose every file the index
// references is present with the declared size (an upload in progress is
// skipped). A `latest` prefix (what `aws s3 sync` makes of a symlink) is
// ignored.
//
// It uses aws-sdk-go-v2 with request checksums and response checksum
// validation set to "when required": the SDK's default CRC32 checksums
// break several S3-compatible stores, and every file is verified against
// its sha256 digest anyway. Objects are streamed (GetObject bodies are
// never buffered whole).
package s3src

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

var _ mirrorsync.Source = (*Source)(nil)

// Options configure a Source. The zero value of every field means the
// default written beside it.
type Options struct {
	// URL is s3://bucket[/prefix]. Required.
	URL string
	// Endpoint is the S3 API endpoint. Default: AWS_ENDPOINT_URL (read by
	// the SDK), else AWS.
	Endpoint string
	// Region is the signing region. Default: the SDK's (AWS_REGION, the
	// profile), else us-east-1.
	Region string
	// PathStyle forces path-style (true) or virtual-host (false)
	// addressing. Default: path-style when an endpoint is configured.
	PathStyle *bool
	// Profile is the shared-config profile. Default: the SDK's.
	Profile string
	// CredentialsFile is a shared credentials file. Default: the SDK's
	// chain (environment, ~/.aws/credentials, web identity, instance role).
	CredentialsFile string
	// Timeout bounds connecting and waiting for response headers.
	// Default: 30s.
	Timeout time.Duration
}

// Source is an S3 prefix of export directories.
type Source struct {
	bucket, prefix string // prefix is "" or ends in "/"
	url            string
	client         *s3.Client

	listing map[string]int64 // keys under the prefix → size, from Resolve
}

// New parses opts.URL and builds the S3 client.
func New(ctx context.Context, opts Options) (*Source, error) {
	rest, ok := strings.CutPrefix(opts.URL, "s3://")
	bucket, prefix, _ := strings.Cut(rest, "/")
	if !ok || bucket == "" {
		return nil, fmt.Errorf("S3 source %q: want s3://bucket/prefix", opts.URL)
	}
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		prefix += "/"
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
		t.ResponseHeaderTimeout = timeout
		t.TLSHandshakeTimeout = timeout
	}).WithDialerOptions(func(d *net.Dialer) { d.Timeout = timeout })
	load := []func(*config.LoadOptions) error{config.WithHTTPClient(httpClient)}
	if opts.Region != "" {
		load = append(load, config.WithRegion(opts.Region))
	}
	if opts.Profile != "" {
		load = append(load, config.WithSharedConfigProfile(opts.Profile))
	}
	if opts.CredentialsFile != "" {
		load = append(load, config.WithSharedCredentialsFiles([]string{opts.CredentialsFile}))
	}
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("S3 configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	cfg.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	cfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	endpoint := opts.Endpoint
	if endpoint == "" && cfg.BaseEndpoint != nil {
		endpoint = *cfg.BaseEndpoint
	}
	pathStyle := endpoint != ""
	if opts.PathStyle != nil {
		pathStyle = *opts.PathStyle
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = pathStyle
	})
	return &Source{bucket: bucket, prefix: prefix, url: "s3://" + bucket + "/" + prefix, client: client}, nil
}

// String returns s3://bucket/prefix/.
func (s *Source) String() string { return s.url }

// Resolve lists the prefix and returns the newest complete export.
func (s *Source) Resolve(ctx context.Context) (string, error) {
	type obj struct {
		size int64
		mod  time.Time
	}
	objs := map[string]obj{}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &s.prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("listing %s: %w", s.url, err)
		}
		for _, o := range page.Contents {
			objs[strings.TrimPrefix(aws.ToString(o.Key), s.prefix)] = obj{aws.ToInt64(o.Size), aws.ToTime(o.LastModified)}
		}
	}
	s.listing = make(map[string]int64, len(objs))
	var cands []mirrorsync.Candidate
	for k, o := range objs {
		s.listing[k] = o.size
		if id, rest, ok := strings.Cut(k, "/"); ok && rest == export.IndexPath && export.ValidExportID(id) {
			cands = append(cands, mirrorsync.Candidate{ID: id, Marker: o.mod})
		}
	}
	for len(cands) > 0 {
		id := mirrorsync.Newest(cands)
		complete, err := s.complete(ctx, id)
		if err != nil {
			return "", err
		}
		if complete {
			return id, nil
		}
		cands = slices.DeleteFunc(cands, func(c mirrorsync.Candidate) bool { return c.ID == id })
	}
	return "", fmt.Errorf("no complete export under %s: %w", s.url, fs.ErrNotExist)
}

// complete reports whether every file export id's index references is
// listed with its declared size.
func (s *Source) complete(ctx context.Context, id string) (bool, error) {
	rc, err := s.Open(ctx, id, export.IndexPath)
	if err != nil {
		return false, err
	}
	data, err := io.ReadAll(io.LimitReader(rc, 32<<20))
	rc.Close()
	if err != nil {
		return false, err
	}
	ix, err := export.ParseIndex(data)
	if err != nil {
		return false, nil // the engine reports a malformed index of the chosen export
	}
	has := func(rel string, size int64) bool {
		n, ok := s.listing[id+"/"+rel]
		return ok && (size < 0 || n == size)
	}
	for _, d := range ix.Domains {
		if !has(d.Manifest.Path, d.Manifest.SizeBytes) || !has(d.Bundle.Path, d.Bundle.SizeBytes) ||
			d.Bundle.Signature != nil && !has(d.Bundle.Signature.Path, -1) {
			return false, nil
		}
	}
	return true, nil
}

// Open streams object <prefix><id>/<rel>.
func (s *Source) Open(ctx context.Context, id, rel string) (io.ReadCloser, error) {
	if !export.ValidExportID(id) {
		return nil, fmt.Errorf("export id %q: invalid", id)
	}
	if err := export.ValidateRelPath(rel); err != nil {
		return nil, err
	}
	key := s.prefix + id + "/" + rel
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		var nsk *types.NoSuchKey
		var api smithy.APIError
		if errors.As(err, &nsk) || errors.As(err, &api) && (api.ErrorCode() == "NotFound" || api.ErrorCode() == "NoSuchKey") {
			return nil, fmt.Errorf("s3://%s/%s: %w", s.bucket, key, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("s3://%s/%s: %w", s.bucket, key, err)
	}
	return out.Body, nil
}

// ExcititorDomains lists the domains with an excititor index in the listing.
func (s *Source) ExcititorDomains(ctx context.Context, id string) ([]string, error) {
	var ds []string
	for k := range s.listing {
		rest, ok := strings.CutPrefix(k, id+"/excititor/")
		if !ok {
			continue
		}
		if d, name, ok := strings.Cut(rest, "/"); ok && name == "index.json" && export.ValidDomainID(d) {
			ds = append(ds, d)
		}
	}
	slices.Sort(ds)
	return ds, nil
}

// Package s3src is the mirrorsync source for an S3 bucket prefix holding
// export directories as the origin reads them (<prefix>/<exportId>/…), on
// AWS or any S3-compatible store (MinIO, Ceph RGW, Garage, SeaweedFS, …).
//
// Which export it offers (Resolve): the candidates are the prefix's export
// directories whose mirror/index.json exists, newest first by that
// object's LastModified (ties by name). The newest is THE candidate, and
// its listing is checked against its index:
//
//   - an object listed with another size than the index declares fails
//     the run (*mirrorsync.VerifyError naming the export, the file, the
//     listed and the declared size): S3 writes an object whole, so a wrong
//     size is never an upload in progress;
//   - a referenced object (of mirror/index.json, or of an Excititor index
//     in the listing) that is missing fails the run (*mirrorsync.VerifyError
//     naming the export and the file): the upload stopped or is still
//     running, and an operator must know; the next run syncs it once it is
//     complete;
//   - only with Options.UploadGrace set (off by default; SYNC__S3__UPLOADGRACE)
//     is a missing object in an export whose index is younger than the
//     grace an upload in progress: one info line ("upload in progress")
//     names the export and the file, and the next older candidate is
//     checked by the same rules;
//   - an index that does not parse is offered as it is, and the engine's
//     check of it fails the run.
//
// Publishers should upload the index last; then an export is never seen
// incomplete. A `latest` prefix (what `aws s3 sync` makes of a symlink) is
// ignored.
//
// Interrupted downloads resume (mirrorsync.RangeOpener) with a ranged GET,
// "Range: bytes=N-", guarded by If-Match with the object's ETag.
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
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/internal/httprange"
	"github.com/stella-ops/stella-mirror/internal/loopname"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

var (
	_ mirrorsync.Source      = (*Source)(nil)
	_ mirrorsync.RangeOpener = (*Source)(nil)
)

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
	// UploadGrace is how long after its index was written an export with
	// missing objects counts as an upload in progress (the previous export
	// is offered) rather than a failure. Default: 0, a missing object
	// always fails the run (publishers should upload the index last).
	UploadGrace time.Duration
	// Logger receives the "upload in progress" line; nil discards it.
	Logger *slog.Logger
	// Now is the clock UploadGrace is measured with. Default: time.Now.
	Now func() time.Time
}

// Source is an S3 prefix of export directories.
type Source struct {
	bucket, prefix string // prefix is "" or ends in "/"
	url            string
	client         *s3.Client
	conns          *connSet // what client dialed, for CloseIdleConnections
	grace          time.Duration
	log            *slog.Logger
	now            func() time.Time

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
	conns := &connSet{m: map[*trackedConn]struct{}{}}
	httpClient := awshttp.NewBuildableClient().WithDialerOptions(func(d *net.Dialer) { d.Timeout = timeout }).
		WithTransportOptions(func(t *http.Transport) {
			t.ResponseHeaderTimeout = timeout
			t.TLSHandshakeTimeout = timeout
			// After the dialer's: it sets DialContext. An endpoint named
			// localhost or *.localhost dials loopback (RFC 6761 §6.3), never
			// through a proxy, as sync's other network sources do.
			t.DialContext = conns.track(loopname.Wrap(t.DialContext))
			t.Proxy = loopname.NoProxy(t.Proxy)
		})
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
	src := &Source{bucket: bucket, prefix: prefix, url: "s3://" + bucket + "/" + prefix, client: client, conns: conns,
		grace: opts.UploadGrace, log: opts.Logger, now: opts.Now}
	if src.grace < 0 {
		return nil, fmt.Errorf("S3 upload grace %s: must not be negative", src.grace)
	}
	if src.log == nil {
		src.log = slog.New(slog.DiscardHandler)
	}
	if src.now == nil {
		src.now = time.Now
	}
	return src, nil
}

// CloseIdleConnections closes every connection the source's S3 client
// opened, so a process that builds a source per run (sync --every) holds
// none of a finished run: the SDK's client does not expose its
// transport's idle pool. Call it only when no request is in flight (after
// a run); a later request dials anew.
func (s *Source) CloseIdleConnections() { s.conns.closeAll() }

// connSet is the set of open connections a client dialed.
type connSet struct {
	mu sync.Mutex
	m  map[*trackedConn]struct{}
}

// track wraps dial so that every connection it returns is in the set
// until it is closed.
func (cs *connSet) track(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, set: cs}
		cs.mu.Lock()
		cs.m[tc] = struct{}{}
		cs.mu.Unlock()
		return tc, nil
	}
}

func (cs *connSet) closeAll() {
	cs.mu.Lock()
	all := make([]*trackedConn, 0, len(cs.m))
	for c := range cs.m {
		all = append(all, c)
	}
	cs.mu.Unlock()
	for _, c := range all {
		c.Close()
	}
}

// trackedConn leaves its set when closed.
type trackedConn struct {
	net.Conn
	set *connSet
}

func (c *trackedConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.m, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// String returns s3://bucket/prefix/.
func (s *Source) String() string { return s.url }

// Resolve lists the prefix and returns the export to sync, by the rule in
// the package documentation.
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
		written := objs[id+"/"+export.IndexPath].mod
		missing, err := s.missing(ctx, id)
		if err != nil {
			return "", err
		}
		if missing == "" {
			return id, nil
		}
		age := s.now().Sub(written)
		if age >= s.grace {
			return "", &mirrorsync.VerifyError{Path: missing, Reason: fmt.Sprintf(
				"export %s is incomplete: %s%s/%s is missing, and its index was written %s ago (upload the index last; an upload in progress gets SYNC__S3__UPLOADGRACE, now %s)",
				id, s.url, id, missing, age.Round(time.Second), s.grace)}
		}
		s.log.Info("upload in progress: the newest export is incomplete; offering the previous one",
			"source", s.url, "export_id", id, "missing", missing, "index_age_s", age.Seconds(), "grace", s.grace.String())
		cands = slices.DeleteFunc(cands, func(c mirrorsync.Candidate) bool { return c.ID == id })
	}
	return "", fmt.Errorf("no complete export under %s: %w", s.url, fs.ErrNotExist)
}

// missing checks the listing of export id against its index: it returns
// the first referenced file that is not listed ("" when none is), and a
// *mirrorsync.VerifyError for a file listed with another size than the
// index declares. An index that does not parse counts as complete: the
// engine reports it.
func (s *Source) missing(ctx context.Context, id string) (string, error) {
	rc, err := s.Open(ctx, id, export.IndexPath)
	if err != nil {
		return "", err
	}
	data, err := io.ReadAll(io.LimitReader(rc, 32<<20))
	rc.Close()
	if err != nil {
		return "", fmt.Errorf("s3://%s/%s%s/%s: %w", s.bucket, s.prefix, id, export.IndexPath, err)
	}
	ix, err := export.ParseIndex(data)
	if err != nil {
		return "", nil
	}
	type ref struct {
		rel  string
		size int64
	}
	var refs []ref
	for _, d := range ix.Domains {
		refs = append(refs, ref{d.Manifest.Path, d.Manifest.SizeBytes}, ref{d.Bundle.Path, d.Bundle.SizeBytes})
		if d.Bundle.Signature != nil {
			refs = append(refs, ref{d.Bundle.Signature.Path, -1})
		}
	}
	// Each Excititor index in the listing references its exports too.
	for _, d := range s.excititorDomains(id) {
		rel := export.ExcititorIndexPath(d)
		rc, err := s.Open(ctx, id, rel)
		if err != nil {
			return "", err
		}
		data, err := io.ReadAll(io.LimitReader(rc, 32<<20))
		rc.Close()
		if err != nil {
			return "", fmt.Errorf("s3://%s/%s%s/%s: %w", s.bucket, s.prefix, id, rel, err)
		}
		xi, err := export.ParseExcititorIndex(data)
		if err != nil {
			continue // the engine reports it
		}
		for _, e := range xi.Exports {
			if !export.ValidExportKey(e.ExportKey) {
				continue
			}
			refs = append(refs, ref{export.ExcititorExportPath(d, e.ExportKey), e.SizeBytes})
			if e.Signature != nil {
				refs = append(refs, ref{e.Signature.Path, -1})
			}
		}
	}
	first := ""
	for _, f := range refs {
		n, ok := s.listing[id+"/"+f.rel]
		switch {
		case !ok && first == "":
			first = f.rel
		case ok && f.size >= 0 && n != f.size:
			return "", &mirrorsync.VerifyError{Path: f.rel, Reason: fmt.Sprintf(
				"export %s: %s%s/%s has %d bytes, the index declares %d", id, s.url, id, f.rel, n, f.size)}
		case ok && f.size < 0 && n > jws.MaxSignatureSize:
			return "", &mirrorsync.VerifyError{Path: f.rel, Reason: fmt.Sprintf(
				"export %s: %s%s/%s has %d bytes, more than the %d a signature may have", id, s.url, id, f.rel, n, jws.MaxSignatureSize)}
		}
	}
	return first, nil
}

// Open streams object <prefix><id>/<rel>. The reader reports the
// object's size (mirrorsync.Sizer) and ETag (mirrorsync.Validator).
func (s *Source) Open(ctx context.Context, id, rel string) (io.ReadCloser, error) {
	rc, _, err := s.get(ctx, id, rel, 0, "")
	return rc, err
}

// OpenFrom streams object <prefix><id>/<rel> from offset on (a ranged
// GET, "Range: bytes=offset-", with If-Match: validator when one is
// given). An object that changed since (412) or no longer reaches offset
// (416) is streamed whole; start is then 0.
func (s *Source) OpenFrom(ctx context.Context, id, rel string, offset int64, validator string) (io.ReadCloser, int64, error) {
	rc, start, err := s.get(ctx, id, rel, offset, validator)
	var api smithy.APIError
	if offset > 0 && errors.As(err, &api) && (api.ErrorCode() == "PreconditionFailed" || api.ErrorCode() == "InvalidRange") {
		return s.get(ctx, id, rel, 0, "")
	}
	return rc, start, err
}

func (s *Source) get(ctx context.Context, id, rel string, offset int64, validator string) (io.ReadCloser, int64, error) {
	if !export.ValidExportID(id) {
		return nil, 0, fmt.Errorf("export id %q: invalid", id)
	}
	if err := export.ValidateRelPath(rel); err != nil {
		return nil, 0, err
	}
	key := s.prefix + id + "/" + rel
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
		if validator != "" {
			in.IfMatch = aws.String(validator)
		}
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		var nsk *types.NoSuchKey
		var api smithy.APIError
		if errors.As(err, &nsk) || errors.As(err, &api) && (api.ErrorCode() == "NotFound" || api.ErrorCode() == "NoSuchKey") {
			return nil, 0, fmt.Errorf("s3://%s/%s: %w", s.bucket, key, fs.ErrNotExist)
		}
		return nil, 0, fmt.Errorf("s3://%s/%s: %w", s.bucket, key, err)
	}
	obj := &object{ReadCloser: out.Body, size: -1, etag: aws.ToString(out.ETag)}
	if out.ContentLength != nil {
		obj.size = *out.ContentLength
	}
	if offset == 0 || out.ContentRange == nil {
		// A store that ignores Range sends the whole object.
		return obj, 0, nil
	}
	cr, err := httprange.Parse(*out.ContentRange)
	if err == nil && cr.First != offset {
		err = fmt.Errorf("asked for the bytes from %d on, got Content-Range %q", offset, *out.ContentRange)
	}
	if err != nil {
		out.Body.Close()
		return nil, 0, fmt.Errorf("s3://%s/%s: ranged GET: %w (%w)", s.bucket, key, err, mirrorsync.ErrBadRange)
	}
	obj.size = cr.Complete
	return obj, cr.First, nil
}

// object is a GetObject body with what its response said of the object.
type object struct {
	io.ReadCloser
	size int64
	etag string
}

// Size returns the object's size; -1 when unknown.
func (o *object) Size() int64 { return o.size }

// Validator returns the object's ETag.
func (o *object) Validator() string { return o.etag }

// ExcititorDomains lists the domains with an excititor index in the listing.
func (s *Source) ExcititorDomains(ctx context.Context, id string) ([]string, error) {
	return s.excititorDomains(id), nil
}

func (s *Source) excititorDomains(id string) []string {
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
	return ds
}

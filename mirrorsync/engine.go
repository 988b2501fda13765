package mirrorsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/jws"
)

// DefaultKeep is how many exports a run keeps by default.
const DefaultKeep = 3

// MinKeep is the fewest exports a run keeps: the published one and the one
// before it, which clients that read the previous index still fetch by its
// export-pinned URLs during the grace period after a switch.
const MinKeep = 2

// trashDir holds exports being removed; it is emptied by every run.
const trashDir = ".trash"

// Options configure one Run. The zero value of every field means the
// default written beside it.
type Options struct {
	// Root is the export root the origin serves. Required; created if
	// missing.
	Root string
	// Source is where exports come from. Required.
	Source Source
	// Keys returns the trusted verification keys. It is called once per
	// run that verifies anything. Required unless SkipSignatures is set.
	Keys func(ctx context.Context) ([]jws.PublicKey, error)
	// SkipSignatures disables JWS verification (digests are still
	// verified). Default: false. Only for sources without signatures.
	SkipSignatures bool
	// ExpectKeyID, when set, rejects any signature whose kid differs.
	// Default: any kid the keys carry.
	ExpectKeyID string
	// ExpectProvider, when set, rejects any signature whose declared
	// provider differs. Default: any provider.
	ExpectProvider string
	// Domains restricts the run to these domain ids (the written index
	// lists only them). Default: every domain of the source's export.
	Domains []string
	// Keep is how many exports to keep in Root, the published one
	// included; at least MinKeep (2). Default: DefaultKeep (3).
	Keep int
	// Force re-fetches the indexes and re-verifies everything even when
	// the upstream fingerprint is unchanged. Default: false.
	Force bool
	// Logger receives progress; nil discards.
	Logger *slog.Logger
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Started, when set, is called once the run holds the lock, before
	// any work, with the Result so far (PreviousRunKilled is known).
	// Default: nil.
	Started func(*Result)

	// wrapWriter, when set, wraps every file write (tests inject disk
	// full through it).
	wrapWriter func(io.Writer) io.Writer
	// statfs, when set, replaces the free-space query (tests).
	statfs func(dir string) (avail, block uint64, err error)
}

// Result describes a finished run.
type Result struct {
	// ExportID is the source's export.
	ExportID string
	// GeneratedAt is that export's generatedAt.
	GeneratedAt time.Time
	// Fingerprint is the upstream fingerprint.
	Fingerprint string
	// Skipped is true when nothing changed upstream and no work was done.
	Skipped bool
	// Published is true when ROOT/latest now names a newly published export.
	Published bool
	// BytesDownloaded counts the bytes of export files fetched from the
	// source (zero when nothing changed).
	BytesDownloaded int64
	// IndexBytes counts the bytes of the indexes read to compute the
	// fingerprint (every run reads them).
	IndexBytes int64
	// FilesDownloaded, FilesReused (hard-linked from a published export)
	// and FilesResumed (found intact in the staging directory).
	FilesDownloaded, FilesReused, FilesResumed int
	// BytesResumed counts the bytes of partial downloads left by an
	// interrupted transfer that were kept, not fetched again (they are
	// not in BytesDownloaded).
	BytesResumed int64
	// Removed lists the exports retention removed.
	Removed []string
	// Pruned lists the exports removed before downloading because the
	// file system lacked space (see SpaceError).
	Pruned []string
	// PreviousRunKilled is set when the run before this one took the lock
	// and never finished (SIGKILL, crash, power loss); PreviousRunStarted
	// is when it started.
	PreviousRunKilled  bool
	PreviousRunStarted time.Time
	// Started and Duration time the run.
	Started  time.Time
	Duration time.Duration
}

// run is the state of one Run.
type run struct {
	opts    Options
	log     *slog.Logger
	res     *Result
	bytes   atomic.Int64
	ixBytes atomic.Int64
	staging string
	keys    []jws.PublicKey
	// reuse maps a declared digest to files of published exports that
	// declare it; sigReuse maps a signature identity to .jws files.
	reuse    map[string][]string
	sigReuse map[string][]string
	// bulkUsed is set when a Mirrorer filled staging; preexisting holds
	// the staged files that were there before it ran.
	bulkUsed    bool
	preexisting map[string]bool
	// sigVia records how each signature was staged.
	sigVia map[string]int
	// checked holds the staged files bulk verified (or linked after
	// verifying) before the Mirrorer ran, so staging does not hash them again.
	checked map[string]os.FileInfo
	// bytesResumed counts partial-download bytes kept (Result.BytesResumed).
	bytesResumed atomic.Int64
}

// Run performs one sync; see the package documentation. The returned
// Result is never nil. Errors: *LockedError (ErrLocked) when another run
// holds the lock, *VerifyError when the source's export fails
// verification, others for transfer and file-system failures.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &run{opts: opts, log: opts.Logger, res: &Result{Started: opts.Now()}}
	err := r.run(ctx)
	r.res.BytesDownloaded = r.bytes.Load()
	r.res.IndexBytes = r.ixBytes.Load()
	r.res.BytesResumed = r.bytesResumed.Load()
	r.res.Duration = opts.Now().Sub(r.res.Started)
	return r.res, err
}

func (r *run) run(ctx context.Context) error {
	o := r.opts
	switch {
	case o.Root == "":
		return errors.New("no export root (--dest) given")
	case o.Source == nil:
		return errors.New("no source given")
	case o.Keys == nil && !o.SkipSignatures:
		return errors.New("no verification keys configured (--public-key or --jwks-url)")
	case o.Keep < MinKeep:
		return fmt.Errorf("keep %d: must be at least %d (the previous export stays reachable by its pinned URLs)", o.Keep, MinKeep)
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return err
	}
	r.opts.Root = root
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("export root: %w", err)
	}
	release, err := lockRoot(root)
	if err != nil {
		return err
	}
	defer release()
	defer r.markRunning()()
	r.emptyTrash()

	id, err := o.Source.Resolve(ctx)
	if err != nil {
		return fmt.Errorf("source %s: %w", o.Source, err)
	}
	if !export.ValidExportID(id) {
		return fmt.Errorf("source %s offers export %q, which is not a valid export id", o.Source, id)
	}
	r.res.ExportID = id
	p, err := r.fetchPlan(ctx, id)
	if err != nil {
		return err
	}
	r.res.GeneratedAt, r.res.Fingerprint = p.generatedAt, p.fingerprint

	prev, err := ReadState(root)
	if err != nil {
		r.log.Warn("ignoring unreadable sync state", "error", err)
	}
	if !o.Force && r.current(prev, p) {
		r.res.Skipped = true
		r.log.Info("nothing new", "export_id", id, "fingerprint", p.fingerprint)
		prev.LastSuccess = o.Now()
		if err := writeState(root, prev); isNoSpace(err) {
			// Nothing changed: a full disk must not fail the run.
			r.log.Warn("cannot record the last success in the sync state; the metrics textfile still has it", "error", err)
		} else if err != nil {
			return err
		}
		return nil
	}

	if err := r.checkExcititorKeys(p); err != nil {
		return err
	}
	if r.staging, err = r.prepareStaging(id); err != nil {
		return err
	}
	r.indexPublished(id)
	if err := r.ensureSpace(p); err != nil {
		return err
	}
	if m, ok := o.Source.(Mirrorer); ok {
		if err := r.bulk(ctx, m, p); err != nil {
			return err
		}
	}
	for i := range p.files {
		if err := r.stage(ctx, id, &p.files[i]); err != nil {
			return err
		}
	}
	if err := r.removeExtra(p); err != nil {
		return err
	}
	r.phase("staged")
	if err := r.verify(ctx, id, p); err != nil {
		return err
	}
	r.phase("verified")
	if err := r.publish(p); err != nil {
		return err
	}
	r.phase("published")
	now := o.Now()
	st := State{Source: o.Source.String(), ExportID: id, Fingerprint: p.fingerprint, GeneratedAt: p.generatedAt,
		LastSuccess: now, LastPublish: now}
	if err := writeState(root, st); err != nil {
		return err
	}
	r.retain(id)
	r.emptyTrash()
	return nil
}

// checkExcititorKeys refuses an export that declares an Excititor
// exportKey of a kept export with other bytes: the key's URL is pinned by
// the key alone, so its bytes never change across exports.
func (r *run) checkExcititorKeys(p *plan) error {
	var all []*export.ExcititorIndex
	ids := r.publishedExports()
	slices.Sort(ids)
	for _, x := range ids {
		if x == p.id {
			continue
		}
		ixs, err := export.ReadExcititorIndexes(filepath.Join(r.opts.Root, x))
		if err != nil {
			r.log.Warn("cannot read the excititor indexes of a kept export; not comparing its export keys", "export_id", x, "error", err)
			continue
		}
		all = append(all, ixs...)
	}
	all = append(all, p.excititor...)
	for _, e := range export.ExcititorKeyReuse(all) {
		if e.ExportID == p.id {
			return &VerifyError{Path: export.ExcititorIndexPath(e.Domain), Reason: e.Error(), Err: e}
		}
	}
	return nil
}

// phase logs, at debug level, how long the run took to reach a step.
func (r *run) phase(name string) {
	r.log.Debug("sync phase", "phase", name, "elapsed_s", r.opts.Now().Sub(r.res.Started).Seconds())
}

// fetchPlan reads the source's indexes and builds the plan.
func (r *run) fetchPlan(ctx context.Context, id string) (*plan, error) {
	src := r.opts.Source
	data, err := r.readSmall(ctx, id, export.IndexPath)
	if err != nil {
		return nil, fmt.Errorf("source %s: export %s: %w", src, id, err)
	}
	domains, err := src.ExcititorDomains(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("source %s: listing excititor domains of %s: %w", src, id, err)
	}
	want := map[string]bool{}
	for _, d := range r.opts.Domains {
		want[d] = true
	}
	var xs []excititorIndex
	total := int64(len(data))
	listed := 0
	for _, d := range domains {
		if !export.ValidDomainID(d) || len(want) > 0 && !want[d] {
			continue
		}
		if listed++; listed > maxExcititorDomains {
			return nil, &VerifyError{Path: "excititor/", Reason: fmt.Sprintf("export %s lists more than %d Excititor domains (a hostile or broken source; restrict with SYNC__DOMAINS)", id, maxExcititorDomains)}
		}
		rel := export.ExcititorIndexPath(d)
		xd, err := r.readSmall(ctx, id, rel)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("source %s: export %s: %w", src, id, err)
		}
		if total += int64(len(xd)); total > maxPlanIndexBytes {
			return nil, &VerifyError{Path: rel, Reason: fmt.Sprintf("the export's indexes together exceed %d bytes (a hostile or broken source)", maxPlanIndexBytes)}
		}
		xi, err := export.ParseExcititorIndex(xd)
		if err != nil {
			return nil, &VerifyError{Path: rel, Reason: err.Error()}
		}
		xs = append(xs, excititorIndex{domain: d, data: xd, ix: xi})
	}
	return newPlan(id, data, xs, r.opts.Domains)
}

// maxIndexBytes bounds each index file read into memory;
// maxPlanIndexBytes all of an export's indexes together, and
// maxExcititorDomains the Excititor domains one export may list: a hostile
// source cannot make a run hold more than that in memory.
const (
	maxIndexBytes       = 32 << 20
	maxPlanIndexBytes   = 128 << 20
	maxExcititorDomains = 1024
)

// readSmall reads a whole index file from the source.
func (r *run) readSmall(ctx context.Context, id, rel string) ([]byte, error) {
	rc, err := r.opts.Source.Open(ctx, id, rel)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(&countingReader{r: rc, n: &r.ixBytes}, maxIndexBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", rel, err)
	}
	if len(data) > maxIndexBytes {
		return nil, &VerifyError{Path: rel, Reason: fmt.Sprintf("larger than %d bytes", maxIndexBytes)}
	}
	return data, nil
}

// current reports whether the last recorded run published exactly this
// upstream state and it is still what ROOT/latest serves.
func (r *run) current(st State, p *plan) bool {
	if st.Fingerprint != p.fingerprint || st.ExportID != p.id || st.Source != r.opts.Source.String() {
		return false
	}
	target, err := os.Readlink(filepath.Join(r.opts.Root, export.LatestLink))
	if err != nil || target != p.id {
		return false
	}
	fi, err := os.Lstat(filepath.Join(r.opts.Root, p.id, filepath.FromSlash(export.IndexPath)))
	return err == nil && fi.Mode().IsRegular()
}

// prepareStaging creates ROOT/.staging/<id>, keeping what an interrupted
// run left there, and removes staging directories of other exports.
func (r *run) prepareStaging(id string) (string, error) {
	base := filepath.Join(r.opts.Root, export.StagingDir)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("creating staging directory: %w", err)
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if e.Name() != id {
			r.log.Info("removing stale staging directory", "dir", e.Name())
			if err := os.RemoveAll(filepath.Join(base, e.Name())); err != nil {
				return "", err
			}
		}
	}
	dir := filepath.Join(base, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, nil
}

// publishedExports lists the export directories in the root.
func (r *run) publishedExports() []string {
	entries, err := os.ReadDir(r.opts.Root)
	if err != nil {
		return nil
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && export.ValidExportID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// indexPublished records, for every published export, which files its
// indexes declare by digest, so identical files can be hard-linked.
func (r *run) indexPublished(id string) {
	r.reuse = map[string][]string{}
	r.sigReuse = map[string][]string{}
	ids := r.publishedExports()
	// The export being synced first: a published copy of it is the best match.
	for i, x := range ids {
		if x == id {
			ids[0], ids[i] = ids[i], ids[0]
		}
	}
	for _, x := range ids {
		dir := filepath.Join(r.opts.Root, x)
		add := func(rel, digest string, sig *export.SignatureRef) {
			if export.ValidateRelPath(rel) != nil {
				return
			}
			r.reuse[digest] = append(r.reuse[digest], filepath.Join(dir, filepath.FromSlash(rel)))
			if sig != nil && export.ValidateRelPath(sig.Path) == nil {
				k := sigKey(rel, digest, *sig)
				r.sigReuse[k] = append(r.sigReuse[k], filepath.Join(dir, filepath.FromSlash(sig.Path)))
			}
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(export.IndexPath)))
		if err == nil {
			if ix, err := export.ParseIndex(data); err == nil {
				for _, d := range ix.Domains {
					add(d.Manifest.Path, d.Manifest.Digest, nil)
					add(d.Bundle.Path, d.Bundle.Digest, d.Bundle.Signature)
				}
			}
		}
		xdirs, _ := os.ReadDir(filepath.Join(dir, "excititor"))
		for _, xd := range xdirs {
			data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(export.ExcititorIndexPath(xd.Name()))))
			if err != nil {
				continue
			}
			xi, err := export.ParseExcititorIndex(data)
			if err != nil || xi.DomainID != xd.Name() {
				continue
			}
			for _, e := range xi.Exports {
				add(export.ExcititorExportPath(xi.DomainID, e.ExportKey), e.Digest, e.Signature)
			}
		}
	}
}

// sigKey identifies a signature: the same payload path and digest signed
// with the same algorithm, key and time is the same signature.
func sigKey(payload, digest string, ref export.SignatureRef) string {
	return strings.Join([]string{payload, digest, ref.Path, ref.Algorithm, ref.KeyID, ref.SignedAt.UTC().Format(time.RFC3339Nano)}, "\x00")
}

// bulk lets a Mirrorer copy into staging the files of p that are not
// there yet. First every file a published export holds with the same
// digest is hard-linked (its bytes hashed first), whatever its mtime, and
// the verified files an interrupted run left are kept; the Mirrorer copies
// only the rest, bounded by their declared sizes.
func (r *run) bulk(ctx context.Context, m Mirrorer, p *plan) error {
	r.preexisting = map[string]bool{}
	filepath.WalkDir(r.staging, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			r.preexisting[p] = true
		}
		return nil
	})
	r.bulkUsed = true
	want, err := r.prelink(p)
	if err != nil || len(want) == 0 {
		return err
	}
	n, err := m.Mirror(ctx, p.id, r.staging, want)
	r.bytes.Add(n)
	if err != nil {
		return fmt.Errorf("source %s: copying export %s: %w", r.opts.Source, p.id, err)
	}
	return nil
}

// prelink stages, for a Mirrorer, every file of p that staging already
// holds or a published export holds with the same digest, and returns the
// others with their size bounds. The files it checked are recorded, so
// staging does not hash them again.
func (r *run) prelink(p *plan) ([]MirrorFile, error) {
	r.checked = map[string]os.FileInfo{}
	var want []MirrorFile
	for i := range p.files {
		f := &p.files[i]
		if f.data != nil {
			continue // the indexes: already fetched, written by stage
		}
		dst := filepath.Join(r.staging, filepath.FromSlash(f.rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, fmt.Errorf("staging %s: %w", f.rel, err)
		}
		ok, err := r.staged(dst, f)
		if err != nil {
			return nil, err
		}
		if ok || r.link(dst, f) {
			if fi, err := os.Lstat(dst); err == nil {
				r.checked[dst] = fi
			}
			continue
		}
		mf := MirrorFile{Path: f.rel, Size: f.size, Max: f.size}
		if f.sig != nil || f.size < 0 {
			mf.Size, mf.Max = -1, jws.MaxSignatureSize
		}
		want = append(want, mf)
	}
	return want, nil
}

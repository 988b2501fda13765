package origin

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/export"
)

// Resolution and cache tuning. Published exports never change, so the
// caches only need to notice exports appearing, disappearing or being
// replaced under the same name.
const (
	// maxCachedExports bounds the opened exports kept per product. Two are
	// enough for a switch of latest; a few more absorb flapping.
	maxCachedExports = 4
	// revalidateAfter is how often a cached export's directory is checked
	// to still be the one that was opened (same device and inode).
	revalidateAfter = time.Second
	// retryFailedAfter is how long a failed export load is remembered
	// before it is tried again.
	retryFailedAfter = time.Second
	// rescanAfter bounds how long a newest-export scan is trusted even when
	// the root's mtime has not changed (an export completed in place does
	// not touch the root's mtime).
	rescanAfter = 30 * time.Second
	// maxIndexBytes bounds index files, which are read and parsed whole.
	maxIndexBytes = 32 << 20
	// defaultSmallFileMax is the size below which a file is served from
	// memory rather than from disk.
	defaultSmallFileMax = 1 << 20
	// maxSmallBytesPerExport bounds the memory one export's small-file
	// cache may use; beyond it files are served from disk.
	maxSmallBytesPerExport = 64 << 20
	// activeRecheck is how long a resolved active export id (the target of
	// latest, or the newest-export scan) is trusted before latest is read
	// again. Reading a symlink is a system call on every request otherwise;
	// a switch of latest is seen within this interval.
	activeRecheck = 100 * time.Millisecond
	// rootLogInterval rate-limits the repeated "export root is not
	// configured" log line.
	rootLogInterval = time.Minute
)

// msgRootNotConfigured is the exact log message operators alert on when a
// product's export root is unset (the runbook's line).
const msgRootNotConfigured = "Mirror export root is not configured"

// msgRootMissing is logged instead when the root is set but is not an
// existing directory; the line names the path ("root").
const msgRootMissing = "Mirror export root does not exist"

// product is one mirrored product (Concelier or Excititor): where its
// exports live, how the active one is chosen, and its cache of opened
// exports.
type product struct {
	name     string // "concelier" or "excititor"
	rootKey  string // configuration key of the export root, for messages
	root     string // export root; "" when unset
	latest   string // <root>/latest
	pinnedID string // ACTIVEEXPORTID; "" to follow latest / the newest

	requireAuth bool             // the product-wide REQUIREAUTHENTICATION
	domains     map[string]*bool // configured domains → auth override; nil serves every domain

	// marker reports whether the export directory dir is complete and the
	// modification time of its marker.
	marker func(dir string) (time.Time, bool)
	// load fills a freshly opened export's product-specific state.
	load func(st *exportState) error

	logger   *slog.Logger
	now      func() time.Time
	recheck  time.Duration // activeRecheck; <= 0 resolves on every request
	smallMax int64
	gauge    *prometheus.GaugeVec

	scanMu sync.Mutex                  // serialises scans
	scan   atomic.Pointer[scanResult]  // last newest-export scan
	mu     sync.Mutex                  // guards exports
	cached []*exportState              // most recently used first
	fast   atomic.Pointer[exportState] // the last export handed out
	active atomic.Pointer[resolved]    // the last active id resolved

	shownMu sync.Mutex
	shown   atomic.Pointer[exportState] // export reported by the gauge

	rootLogMu  sync.Mutex
	rootLogged time.Time // last "not configured" line
}

// resolved is an active export id and when it was resolved.
type resolved struct {
	id string
	at time.Time
}

// scanResult is one scan of the export root for the newest complete export.
type scanResult struct {
	rootMod time.Time // the root's mtime when scanned
	at      time.Time // when scanned
	id      string
	err     error
}

// requiresAuth reports whether REQUIREAUTHENTICATION applies to domain
// ("" for the shared index): the domain's override, else the product's.
func (p *product) requiresAuth(domain string) bool {
	if domain != "" {
		if v := p.domains[domain]; v != nil {
			return *v
		}
	}
	return p.requireAuth
}

// configured reports whether domain may be served.
func (p *product) configured(domain string) bool {
	if p.domains == nil {
		return true
	}
	_, ok := p.domains[domain]
	return ok
}

// acquire resolves the active export and returns it with a reference the
// caller must release. All of one response is read from the returned
// export.
func (p *product) acquire() (*exportState, error) {
	if p.root == "" {
		return nil, unavailable("no active export", fmt.Errorf("%s: export root is not configured", p.rootKey))
	}
	id, err := p.activeID()
	if err != nil {
		p.noteActive(nil)
		return nil, err
	}
	st, err := p.export(id)
	if err != nil {
		p.noteActive(nil)
		return nil, err
	}
	if p.shown.Load() != st {
		p.noteActive(st)
	}
	return st, nil
}

// activeID returns the id of the active export: the pinned id, else the
// target of latest, else the newest complete export. A successful answer
// is reused for p.recheck, so a switch of latest is seen within it; an
// error is never reused.
func (p *product) activeID() (string, error) {
	if p.pinnedID != "" {
		return p.pinnedID, nil
	}
	if p.recheck <= 0 {
		return p.resolveActive()
	}
	now := p.now()
	if a := p.active.Load(); a != nil {
		if age := now.Sub(a.at); age >= 0 && age < p.recheck {
			return a.id, nil
		}
	}
	id, err := p.resolveActive()
	if err != nil {
		p.active.Store(nil)
		return "", err
	}
	p.active.Store(&resolved{id: id, at: now})
	return id, nil
}

// resolveActive reads latest, falling back to the newest complete export.
func (p *product) resolveActive() (string, error) {
	target, err := os.Readlink(p.latest)
	switch {
	case err == nil:
		if !validLinkTarget(target) {
			return "", unavailable("no active export",
				fmt.Errorf("%s points to %q, which is not the name of an export directory in the root", p.latest, target))
		}
		return target, nil
	case errors.Is(err, fs.ErrNotExist):
		return p.newest()
	default:
		return "", unavailable("no active export", fmt.Errorf("reading %s: %w", p.latest, err))
	}
}

// validLinkTarget reports whether the target of latest is a plain child
// name of the export root: not absolute, no "..", no separators, a valid
// export id.
func validLinkTarget(target string) bool {
	return !strings.ContainsAny(target, `/\`) && export.ValidExportID(target)
}

// newest returns the newest complete export. The scan is cached until the
// root's mtime changes (or rescanAfter passes).
func (p *product) newest() (string, error) {
	fi, err := os.Stat(p.root)
	if err != nil {
		return "", unavailable("no active export", fmt.Errorf("export root: %w", err))
	}
	now := p.now()
	fresh := func(s *scanResult) bool {
		return s != nil && s.rootMod.Equal(fi.ModTime()) && now.Sub(s.at) < rescanAfter
	}
	if s := p.scan.Load(); fresh(s) {
		return s.id, s.err
	}
	p.scanMu.Lock()
	defer p.scanMu.Unlock()
	if s := p.scan.Load(); fresh(s) {
		return s.id, s.err
	}
	s := &scanResult{rootMod: fi.ModTime(), at: now}
	s.id, s.err = p.scanRoot()
	p.scan.Store(s)
	return s.id, s.err
}

// scanRoot finds the newest complete export: a real (not symlinked),
// non-hidden directory with a valid export id whose marker exists; newest
// by the marker's mtime, ties broken by the greater name.
func (p *product) scanRoot() (string, error) {
	entries, err := os.ReadDir(p.root)
	if err != nil {
		return "", unavailable("no active export", fmt.Errorf("scanning export root: %w", err))
	}
	var best string
	var bestMod time.Time
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !export.ValidExportID(name) {
			continue
		}
		mod, ok := p.marker(filepath.Join(p.root, name))
		if !ok {
			continue
		}
		if best == "" || mod.After(bestMod) || mod.Equal(bestMod) && name > best {
			best, bestMod = name, mod
		}
	}
	if best == "" {
		return "", unavailable("no active export", fmt.Errorf("no complete %s export in %s and no %s symlink", p.name, p.root, export.LatestLink))
	}
	return best, nil
}

// concelierMarker: a complete Concelier export has mirror/index.json.
func concelierMarker(dir string) (time.Time, bool) {
	fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(export.IndexPath)))
	if err != nil || !fi.Mode().IsRegular() {
		return time.Time{}, false
	}
	return fi.ModTime(), true
}

// excititorMarker: a complete Excititor export has at least one
// excititor/<domain>/index.json; its marker time is the newest of them.
func excititorMarker(dir string) (time.Time, bool) {
	entries, err := os.ReadDir(filepath.Join(dir, "excititor"))
	if err != nil {
		return time.Time{}, false
	}
	var newest time.Time
	found := false
	for _, e := range entries {
		if !e.IsDir() || !export.ValidDomainID(e.Name()) {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(export.ExcititorIndexPath(e.Name()))))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if !found || fi.ModTime().After(newest) {
			newest, found = fi.ModTime(), true
		}
	}
	return newest, found
}

// export returns the opened export id, acquired, from the cache or freshly
// opened. A failed open is remembered for retryFailedAfter.
func (p *product) export(id string) (*exportState, error) {
	return p.lookup(id, true, nil)
}

// lookup returns export id, acquired, from the cache or freshly opened
// (and then cached; a failed open is remembered for retryFailedAfter).
// promote makes it the export the lock-free fast path hands out. mayOpen,
// when set, is asked before an export that is not cached is opened; its
// error is returned and nothing is cached.
func (p *product) lookup(id string, promote bool, mayOpen func() error) (*exportState, error) {
	now := p.now()
	if st := p.fast.Load(); st != nil && st.id == id && st.fresh(now) && st.tryAcquire() {
		return st, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, st := range p.cached {
		if st.id != id {
			continue
		}
		if !st.fresh(now) {
			p.drop(i)
			break
		}
		copy(p.cached[1:i+1], p.cached[:i])
		p.cached[0] = st
		if st.err != nil {
			return nil, st.err
		}
		st.tryAcquire() // the cache's own reference keeps it open
		if promote {
			p.fast.Store(st)
		}
		return st, nil
	}
	if mayOpen != nil {
		if err := mayOpen(); err != nil {
			return nil, err
		}
	}
	st := p.open(id, now)
	p.cached = append(p.cached, nil)
	copy(p.cached[1:], p.cached)
	p.cached[0] = st
	for len(p.cached) > maxCachedExports {
		p.drop(len(p.cached) - 1)
	}
	if st.err != nil {
		return nil, st.err
	}
	st.tryAcquire()
	if promote {
		p.fast.Store(st)
	}
	return st, nil
}

// drop removes cached[i] and gives up the cache's reference. Callers hold mu.
func (p *product) drop(i int) {
	st := p.cached[i]
	p.cached = append(p.cached[:i], p.cached[i+1:]...)
	p.fast.CompareAndSwap(st, nil)
	st.release()
}

// close drops every cached export; in-flight requests keep theirs open
// until they finish.
func (p *product) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.cached) > 0 {
		p.drop(0)
	}
}

// open opens and loads export id. The result is never nil; on failure its
// err is set and it holds no open root.
func (p *product) open(id string, now time.Time) *exportState {
	st := &exportState{
		product:  p,
		id:       id,
		idHeader: []string{id},
		dir:      filepath.Join(p.root, id),
		loadedAt: now,
	}
	st.refs.Store(1)
	st.checked.Store(now.UnixNano())
	err := st.openRoot()
	if err == nil {
		err = p.load(st)
	}
	if err != nil {
		if st.root != nil {
			st.root.Close()
			st.root = nil
		}
		var he *httpError
		if !errors.As(err, &he) {
			err = unavailable("the active export cannot be served", fmt.Errorf("export %s: %w", id, err))
		}
		st.err = err
	}
	return st
}

// noteActive updates the active-export gauge (and logs the switch) when the
// export handed out changes; st == nil means none is available.
func (p *product) noteActive(st *exportState) {
	if p.shown.Load() == st {
		return
	}
	p.shownMu.Lock()
	defer p.shownMu.Unlock()
	old := p.shown.Load()
	if old == st {
		return
	}
	var oldID, newID string
	if old != nil {
		oldID = old.id
	}
	if st != nil {
		newID = st.id
	}
	if oldID != newID {
		if oldID != "" {
			p.gauge.DeleteLabelValues(p.name, oldID)
		}
		if newID != "" {
			p.gauge.WithLabelValues(p.name, newID).Set(1)
			p.logger.Info("active export", "product", p.name, "export_id", newID, "previous", oldID)
		}
	}
	p.shown.Store(st)
}

// rootMissing reports whether the export root is unset or not a directory.
func (p *product) rootMissing() bool {
	if p.root == "" {
		return true
	}
	fi, err := os.Stat(p.root)
	return err != nil || !fi.IsDir()
}

// logRootMissing logs msgRootNotConfigured (unset) or msgRootMissing, at
// most once per
// rootLogInterval unless force is set.
func (p *product) logRootMissing(force bool) {
	now := p.now()
	p.rootLogMu.Lock()
	due := force || p.rootLogged.IsZero() || now.Sub(p.rootLogged) >= rootLogInterval
	if due {
		p.rootLogged = now
	}
	p.rootLogMu.Unlock()
	if !due {
		return
	}
	attrs := []any{"product", p.name, "key", p.rootKey}
	if p.root == "" {
		p.logger.Error(msgRootNotConfigured, attrs...)
		return
	}
	attrs = append(attrs, "root", p.root)
	if _, err := os.Stat(p.root); err != nil {
		attrs = append(attrs, "error", err.Error())
	} else {
		attrs = append(attrs, "error", "not a directory")
	}
	p.logger.Error(msgRootMissing, attrs...)
}

// ready reports why the product cannot serve, or nil: its root exists and
// the active export's indexes parse.
func (p *product) ready() error {
	if p.rootMissing() {
		p.logRootMissing(false)
		if p.root == "" {
			return fmt.Errorf("export root is not configured (%s)", p.rootKey)
		}
		return fmt.Errorf("export root %s (%s) does not exist or is not a directory", p.root, p.rootKey)
	}
	st, err := p.acquire()
	if err != nil {
		return err
	}
	defer st.release()
	var errs []error
	for _, name := range st.excititorOrder {
		if d := st.excititor[name]; d.err != nil {
			errs = append(errs, fmt.Errorf("export %s: domain %s: %w", st.id, name, d.err))
		}
	}
	return errors.Join(errs...)
}

package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stella-ops/stella-mirror/internal/flock"
)

// Options are the cache's injected dependencies. Nil fields mean the
// documented default.
type Options struct {
	// Logger receives warnings (fills that failed, files that could not be
	// removed). Default: discard.
	Logger *slog.Logger
	// Registerer receives the stella_mirror_cache_* metrics. Default: not
	// registered anywhere.
	Registerer prometheus.Registerer
	// Now is the clock for freshness and Age. Default: time.Now.
	Now func() time.Time
	// CDNMaxAge is the max-age of the CDN-Cache-Control field (RFC 9213)
	// on unversioned manifests, bundles and signatures; between 1s and
	// MaxCDNMaxAge. Default: DefaultCDNMaxAge.
	CDNMaxAge time.Duration

	// The options below choose RFC 9111 behaviour where the gateway is
	// stricter on purpose; the zero values are the gateway's, RFCOptions
	// the generic cache's (the conformance harness).

	// HonourAuthorization applies RFC 9111 section 3.5: a response to a
	// request with Authorization is stored only when public, s-maxage or
	// must-revalidate allows it. The gateway leaves it off: it
	// authenticates every request before the cache, strips the client's
	// Authorization, and its objects are the same for every user (the key
	// never depends on who asked).
	HonourAuthorization bool
	// CDNCacheControl makes an upstream's CDN-Cache-Control (RFC 9213)
	// the caching policy of its response when present and valid,
	// Cache-Control and Expires then ignored. The gateway leaves it off:
	// it is the origin's CDN-facing edge and emits CDN-Cache-Control for
	// the CDNs in front of it (Options.CDNMaxAge); the field is theirs.
	CDNCacheControl bool
	// KeepSetCookie stores and serves a response's Set-Cookie fields. The
	// gateway leaves it off: a response with Set-Cookie is stored without
	// them, as its proxy never passes them on.
	KeepSetCookie bool
	// StoreAuthErrors stores an upstream's 401, 403 and 407 like any
	// other status RFC 9111 allows (with explicit freshness). The gateway
	// leaves it off: it authenticates before the cache, so an origin's
	// 401 or 403 answers the gateway's token or the user it forwarded,
	// and a stored one would be served to every other user.
	StoreAuthErrors bool
}

// Cache is a shared HTTP cache in the form of an http.RoundTripper. Its
// methods are safe for concurrent use.
type Cache struct {
	cfg      Config
	upstream http.RoundTripper
	log      *slog.Logger
	m        *metrics
	now      func() time.Time
	dir      string
	unlock   func() // drops the directory lock

	startNanos int64
	seq        atomic.Uint64
	// beforeCommit, when set (tests only), runs after a fill's body is
	// complete and verified and before it is stored.
	beforeCommit func()
	// joinWaits, when set (tests only), runs when a request that joined a
	// complete fill waits for it to be stored.
	joinWaits func()
	bufs      sync.Pool // *[]byte copy buffers of the fills

	ctx    context.Context // cancelled by Close: ends upstream fetches
	cancel context.CancelFunc
	bg     sync.WaitGroup // flight goroutines

	mu      sync.Mutex
	entries map[string]*entry
	lru     *list.List // of *entry, front = most recently used
	size    int64
	memLRU  *list.List
	memSize int64
	flights map[string]*flight
	// varies maps the key of a URL whose responses vary to the fields of
	// its latest stored variant; variants lists its variant keys, oldest
	// first (vary.go).
	varies   map[string][]string
	variants map[string][]string
	epoch    uint64 // incremented by every purge; a fill started before a purge is not stored

	// The Concelier export generation (coherence.go): gen is nil until an
	// index with an export id is known; noExportID says the last index had
	// none; alias maps the unversioned file keys asked for under gen to
	// their pinned keys (and the entry last found there, for the fast hit
	// path), and is emptied when gen changes.
	gen        *generation
	noExportID bool
	alias      map[string]aliasTarget

	rules rules
	// indexMu serializes the upstream fetches of the Concelier index up
	// to their response headers (directIndex).
	indexMu sync.Mutex

	warnedPinned    atomic.Bool
	cdnCacheControl []string // CDN-Cache-Control value, shared read-only
}

var _ http.RoundTripper = (*Cache)(nil)

// LockFile is the lock file in the cache directory that keeps a second
// process from opening the same directory.
const LockFile = ".lock"

// copyBufSize is the chunk in which fills read upstream bodies and notify
// their readers.
const copyBufSize = 64 << 10

// New opens (or creates) the cache in cfg.Dir, rebuilds its index from the
// objects stored there, and returns a cache that answers GET and HEAD from
// them and fetches everything else through upstream (nil:
// http.DefaultTransport). cfg gets its defaults and is validated.
func New(cfg Config, upstream http.RoundTripper, opts Options) (*Cache, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if upstream == nil {
		upstream = http.DefaultTransport
	}
	if opts.CDNMaxAge == 0 {
		opts.CDNMaxAge = DefaultCDNMaxAge
	}
	if opts.CDNMaxAge < time.Second || opts.CDNMaxAge > MaxCDNMaxAge {
		return nil, fmt.Errorf("cache: CDN max-age must be between 1s and %s, got %s", MaxCDNMaxAge, opts.CDNMaxAge)
	}
	c := &Cache{
		cfg:        cfg,
		upstream:   upstream,
		log:        opts.Logger,
		now:        opts.Now,
		dir:        filepath.Join(cfg.Dir, formatDir),
		startNanos: time.Now().UnixNano(),
		entries:    map[string]*entry{},
		lru:        list.New(),
		memLRU:     list.New(),
		flights:    map[string]*flight{},
		varies:     map[string][]string{},
		variants:   map[string][]string{},
		alias:      map[string]aliasTarget{},

		cdnCacheControl: cdnCacheControlValue(opts.CDNMaxAge),
		rules: rules{authorization: opts.HonourAuthorization, cdn: opts.CDNCacheControl, setCookie: opts.KeepSetCookie,
			authErrors: opts.StoreAuthErrors},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.bufs.New = func() any { b := make([]byte, copyBufSize); return &b }
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("cache: registering metrics: %w", err)
	}
	c.m = m
	// One process per cache directory: loading the index deletes files that
	// are not complete objects, which would be another process's fills.
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: creating %s: %w", cfg.Dir, err)
	}
	unlock, err := flock.TryLock(filepath.Join(cfg.Dir, LockFile))
	if err != nil {
		if errors.Is(err, flock.ErrLocked) {
			return nil, fmt.Errorf("cache: directory %s is in use by another gateway (%w); give each gateway its own GATEWAY__CACHE__DIR", cfg.Dir, err)
		}
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.unlock = unlock
	if err := c.loadIndex(); err != nil {
		unlock()
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.initGeneration()
	return c, nil
}

// Close cancels upstream fetches in progress and waits for their
// goroutines. Stored objects stay on disk for the next New.
func (c *Cache) Close() error {
	c.cancel()
	c.bg.Wait()
	c.unlock()
	return nil
}

// Key is the cache key of a request: its escaped path and query. It never
// depends on who asked (Authorization, cookies, client address) nor on the
// host: the gateway proxies every site to the same origin, and auth and
// policy have already decided that the client may see the path.
//
// Under /concelier/exports/ the query is left out: the origin ignores it,
// and a key of its own would take "…/manifest.json?x=1" (or the index)
// out of the export-generation rule (coherence.go) and serve the old
// export's file under the new index for its whole max-age.
func Key(u *url.URL) string {
	p := u.EscapedPath()
	if u.RawQuery != "" && !strings.HasPrefix(p, concelierExports) {
		return p + "?" + u.RawQuery
	}
	return p
}

// errGone: a stored body vanished (evicted or purged) between the lookup
// and the open; the lookup is retried.
var errGone = errors.New("cache: stored body gone")

// RoundTrip answers GET and HEAD from the cache or fills the cache from
// upstream, and passes every other request through (BYPASS). Every
// response carries X-Cache-Status. An error it returns is an *Error.
func (c *Cache) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		resp, err := c.direct(req, StatusBypass)
		if err == nil {
			c.invalidate(req, resp)
		}
		return resp, err
	}
	var force bool
	if c.honoursClient(req) {
		d := parseRequestDirectives(req.Header)
		if d.noStore {
			return c.direct(req, StatusBypass)
		}
		force = d.noCache || d.maxAge == 0
	}
	key := Key(req.URL)
	if unversionedFile(key) {
		return c.roundTripUnversioned(req, key, force)
	}
	return c.roundTripKey(req, c.requestKey(key, req.Header), force, nil, "")
}

// roundTripKey answers req from the entry stored under key. g is the
// generation an unversioned request is answered under (nil: the request's
// own path); wantID, when set, is the export id an upstream answer must
// carry to be stored.
func (c *Cache) roundTripKey(req *http.Request, key string, force bool, g *generation, wantID string) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := c.lookup(req, key, force, g, wantID)
		if errors.Is(err, errGone) && attempt < 3 {
			continue
		}
		return resp, err
	}
}

// lookup answers one request: from a fresh entry, a stale one while
// revalidating, or through the flight for its key.
func (c *Cache) lookup(req *http.Request, key string, force bool, g *generation, wantID string) (*http.Response, error) {
	now := c.now()
	c.mu.Lock()
	e := c.entries[key]
	if e != nil {
		if (!force && c.acceptable(req, &e.fresh, now)) || (e.fresh.immutable && e.fresh.fresh(now)) {
			c.touchLocked(e)
			mem := e.mem
			c.mu.Unlock()
			return c.serveEntry(req, e, mem, StatusHit, now, g)
		}
		if !force && e.fresh.usableWhileRevalidating(now) {
			if c.flights[key] == nil {
				c.startFlightLocked(key, e, req, false, wantID)
			}
			c.touchLocked(e)
			mem := e.mem
			c.mu.Unlock()
			return c.serveEntry(req, e, mem, StatusUpdating, now, g)
		}
	}
	f := c.flights[key]
	leader := f == nil
	if c.honoursClient(req) && parseRequestDirectives(req.Header).onlyIfCached {
		c.mu.Unlock()
		return c.notCached(req), nil
	}
	if leader {
		f = c.startFlightLocked(key, e, req, true, wantID)
	}
	// A reference to the fill's file for this request, taken while the
	// flight is still registered, so the file cannot close before this
	// request has opened its reader; and this request counts as one of the
	// flight's waiters until it leaves.
	f.hold()
	f.waiters++
	c.mu.Unlock()

	select {
	case <-f.ready:
	case <-req.Context().Done():
		c.leave(f, true) // gone before the outcome: maybe the last one
		f.unhold()
		if leader {
			go f.discardUnclaimed()
		}
		c.m.requests[StatusMiss].Inc()
		return nil, &Error{Status: StatusMiss, Err: req.Context().Err()}
	}
	if f.fill != nil {
		status := StatusHit
		if leader {
			status = f.status
		} else if !c.acceptable(req, &f.fill.freshness, c.now()) || !f.fill.matches(req.Header) {
			// A response that may not be reused without validation (no
			// freshness, or already stale) is no answer to a request that
			// joined its fill: that one goes upstream itself.
			c.leave(f, false)
			f.unhold()
			if f.fill.matches(req.Header) && f.fill.complete() {
				// The body is complete and verified, and is being stored
				// (fsync, rename): once it is, this request revalidates it
				// like any later one (a conditional request) instead of
				// fetching it again in full.
				if c.joinWaits != nil {
					c.joinWaits()
				}
				select {
				case <-f.ended:
					return nil, errGone // look up again
				case <-req.Context().Done():
					c.m.requests[StatusMiss].Inc()
					return nil, &Error{Status: StatusMiss, Err: req.Context().Err()}
				}
			}
			if key == concelierIndex {
				return c.directIndex(req)
			}
			return c.direct(req, StatusMiss)
		}
		return c.serveFill(req, f, status, !leader, g) // hands the reference and the waiter to the reader
	}
	c.leave(f, false)
	f.unhold()
	switch {
	case f.entry != nil:
		status := f.status
		if !leader && status != StatusStale {
			status = StatusHit
		}
		c.mu.Lock()
		c.touchLocked(f.entry)
		mem := f.entry.mem
		c.mu.Unlock()
		return c.serveEntry(req, f.entry, mem, status, c.now(), g)
	case leader && f.resp != nil && f.claimed.CompareAndSwap(false, true):
		resp := c.passThrough(req, f.resp, f.status, f.cancel)
		if req.Method == http.MethodHead {
			// The flight asked with GET; a HEAD client gets no body.
			resp.Body.Close()
			resp.Body = http.NoBody
		}
		return resp, nil
	case f.err != nil:
		status := StatusMiss
		if leader {
			status = f.status
		}
		c.m.requests[status].Inc()
		return nil, &Error{Status: status, Err: f.err}
	default:
		// The origin's answer could not be shared (not storable); this
		// client asks for itself.
		return c.direct(req, StatusMiss)
	}
}

// leave ends a request's wait on flight f. abandoned says it went away
// before it had what it came for: its client disconnected (its context
// was cancelled) or its body was closed before the end while the fill
// still ran. When the last waiter abandons a flight that was not started
// in the background, nobody wants its upstream work any more: the
// upstream request is cancelled, so a fill that has not received its last
// byte ends without storing anything (one that has is still stored),
// and the flight leaves c.flights at once, so that a later request starts
// a fetch of its own instead of joining one that is ending. A waiter that
// leaves satisfied (a whole body, a range, a HEAD) never stops the flight:
// the object is still worth storing.
func (c *Cache) leave(f *flight, abandoned bool) {
	c.mu.Lock()
	f.waiters--
	stop := abandoned && f.waiters == 0 && !f.background && !f.abandoned
	if stop {
		f.abandoned = true
		if c.flights[f.key] == f {
			delete(c.flights, f.key)
		}
	}
	c.mu.Unlock()
	if stop {
		c.m.fillsAbandoned.Inc()
		c.log.Debug("cache: every client of a fetch went away; cancelled", "key", f.key)
		f.cancel()
	}
}

// flight is the one upstream fetch for a key at a time. It stays in
// Cache.flights until its outcome is known, and for a fill until the fill
// has ended, so that later requests join it.
type flight struct {
	key     string
	stale   *entry // the stored entry being revalidated, nil on a miss
	epoch   uint64
	wantID  string        // an answer with another X-Stella-Export-Id is not stored
	dropped bool          // invalidated while fetched: not stored (guarded by Cache.mu)
	ready   chan struct{} // closed when the fields below are set
	ended   chan struct{} // closed by endFlight: a fill's entry is stored (or not)

	status  Status // the leader's status
	fill    *fill
	entry   *entry
	resp    *http.Response // a response for the leader alone
	cancel  context.CancelFunc
	claimed atomic.Bool
	err     error

	refMu sync.Mutex
	refs  int // the flight's goroutine and the requests that joined; the fill's file closes at 0

	// background: started for a stale-while-revalidate answer, on behalf
	// of the cache itself; never abandoned.
	background bool
	// waiters are the requests waiting for the outcome or reading the
	// fill; abandoned is set when the last of them went away and the
	// upstream request was cancelled. Both guarded by Cache.mu.
	waiters   int
	abandoned bool
}

// hold takes a reference; c.mu must be held and f still in c.flights.
func (f *flight) hold() {
	f.refMu.Lock()
	f.refs++
	f.refMu.Unlock()
}

// unhold drops a reference and closes the fill's file with the last one.
func (f *flight) unhold() {
	f.refMu.Lock()
	f.refs--
	last := f.refs == 0
	f.refMu.Unlock()
	if last && f.fill != nil {
		f.fill.file.Close()
	}
}

// discardUnclaimed closes a leader's response nobody will read.
func (f *flight) discardUnclaimed() {
	<-f.ready
	if f.resp != nil && f.claimed.CompareAndSwap(false, true) {
		f.resp.Body.Close()
		f.cancel()
	}
}

func (c *Cache) startFlightLocked(key string, stale *entry, req *http.Request, hasLeader bool, wantID string) *flight {
	f := &flight{key: key, stale: stale, epoch: c.epoch, wantID: wantID, ready: make(chan struct{}), ended: make(chan struct{}), refs: 1, background: !hasLeader}
	// The upstream request is built here, before the client's request
	// returns to the proxy: the flight may outlive it (a detached context,
	// bounded by UpstreamTimeout and Close), as long as some request waits
	// for it (see leave).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), c.cfg.UpstreamTimeout)
	stop := context.AfterFunc(c.ctx, cancel)
	f.cancel = func() { stop(); cancel() }
	out := upstreamRequest(ctx, req, stale)
	c.flights[key] = f
	c.bg.Add(1)
	c.m.fillsInFlight.Inc()
	go c.runFlight(f, out, hasLeader)
	return f
}

// endFlight removes f from the flights (and, with e, stores e).
func (c *Cache) endFlight(f *flight, e *entry) {
	var victims []*entry
	c.mu.Lock()
	if c.flights[f.key] == f {
		delete(c.flights, f.key)
	}
	if e != nil {
		// Not stored: purged or invalidated while it was fetched; an
		// unversioned file while generations apply (stored pinned); an
		// index of an export the generation has moved away from while its
		// body was read (a fresher index was observed meanwhile).
		staleIndex := e.meta.Key == concelierIndex && c.gen != nil && e.meta.Header.Get(ExportIDHeader) != c.gen.id
		if c.epoch == f.epoch && !f.dropped && !(c.gen != nil && unversionedFile(e.meta.Key)) && !staleIndex {
			victims = c.insertLocked(e)
		} else {
			victims = []*entry{e}
		}
	}
	c.mu.Unlock()
	close(f.ended)
	c.removeFiles(victims)
	c.m.fillsInFlight.Dec()
}

// runFlight sends a flight's upstream request, publishes the outcome and,
// for a fill, streams the body into the store.
func (c *Cache) runFlight(f *flight, out *http.Request, hasLeader bool) {
	defer c.bg.Done()
	defer f.unhold()
	missStatus := StatusMiss
	if f.stale != nil {
		missStatus = StatusExpired
	}
	f.status = missStatus

	c.m.upstream.Inc()
	if f.key == concelierIndex {
		c.indexMu.Lock()
	}
	reqAt := c.now()
	resp, err := c.upstream.RoundTrip(out)
	respAt := c.now()
	if err == nil && f.key == concelierIndex &&
		(resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotModified && f.stale != nil) {
		// Before any byte of it reaches a client.
		c.observeIndex(resp, f.stale, reqAt, respAt)
	}
	if f.key == concelierIndex {
		c.indexMu.Unlock()
	}

	publish := func(e *entry) {
		c.endFlight(f, e)
		close(f.ready)
	}
	failed := err != nil || resp.StatusCode >= 500
	switch {
	case failed && f.stale != nil && f.stale.fresh.usableOnError(respAt, c.cfg.StaleIfErrorGrace):
		if resp != nil {
			resp.Body.Close()
		}
		f.cancel()
		f.entry, f.status = f.stale, StatusStale
		publish(nil)
		return
	case err != nil:
		f.cancel()
		f.err = err
		publish(nil)
		return
	case f.wantID != "" && f.stale != nil && resp.StatusCode == http.StatusOK && resp.Header.Get(ExportIDHeader) != f.wantID:
		// The origin answered with another export than the generation's
		// (an unversioned URL, from an origin without pinned URLs): the
		// stored copy is still the generation's file.
		resp.Body.Close()
		f.cancel()
		f.entry, f.status = f.stale, StatusStale
		publish(nil)
		return
	case resp.StatusCode >= 500:
		f.err = fmt.Errorf("upstream answered %s", resp.Status)
	case resp.StatusCode == http.StatusNotModified && f.stale != nil:
		resp.Body.Close()
		f.cancel()
		e := c.refresh(f.stale, resp.Header, reqAt, respAt)
		f.entry, f.status = e, StatusRevalidated
		publish(nil)
		return
	case storable(resp, responseDirectives(resp.Header, c.rules.cdn), c.rules, f.key) && resp.ContentLength <= int64(c.cfg.MaxObjectSize) &&
		(f.wantID == "" || resp.Header.Get(ExportIDHeader) == f.wantID):
		// A response without Vary is the URL's one response (it replaces
		// the variants stored before), whatever key the request was
		// looked up under.
		storeKey, fields := baseKey(f.key), varyFields(resp.Header)
		if fields != nil {
			storeKey = variantKey(storeKey, fields, out.Header)
		}
		fl, ferr := c.newFill(storeKey, resp, reqAt, respAt)
		if ferr != nil {
			c.log.Warn("cache: cannot store", "key", f.key, "error", ferr)
			break
		}
		fl.ctx = out.Context()
		fl.vary = fields
		f.fill = fl
		close(f.ready) // the flight stays joinable until the fill ends
		fl.run(resp.Body, func(e *entry) {
			f.cancel()
			c.endFlight(f, e)
		})
		return
	default:
		// Not storable: the stored entry no longer describes the resource.
		if f.stale != nil {
			c.mu.Lock()
			if c.entries[f.key] == f.stale {
				c.unlinkLocked(f.stale)
			} else {
				f.stale = nil
			}
			c.mu.Unlock()
			if f.stale != nil {
				c.removeFiles([]*entry{f.stale})
			}
		}
	}
	if hasLeader {
		f.resp = resp
	} else {
		resp.Body.Close()
		f.cancel()
	}
	publish(nil)
}

// refresh applies a 304 to a stored entry: new metadata, same body.
func (c *Cache) refresh(old *entry, h http.Header, reqAt, respAt time.Time) *entry {
	m := old.meta
	m.Header = mergeNotModified(old.meta.Header, h)
	m.RequestTime, m.ResponseTime = reqAt, respAt
	e := newEntry(c.dir, m)
	if err := c.writeMeta(m); err != nil {
		c.log.Warn("cache: writing revalidated metadata", "key", m.Key, "error", err)
	}
	c.mu.Lock()
	if c.entries[m.Key] == old {
		c.insertLocked(e) // same files: nothing to remove
	}
	c.mu.Unlock()
	return e
}

// conditionalAndRange are request fields a fill or revalidation must not
// forward: the cache wants the whole representation.
var conditionalAndRange = []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"}

// upstreamRequest is the GET a flight sends: the proxied request without
// the client's conditionals and Range, identity-encoded (the ETag digest is
// over the identity bytes), conditional on the stale entry's validators.
func upstreamRequest(ctx context.Context, req *http.Request, stale *entry) *http.Request {
	out := req.Clone(ctx)
	out.Method = http.MethodGet
	out.Body, out.GetBody, out.ContentLength = nil, nil, 0
	for _, k := range conditionalAndRange {
		out.Header.Del(k)
	}
	out.Header.Set("Accept-Encoding", "identity")
	if stale != nil {
		if v := stale.meta.Header.Get("ETag"); v != "" {
			out.Header.Set("If-None-Match", v)
		}
		if v := stale.meta.Header.Get("Last-Modified"); v != "" {
			out.Header.Set("If-Modified-Since", v)
		}
	}
	return out
}

// direct sends req upstream unchanged and passes the answer on.
func (c *Cache) direct(req *http.Request, status Status) (*http.Response, error) {
	c.m.upstream.Inc()
	resp, err := c.upstream.RoundTrip(req)
	if err != nil {
		c.m.requests[status].Inc()
		return nil, &Error{Status: status, Err: err}
	}
	return c.passThrough(req, resp, status, nil), nil
}

// directIndex fetches the Concelier index for a request that could not
// use the fill it joined (stale by now, or the client asked for no-cache),
// and applies the answer to the export generation before any byte of it
// reaches the client: a client must never read an index naming an export
// whose files the cache does not serve. Index fetches are serialized
// (indexMu, also held by the flights' fetches of the index up to their
// response headers), so the generation follows the origin's answers in
// the order the origin gave them.
func (c *Cache) directIndex(req *http.Request) (*http.Response, error) {
	c.m.upstream.Inc()
	c.indexMu.Lock()
	reqAt := c.now()
	resp, err := c.upstream.RoundTrip(req)
	respAt := c.now()
	if err == nil && resp.StatusCode == http.StatusOK {
		c.observeIndex(resp, nil, reqAt, respAt)
	}
	c.indexMu.Unlock()
	if err != nil {
		c.m.requests[StatusMiss].Inc()
		return nil, &Error{Status: StatusMiss, Err: err}
	}
	return c.passThrough(req, resp, StatusMiss, nil), nil
}

// passThrough labels an upstream response and counts its bytes.
func (c *Cache) passThrough(req *http.Request, resp *http.Response, status Status, cancel context.CancelFunc) *http.Response {
	c.m.requests[status].Inc()
	resp.Header[Header] = []string{string(status)}
	resp.Request = req
	resp.Body = &countingBody{rc: resp.Body, counter: c.m.servedUpstream, onClose: cancel}
	return resp
}

// countingBody adds the bytes read to a counter when closed.
type countingBody struct {
	rc      io.ReadCloser
	n       int64
	counter prometheus.Counter
	onClose func()
	closed  bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *countingBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.rc.Close()
	b.counter.Add(float64(b.n))
	if b.onClose != nil {
		b.onClose()
	}
	return err
}

// isNotExist reports a vanished file.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// ErrorHandler is an httputil.ReverseProxy ErrorHandler for a proxy whose
// Transport is the cache: it answers 502 Bad Gateway (504 on a timeout)
// with X-Cache-Status set from the error, so that error responses carry a
// status too. The upstream error is logged, not sent to the client.
func (c *Cache) ErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	w.Header()[Header] = []string{string(StatusOfError(err))}
	code := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusGatewayTimeout
	}
	if !errors.Is(err, context.Canceled) {
		c.log.Warn("cache: upstream failed", "path", r.URL.Path, "error", err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, http.StatusText(code)+"\n")
}

// RFCOptions are the Options of a cache that applies RFC 9111 where the
// gateway is stricter on purpose (see the fields marked so). Only the
// conformance harness (bench/cmd/cacheproxy) uses them.
func RFCOptions() Options {
	return Options{HonourAuthorization: true, CDNCacheControl: true, KeepSetCookie: true, StoreAuthErrors: true}
}

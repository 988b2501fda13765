package cache

import (
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/stella-ops/stella-mirror/export"
)

// Coherence (docs/cache.md, "Export coherence").
//
// The unversioned Concelier files — /concelier/exports/mirror/{domain}/
// manifest.json, bundle.json, bundle.json.jws — are answered from one export
// generation at a time: the one the cache's current index.json names (its
// X-Stella-Export-Id). They are never stored under their own path: an
// unversioned request is mapped to the export-pinned path of the current
// generation, /concelier/exports/{exportId}/mirror/{domain}/{file}, and is
// answered from (or fills) the entry stored under that pinned key, which a
// client asking for the pinned URL shares. A fill fetches the pinned URL,
// so a miss never brings in a file newer than the index clients were
// given. The generation changes in one step under the cache's lock, the
// moment the header of an index answer with a new export id arrives and
// before any of its bytes reach a client: the new generation becomes
// current, the mapping of unversioned paths starts empty (so the old
// generation's files stop being served for them), and the old stored index
// is dropped (so it is never served, not even STALE, beside the new
// generation's files). Old pinned entries age out by LRU.

// Concelier paths the generation rule reads.
const (
	concelierExports = "/concelier/exports/"
	concelierIndex   = concelierExports + "index.json"
	concelierMirror  = concelierExports + "mirror/"
)

// ExportIDHeader is the origin's field naming the export a response of an
// export file comes from.
const ExportIDHeader = export.ExportIDHeader

// UnversionedCacheControl is the Cache-Control of the unversioned
// manifests, bundles and signatures (the runbook's contract), which the
// cache sends when it answers them from an export-pinned entry.
const UnversionedCacheControl = "public, max-age=300, immutable"

// DefaultCDNMaxAge is the default max-age of the CDN-Cache-Control field
// on unversioned manifests, bundles and signatures: the index's max-age.
const DefaultCDNMaxAge = 60 * time.Second

// MaxCDNMaxAge bounds Options.CDNMaxAge.
const MaxCDNMaxAge = time.Hour

// generation is one export of the Concelier product as the cache's current
// index names it.
type generation struct {
	id string
	// confirmed is when the origin last said this export is current (the
	// index answer's time less its Age), in Unix nanoseconds: the Age of
	// unversioned answers counts from it.
	confirmed atomic.Int64
	// pinnedMissing: the origin answered 404 for a pinned URL of this
	// export while it serves the export under the unversioned URL: fills
	// use the unversioned URL (and still store only answers whose export
	// id is this one).
	pinnedMissing atomic.Bool
}

// aliasTarget is where an unversioned file key is answered from under the
// current generation: the pinned key, and the entry last found under it
// (nil, or unlinked once replaced, evicted or purged: then looked up anew).
type aliasTarget struct {
	pk string
	e  *entry
}

// aliasedLocked returns the current generation's entry for an unversioned
// file key, or nil when the key has not been mapped or nothing is stored
// under its pinned key. c.mu must be held and c.gen set.
func (c *Cache) aliasedLocked(key string) *entry {
	a, ok := c.alias[key]
	if !ok {
		return nil
	}
	if a.e == nil || a.e.elem == nil {
		a.e = c.entries[a.pk]
		if a.e == nil {
			return nil
		}
		c.alias[key] = a
	}
	return a.e
}

// unversionedFile reports whether key is an unversioned Concelier export
// file: /concelier/exports/mirror/{domain}/{manifest.json|bundle.json|bundle.json.jws}.
func unversionedFile(key string) bool { return export.UnversionedFile(key) }

// pinnedKey is the export-pinned twin of an unversioned file key.
func pinnedKey(id, key string) string {
	return concelierExports + id + "/" + key[len(concelierExports):]
}

// pinnedFileID returns the export id of a pinned Concelier file key
// (/concelier/exports/{id}/mirror/{domain}/{file}).
func pinnedFileID(key string) (string, bool) {
	unversioned, id, ok := export.UnpinURL(key)
	return id, ok && export.UnversionedFile(unversioned)
}

// unversionedHeader is the header block an unversioned request gets for a
// stored (pinned) response of export id: the runbook's Cache-Control, and
// the CDN guidance (RFC 9213 CDN-Cache-Control no longer than the index's,
// and the export id as Cache-Tag and Surrogate-Key for a purge of one
// export at a CDN).
func (c *Cache) unversionedHeader(h http.Header, id string) http.Header {
	out := h.Clone()
	out["Cache-Control"] = []string{UnversionedCacheControl}
	out["Cdn-Cache-Control"] = c.cdnCacheControl
	out["Cache-Tag"] = []string{id}
	out["Surrogate-Key"] = []string{id}
	return out
}

// viewAge is the Age of an unversioned answer from entry age a under
// generation g: no older than the index's confirmation that g is current.
func viewAge(g *generation, a time.Duration, now time.Time) time.Duration {
	if since := now.Sub(time.Unix(0, g.confirmed.Load())); since < a {
		a = max(0, since)
	}
	return a
}

// observeIndex applies the answer to an index fetch (200 or 304; stale is
// the entry revalidated, if any) to the generation: a new export id
// switches it, the same one confirms it. It runs before any byte of the
// answer is handed to a client.
func (c *Cache) observeIndex(resp *http.Response, stale *entry, reqAt, respAt time.Time) {
	id := resp.Header.Get(ExportIDHeader)
	if id == "" && resp.StatusCode == http.StatusNotModified && stale != nil {
		id = stale.meta.Header.Get(ExportIDHeader)
	}
	c.setGeneration(id, respAt.Add(-initialAge(resp.Header, reqAt, respAt)), stale)
}

// setGeneration makes id the current generation (confirmed at the given
// time), in one step under c.mu. keep is an index entry being revalidated
// by the answer that named id: it stays when the id does not change.
func (c *Cache) setGeneration(id string, confirmed time.Time, keep *entry) {
	if id != "" && !export.ValidExportID(id) {
		c.log.Warn("cache: the origin's index names an invalid export id; unversioned files are cached by path", "export_id", id)
		id = ""
	}
	var victims []*entry
	c.mu.Lock()
	cur := c.gen
	switch {
	case cur != nil && cur.id == id:
		cur.confirmed.Store(confirmed.UnixNano())
		c.mu.Unlock()
		return
	case cur == nil && id == "":
		c.noExportID = true
		c.mu.Unlock()
		c.warnNoPinned("the origin's index carries no " + ExportIDHeader)
		return
	}
	// A switch: the stored index (of the old generation) goes, and so do
	// the old mappings and any file stored under its unversioned path
	// (from a time without generations).
	if e := c.entries[concelierIndex]; e != nil && (cur != nil || e != keep) {
		c.unlinkLocked(e)
		victims = append(victims, e)
	}
	for key, e := range c.entries {
		if unversionedFile(key) {
			c.unlinkLocked(e)
			victims = append(victims, e)
		}
	}
	for key := range c.flights {
		if unversionedFile(key) {
			delete(c.flights, key) // not joined, and not stored (endFlight)
		}
	}
	if id != "" {
		// The new export's pinned index may be negative-cached (a 404
		// for it asked before the origin published it): the index now
		// names the export, so its pinned index is asked for again.
		pk := export.PinnedIndexURL(id)
		if e := c.entries[pk]; e != nil && e.meta.status() != http.StatusOK {
			c.unlinkLocked(e)
			victims = append(victims, e)
		}
		if f := c.flights[pk]; f != nil {
			f.dropped = true // may be such a 404: not stored
			delete(c.flights, pk)
		}
	}
	clear(c.alias)
	c.gen = nil
	c.noExportID = id == ""
	if id != "" {
		g := &generation{id: id}
		g.confirmed.Store(confirmed.UnixNano())
		c.gen = g
	}
	c.mu.Unlock()
	c.removeFiles(victims)
	old := ""
	if cur != nil {
		old = cur.id
	}
	c.m.generationSwitches.Inc()
	c.log.Info("cache: export generation switched", "from", old, "to", id)
	if id == "" {
		c.warnNoPinned("the origin's index carries no " + ExportIDHeader)
	}
}

// initGeneration takes the generation from the index stored on disk.
func (c *Cache) initGeneration() {
	c.mu.Lock()
	e := c.entries[concelierIndex]
	c.mu.Unlock()
	if e == nil {
		return
	}
	id := e.meta.Header.Get(ExportIDHeader)
	if id == "" {
		return // learnt from the next index fetch
	}
	c.setGeneration(id, e.meta.ResponseTime.Add(-initialAge(e.meta.Header, e.meta.RequestTime, e.meta.ResponseTime)), e)
}

// warnNoPinned logs, once per cache, that unversioned files are cached by
// path (without the generation rule) or fetched by their unversioned URL.
func (c *Cache) warnNoPinned(why string) {
	if c.warnedPinned.CompareAndSwap(false, true) {
		c.log.Warn("cache: the origin does not serve export-pinned URLs; unversioned files are fetched by their unversioned URL "+
			"and may straddle an export switch until it is upgraded", "reason", why)
	}
}

// currentGeneration returns the generation for an unversioned request,
// learning it first from the index when none is known (a cold cache): nil
// when the origin gives none.
//
// A known generation holds only while the stored index that named it is
// fresh, or expired less than GenerationGrace ago: after that, it is
// revalidated first (one shared fill, usually a 304), so that a gateway
// whose clients ask only for files follows the origin's switches too,
// within the index's max-age plus the grace, instead of serving the old
// export's files until someone asks for the index.
func (c *Cache) currentGeneration(req *http.Request) *generation {
	c.mu.Lock()
	g, none := c.gen, c.noExportID
	fresh := g != nil && c.generationHeldLocked(c.now())
	c.mu.Unlock()
	if fresh || none {
		return g
	}
	ireq := withPath(req, concelierIndex)
	ireq.Method = http.MethodGet
	ireq.Header = req.Header.Clone()
	for _, k := range conditionalAndRange {
		ireq.Header.Del(k)
	}
	ireq.URL.RawQuery = ""
	resp, err := c.roundTripKey(ireq, concelierIndex, false, nil, "")
	if err == nil {
		// The generation is set before the first byte; the whole index is
		// read so that this request does not cancel a fill others share.
		io.Copy(io.Discard, io.LimitReader(resp.Body, int64(c.cfg.MaxObjectSize)))
		resp.Body.Close()
	}
	c.mu.Lock()
	g = c.gen
	c.mu.Unlock()
	return g
}

// GenerationGrace is how long after the stored Concelier index expires
// the unversioned files are still answered from its generation without
// asking the origin for the index first. A client reads the index and
// then the files it names: without the grace, a chain that began with the
// index a moment before it expired got its later files from the next
// export (the file request revalidated the index and switched). An index
// request is not subject to the grace: it revalidates at expiry as usual,
// and the files follow the generation it brings at once.
const GenerationGrace = 10 * time.Second

// generationHeldLocked reports whether the current generation holds for
// an unversioned request at now without revalidating the index: the
// stored Concelier index, the one the generation comes from, is fresh or
// expired less than GenerationGrace ago. c.mu must be held.
func (c *Cache) generationHeldLocked(now time.Time) bool {
	e := c.entries[concelierIndex]
	return e != nil && e.fresh.staleness(now) < GenerationGrace
}

// withPath is a shallow copy of req for another path.
func withPath(req *http.Request, path string) *http.Request {
	out := req.WithContext(req.Context())
	u := *req.URL
	u.Path, u.RawPath = path, ""
	out.URL = &u
	return out
}

// roundTripUnversioned answers an unversioned Concelier file from the
// current generation's pinned entry, filling it from the pinned URL.
func (c *Cache) roundTripUnversioned(req *http.Request, key string, force bool) (*http.Response, error) {
	resp, err := c.roundTripGeneration(req, key, force)
	if err == nil && resp.Header["Cdn-Cache-Control"] == nil &&
		(resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent || resp.StatusCode == http.StatusNotModified) {
		// Not from a pinned entry (an origin without export ids, or an
		// answer passed through): the CDN guidance all the same.
		resp.Header["Cdn-Cache-Control"] = c.cdnCacheControl
		if id := resp.Header.Get(ExportIDHeader); id != "" {
			resp.Header["Cache-Tag"] = []string{id}
			resp.Header["Surrogate-Key"] = []string{id}
		}
	}
	return resp, err
}

func (c *Cache) roundTripGeneration(req *http.Request, key string, force bool) (*http.Response, error) {
	g := c.currentGeneration(req)
	if g == nil {
		return c.roundTripKey(req, key, force, nil, "")
	}
	pk := pinnedKey(g.id, key)
	c.mu.Lock()
	if c.gen == g {
		if _, ok := c.alias[key]; !ok {
			c.alias[key] = aliasTarget{pk: pk}
		}
	}
	c.mu.Unlock()
	if g.pinnedMissing.Load() {
		return c.roundTripKey(req, pk, force, g, g.id)
	}
	resp, err := c.roundTripKey(withPath(req, pk), pk, force, g, g.id)
	if err != nil || resp.StatusCode != http.StatusNotFound {
		return resp, err
	}
	// No pinned URL for the generation: an origin without them, or one
	// that no longer holds this export. The unversioned URL's answer is
	// stored under the pinned key only if it is of this export.
	resp.Body.Close()
	resp, err = c.roundTripKey(req, pk, force, g, g.id)
	if err == nil && resp.StatusCode == http.StatusOK && resp.Header.Get(ExportIDHeader) == g.id {
		g.pinnedMissing.Store(true)
		c.warnNoPinned("404 for " + pk)
	}
	return resp, err
}

// cdnCacheControlValue is the CDN-Cache-Control field value for maxAge.
func cdnCacheControlValue(maxAge time.Duration) []string {
	return []string{"public, max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)}
}

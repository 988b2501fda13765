package cache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/internal/syncbuf"
)

// exportFiles are the Concelier files of one export, domain "primary".
type exportFiles struct {
	id                              string
	index, manifest, bundle, sigJWS []byte
}

// newExportFiles builds a consistent export: the index names the
// manifest's digest, the manifest the bundle's, and the "signature" is a
// stand-in naming the bundle's digest (the chain check, not JOSE, is what
// these tests are about).
func newExportFiles(id string, seed byte) exportFiles {
	bundle := append([]byte(`{"schemaVersion":1,"domainId":"primary","noise":"`), pattern(64, seed)...)
	bundle = append(bytes.ReplaceAll(bundle, []byte{'"'}, []byte{'x'}), []byte(`"}`)...)
	bref := export.FileRef{Path: "mirror/primary/bundle.json", SizeBytes: int64(len(bundle)), Digest: export.Digest(bundle)}
	manifest, _ := json.Marshal(export.Manifest{SchemaVersion: 1, ExportID: id, DomainID: "primary", Bundle: bref})
	index, _ := json.Marshal(export.Index{SchemaVersion: 1, ExportID: id, Domains: []export.IndexDomain{{DomainID: "primary",
		Manifest: export.FileRef{Path: "mirror/primary/manifest.json", SizeBytes: int64(len(manifest)), Digest: export.Digest(manifest)},
		Bundle:   bref}}})
	return exportFiles{id: id, index: index, manifest: manifest, bundle: bundle, sigJWS: []byte("sig:" + export.Digest(bundle))}
}

// exportOrigin serves several exports like the origin: the current one
// under the unversioned paths (index max-age=60, files max-age=300,
// immutable) and, unless pinned is off, every one under its id (one year,
// immutable); X-Stella-Export-Id on every export file unless noID.
type exportOrigin struct {
	*httptest.Server
	clock *clock

	mu      sync.Mutex
	exports map[string]exportFiles
	current string
	pinned  bool
	noID    bool
	asked   map[string]int
}

func newExportOrigin(t *testing.T, clk *clock, ex ...exportFiles) *exportOrigin {
	o := &exportOrigin{clock: clk, exports: map[string]exportFiles{}, pinned: true, asked: map[string]int{}}
	for _, e := range ex {
		o.exports[e.id] = e
	}
	o.current = ex[0].id
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *exportOrigin) switchTo(id string) {
	o.mu.Lock()
	o.current = id
	o.mu.Unlock()
}

func (o *exportOrigin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.asked[path]
}

func (o *exportOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.asked[r.URL.Path]++
	cur, pinned, noID := o.exports[o.current], o.pinned, o.noID
	exports := o.exports
	o.mu.Unlock()
	rest, ok := strings.CutPrefix(r.URL.Path, concelierExports)
	if !ok {
		http.NotFound(w, r)
		return
	}
	ex, cc := cur, "public, max-age=300, immutable"
	if id, tail, found := strings.Cut(rest, "/"); found && id != "mirror" {
		if ex, ok = exports[id]; !ok || !pinned {
			http.NotFound(w, r)
			return
		}
		rest, cc = tail, "public, max-age=31536000, immutable"
	}
	var body []byte
	switch rest {
	case "index.json":
		body = ex.index
		if cc != "public, max-age=31536000, immutable" {
			cc = "public, max-age=60"
		}
	case "mirror/primary/manifest.json":
		body = ex.manifest
	case "mirror/primary/bundle.json":
		body = ex.bundle
	case "mirror/primary/bundle.json.jws":
		body = ex.sigJWS
	default:
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	etag := etagOf(body)
	h.Set("ETag", etag)
	h.Set("Cache-Control", cc)
	h.Set("Date", o.clock.Now().Format(http.TimeFormat))
	if !noID {
		h.Set(ExportIDHeader, ex.id)
	}
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// chainSet is one client pass: index → manifest → bundle → signature.
type chainSet struct {
	index, manifest, bundle, sigJWS result
}

// verifyChain checks a set as one export: the index's manifest digest is
// the manifest's, the manifest's bundle digest the bundle's, the signature
// names the bundle. It returns the index's export id.
func verifyChain(s chainSet) (string, error) {
	for _, r := range []result{s.index, s.manifest, s.bundle, s.sigJWS} {
		if r.err != nil || r.status != http.StatusOK {
			return "", fmt.Errorf("status %d, %v", r.status, r.err)
		}
	}
	var ix export.Index
	if err := json.Unmarshal(s.index.body, &ix); err != nil || len(ix.Domains) != 1 {
		return "", fmt.Errorf("index: %v", err)
	}
	var m export.Manifest
	if err := json.Unmarshal(s.manifest.body, &m); err != nil {
		return ix.ExportID, fmt.Errorf("manifest: %v", err)
	}
	switch {
	case ix.Domains[0].Manifest.Digest != export.Digest(s.manifest.body):
		return ix.ExportID, fmt.Errorf("index %s names manifest %s, got the manifest of %s (X-Cache-Status %s)",
			ix.ExportID, ix.Domains[0].Manifest.Digest, m.ExportID, s.manifest.cache)
	case m.Bundle.Digest != export.Digest(s.bundle.body):
		return ix.ExportID, fmt.Errorf("manifest of %s names bundle %s, got %s (X-Cache-Status %s)",
			m.ExportID, m.Bundle.Digest, export.Digest(s.bundle.body), s.bundle.cache)
	case string(s.sigJWS.body) != "sig:"+export.Digest(s.bundle.body):
		return ix.ExportID, fmt.Errorf("signature %q is not over the bundle (X-Cache-Status %s)", s.sigJWS.body, s.sigJWS.cache)
	}
	return ix.ExportID, nil
}

const (
	pathIndex    = "/concelier/exports/index.json"
	pathManifest = "/concelier/exports/mirror/primary/manifest.json"
	pathBundle   = "/concelier/exports/mirror/primary/bundle.json"
	pathJWS      = "/concelier/exports/mirror/primary/bundle.json.jws"
)

func fetchSet(t *testing.T, cl *http.Client, base string) chainSet {
	t.Helper()
	return chainSet{
		index:    get(t, cl, http.MethodGet, base+pathIndex),
		manifest: get(t, cl, http.MethodGet, base+pathManifest),
		bundle:   get(t, cl, http.MethodGet, base+pathBundle),
		sigJWS:   get(t, cl, http.MethodGet, base+pathJWS),
	}
}

// coherentCache is a cache in front of an export origin, behind a reverse
// proxy as the gateway wires it.
func coherentCache(t *testing.T, o *exportOrigin, log *slog.Logger) (*Cache, string) {
	t.Helper()
	c, err := New(Config{Dir: t.TempDir(), MaxSize: 64 << 20, MaxObjectSize: 64 << 20},
		&http.Transport{ResponseHeaderTimeout: 30 * time.Second}, Options{Now: o.clock.Now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, proxy(t, c, &origin{Server: o.Server}).URL
}

// TestCoherenceAfterSwitch is the reproduction: manifest and bundle
// fetched through the cache, a new export published, 62 s later the index
// is EXPIRED and names the new export — and the manifest, bundle and
// signature must now be the new export's, not HITs of the old one (before
// the generation rule they were, for up to 300 s).
func TestCoherenceAfterSwitch(t *testing.T) {
	clk := newClock()
	a, b := newExportFiles("20261130T100000Z", 1), newExportFiles("20261130T110000Z", 2)
	o := newExportOrigin(t, clk, a, b)
	c, base := coherentCache(t, o, nil)
	cl := client(t)

	s := fetchSet(t, cl, base)
	if id, err := verifyChain(s); err != nil || id != a.id {
		t.Fatalf("first set: export %s, %v", id, err)
	}
	if s2 := fetchSet(t, cl, base); s2.manifest.cache != "HIT" || s2.bundle.cache != "HIT" || s2.index.cache != "HIT" {
		t.Fatalf("second set not HITs: index %s manifest %s bundle %s", s2.index.cache, s2.manifest.cache, s2.bundle.cache)
	}
	c.bg.Wait() // fills committed
	o.switchTo(b.id)
	clk.Advance(62 * time.Second)
	s = fetchSet(t, cl, base)
	if s.index.cache != "EXPIRED" {
		t.Errorf("index after 62s: %s, want EXPIRED", s.index.cache)
	}
	id, err := verifyChain(s)
	if err != nil {
		t.Fatalf("after the switch: %v", err)
	}
	if id != b.id {
		t.Fatalf("after the switch the index names %s, want %s", id, b.id)
	}
	for _, r := range []result{s.manifest, s.bundle, s.sigJWS} {
		if got := r.header.Get(ExportIDHeader); got != b.id {
			t.Errorf("file of export %q after the switch, want %q", got, b.id)
		}
	}
	// And again from the cache (now HITs of the new generation).
	s = fetchSet(t, cl, base)
	if id, err := verifyChain(s); err != nil || id != b.id || s.bundle.cache != "HIT" {
		t.Fatalf("third set: export %s, bundle %s, %v", id, s.bundle.cache, err)
	}
}

// TestCoherenceMissNeverNewer: the index names export A and is fresh; the
// origin has switched to B. A miss for the manifest must bring A's (its
// pinned URL), not the origin's current B — else it would be newer than
// the index clients were just given.
func TestCoherenceMissNeverNewer(t *testing.T) {
	clk := newClock()
	a, b := newExportFiles("20261130T100000Z", 1), newExportFiles("20261130T110000Z", 2)
	o := newExportOrigin(t, clk, a, b)
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	if r := mustGet(t, cl, base+pathIndex); r.cache != "MISS" {
		t.Fatalf("index: %s", r.cache)
	}
	c.bg.Wait()
	o.switchTo(b.id)
	clk.Advance(10 * time.Second)
	s := fetchSet(t, cl, base)
	if s.index.cache != "HIT" || s.manifest.cache != "MISS" {
		t.Fatalf("index %s manifest %s, want HIT and MISS", s.index.cache, s.manifest.cache)
	}
	id, err := verifyChain(s)
	if err != nil {
		t.Fatal(err)
	}
	if id != a.id {
		t.Fatalf("index names %s, want %s", id, a.id)
	}
	if n := o.count("/concelier/exports/" + a.id + "/mirror/primary/manifest.json"); n != 1 {
		t.Errorf("pinned manifest of A fetched %d times, want 1", n)
	}
	if n := o.count(pathManifest); n != 0 {
		t.Errorf("unversioned manifest fetched %d times from the origin, want 0", n)
	}
}

// TestCoherenceColdStart: the first request is for a bundle; the cache
// learns the generation from the index first, and fetches the bundle by
// its pinned URL.
func TestCoherenceColdStart(t *testing.T) {
	clk := newClock()
	a := newExportFiles("20261130T100000Z", 1)
	o := newExportOrigin(t, clk, a)
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	r := mustGet(t, cl, base+pathBundle)
	c.bg.Wait()
	if r.status != http.StatusOK || !bytes.Equal(r.body, a.bundle) {
		t.Fatalf("bundle: %d, %d bytes", r.status, len(r.body))
	}
	if o.count(pathIndex) != 1 || o.count("/concelier/exports/"+a.id+"/mirror/primary/bundle.json") != 1 || o.count(pathBundle) != 0 {
		t.Fatalf("origin asked %v, want the index and the pinned bundle", o.asked)
	}
	if s := fetchSet(t, cl, base); s.index.cache != "HIT" || s.bundle.cache != "HIT" {
		t.Fatalf("index %s bundle %s, want HITs", s.index.cache, s.bundle.cache)
	}
}

// TestCoherenceHeaders: unversioned files answered from a pinned entry
// carry the runbook's Cache-Control, the CDN guidance and the export id
// as tags; the pinned URL keeps its own header; the Age of an unversioned
// answer counts from the index's last confirmation.
func TestCoherenceHeaders(t *testing.T) {
	clk := newClock()
	a := newExportFiles("20261130T100000Z", 1)
	o := newExportOrigin(t, clk, a)
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	pinned := "/concelier/exports/" + a.id + "/mirror/primary/manifest.json"
	for i, st := range []string{"MISS", "HIT"} {
		c.bg.Wait()
		r := mustGet(t, cl, base+pathManifest)
		if r.cache != st {
			t.Fatalf("request %d: %s, want %s", i, r.cache, st)
		}
		want := map[string]string{"Cache-Control": UnversionedCacheControl, "Cdn-Cache-Control": "public, max-age=60",
			"Cache-Tag": a.id, "Surrogate-Key": a.id, ExportIDHeader: a.id}
		for k, v := range want {
			if got := r.header.Get(k); got != v {
				t.Errorf("request %d: %s = %q, want %q", i, k, got, v)
			}
		}
	}
	r := mustGet(t, cl, base+pinned)
	if r.cache != "HIT" || r.header.Get("Cache-Control") != "public, max-age=31536000, immutable" || r.header.Get("Cdn-Cache-Control") != "" {
		t.Fatalf("pinned: %s, Cache-Control %q, CDN-Cache-Control %q", r.cache, r.header.Get("Cache-Control"), r.header.Get("Cdn-Cache-Control"))
	}
	// 200 s on, the index is revalidated (same export): the manifest's
	// stored copy is 200 s old, but it was confirmed current just now.
	c.bg.Wait()
	clk.Advance(200 * time.Second)
	if r := mustGet(t, cl, base+pathIndex); r.cache != "REVALIDATED" {
		t.Fatalf("index: %s", r.cache)
	}
	clk.Advance(5 * time.Second)
	r = mustGet(t, cl, base+pathManifest)
	c.bg.Wait() // the manifest is in the memory tier
	if r.header.Get("Age") != "5" {
		t.Errorf("unversioned Age %q, want 5 (since the index's revalidation)", r.header.Get("Age"))
	}
	h, ok := c.LookupHit(pathManifest, true, func(string) bool { return false })
	if !ok {
		t.Fatal("LookupHit: no hit for the unversioned manifest")
	}
	defer h.Release(0)
	if h.Age != "5" || h.Header.Get("Cdn-Cache-Control") != "public, max-age=60" || !bytes.Equal(h.Body, a.manifest) {
		t.Errorf("LookupHit: Age %q, CDN-Cache-Control %q, body of %d bytes", h.Age, h.Header.Get("Cdn-Cache-Control"), len(h.Body))
	}
}

// TestCoherenceLookupHitSwitch: the fast hit path follows the generation:
// after the switch it finds no hit for the old generation's files.
func TestCoherenceLookupHitSwitch(t *testing.T) {
	clk := newClock()
	a, b := newExportFiles("20261130T100000Z", 1), newExportFiles("20261130T110000Z", 2)
	o := newExportOrigin(t, clk, a, b)
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	fetchSet(t, cl, base)
	fetchSet(t, cl, base) // in the memory tier
	c.bg.Wait()
	no := func(string) bool { return false }
	h, ok := c.LookupHit(pathBundle, true, no)
	if !ok || !bytes.Equal(h.Body, a.bundle) {
		t.Fatalf("LookupHit before the switch: %v", ok)
	}
	h.Release(0)
	o.switchTo(b.id)
	clk.Advance(61 * time.Second)
	c.bg.Wait()
	if r := mustGet(t, cl, base+pathIndex); r.cache != "EXPIRED" {
		t.Fatalf("index: %s", r.cache)
	}
	if h, ok := c.LookupHit(pathBundle, true, no); ok {
		h.Release(0)
		t.Fatalf("LookupHit after the switch served %d bytes (the old generation's bundle)", len(h.Body))
	}
	mustGet(t, cl, base+pathBundle)
	c.bg.Wait()
	mustGet(t, cl, base+pathBundle) // in the memory tier
	h, ok = c.LookupHit(pathBundle, true, no)
	if !ok || !bytes.Equal(h.Body, b.bundle) {
		t.Fatalf("LookupHit after the refill: %v", ok)
	}
	h.Release(0)
}

// TestCoherenceFallbacks: an origin without pinned URLs (404) but with
// X-Stella-Export-Id: files come from the unversioned URL, are stored
// (under the generation) and a warning is logged once; an origin without
// export ids: the cache behaves as before (cached by path).
func TestCoherenceFallbacks(t *testing.T) {
	t.Run("no pinned URLs", func(t *testing.T) {
		clk := newClock()
		a := newExportFiles("20261130T100000Z", 1)
		o := newExportOrigin(t, clk, a)
		o.pinned = false
		var logs lockedLog
		c, base := coherentCache(t, o, slog.New(slog.NewTextHandler(&logs, nil)))
		cl := client(t)
		for i, st := range []string{"MISS", "HIT"} {
			c.bg.Wait()
			s := fetchSet(t, cl, base)
			if _, err := verifyChain(s); err != nil {
				t.Fatalf("set %d: %v", i, err)
			}
			if s.bundle.cache != st {
				t.Errorf("set %d: bundle %s, want %s", i, s.bundle.cache, st)
			}
		}
		if n := strings.Count(logs.String(), "does not serve export-pinned URLs"); n != 1 {
			t.Errorf("warning logged %d times, want once:\n%s", n, logs.String())
		}
		// The first pinned 404 (the manifest's) is remembered for the
		// generation: the bundle and signature go straight to their
		// unversioned URLs.
		if m, b := o.count("/concelier/exports/"+a.id+"/mirror/primary/manifest.json"),
			o.count("/concelier/exports/"+a.id+"/mirror/primary/bundle.json"); m != 1 || b != 0 {
			t.Errorf("pinned manifest asked %d times, pinned bundle %d times; want 1 and 0", m, b)
		}
	})
	t.Run("no export ids", func(t *testing.T) {
		clk := newClock()
		a := newExportFiles("20261130T100000Z", 1)
		o := newExportOrigin(t, clk, a)
		o.noID = true
		c, base := coherentCache(t, o, nil)
		cl := client(t)
		for i, st := range []string{"MISS", "HIT"} {
			c.bg.Wait()
			s := fetchSet(t, cl, base)
			if _, err := verifyChain(s); err != nil {
				t.Fatalf("set %d: %v", i, err)
			}
			if s.manifest.cache != st {
				t.Errorf("set %d: manifest %s, want %s", i, s.manifest.cache, st)
			}
			if got := s.bundle.header.Get("Cdn-Cache-Control"); got != "public, max-age=60" {
				t.Errorf("set %d: CDN-Cache-Control %q on a file cached by path", i, got)
			}
		}
		if n := o.count(pathIndex); n != 1 {
			t.Errorf("index asked %d times, want 1", n)
		}
	})
}

// TestCoherenceRestart: the generation is restored from the index stored
// on disk; the unversioned files are answered from the pinned entries
// without asking the origin.
func TestCoherenceRestart(t *testing.T) {
	clk := newClock()
	a := newExportFiles("20261130T100000Z", 1)
	o := newExportOrigin(t, clk, a)
	dir := t.TempDir()
	open := func() *Cache {
		c, err := New(Config{Dir: dir, MaxSize: 64 << 20, MaxObjectSize: 64 << 20},
			&http.Transport{ResponseHeaderTimeout: 30 * time.Second}, Options{Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := open()
	base := proxy(t, c, &origin{Server: o.Server}).URL
	cl := client(t)
	fetchSet(t, cl, base)
	c.bg.Wait()
	c.Close()
	asked := o.count(pathIndex) + o.count("/concelier/exports/"+a.id+"/mirror/primary/bundle.json")
	c = open()
	defer c.Close()
	base = proxy(t, c, &origin{Server: o.Server}).URL
	r := mustGet(t, cl, base+pathBundle)
	if r.cache != "HIT" || !bytes.Equal(r.body, a.bundle) {
		t.Fatalf("bundle after restart: %s", r.cache)
	}
	if n := o.count(pathIndex) + o.count("/concelier/exports/"+a.id+"/mirror/primary/bundle.json"); n != asked {
		t.Errorf("origin asked %d more times after the restart, want 0", n-asked)
	}
}

// TestCoherenceConcurrentSwitches: readers loop index → manifest → bundle
// → signature while the origin publishes export after export and the
// clock moves past the index's max-age. Exports only move forward, so a
// reader's files may be of the export its index names or of a later one
// (another reader's index request may switch the generation between two
// of its requests), never of an earlier one; and a set fetched while no
// switch happens is one chain.
func TestCoherenceConcurrentSwitches(t *testing.T) {
	clk := newClock()
	const n = 6
	var ex []exportFiles
	for i := range n {
		ex = append(ex, newExportFiles(fmt.Sprintf("20261130T1%d0000Z", i), byte(i+1)))
	}
	o := newExportOrigin(t, clk, ex...)
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	seq := func(id string) int {
		for i, e := range ex {
			if e.id == id {
				return i
			}
		}
		return -1
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var sets, older atomic.Int64
	errc := make(chan error, 8)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && !stop.Load(); i++ {
				s := fetchSet(t, cl, base)
				sets.Add(1)
				var ix export.Index
				if err := json.Unmarshal(s.index.body, &ix); err != nil {
					errc <- fmt.Errorf("index: %v", err)
					return
				}
				for _, r := range []result{s.manifest, s.bundle, s.sigJWS} {
					if r.status != http.StatusOK {
						errc <- fmt.Errorf("status %d", r.status)
						return
					}
					if seq(r.header.Get(ExportIDHeader)) < seq(ix.ExportID) {
						older.Add(1)
						errc <- fmt.Errorf("index of %s, then a file of the older %s (%s)", ix.ExportID, r.header.Get(ExportIDHeader), r.cache)
						return
					}
				}
			}
		}()
	}
	for i := 1; i < n; i++ {
		before := sets.Load()
		for deadline := time.Now().Add(10 * time.Second); sets.Load() < before+20 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // let the readers run a few sets; bounded
		}
		o.switchTo(ex[i].id)
		clk.Advance(61 * time.Second)
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if sets.Load() < 20*(n-1) {
		t.Fatalf("only %d sets fetched", sets.Load())
	}
	// An index fetch answered just before the last switch may have been
	// stored with the clock already advanced: one more max-age.
	c.bg.Wait()
	clk.Advance(61 * time.Second)
	s := fetchSet(t, cl, base)
	if id, err := verifyChain(s); err != nil || id != ex[n-1].id {
		t.Fatalf("final set: export %s, %v", id, err)
	}
}

// lockedLog is a log sink for concurrent writers.
type lockedLog = syncbuf.Buffer

// TestLookupHitUnversionedAllocs: the generation costs the fast hit path
// no allocation.
func TestLookupHitUnversionedAllocs(t *testing.T) {
	clk := newClock()
	a := newExportFiles("20261130T100000Z", 1)
	o := newExportOrigin(t, clk, a)
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	fetchSet(t, cl, base)
	c.bg.Wait()
	fetchSet(t, cl, base) // promoted to memory
	c.bg.Wait()
	no := func(string) bool { return false }
	for _, key := range []string{pathIndex, pathBundle} {
		allocs := testing.AllocsPerRun(1000, func() {
			h, ok := c.LookupHit(key, true, no)
			if !ok || h.Body == nil {
				t.Fatalf("%s: not a memory-tier hit", key)
			}
			h.Release(int64(len(h.Body)))
		})
		if allocs != 0 {
			t.Errorf("LookupHit(%s) allocates %.1f times, want 0", key, allocs)
		}
	}
}

// TestCoherencePurgeUnversioned: purging an unversioned path removes the
// object it is answered from (the current generation's pinned one).
func TestCoherencePurgeUnversioned(t *testing.T) {
	clk := newClock()
	a := newExportFiles("20261130T100000Z", 1)
	o := newExportOrigin(t, clk, a)
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	mustGet(t, cl, base+pathBundle)
	c.bg.Wait()
	if n := c.Purge(pathBundle); n != 1 {
		t.Fatalf("Purge(%s) = %d, want 1", pathBundle, n)
	}
	if r := mustGet(t, cl, base+pathBundle); r.cache != "MISS" || !bytes.Equal(r.body, a.bundle) {
		t.Fatalf("after the purge: %s", r.cache)
	}
}

// TestCoherenceFallbackKeepsGeneration: with an origin without pinned URLs,
// a stored file of the generation that expired is revalidated by its
// unversioned URL; when the origin has moved on to another export by then,
// the stored copy (the generation's file) is served, not the newer one.
func TestCoherenceFallbackKeepsGeneration(t *testing.T) {
	clk := newClock()
	a, b := newExportFiles("20261130T100000Z", 1), newExportFiles("20261130T110000Z", 2)
	o := newExportOrigin(t, clk, a, b)
	o.pinned = false
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	fetchSet(t, cl, base)
	c.bg.Wait()
	// The index is revalidated at 250 s (still A), so that at 301 s the
	// manifest has expired while the index naming A is fresh.
	clk.Advance(250 * time.Second)
	mustGet(t, cl, base+pathIndex)
	c.bg.Wait()
	clk.Advance(51 * time.Second)
	o.switchTo(b.id)
	r := mustGet(t, cl, base+pathManifest)
	if !bytes.Equal(r.body, a.manifest) {
		t.Fatalf("manifest of %s (%s) while the index names %s", r.header.Get(ExportIDHeader), r.cache, a.id)
	}
	if r.cache != "STALE" {
		t.Errorf("X-Cache-Status %s, want STALE", r.cache)
	}
	c.bg.Wait()
	clk.Advance(10 * time.Second) // the index (revalidated at 250 s) expires
	s := fetchSet(t, cl, base)
	if id, err := verifyChain(s); err != nil || id != b.id {
		t.Fatalf("after the index: export %s, %v", id, err)
	}
}

// TestCoherenceQueryStrings: a query string (which the origin ignores)
// must not take an unversioned file or the index out of the generation
// rule: before the fix "…/manifest.json?x=1" was stored under its own
// key, filled from the unversioned URL and served for 300 s after a
// switch, a manifest of the old export under the new index.
func TestCoherenceQueryStrings(t *testing.T) {
	clk := newClock()
	a, b := newExportFiles("20261130T100000Z", 1), newExportFiles("20261130T110000Z", 2)
	o := newExportOrigin(t, clk, a, b)
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	withQuery := func() chainSet {
		return chainSet{
			index:    get(t, cl, http.MethodGet, base+pathIndex+"?v=1"),
			manifest: get(t, cl, http.MethodGet, base+pathManifest+"?v=1"),
			bundle:   get(t, cl, http.MethodGet, base+pathBundle+"?cb=2"),
			sigJWS:   get(t, cl, http.MethodGet, base+pathJWS+"?x"),
		}
	}
	if id, err := verifyChain(withQuery()); err != nil || id != a.id {
		t.Fatalf("first set: export %s, %v", id, err)
	}
	c.bg.Wait()
	o.switchTo(b.id)
	clk.Advance(62 * time.Second)
	s := withQuery()
	id, err := verifyChain(s)
	if err != nil || id != b.id {
		t.Fatalf("with query strings after the switch: export %s, %v", id, err)
	}
	for _, r := range []result{s.manifest, s.bundle, s.sigJWS} {
		if got := r.header.Get(ExportIDHeader); got != b.id {
			t.Errorf("file of export %q with a query string after the switch, want %q", got, b.id)
		}
	}
}

// TestCoherenceFilesOnlyAfterSwitch: a gateway whose clients ask only for
// files (another node, a CDN or a client that took the index elsewhere)
// must not serve the old export for ever: once the stored index is no
// longer fresh, an unversioned file request revalidates it first, and
// the files follow the export it names. Before, the generation advanced
// only when someone asked for the index, and a files-only gateway served
// the old export's files as HITs indefinitely.
func TestCoherenceFilesOnlyAfterSwitch(t *testing.T) {
	p := newPrimedSwitch(t)
	clk, a, b, base, cl := p.clk, p.a, p.b, p.base, p.cl
	// Within the index's max-age the files stay the index's export (A).
	clk.Advance(30 * time.Second)
	if r := get(t, cl, http.MethodGet, base+pathManifest); r.header.Get(ExportIDHeader) != a.id || r.cache != "HIT" {
		t.Fatalf("manifest within the index's max-age: export %q, %s; want %s, HIT", r.header.Get(ExportIDHeader), r.cache, a.id)
	}
	// Past the index's max-age plus GenerationGrace, no index asked: the
	// files revalidate the index and follow the origin's switch.
	clk.Advance(30*time.Second + GenerationGrace + time.Second)
	for _, p := range []string{pathManifest, pathBundle, pathJWS} {
		if r := get(t, cl, http.MethodGet, base+p); r.status != 200 || r.header.Get(ExportIDHeader) != b.id {
			t.Errorf("%s after the index expired, no index asked: status %d, export %q, want %s", p, r.status, r.header.Get(ExportIDHeader), b.id)
		}
	}
	if id, err := verifyChain(fetchSet(t, cl, base)); err != nil || id != b.id {
		t.Fatalf("set after the switch: export %s, %v", id, err)
	}
}

// TestCoherenceOwnChainAcrossIndexExpiry is the CI failure of
// TestDemoGatewayCoherence (test/e2e) made deterministic: a client got
// the index (a HIT, 59 s old) a moment before it expired, and its
// manifest, bundle and JWS requests came after the expiry. Before
// GenerationGrace, the first file request after the expiry revalidated
// the index, switched to the origin's new export, and the JWS (or the
// manifest) came from that export: one set, two exports. Within the grace
// the files stay the generation of the index the client holds, without an
// index request to the origin; the client's next index request
// revalidates (EXPIRED) and the files follow it at once.
func TestCoherenceOwnChainAcrossIndexExpiry(t *testing.T) {
	for _, tc := range []struct {
		name string
		// after is how long after the index's expiry the file requests
		// come; split is where the chain is cut: the files before it are
		// fetched before the expiry.
		after time.Duration
		split int
	}{
		{"all files after the expiry", time.Second, 0},
		{"manifest and bundle before, JWS after", 2 * time.Second, 2},
		{"just inside the grace", GenerationGrace - time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPrimedSwitch(t)
			clk, a, b, o, base, cl := p.clk, p.a, p.b, p.o, p.base, p.cl
			clk.Advance(59 * time.Second)
			s := chainSet{index: get(t, cl, http.MethodGet, base+pathIndex)}
			if s.index.cache != "HIT" {
				t.Fatalf("index at 59 s: %s, want HIT", s.index.cache)
			}
			indexFetches := o.count(pathIndex)
			files := []*result{&s.manifest, &s.bundle, &s.sigJWS}
			paths := []string{pathManifest, pathBundle, pathJWS}
			for i := range files {
				if i == tc.split {
					clk.Advance(time.Second + tc.after) // past the index's 60 s
				}
				*files[i] = get(t, cl, http.MethodGet, base+paths[i])
			}
			if id, err := verifyChain(s); err != nil || id != a.id {
				t.Fatalf("the chain begun with the index of %s: export %s, %v (manifest %s, bundle %s, jws %s of %q)",
					a.id, id, err, s.manifest.cache, s.bundle.cache, s.sigJWS.cache, s.sigJWS.header.Get(ExportIDHeader))
			}
			if n := o.count(pathIndex); n != indexFetches {
				t.Errorf("the files within the grace asked the origin for the index (%d times, want %d)", n, indexFetches)
			}
			// The client's next set: the index revalidates and names B,
			// and the files follow it.
			s = fetchSet(t, cl, base)
			if s.index.cache != "EXPIRED" {
				t.Errorf("next index: %s, want EXPIRED", s.index.cache)
			}
			if id, err := verifyChain(s); err != nil || id != b.id {
				t.Fatalf("next set: export %s, %v; want %s", id, err, b.id)
			}
		})
	}
}

// primedSwitch is a cache in front of an export origin whose client has
// fetched one set of export A (verified as a chain, fills committed),
// after which the origin switched to export B; the cache has not asked it
// since.
type primedSwitch struct {
	clk  *clock
	a, b exportFiles
	o    *exportOrigin
	c    *Cache
	base string
	cl   *http.Client
}

func newPrimedSwitch(t *testing.T) *primedSwitch {
	t.Helper()
	p := &primedSwitch{clk: newClock(), a: newExportFiles("20261130T100000Z", 1), b: newExportFiles("20261130T110000Z", 2)}
	p.o = newExportOrigin(t, p.clk, p.a, p.b)
	p.c, p.base = coherentCache(t, p.o, nil)
	p.cl = client(t)
	if id, err := verifyChain(fetchSet(t, p.cl, p.base)); err != nil || id != p.a.id {
		t.Fatalf("priming: export %s, %v", id, err)
	}
	p.c.bg.Wait()
	p.o.switchTo(p.b.id)
	return p
}

// TestCoherenceForeignAnswerNotStored: an origin without pinned URLs, as
// behind a balancer whose nodes are briefly on different exports. The
// index (export A) is cached; a node on B answers the unversioned
// manifest with B's file. That answer is passed through but not stored
// under A's generation: once the nodes agree on A again, a client's chain
// (index → manifest → bundle → signature) is A's, whole. Before, the
// mutation cache-wrong-export-stored (the export id check dropped from
// the store decision) survived: B's manifest was stored as A's and served
// as a HIT beside A's index, a chain that does not verify.
func TestCoherenceForeignAnswerNotStored(t *testing.T) {
	clk := newClock()
	a, b := newExportFiles("20261130T100000Z", 1), newExportFiles("20261130T110000Z", 2)
	o := newExportOrigin(t, clk, a, b)
	o.pinned = false
	c, base := coherentCache(t, o, nil)
	cl := client(t)
	if r := mustGet(t, cl, base+pathIndex); r.cache != "MISS" || !bytes.Equal(r.body, a.index) {
		t.Fatalf("index: %s, %d bytes", r.cache, len(r.body))
	}
	c.bg.Wait()
	o.switchTo(b.id) // the node answering next is on B
	clk.Advance(10 * time.Second)
	if r := mustGet(t, cl, base+pathManifest); r.cache == "HIT" {
		t.Fatalf("manifest while the origin answers B: %s", r.cache)
	}
	c.bg.Wait()
	o.switchTo(a.id) // the nodes agree on A again; the index is still fresh
	s := fetchSet(t, cl, base)
	id, err := verifyChain(s)
	if err != nil {
		t.Fatalf("the chain after a foreign answer (manifest %s): %v", s.manifest.cache, err)
	}
	if id != a.id || !bytes.Equal(s.manifest.body, a.manifest) {
		t.Fatalf("chain of %s, manifest %s (A's: %v); want A's", id, s.manifest.cache, bytes.Equal(s.manifest.body, a.manifest))
	}
}

// TestFastPathFollowsGenerationGrace: the fast hit path (LookupHit, used
// by both engines' hit paths) answers an unversioned file from the
// current generation while the index is fresh or expired less than
// GenerationGrace ago, and steps aside after that, so that the full path
// revalidates the index first. The mutation that let the fast path serve
// the generation regardless (cache-fastpath-generation-expired) survived
// every cache and gateway test: the coherence tests went through the full
// path only.
func TestFastPathFollowsGenerationGrace(t *testing.T) {
	p := newPrimedSwitch(t)
	no := func(string) bool { return false }
	stored := p.clk.Now()
	for _, tc := range []struct {
		name string
		at   time.Duration // since the index was stored (max-age 60 s)
		want bool
	}{
		{"index fresh", 30 * time.Second, true},
		{"index expired, within the grace", 60*time.Second + GenerationGrace - time.Second, true},
		{"index expired beyond the grace", 60*time.Second + GenerationGrace + time.Second, false},
	} {
		p.clk.Advance(stored.Add(tc.at).Sub(p.clk.Now()))
		h, ok := p.c.LookupHit(pathManifest, true, no)
		if ok {
			if !bytes.Equal(h.Body, p.a.manifest) {
				t.Errorf("%s: the fast path answered %d bytes, not export %s's manifest", tc.name, len(h.Body), p.a.id)
			}
			h.Release(0)
		}
		if ok != tc.want {
			t.Errorf("%s: answered by the fast path %v, want %v", tc.name, ok, tc.want)
		}
	}
}

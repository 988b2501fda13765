package cache

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stella-ops/stella-mirror/internal/atomicfile"
)

// On disk, the cache directory holds one subdirectory per format version.
// In it, every stored object is a pair of files named by a version stem
// <sha256(key)[:32]>-<unique>: the body (<stem>.body, exactly the bytes
// served) and its metadata (<stem>.meta, JSON). A fill writes the body to
// a temporary file (tmp-*), fsyncs it and renames it to <stem>.body; then
// the metadata is written atomically. The .meta file is the commit point:
// at start, every .meta whose body exists with the recorded size becomes an
// entry (the newest one per key) and every other file (temporary files of
// interrupted fills, bodies without metadata, superseded versions) is
// deleted. A 304 revalidation rewrites only the .meta file.
const (
	formatDir  = "v1"
	metaSuffix = ".meta"
	bodySuffix = ".body"
	tmpPrefix  = "tmp-"
)

// meta is the JSON sidecar of a stored object.
type meta struct {
	Key          string      `json:"key"`
	Stem         string      `json:"stem"`
	Size         int64       `json:"size"`
	SHA256       string      `json:"sha256"`
	Header       http.Header `json:"header"`
	RequestTime  time.Time   `json:"requestTime"`
	ResponseTime time.Time   `json:"responseTime"`
	// Status is the stored response's status code; 0 means 200.
	Status int `json:"status,omitempty"`
	// CDN: the response's CDN-Cache-Control is its caching policy (RFC
	// 9213; Options.CDNCacheControl when it was stored).
	CDN bool `json:"cdn,omitempty"`
	// Vary are the request fields this variant was selected by (vary.go);
	// Key is then a variant key.
	Vary []string `json:"vary,omitempty"`
}

// status is the stored status code.
func (m *meta) status() int {
	if m.Status == 0 {
		return http.StatusOK
	}
	return m.Status
}

// entry is one stored object in the index. Its fields other than the list
// elements and mem are immutable; a revalidation replaces the entry with a
// new one for the same files.
type entry struct {
	meta  meta
	fresh freshness
	body  string // absolute path of the body file

	// contentLength is the Content-Length header value of the whole body
	// (the fast hit path sends it without formatting it per request).
	contentLength []string
	// view is the header an unversioned request answered from this entry
	// gets (an export-pinned Concelier file; see coherence.go), else nil.
	view http.Header

	elem    *list.Element // in Cache.lru; nil once removed
	mem     []byte        // body in the memory tier, guarded by Cache.mu
	memElem *list.Element // in Cache.memLRU
}

func newEntry(dir string, m meta) *entry {
	return &entry{
		meta:  m,
		fresh: freshnessOf(m.Header, m.status(), m.Key, m.CDN, m.RequestTime, m.ResponseTime),
		body:  filepath.Join(dir, m.Stem+bodySuffix),

		contentLength: []string{strconv.FormatInt(m.Size, 10)},
	}
}

func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

func (c *Cache) metaPath(stem string) string { return filepath.Join(c.dir, stem+metaSuffix) }

// newStem returns a version stem for key that no earlier run used.
func (c *Cache) newStem(key string) string {
	return fmt.Sprintf("%s-%x-%x", keyHash(key), c.startNanos, c.seq.Add(1))
}

// writeMeta commits an entry's metadata atomically.
func (c *Cache) writeMeta(m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(c.metaPath(m.Stem), b, 0o600)
}

// loadIndex rebuilds the index from the directory, deleting everything
// that is not a complete object.
func (c *Cache) loadIndex() error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("cache: creating %s: %w", c.dir, err)
	}
	des, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("cache: reading %s: %w", c.dir, err)
	}
	newest := map[string]meta{}
	for _, de := range des {
		name := de.Name()
		if !de.Type().IsRegular() || !strings.HasSuffix(name, metaSuffix) {
			continue
		}
		m, err := c.readMeta(name)
		if err != nil {
			c.log.Warn("cache: ignoring unreadable object", "file", name, "error", err)
			continue
		}
		if old, ok := newest[m.Key]; !ok || m.ResponseTime.After(old.ResponseTime) {
			newest[m.Key] = m
		}
	}
	keep := map[string]bool{}
	metas := make([]meta, 0, len(newest))
	for _, m := range newest {
		keep[m.Stem+metaSuffix], keep[m.Stem+bodySuffix] = true, true
		metas = append(metas, m)
	}
	for _, de := range des {
		if !keep[de.Name()] {
			if err := os.RemoveAll(filepath.Join(c.dir, de.Name())); err != nil {
				c.log.Warn("cache: removing stray file", "file", de.Name(), "error", err)
			}
		}
	}
	// Oldest first, so the most recently fetched end up most recently used.
	sort.Slice(metas, func(i, j int) bool { return metas[i].ResponseTime.Before(metas[j].ResponseTime) })
	var victims []*entry
	c.mu.Lock()
	for _, m := range metas {
		victims = append(victims, c.insertLocked(newEntry(c.dir, m))...)
	}
	c.mu.Unlock()
	c.removeFiles(victims)
	return nil
}

// readMeta reads and checks one .meta file: its name must match its stem
// and key, and its body must exist with the recorded size.
func (c *Cache) readMeta(name string) (meta, error) {
	var m meta
	b, err := os.ReadFile(filepath.Join(c.dir, name))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decoding: %w", err)
	}
	if m.Stem+metaSuffix != name || !strings.HasPrefix(m.Stem, keyHash(m.Key)+"-") {
		return m, errors.New("name does not match key")
	}
	st, err := os.Stat(filepath.Join(c.dir, m.Stem+bodySuffix))
	if err != nil {
		return m, fmt.Errorf("body: %w", err)
	}
	if st.Size() != m.Size {
		return m, fmt.Errorf("body has %d bytes, metadata says %d", st.Size(), m.Size)
	}
	return m, nil
}

// insertLocked makes e the entry for its key and the most recently used,
// and returns the entries whose files must now be deleted (the replaced
// version, evicted objects). c.mu must be held.
func (c *Cache) insertLocked(e *entry) (victims []*entry) {
	var keepMem []byte
	if old := c.entries[e.meta.Key]; old != nil {
		if old.meta.Stem == e.meta.Stem {
			keepMem = old.mem // a revalidation: same body
		} else {
			victims = append(victims, old)
		}
		c.unlinkLocked(old)
	}
	c.entries[e.meta.Key] = e
	e.elem = c.lru.PushFront(e)
	victims = append(victims, c.noteVariantLocked(e)...)
	if id, ok := pinnedFileID(e.meta.Key); ok && e.view == nil {
		e.view = c.unversionedHeader(e.meta.Header, id)
	}
	c.size += e.meta.Size
	if keepMem != nil {
		c.memPutLocked(e, keepMem)
	}
	for c.size > int64(c.cfg.MaxSize) {
		back := c.lru.Back()
		if back == nil || back.Value.(*entry) == e {
			break
		}
		v := back.Value.(*entry)
		c.unlinkLocked(v)
		victims = append(victims, v)
		c.m.evictDisk.Inc()
	}
	c.m.storedBytes.Set(float64(c.size))
	c.m.storedObjects.Set(float64(len(c.entries)))
	return victims
}

// unlinkLocked removes e from the index and the memory tier (not its files).
func (c *Cache) unlinkLocked(e *entry) {
	if e.elem == nil {
		return
	}
	c.lru.Remove(e.elem)
	e.elem = nil
	if c.entries[e.meta.Key] == e {
		delete(c.entries, e.meta.Key)
	}
	c.size -= e.meta.Size
	c.memDropLocked(e)
	c.m.storedBytes.Set(float64(c.size))
	c.m.storedObjects.Set(float64(len(c.entries)))
}

// removeFiles deletes the files of entries no longer in the index: the
// metadata first, so a crash in between leaves only an orphan body that
// the next start deletes. Readers that already opened a body keep reading
// it (the inode lives until they close it).
func (c *Cache) removeFiles(es []*entry) {
	for _, e := range es {
		if err := os.Remove(c.metaPath(e.meta.Stem)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cache: removing object", "key", e.meta.Key, "error", err)
		}
		if err := os.Remove(e.body); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cache: removing object", "key", e.meta.Key, "error", err)
		}
	}
}

// touchLocked marks e most recently used.
func (c *Cache) touchLocked(e *entry) {
	if e.elem != nil {
		c.lru.MoveToFront(e.elem)
	}
	if e.memElem != nil {
		c.memLRU.MoveToFront(e.memElem)
	}
}

// memPutLocked puts e's body into the memory tier, dropping least recently
// used bodies to stay within MemoryMaxSize.
func (c *Cache) memPutLocked(e *entry, body []byte) {
	if e.elem == nil || e.memElem != nil || int64(len(body)) > int64(c.cfg.MemoryMaxObjectSize) {
		return
	}
	e.mem = body
	e.memElem = c.memLRU.PushFront(e)
	c.memSize += int64(len(body))
	for c.memSize > int64(c.cfg.MemoryMaxSize) {
		back := c.memLRU.Back()
		if back == nil {
			break
		}
		c.memDropLocked(back.Value.(*entry))
		c.m.evictMemory.Inc()
	}
	c.m.memoryBytes.Set(float64(c.memSize))
	c.m.memoryObjects.Set(float64(c.memLRU.Len()))
}

func (c *Cache) memDropLocked(e *entry) {
	if e.memElem == nil {
		return
	}
	c.memLRU.Remove(e.memElem)
	e.memElem = nil
	c.memSize -= int64(len(e.mem))
	e.mem = nil
	c.m.memoryBytes.Set(float64(c.memSize))
	c.m.memoryObjects.Set(float64(c.memLRU.Len()))
}

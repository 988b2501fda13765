package basicauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Authenticator checks a user name and password.
//
// Authenticate MUST be safe for concurrent use and MUST take about as long
// for an unknown user as for a known one with a wrong password.
type Authenticator interface {
	Authenticate(user, password string) bool
}

var _ Authenticator = (*File)(nil)

// Defaults of Options.
const (
	DefaultCacheTTL  = 5 * time.Minute
	DefaultCacheSize = 10_000
)

// Options tune a File. Zero values mean the defaults written beside them.
type Options struct {
	// CacheTTL is how long a verified credential is remembered. Default:
	// DefaultCacheTTL. Negative disables the cache.
	CacheTTL time.Duration
	// CacheSize bounds the number of remembered credentials. Default:
	// DefaultCacheSize.
	CacheSize int
	// AllowLegacy accepts apr1, {SHA} and {SSHA} hashes with a warning
	// (LoadOptions.AllowLegacy). Default: false, they are load errors.
	AllowLegacy bool
	// Gate bounds the hash comparisons running at once; share one Gate
	// between every File of a process. Default: a Gate of GOMAXPROCS for
	// this File alone.
	Gate *Gate
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// Logger receives reload results. Default: discard.
	Logger *slog.Logger
	// OnReload, if set, is called after every reload attempt with its error
	// (nil on success) — metrics hook.
	OnReload func(err error)
	// OnCheck, if set, is called after every bcrypt comparison (the dummy
	// ones included) — metrics hook.
	OnCheck func()
	// OnCollapsed, if set, is called when a check took the answer of an
	// identical check (same user and password) already in progress instead
	// of running its own — metrics hook.
	OnCollapsed func()
	// Compare compares a bcrypt hash with a password. Default:
	// bcrypt.CompareHashAndPassword. Tests count comparisons with it.
	Compare func(hash, password []byte) error
}

// File is an Authenticator backed by an htpasswd file that can be reloaded.
//
// Every check that is not a hit of the verified-credential cache runs
// exactly one bcrypt comparison at the cost of the file's users, whoever
// asks: a known user's hash, or a dummy hash at the same cost for an
// unknown user, and the dummy as well (after the real comparison) for a
// legacy hash, so that neither the user's existence nor its scheme shows
// in the time an answer takes. Comparisons wait for a slot of the Gate;
// identical checks in progress are collapsed into one.
type File struct {
	path   string
	opts   Options
	table  atomic.Pointer[Table]
	cache  *credCache
	flight flight
}

// dummies holds one dummy bcrypt hash per cost, made once per process.
var dummies sync.Map // int → []byte

// dummyHash returns a bcrypt hash of a fixed text at cost.
func dummyHash(cost int) []byte {
	if h, ok := dummies.Load(cost); ok {
		return h.([]byte)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("stella-mirror timing equaliser"), cost)
	if err != nil {
		panic(fmt.Sprintf("bcrypt dummy hash at cost %d: %v", cost, err)) // cost is within bcrypt's range by Parse
	}
	v, _ := dummies.LoadOrStore(cost, h)
	return v.([]byte)
}

// Open loads path (which must be valid) and returns a File serving it.
func Open(path string, opts Options) (*File, error) {
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Gate == nil {
		opts.Gate = NewGate(0)
	}
	if opts.Compare == nil {
		opts.Compare = bcrypt.CompareHashAndPassword
	}
	f := &File{path: path, opts: opts, cache: newCredCache(opts.CacheSize)}
	t, err := f.load()
	if err != nil {
		return nil, err
	}
	f.table.Store(t)
	for _, w := range t.Warnings {
		opts.Logger.Warn("weak htpasswd hash", "file", path, "warning", w)
	}
	return f, nil
}

// load reads the file and prepares its dummy hash.
func (f *File) load() (*Table, error) {
	t, err := LoadFile(f.path, LoadOptions{AllowLegacy: f.opts.AllowLegacy})
	if err != nil {
		return nil, err
	}
	t.dummy = dummyHash(t.cost)
	return t, nil
}

// Path is the htpasswd file's path.
func (f *File) Path() string { return f.path }

// Table returns the table in use.
func (f *File) Table() *Table { return f.table.Load() }

// Reload re-reads the file. When it is invalid (or unreadable) the last good
// table stays in use and the error is returned (and logged). On success the
// credential cache is emptied, so a changed or removed user stops working
// at once. An unchanged file changes nothing and is not reported.
func (f *File) Reload() error {
	t, err := f.load()
	if err == nil && t.sum == f.table.Load().sum {
		return nil
	}
	if f.opts.OnReload != nil {
		f.opts.OnReload(err)
	}
	if err != nil {
		f.opts.Logger.Error("htpasswd reload failed; keeping the last good file", "file", f.path, "error", err.Error())
		return err
	}
	f.table.Store(t)
	f.cache.clear()
	for _, w := range t.Warnings {
		f.opts.Logger.Warn("weak htpasswd hash", "file", f.path, "warning", w)
	}
	f.opts.Logger.Info("htpasswd reloaded", "file", f.path, "users", t.Len())
	return nil
}

// Cached reports whether user and password were verified within the
// cache TTL (no bcrypt runs): the fast path of Authenticate, for a caller
// that admits the slow path only after a check of its own.
func (f *File) Cached(name, password string) bool {
	if f.opts.CacheTTL <= 0 {
		return false
	}
	hit, _ := f.cache.get(f.cache.key(name, password), f.opts.Now())
	return hit
}

// Authenticate reports whether user and password match the table in use.
func (f *File) Authenticate(name, password string) bool {
	key := f.cache.key(name, password)
	var gen uint64
	useCache := f.opts.CacheTTL > 0
	if useCache {
		var hit bool
		if hit, gen = f.cache.get(key, f.opts.Now()); hit {
			return true
		}
	}
	ok, shared := f.flight.do(key, func() bool {
		ok := f.check(name, password)
		if ok && useCache {
			f.cache.put(key, f.opts.Now().Add(f.opts.CacheTTL), gen)
		}
		return ok
	})
	if shared && f.opts.OnCollapsed != nil {
		f.opts.OnCollapsed()
	}
	return ok
}

// check runs the one bcrypt comparison of a check, in a slot of the Gate.
func (f *File) check(name, password string) bool {
	f.opts.Gate.acquire()
	defer f.opts.Gate.release()
	t := f.table.Load() // after the cache's gen was read: a reload in between clears what we store
	pw := []byte(password)
	u, known := t.users[name]
	switch {
	case !known:
		f.compare(t.dummy, pw)
		return false
	case u.bcrypt != nil:
		return f.compare(u.bcrypt, pw) == nil
	default: // a legacy hash: fast, so the dummy pays the difference
		ok := u.hash.MatchesPassword(password)
		f.compare(t.dummy, pw)
		return ok
	}
}

func (f *File) compare(hash, password []byte) error {
	err := f.opts.Compare(hash, password)
	if f.opts.OnCheck != nil {
		f.opts.OnCheck()
	}
	return err
}

// credCache remembers verified credentials by HMAC-SHA256 under a random
// per-process key: the map never holds a password or a plain hash of one.
type credCache struct {
	secret []byte
	max    int
	mu     sync.Mutex
	gen    uint64 // bumped by clear; put ignores entries verified before it
	m      map[[sha256.Size]byte]time.Time
	macs   sync.Pool // hash.Hash: HMAC states keyed with secret
}

func newCredCache(max int) *credCache {
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		panic(err)
	}
	return &credCache{secret: s, max: max, m: make(map[[sha256.Size]byte]time.Time)}
}

// key is the HMAC of the credential.
func (c *credCache) key(name, password string) [sha256.Size]byte {
	h, _ := c.macs.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, c.secret)
	}
	h.Reset()
	io.WriteString(h, name)
	h.Write([]byte{0})
	io.WriteString(h, password)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	c.macs.Put(h)
	return k
}

// get reports a live entry for k and the cache generation.
func (c *credCache) get(k [sha256.Size]byte, now time.Time) (bool, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.m[k]
	if ok && !now.Before(exp) {
		delete(c.m, k)
		ok = false
	}
	return ok, c.gen
}

// put stores k unless the cache was cleared since generation gen.
func (c *credCache) put(k [sha256.Size]byte, exp time.Time, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.m) >= c.max {
		for old := range c.m { // evict an arbitrary entry: bounded, O(1)
			delete(c.m, old)
			break
		}
	}
	c.m[k] = exp
}

func (c *credCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.gen++
	c.mu.Unlock()
}

// Len is the number of remembered credentials.
func (c *credCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

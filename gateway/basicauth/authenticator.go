package basicauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
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
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// Logger receives reload results. Default: discard.
	Logger *slog.Logger
	// OnReload, if set, is called after every reload attempt with its error
	// (nil on success) — metrics hook.
	OnReload func(err error)
}

// File is an Authenticator backed by an htpasswd file that can be reloaded.
type File struct {
	path  string
	opts  Options
	table atomic.Pointer[Table]
	cache *credCache
}

// dummyHash is compared against for unknown users so they cost as much as
// a wrong password (cost 10, like htpasswd -B).
var dummyHash = func() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte("stella-mirror timing equaliser"), 10)
	if err != nil {
		panic(err)
	}
	return h
}()

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
	t, err := LoadFile(path)
	if err != nil {
		return nil, err
	}
	f := &File{path: path, opts: opts, cache: newCredCache(opts.CacheSize)}
	f.table.Store(t)
	for _, w := range t.Warnings {
		opts.Logger.Warn("weak htpasswd hash", "file", path, "warning", w)
	}
	return f, nil
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
	t, err := LoadFile(f.path)
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

// Authenticate reports whether user and password match the table in use.
func (f *File) Authenticate(name, password string) bool {
	var key [sha256.Size]byte
	var gen uint64
	useCache := f.opts.CacheTTL > 0
	if useCache {
		key = f.cache.key(name, password)
		var hit bool
		if hit, gen = f.cache.get(key, f.opts.Now()); hit {
			return true
		}
	}
	t := f.table.Load() // after reading gen: a reload in between clears what we store
	u, ok := t.users[name]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false
	}
	if !u.hash.MatchesPassword(password) {
		return false
	}
	if useCache {
		f.cache.put(key, f.opts.Now().Add(f.opts.CacheTTL), gen)
	}
	return true
}

// credCache remembers verified credentials by HMAC-SHA256 under a random
// per-process key: the map never holds a password or a plain hash of one.
type credCache struct {
	secret []byte
	max    int
	mu     sync.Mutex
	gen    uint64 // bumped by clear; put ignores entries verified before it
	m      map[[sha256.Size]byte]time.Time
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
	h := hmac.New(sha256.New, c.secret)
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var k [sha256.Size]byte
	h.Sum(k[:0])
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

package cache

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Config is the cache's configuration, the `cache:` section of the
// gateway's configuration (YAML keys in lower camel case, environment keys
// upper case, e.g. cache.maxSize / …CACHE__MAXSIZE). Zero values mean the
// documented default; SetDefaults fills them in and Validate checks them.
type Config struct {
	// Dir is the directory of the disk tier. It is created (0700) if
	// missing and must not be shared with anything else: files in it that
	// the cache does not recognise as complete objects are deleted at
	// start. Required.
	Dir string

	// MaxSize bounds the bytes of object bodies on disk. When a new object
	// pushes the total over it, least recently used objects are evicted.
	// Accepts 1073741824, 1GiB, 512MiB, 10GB. Default: 10GiB.
	MaxSize ByteSize

	// MaxObjectSize is the largest body that is stored; responses with a
	// larger Content-Length are passed through without being stored
	// (reported MISS). A body of unknown length is streamed through the
	// cache directory like any fill and discarded at the end if it grew
	// past the limit. At most MaxSize. Default: MaxSize/4.
	MaxObjectSize ByteSize

	// MemoryMaxObjectSize is the largest body also kept in the memory
	// tier (small, hot objects such as index.json). 0 disables the memory
	// tier. Default: 256KiB.
	MemoryMaxObjectSize ByteSize

	// MemoryMaxSize bounds the bytes of bodies held in memory; least
	// recently used ones are dropped (they stay on disk). Default: 64MiB.
	MemoryMaxSize ByteSize

	// StaleIfErrorGrace is how long past its freshness a stored response
	// may still be served (X-Cache-Status: STALE) while the origin fails
	// (connection error, timeout, 5xx). The origin's own stale-if-error=N
	// extends it per response; must-revalidate, proxy-revalidate, s-maxage
	// and no-cache forbid it. 0 means the default; use a negative value to
	// disable. Default: 24h.
	StaleIfErrorGrace time.Duration

	// HonourClientNoCache makes a client's `Cache-Control: no-cache` (or
	// max-age=0, or `Pragma: no-cache`) force a revalidation with the
	// origin, and `no-store` bypass the cache. Off by default: budgets
	// protect the origin, and any authorized client could otherwise make
	// the gateway refetch at will. Default: false.
	HonourClientNoCache bool

	// UpstreamTimeout bounds one upstream fetch, headers and whole body,
	// so a stalled origin cannot hold a fill (and its waiting clients)
	// forever. Default: 10m.
	UpstreamTimeout time.Duration
}

// Defaults.
const (
	DefaultMaxSize             ByteSize = 10 << 30
	DefaultMemoryMaxObjectSize ByteSize = 256 << 10
	DefaultMemoryMaxSize       ByteSize = 64 << 20
	DefaultStaleIfErrorGrace            = 24 * time.Hour
	DefaultUpstreamTimeout              = 10 * time.Minute
)

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	if c.MaxSize == 0 {
		c.MaxSize = DefaultMaxSize
	}
	if c.MaxObjectSize == 0 {
		c.MaxObjectSize = c.MaxSize / 4
	}
	if c.MemoryMaxObjectSize == 0 {
		c.MemoryMaxObjectSize = DefaultMemoryMaxObjectSize
	}
	if c.MemoryMaxSize == 0 {
		c.MemoryMaxSize = DefaultMemoryMaxSize
	}
	if c.StaleIfErrorGrace == 0 {
		c.StaleIfErrorGrace = DefaultStaleIfErrorGrace
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
}

// Validate checks a configuration after SetDefaults. Errors name the key
// relative to the gateway's cache section (CACHE__MAXSIZE: …).
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("CACHE__%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(c.Dir) == "" {
		bad("DIR", "empty (the cache needs a directory)")
	}
	if c.MaxSize <= 0 {
		bad("MAXSIZE", "must be positive, got %d", c.MaxSize)
	}
	if c.MaxObjectSize <= 0 || c.MaxObjectSize > c.MaxSize {
		bad("MAXOBJECTSIZE", "must be between 1 and MAXSIZE (%s), got %s", c.MaxSize, c.MaxObjectSize)
	}
	if c.MemoryMaxObjectSize < 0 {
		bad("MEMORYMAXOBJECTSIZE", "must not be negative, got %d", c.MemoryMaxObjectSize)
	}
	if c.MemoryMaxSize < 0 {
		bad("MEMORYMAXSIZE", "must not be negative, got %d", c.MemoryMaxSize)
	}
	if c.MemoryMaxObjectSize > c.MemoryMaxSize {
		bad("MEMORYMAXOBJECTSIZE", "larger than MEMORYMAXSIZE (%s > %s)", c.MemoryMaxObjectSize, c.MemoryMaxSize)
	}
	if c.UpstreamTimeout <= 0 {
		bad("UPSTREAMTIMEOUT", "must be positive, got %s", c.UpstreamTimeout)
	}
	return errors.Join(errs...)
}

// ByteSize is a size in bytes that reads "1073741824", "1GiB", "512MiB",
// "64KiB", "10GB", "500MB", "100kB" or "12B" from configuration.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	mult := int64(1)
	num := s
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			mult, num = u.mult, strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("invalid size %q (want e.g. 1073741824, 512MiB, 10GiB)", s)
	}
	if n > (1<<63-1)/mult {
		return fmt.Errorf("size %q too large", s)
	}
	*b = ByteSize(n * mult)
	return nil
}

// String prints the size in the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

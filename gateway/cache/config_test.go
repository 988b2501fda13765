package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/config"
)

func TestByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  bool
	}{
		{"1073741824", 1 << 30, false},
		{"10GiB", 10 << 30, false},
		{"512MiB", 512 << 20, false},
		{" 64 KiB ", 64 << 10, false},
		{"10GB", 10e9, false},
		{"100kB", 100e3, false},
		{"12B", 12, false},
		{"1.5GiB", 0, true},
		{"-1", 0, true},
		{"lots", 0, true},
		{"99999999999TiB", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var b ByteSize
			err := b.UnmarshalText([]byte(tt.in))
			if (err != nil) != tt.err || (!tt.err && b != tt.want) {
				t.Errorf("got %d, %v; want %d, error %v", b, err, tt.want, tt.err)
			}
			if err != nil && !strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
				t.Errorf("error %q does not name the value", err)
			}
		})
	}
	if s := ByteSize(10 << 30).String(); s != "10GiB" {
		t.Errorf("String = %q", s)
	}
}

func TestConfigDefaultsAndValidate(t *testing.T) {
	c := Config{Dir: "/var/cache/stella"}
	c.SetDefaults()
	if c.MaxSize != DefaultMaxSize || c.MaxObjectSize != DefaultMaxSize/4 || c.MemoryMaxObjectSize != DefaultMemoryMaxObjectSize ||
		c.MemoryMaxSize != DefaultMemoryMaxSize || c.StaleIfErrorGrace != 24*time.Hour || c.UpstreamTimeout != DefaultUpstreamTimeout || c.HonourClientNoCache {
		t.Errorf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults invalid: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no dir", func(c *Config) { c.Dir = " " }, "CACHE__DIR: empty"},
		{"object larger than cache", func(c *Config) { c.MaxObjectSize = c.MaxSize + 1 }, "CACHE__MAXOBJECTSIZE: must be between 1 and MAXSIZE (10GiB)"},
		{"memory object larger than memory", func(c *Config) { c.MemoryMaxObjectSize = 2 * c.MemoryMaxSize }, "CACHE__MEMORYMAXOBJECTSIZE: larger than MEMORYMAXSIZE"},
		{"negative memory", func(c *Config) { c.MemoryMaxSize = -1 }, "CACHE__MEMORYMAXSIZE: must not be negative"},
		{"timeout", func(c *Config) { c.UpstreamTimeout = -time.Second }, "CACHE__UPSTREAMTIMEOUT: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Dir: "/var/cache/stella"}
			c.SetDefaults()
			tt.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{}, nil, Options{}); err == nil || !strings.Contains(err.Error(), "CACHE__DIR") {
		t.Errorf("New without a dir: %v", err)
	}
}

// TestConfigLoads: the documented YAML keys and environment overrides work
// through the project's one config loader, as the gateway will use it.
func TestConfigLoads(t *testing.T) {
	type gatewayConfig struct{ Cache Config }
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	yaml := `cache:
  dir: /var/cache/stella-mirror
  maxSize: 20GiB
  maxObjectSize: 2GiB
  memoryMaxObjectSize: 128KiB
  memoryMaxSize: 32MiB
  staleIfErrorGrace: 12h
  honourClientNoCache: true
  upstreamTimeout: 00:05:00
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var g gatewayConfig
	if err := config.Load(&g, path, []string{"CACHE__MEMORYMAXSIZE=48MiB"}); err != nil {
		t.Fatal(err)
	}
	want := Config{Dir: "/var/cache/stella-mirror", MaxSize: 20 << 30, MaxObjectSize: 2 << 30,
		MemoryMaxObjectSize: 128 << 10, MemoryMaxSize: 48 << 20, StaleIfErrorGrace: 12 * time.Hour,
		HonourClientNoCache: true, UpstreamTimeout: 5 * time.Minute}
	if g.Cache != want {
		t.Errorf("loaded %+v\nwant   %+v", g.Cache, want)
	}
	err := config.Load(&g, "", []string{"CACHE__MAXSIZE=lots"})
	if err == nil || !strings.Contains(err.Error(), "CACHE__MAXSIZE") || !strings.Contains(err.Error(), "lots") {
		t.Errorf("bad size: %v", err)
	}
}

package gateway

import (
	"strings"
	"testing"
	"time"
)

// TestServerSettings: GATEWAY__SERVER__* load from the environment with
// their defaults, and every bad value is an error naming its key and the
// value.
func TestServerSettings(t *testing.T) {
	cfg, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Gateway.Server; s.Engine != "fast" || s.WriteProgressTimeout != 30*time.Second ||
		s.MaxConns != 0 || s.MaxConnsPerIP != 256 || s.MaxConcurrentStreams != 128 {
		t.Fatalf("defaults: %+v", s)
	}
	cfg, err = LoadConfig("", []string{"GATEWAY__SERVER__ENGINE=std", "GATEWAY__SERVER__WRITEPROGRESSTIMEOUT=5s",
		"GATEWAY__SERVER__MAXCONNS=1000", "GATEWAY__SERVER__MAXCONNSPERIP=-1", "GATEWAY__SERVER__MAXCONCURRENTSTREAMS=32"})
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Gateway.Server; s.Engine != "std" || s.WriteProgressTimeout != 5*time.Second ||
		s.MaxConns != 1000 || s.MaxConnsPerIP != -1 || s.MaxConcurrentStreams != 32 {
		t.Fatalf("from the environment: %+v", s)
	}

	good := func() Config {
		c := DefaultConfig()
		c.Gateway.Sites = []SiteConfig{{Hosts: []string{"a.example"}, Domains: []string{"primary"},
			CertFile: "c", KeyFile: "k", HtpasswdFile: "h"}}
		return c
	}
	for _, tt := range []struct {
		name string
		edit func(*ServerSettings)
		want string
	}{
		{"engine", func(s *ServerSettings) { s.Engine = "turbo" }, `GATEWAY__SERVER__ENGINE: "turbo": want fast or std`},
		{"engine empty", func(s *ServerSettings) { s.Engine = "" }, `GATEWAY__SERVER__ENGINE: "": want fast or std`},
		{"progress timeout", func(s *ServerSettings) { s.WriteProgressTimeout = 0 }, "GATEWAY__SERVER__WRITEPROGRESSTIMEOUT: 0s must be positive"},
		{"max conns", func(s *ServerSettings) { s.MaxConns = -2 }, "GATEWAY__SERVER__MAXCONNS: -2"},
		{"per ip zero", func(s *ServerSettings) { s.MaxConnsPerIP = 0 }, "GATEWAY__SERVER__MAXCONNSPERIP: 0"},
		{"streams", func(s *ServerSettings) { s.MaxConcurrentStreams = 0 }, "GATEWAY__SERVER__MAXCONCURRENTSTREAMS: 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			tt.edit(&c.Gateway.Server)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
	if keys := strings.Join(ConfigKeys(), " "); !strings.Contains(keys, "GATEWAY__SERVER__WRITEPROGRESSTIMEOUT") {
		t.Errorf("ConfigKeys lacks the server keys: %s", keys)
	}
}

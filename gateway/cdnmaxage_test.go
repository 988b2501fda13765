package gateway

import (
	"strings"
	"testing"
	"time"
)

// TestCDNMaxAgeKey: GATEWAY__CDNMAXAGE loads from the environment (and
// YAML), defaults to the index's 60 s, and a value outside 1s..1h is an
// error naming the key.
func TestCDNMaxAgeKey(t *testing.T) {
	site := []string{
		"GATEWAY__SITES__0__HOSTS__0=mirror-primary.example.org", "GATEWAY__SITES__0__DOMAINS__0=primary",
		"GATEWAY__SITES__0__CERTFILE=c", "GATEWAY__SITES__0__KEYFILE=k", "GATEWAY__SITES__0__HTPASSWDFILE=h",
	}
	tests := []struct {
		env  string
		want time.Duration
		err  string
	}{
		{"", 60 * time.Second, ""},
		{"GATEWAY__CDNMAXAGE=30s", 30 * time.Second, ""},
		{"GATEWAY__CDNMAXAGE=1h", time.Hour, ""},
		{"GATEWAY__CDNMAXAGE=0s", 0, "GATEWAY__CDNMAXAGE: 0s must be between 1s and 1h0m0s"},
		{"GATEWAY__CDNMAXAGE=2h", 0, "GATEWAY__CDNMAXAGE: 2h0m0s must be between 1s and 1h0m0s"},
		{"GATEWAY__CDNMAXAGE=500ms", 0, "GATEWAY__CDNMAXAGE: 500ms must be between"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			env := append([]string{}, site...)
			if tt.env != "" {
				env = append(env, tt.env)
			}
			cfg, err := LoadConfig("", env)
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil || cfg.Gateway.CDNMaxAge != tt.want {
				t.Fatalf("CDNMaxAge %s, err %v; want %s", cfg.Gateway.CDNMaxAge, err, tt.want)
			}
		})
	}
	for _, k := range ConfigKeys() {
		if k == "GATEWAY__CDNMAXAGE" {
			return
		}
	}
	t.Error("ConfigKeys lacks GATEWAY__CDNMAXAGE")
}

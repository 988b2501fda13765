package systemd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stella-ops/stella-mirror/gateway"
	"github.com/stella-ops/stella-mirror/internal/config"
)

// TestGatewayUnitCanWriteItsPaths: under ProtectSystem=strict everything
// outside the unit's StateDirectory=, CacheDirectory=, RuntimeDirectory=,
// LogsDirectory= and ReadWritePaths= is read-only, so every directory the
// gateway writes with the shipped gateway.yaml and the defaults — the cache
// directory, the ACME storage a site with `acme: true` uses — must lie in
// one of them. (The unit once had StateDirectory=stella-mirror/gateway
// while the ACME storage defaults to /var/lib/stella-mirror/acme.)
func TestGatewayUnitCanWriteItsPaths(t *testing.T) {
	const unit = "stella-mirror-gateway.service"
	var writable []string
	for key, base := range map[string]string{"StateDirectory": "/var/lib", "CacheDirectory": "/var/cache",
		"RuntimeDirectory": "/run", "LogsDirectory": "/var/log", "ReadWritePaths": ""} {
		for _, v := range unitSettings(t, unit, key) {
			for _, p := range strings.Fields(v) {
				p = strings.TrimPrefix(p, "-")
				if base != "" {
					p = filepath.Join(base, p)
				}
				writable = append(writable, p)
			}
		}
	}
	cfg := gateway.DefaultConfig()
	if err := config.Load(&cfg, "gateway.yaml", nil); err != nil {
		t.Fatal(err)
	}
	for what, p := range map[string]string{
		"gateway.cache.dir (gateway.yaml)":             cfg.Gateway.Cache.Dir,
		"GATEWAY__ACME__STORAGE (default, acme: true)": cfg.Gateway.ACME.Storage,
	} {
		if p == "" {
			t.Errorf("%s is empty", what)
			continue
		}
		ok := false
		for _, w := range writable {
			if p == w || strings.HasPrefix(p, w+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s = %s is read-only under %s (writable: %v)", what, p, unit, writable)
		}
	}
}

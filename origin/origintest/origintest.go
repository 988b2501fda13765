// Package origintest starts an in-process origin for tests of the packages
// that talk to one (sync sources, the gateway, the sync command). It is for
// tests only; the origin's own tests use their in-package helpers.
package origintest

import (
	"testing"

	"github.com/stella-ops/stella-mirror/origin"
)

// Config returns the origin's defaults with both products enabled on the
// export root root (Concelier and Excititor share it, as in the demo).
func Config(root string) origin.Config {
	cfg := origin.DefaultConfig()
	cfg.Concelier.Mirror.Enabled = true
	cfg.Concelier.Mirror.ExportRoot = root
	cfg.Excititor.Mirror.Enabled = true
	cfg.Excititor.Artifacts.FileSystem.Root = root
	return cfg
}

// New returns an origin serving root (Config) that sees each switch of
// latest at once (LatestRecheck -1), without logger or metrics. It is
// closed when the test ends; serve its Handler with httptest.
func New(t testing.TB, root string) *origin.Origin {
	t.Helper()
	cfg := Config(root)
	cfg.LatestRecheck = -1 // see each switch at once
	o, err := origin.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

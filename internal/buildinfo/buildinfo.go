// Package buildinfo holds the one version string that `stella-mirror version`,
// start-up log lines and the build-info metric all report.
package buildinfo

import (
	"runtime/debug"
	"sync"
)

// version is set at link time: -ldflags "-X github.com/stella-ops/stella-mirror/internal/buildinfo.version=v1.2.3".
var version string

var once sync.Once

// Version returns the link-time version if set, else the module version or VCS
// revision recorded by the Go toolchain, else "devel".
func Version() string {
	once.Do(func() {
		if version != "" {
			return
		}
		version = "devel"
		bi, ok := debug.ReadBuildInfo()
		if !ok {
			return
		}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			version = v
			return
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				version = "devel-" + s.Value[:12]
			}
		}
	})
	return version
}

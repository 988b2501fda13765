package buildinfo

import (
	"errors"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers stella_mirror_build_info (value 1, labels version and
// goversion) with reg. The metric is shared by every component of a
// process: finding it already registered is not an error.
func Register(reg prometheus.Registerer) error {
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "stella_mirror_build_info",
		Help: "Build information of the running binary (value 1).",
	}, []string{"version", "goversion"})
	build.WithLabelValues(Version(), runtime.Version()).Set(1)
	if err := reg.Register(build); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return err
		}
	}
	return nil
}

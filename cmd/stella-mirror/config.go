package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// loadConfig reads a subcommand's configuration with load (the YAML file at
// path, if any, with the environment overriding it) and then applies the
// flags given on the command line over both: for each flag fs has seen, the
// override of the same name, if any. Validation is left to the caller.
func loadConfig[C any](fs *flag.FlagSet, path string, load func(path string, environ []string) (C, error), overrides map[string]func(*C)) (C, error) {
	cfg, err := load(path, os.Environ())
	if err != nil {
		return cfg, err
	}
	fs.Visit(func(f *flag.Flag) {
		if set, ok := overrides[f.Name]; ok {
			set(&cfg)
		}
	})
	return cfg, nil
}

// printConfigOK is the --check-config answer of a valid configuration: each
// warning on a line of its own, then "configuration OK".
func printConfigOK(stdout io.Writer, warnings []string) {
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	fmt.Fprintln(stdout, "configuration OK")
}

// newRegistry returns the Prometheus registry of a server's /metrics, with
// the Go runtime and process collectors registered.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

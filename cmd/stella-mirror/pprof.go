//go:build pprof

package main

import (
	"fmt"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
	"time"
)

// A developer build (go build -tags pprof) serves net/http/pprof on the
// loopback address in STELLA_MIRROR_PPROF, for profiling a server under
// `make bench` load. Release builds do not contain this file.
func init() {
	addr := os.Getenv("STELLA_MIRROR_PPROF")
	if addr == "" {
		return
	}
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil {
			fmt.Fprintln(os.Stderr, "pprof:", err)
		}
	}()
}

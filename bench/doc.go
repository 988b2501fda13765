// Package bench holds the pure, testable parts of `make bench`, the benchmark
// that measures the stella-mirror origin against Debian's nginx serving the
// same export files from the same run: rendering the nginx configuration,
// parsing wrk's output, starting and stopping child processes in their own
// process groups, measuring how much CPU other processes took during a run
// (from /proc), and writing the results table and bench/out/results.json.
//
// The driver is bench/cmd/benchrun; see bench/README.md for what is measured
// and how to read the ratios.
//
// It is not a general load-testing library, not a Go testing.B suite (the
// numbers come from external processes, real sockets and wrk), and nothing in
// it is imported by the mirror itself.
package bench

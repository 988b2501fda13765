//go:build unix

// Command benchrun is `make bench`: it writes a fixture export with the
// stella-mirror binary, serves it with our origin and with Debian's nginx
// (static files, sendfile) side by side on 127.0.0.1, drives both with wrk
// using the same parameters, prints a table of ratios and writes
// bench/out/results.json and bench/out/meta.json. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "benchrun: %v\n", err)
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	results, err := benchmark(ctx, opts, stdout, stderr)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "benchrun: interrupted; child processes stopped")
		}
		fmt.Fprintf(stderr, "benchrun: FAILED: %v\n", err)
		return 1
	}
	if opts.failBelow {
		for _, r := range results {
			if !r.Pass() {
				fmt.Fprintf(stderr, "benchrun: %s is below target (%.3f < %.2f) and --fail-below is set\n", r.Case, r.Ratio, r.Target)
				return 1
			}
		}
	}
	return 0
}

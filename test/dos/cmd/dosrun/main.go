//go:build linux

// Command dosrun is `make dos`: the denial-of-service suite of package
// test/dos against bin/stella-mirror on loopback. It prints a table, writes
// results.json into --out and exits 1 when any scenario fails (2 on a usage
// error, 1 when the suite itself could not run).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stella-ops/stella-mirror/test/dos"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// listFlag is a repeatable or comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dosrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := dos.Options{}
	var engines, scenarios, env listFlag
	fs.StringVar(&o.Bin, "bin", "bin/stella-mirror", "stella-mirror binary")
	fs.StringVar(&o.Out, "out", "test/dos/out", "directory for results.json")
	fs.Var(&engines, "engines", "gateway engines (GATEWAY__SERVER__ENGINE) to run on, comma-separated (default fast,std)")
	fs.Var(&scenarios, "scenarios", "scenarios to run, comma-separated (default all): "+names())
	fs.Var(&env, "env", "extra GATEWAY__KEY=VALUE for every scenario; repeatable")
	fs.DurationVar(&o.Attack, "attack", 8*time.Second, "duration of each attack phase")
	fs.StringVar(&o.BundleSize, "bundle-size", "64MiB", "fixture bundle size")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temp dir (configs, server logs)")
	timeout := fs.Duration("timeout", 15*time.Minute, "stop the whole run (and every process it started) after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dosrun: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if o.Attack <= 0 || o.Attack > time.Minute {
		fmt.Fprintln(stderr, "dosrun: --attack must be in (0, 1m]")
		return 2
	}
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || !strings.HasPrefix(k, "GATEWAY__") {
			fmt.Fprintf(stderr, "dosrun: --env %q: want GATEWAY__KEY=VALUE\n", kv)
			return 2
		}
	}
	o.Engines, o.Scenarios, o.Env = engines, scenarios, env
	if len(o.Engines) == 0 {
		o.Engines = []string{"fast", "std"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results, err := dos.Run(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "dosrun: FAILED: %v\n", err)
		return 1
	}
	failed := 0
	for _, r := range results {
		if !r.Pass {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "dosrun: %d of %d scenario runs failed\n", failed, len(results))
		return 1
	}
	fmt.Fprintf(stderr, "dosrun: all %d scenario runs passed\n", len(results))
	return 0
}

func names() string {
	var n []string
	for _, s := range dos.Scenarios() {
		n = append(n, s.Name)
	}
	return strings.Join(n, ",")
}

//go:build unix

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/stella-ops/stella-mirror/export/fixture"
)

// errUsage marks a command-line mistake already explained on stderr.
var errUsage = errors.New("usage error")

// Default connection counts: many small requests need enough concurrency to
// keep both server cores busy; a handful of 64 MiB streams already saturate
// loopback.
// One wrk thread keeps up with either server on index.json and leaves the
// rest of a 2-core host to the server; for the bundle one thread reading
// from loopback is itself the limit, so it gets two (bench/README.md).
const (
	defaultSmallConnections = 32
	defaultLargeConnections = 8
	defaultSmallThreads     = 1
	defaultLargeThreads     = 2
)

// options are benchrun's flags after validation.
type options struct {
	// bin is the stella-mirror binary. Default: bin/stella-mirror.
	bin string
	// out receives results.json and meta.json. Default: bench/out.
	out string
	// nginx and wrk are the tools' paths. Defaults: /usr/sbin/nginx, wrk on $PATH.
	nginx, wrk string
	// h2load is the HTTP/2 load generator (nghttp2-client). Default: h2load on $PATH.
	h2load string
	// duration of every measured wrk run (whole seconds). Default: 10s.
	duration time.Duration
	// warmup is the wrk run before each case's measurements. Default: 2s.
	warmup time.Duration
	// rounds is how many measured runs each server gets per case, in ABBA
	// order; the better run counts. Default: 2.
	rounds int
	// smallConns and largeConns are wrk's -c for index.json and the bundle.
	// Defaults: 32 and 8; --connections sets both.
	smallConns, largeConns int
	// smallThreads and largeThreads are wrk's -t for index.json and the
	// bundle. Defaults: 1 and 2; --threads sets both.
	smallThreads, largeThreads int
	// bundleSize is the fixture's --bundle-size in bytes, bundleSizeArg as
	// given (passed on to the fixture subcommand). Default: 64MiB.
	bundleSize    int64
	bundleSizeArg string
	// syncBundleSize is the bundle size of the sync cases' fixture (two
	// domains), syncBundleSizeArg as given. Default: 256MiB.
	syncBundleSize    int64
	syncBundleSizeArg string
	// only selects the cases: "all", "origin" or "sync". Default: all.
	only string
	// cases, if set, runs only the cases whose name contains it.
	cases string
	// keep leaves the temp dir (fixture, configs, logs) in place.
	keep bool
	// failBelow turns a BELOW verdict into exit status 1.
	failBelow bool
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: go run ./bench/cmd/benchrun [flags]   (make bench)

Serve one fixture export with the stella-mirror origin and with Debian's nginx
on 127.0.0.1, load both with wrk (same parameters, alternating order), check
they serve identical bytes, and print ours/nginx ratios. Writes
<out>/results.json (a list of {case, unit, ours, anchor, anchorName, ratio,
target}) and <out>/meta.json (versions, host, parameters, every raw run).
Needs: apt-get install nginx-light wrk; make build.

Flags:
`)
		fs.PrintDefaults()
	}
	o := options{}
	fs.StringVar(&o.bin, "bin", "bin/stella-mirror", "stella-mirror `binary` to benchmark")
	fs.StringVar(&o.out, "out", "bench/out", "output `directory` for results.json and meta.json")
	fs.StringVar(&o.nginx, "nginx", "/usr/sbin/nginx", "nginx `binary` (the anchor)")
	fs.StringVar(&o.wrk, "wrk", "wrk", "wrk `binary` (load generator)")
	fs.StringVar(&o.h2load, "h2load", "h2load", "h2load `binary` (HTTP/2 load generator of the cache cases)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured wrk run (whole seconds; each server runs twice per case)")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "length of the warm-up run per server before each case (whole seconds, 0 = none)")
	fs.IntVar(&o.rounds, "rounds", 2, "measured runs per server and case, in ABBA order (ours, nginx, nginx, ours, …); the best counts")
	conns := fs.Int("connections", 0, fmt.Sprintf("wrk connections for every case (default %d for index.json, %d for the bundle)", defaultSmallConnections, defaultLargeConnections))
	threads := fs.Int("threads", 0, fmt.Sprintf("wrk threads for every case (default %d for index.json, %d for the bundle)", defaultSmallThreads, defaultLargeThreads))
	size := fs.String("bundle-size", "64MiB", "fixture bundle `size` (units: KiB, MiB, GiB, KB, MB, GB, or bytes)")
	syncSize := fs.String("sync-bundle-size", "256MiB", "bundle `size` of the sync cases' fixture (2 domains)")
	fs.StringVar(&o.only, "only", "all", "cases to run: all, origin (origin vs nginx) or sync (sync vs rsync -a and aws s3 sync)")
	fs.StringVar(&o.cases, "cases", "", "run only the cases whose name contains this `text` (e.g. gateway)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir with the fixture, configs and logs")
	fs.BoolVar(&o.failBelow, "fail-below", false, "exit 1 when a case is below its target")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "benchrun: unexpected argument %q\n", fs.Arg(0))
		return o, errUsage
	}
	var errs []error
	n, err := fixture.ParseSize(*size)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("--bundle-size: %w", err))
	case n <= 0:
		errs = append(errs, fmt.Errorf("--bundle-size %q: want more than 0 bytes", *size))
	}
	o.bundleSize, o.bundleSizeArg = n, *size
	if sn, err := fixture.ParseSize(*syncSize); err != nil || sn <= 0 {
		errs = append(errs, fmt.Errorf("--sync-bundle-size %q: want a size above 0 bytes", *syncSize))
	} else {
		o.syncBundleSize, o.syncBundleSizeArg = sn, *syncSize
	}
	if o.only != "all" && o.only != "origin" && o.only != "sync" {
		errs = append(errs, fmt.Errorf("--only %q: want all, origin or sync", o.only))
	}
	if o.duration < time.Second || o.duration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--duration %s: want whole seconds, at least 1s (wrk's unit)", o.duration))
	}
	if o.rounds < 1 || o.rounds > 20 {
		errs = append(errs, fmt.Errorf("--rounds %d: want 1 to 20", o.rounds))
	}
	if o.warmup < 0 || o.warmup%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--warmup %s: want whole seconds (0 for none)", o.warmup))
	}
	o.smallThreads, o.largeThreads = defaultSmallThreads, defaultLargeThreads
	switch {
	case *threads < 0:
		errs = append(errs, fmt.Errorf("--threads %d: want at least 1", *threads))
	case *threads > 0:
		o.smallThreads, o.largeThreads = *threads, *threads
	}
	o.smallConns, o.largeConns = defaultSmallConnections, defaultLargeConnections
	switch {
	case *conns < 0:
		errs = append(errs, fmt.Errorf("--connections %d: want at least 1", *conns))
	case *conns > 0:
		o.smallConns, o.largeConns = *conns, *conns
	}
	if o.smallConns < o.smallThreads || o.largeConns < o.largeThreads {
		errs = append(errs, fmt.Errorf("--connections %d/%d below --threads %d/%d (index.json/bundle): wrk needs a connection per thread",
			o.smallConns, o.largeConns, o.smallThreads, o.largeThreads))
	}
	if err := errors.Join(errs...); err != nil {
		return o, err
	}
	return o, nil
}

// checkTools fails with an install hint for every missing tool, resolving
// o.nginx and o.wrk to full paths.
func checkTools(o *options) error {
	var errs []error
	if st, err := os.Stat(o.bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		errs = append(errs, fmt.Errorf("stella-mirror binary not found at %s: run make build (or pass --bin)", o.bin))
	}
	if p, err := exec.LookPath(o.nginx); err != nil {
		errs = append(errs, fmt.Errorf("nginx not found at %s: apt-get install nginx-light", o.nginx))
	} else {
		o.nginx = p
	}
	if p, err := exec.LookPath(o.wrk); err != nil {
		errs = append(errs, fmt.Errorf("wrk not found: apt-get install wrk"))
	} else {
		o.wrk = p
	}
	if p, err := exec.LookPath(o.h2load); err != nil {
		errs = append(errs, fmt.Errorf("h2load not found: apt-get install nghttp2-client"))
	} else {
		o.h2load = p
	}
	return errors.Join(errs...)
}

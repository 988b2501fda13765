package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/internal/flock"
	"github.com/stella-ops/stella-mirror/mirrorsync"
	"github.com/stella-ops/stella-mirror/origin/origintest"
)

// TestSyncEveryValues: --every and SYNC__EVERY below the minimum, negative
// or not a duration exit 2 naming the value (nothing is run); the flag
// wins over the environment; 0 is one run. In process, so the shipped
// minimum (1m) applies.
func TestSyncEveryValues(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string // SYNC__EVERY, "" for unset
		code int
		want string // on stderr (code 2) or stdout (code 0)
	}{
		{"flag below minimum", []string{"--every", "5s"}, "", 2, "SYNC__EVERY (--every): 5s, must be at least 1m0s"},
		{"flag negative", []string{"--every", "-1m"}, "", 2, "SYNC__EVERY (--every): -1m0s, must be at least 1m0s"},
		{"flag garbage", []string{"--every", "often"}, "", 2, `invalid value "often" for flag -every`},
		{"flag unitless", []string{"--every", "300"}, "", 2, `invalid value "300" for flag -every`},
		{"env below minimum", nil, "30s", 2, "SYNC__EVERY (--every): 30s, must be at least 1m0s"},
		{"env garbage", nil, "hourly", 2, `SYNC__EVERY: invalid duration "hourly"`},
		{"env .NET TimeSpan", nil, "00:05:00", 0, "configuration OK"},
		{"flag ok", []string{"--every", "5m"}, "", 0, "configuration OK"},
		{"flag zero is one run", []string{"--every", "0"}, "", 0, "configuration OK"},
		{"flag wins over a bad env", []string{"--every", "2m"}, "5s", 0, "configuration OK"},
		{"a bad flag wins over a good env", []string{"--every", "5s"}, "2m", 2, "SYNC__EVERY (--every): 5s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("SYNC__EVERY", tc.env)
			}
			args := append([]string{"sync", "--source", t.TempDir(), "--dest", t.TempDir(), "--public-key", "k.pem", "--check-config"}, tc.args...)
			var out, errb bytes.Buffer
			code := run(args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out.String(), errb.String())
			}
			got := errb.String()
			if tc.code == 0 {
				got = out.String()
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, got)
			}
		})
	}
}

// logRecord is one JSON log line of the child.
type logRecord map[string]any

func (r logRecord) str(k string) string { s, _ := r[k].(string); return s }
func (r logRecord) num(k string) int    { f, _ := r[k].(float64); return int(f) }

// loopProc is `stella-mirror sync` (this test binary as stella-mirror) run
// as a process, its stderr read line by line.
type loopProc struct {
	*mainProc
	lines chan logRecord
}

// startSync starts the command with args after "sync" and the test
// binary's --every minimum lowered to 100ms.
func startSync(t *testing.T, args ...string) *loopProc {
	t.Helper()
	p := &loopProc{mainProc: &mainProc{}, lines: make(chan logRecord, 1000)}
	p.start(t, append([]string{"sync", "--log-format", "json"}, args...),
		[]string{"STELLA_MIRROR_TEST_MIN_EVERY=100ms"},
		func(r logRecord) { p.lines <- r }, func() { close(p.lines) })
	return p
}

// next returns the next log record with message msg, skipping others.
// Bounded: fails after 60 s or when the process exits first.
func (p *loopProc) next(t *testing.T, msg string) logRecord {
	t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case r, ok := <-p.lines:
			if !ok {
				<-p.done
				t.Fatalf("sync exited (status %d) before logging %q:\n%s", p.code, msg, p.stderr())
			}
			if r.str("msg") == msg {
				return r
			}
		case <-deadline.C:
			t.Fatalf("no %q line within 60 s:\n%s", msg, p.stderr())
		}
	}
}

// wait returns the exit status. Bounded: fails after 20 s (Kubernetes
// gives a pod 30 s after SIGTERM).
func (p *loopProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(20 * time.Second):
		t.Fatalf("sync still running 20 s later:\n%s", p.stderr())
	}
	return 0
}

// latestTarget is ROOT/latest's target ("" when there is none).
func latestTarget(root string) string {
	s, _ := os.Readlink(filepath.Join(root, export.LatestLink))
	return s
}

// TestSyncEveryPublishesNewExport: a loop over a local source publishes a
// newer export that appears between runs, writes the metrics textfile for
// each run, and a SIGTERM while it waits ends it at once with status 0.
func TestSyncEveryPublishesNewExport(t *testing.T) {
	src := t.TempDir()
	write, fx1, pub := exportWriter(t, src, 7, 16<<10)
	dst, prom := t.TempDir(), filepath.Join(t.TempDir(), "sync.prom")
	p := startSync(t, "--every", "200ms", "--source", src, "--dest", dst, "--public-key", pub, "--metrics-textfile", prom)

	r := p.next(t, "next sync run")
	if r.num("run") != 1 || r.str("result") != mirrorsync.ResultPublished || r.num("status") != 0 || r.str("next_run") == "" {
		t.Fatalf("first run's line: %v", r)
	}
	if got := latestTarget(dst); got != fx1.ExportID {
		t.Fatalf("after run 1 latest -> %q, want %s", got, fx1.ExportID)
	}
	r = p.next(t, "next sync run")
	if r.str("result") != mirrorsync.ResultUnchanged || lastResult(t, prom) != mirrorsync.ResultUnchanged {
		t.Fatalf("run %d: %v, textfile %q; want unchanged", r.num("run"), r, lastResult(t, prom))
	}

	fx2 := write(2) // sets the source's latest once complete
	for n := 0; ; n++ {
		r = p.next(t, "next sync run")
		if r.str("result") == mirrorsync.ResultPublished {
			break
		}
		if r.str("result") != mirrorsync.ResultUnchanged || n == 20 {
			t.Fatalf("run %d: %v; want the new export published", r.num("run"), r)
		}
	}
	if got := latestTarget(dst); got != fx2.ExportID {
		t.Errorf("latest -> %q, want the new export %s", got, fx2.ExportID)
	}
	if got := lastResult(t, prom); got != mirrorsync.ResultPublished {
		t.Errorf("metrics textfile result %q, want published", got)
	}

}

// TestSyncEverySIGTERMWhileWaiting: SIGTERM between runs ends the loop at
// once with status 0 (a sidecar's pod stops cleanly).
func TestSyncEverySIGTERMWhileWaiting(t *testing.T) {
	src, _, pub := syncFixture(t)
	p := startSync(t, "--every", "1h", "--source", src, "--dest", t.TempDir(), "--public-key", pub)
	if r := p.next(t, "next sync run"); r.str("result") != mirrorsync.ResultPublished {
		t.Fatalf("first run: %v", r)
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("SIGTERM while waiting: exit %d, want 0\n%s", code, p.stderr())
	}
	t.Logf("SIGTERM while waiting: exited %v after the signal", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(p.stderr(), "sync stopped: signal received while waiting") {
		t.Errorf("no stop line:\n%s", p.stderr())
	}
}

// TestSyncEveryConfigErrorExits2: an invalid configuration stops a loop
// before its first run with status 2 (it does not loop on it).
func TestSyncEveryConfigErrorExits2(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"keep 1", []string{"--keep", "1"}, "SYNC__KEEP (--keep): 1"},
		{"unknown scheme", []string{"--source", "ftp://127.0.0.1/x"}, `unknown scheme`},
		{"below the minimum", []string{"--every", "10ms"}, "SYNC__EVERY (--every): 10ms, must be at least 100ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--every", "200ms", "--source", t.TempDir(), "--dest", t.TempDir(), "--public-key", "k.pem"}, tc.args...)
			p := startSync(t, args...)
			if code := p.wait(t); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(p.stderr(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, p.stderr())
			}
		})
	}
}

// TestSyncSIGTERMDuringRun: SIGTERM while a run downloads (an upstream
// that holds a bundle of the new export) stops a looping sync exactly as
// it stops a single one: the same exit status, latest still on the
// previous export, the lock and the run marker released; the next run
// resumes and publishes, and leaves no staging.
func TestSyncSIGTERMDuringRun(t *testing.T) {
	statuses := map[string]int{}
	for _, mode := range []string{"single", "every"} {
		t.Run(mode, func(t *testing.T) {
			src := t.TempDir()
			write, fx1, pub := exportWriter(t, src, 9, 64<<10)
			o := origintest.New(t, src)
			var (
				holdPath string
				hold     sync.Mutex
				held     = make(chan struct{}, 1)
				release  = make(chan struct{})
			)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hold.Lock()
				h := holdPath
				hold.Unlock()
				if h == "" || r.URL.Path != h {
					o.Handler().ServeHTTP(w, r)
					return
				}
				// A little of the bundle, then nothing until the client goes.
				w.Write(make([]byte, 1<<10))
				w.(http.Flusher).Flush()
				select {
				case held <- struct{}{}:
				default:
				}
				select {
				case <-r.Context().Done():
				case <-release:
				}
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(release) })
			dst := t.TempDir()
			base := []string{"sync", "--source", srv.URL, "--dest", dst, "--public-key", pub}
			var out, errb bytes.Buffer
			if code := run(base, &out, &errb); code != 0 {
				t.Fatalf("first sync: exit %d\n%s", code, errb.String())
			}
			fx2 := write(2)
			hold.Lock()
			holdPath = export.ConcelierURLPrefix + fx2.ExportID + "/" + export.BundlePath("primary")
			hold.Unlock()

			args := base[1:]
			if mode == "every" {
				args = append(args[:len(args):len(args)], "--every", "1h")
			}
			p := startSync(t, args...)
			select {
			case <-held:
			case <-p.done:
				t.Fatalf("sync exited (%d) before fetching the held bundle:\n%s", p.code, p.stderr())
			case <-time.After(60 * time.Second):
				t.Fatalf("the held bundle was never requested:\n%s", p.stderr())
			}
			start := time.Now()
			p.cmd.Process.Signal(syscall.SIGTERM)
			code := p.wait(t)
			t.Logf("%s: SIGTERM during a run: exit %d, %v after the signal", mode, code, time.Since(start).Round(time.Millisecond))
			statuses[mode] = code
			if code != exitFailed {
				t.Errorf("exit %d, want %d (a cancelled run fails)\n%s", code, exitFailed, p.stderr())
			}
			if mode == "every" && !strings.Contains(p.stderr(), "sync stopping: signal received during a run") {
				t.Errorf("no stop line:\n%s", p.stderr())
			}
			if got := latestTarget(dst); got != fx1.ExportID {
				t.Errorf("latest -> %q, want the previous export %s", got, fx1.ExportID)
			}
			unlock, err := flock.TryLock(filepath.Join(dst, mirrorsync.LockName))
			if err != nil {
				t.Errorf("the lock is still held: %v", err)
			} else {
				unlock()
			}
			if _, err := os.Stat(filepath.Join(dst, ".sync.running")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the run marker is left (%v): the next run would report a killed run", err)
			}
			if _, err := os.Stat(filepath.Join(dst, fx2.ExportID)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the new export was published despite the interruption (%v)", err)
			}
			// What was staged stays for the next run to resume (as after
			// any interrupted run: operations.md, "Resume").
			if _, err := os.Stat(filepath.Join(dst, ".staging", fx2.ExportID)); err != nil {
				t.Errorf("no staging left to resume from: %v", err)
			}

			hold.Lock()
			holdPath = ""
			hold.Unlock()
			errb.Reset()
			if code := run(base, &out, &errb); code != 0 {
				t.Fatalf("the run after: exit %d\n%s", code, errb.String())
			}
			if got := latestTarget(dst); got != fx2.ExportID {
				t.Errorf("after the next run latest -> %q, want %s", got, fx2.ExportID)
			}
			if ents, _ := os.ReadDir(filepath.Join(dst, ".staging")); len(ents) != 0 {
				t.Errorf("staging left after the next run published: %v", ents)
			}
		})
	}
	if statuses["single"] != statuses["every"] {
		t.Errorf("a looping sync exits %d on SIGTERM during a run, a single one %d", statuses["every"], statuses["single"])
	}
}

// TestSyncEveryNoGrowth: a loop's open file descriptors and goroutines do
// not grow across runs (each run closes what it opens: files, the lock,
// the HTTP clients' idle connections), read from /proc/PID/fd and from each
// "next sync run" line when the process is between runs.
func TestSyncEveryNoGrowth(t *testing.T) {
	const runs = 6
	for _, kind := range []string{"local", "upstream", "s3"} {
		t.Run(kind, func(t *testing.T) {
			src, id, pub := syncFixture(t)
			dst := t.TempDir()
			// --force: every run re-reads and re-verifies the whole export
			// (and, from an upstream or S3, fetches its indexes and signatures).
			args := []string{"--every", "500ms", "--force", "--dest", dst, "--public-key", pub, "--source", src}
			switch kind {
			case "upstream":
				srv := httptest.NewServer(origintest.New(t, src).Handler())
				t.Cleanup(srv.Close)
				args[len(args)-1] = srv.URL
			case "s3":
				url, creds := s3Export(t, src, id)
				args = append(args[:len(args)-1], "s3://every/pfx", "--s3-endpoint", url, "--s3-region", "us-east-1",
					"--s3-path-style", "true", "--s3-credentials-file", creds)
			}
			p := startSync(t, args...)
			var fds, gs []int
			for len(fds) < runs {
				r := p.next(t, "next sync run")
				if r.str("result") != mirrorsync.ResultPublished && r.str("result") != mirrorsync.ResultUnchanged {
					t.Fatalf("run %d: %v\n%s", r.num("run"), r, p.stderr())
				}
				n, inRun := openFDs(t, p.cmd.Process.Pid, dst)
				if inRun {
					continue // the test fell behind: the next run began
				}
				fds, gs = append(fds, n), append(gs, r.num("goroutines"))
			}
			t.Logf("%s: open fds after each run %v, goroutines %v", kind, fds, gs)
			// The least of the last three samples: one taken late (the
			// next run already opening its files) cannot fail the test,
			// while a leak of even one per run shows in all three.
			if last := slices.Min(fds[runs-3:]); last > fds[0] {
				t.Errorf("open fds grew from %d to %d over %d runs", fds[0], last, runs-1)
			}
			// Goroutines of just-closed connections may take a moment to exit.
			if last := slices.Min(gs[runs-3:]); last > gs[0]+2 {
				t.Errorf("goroutines grew from %d to %d over %d runs", gs[0], last, runs-1)
			}
		})
	}
}

// openFDs counts pid's open descriptors and reports whether one is the
// sync lock of root (a run in progress).
func openFDs(t *testing.T, pid int, root string) (int, bool) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(root, mirrorsync.LockName)
	for _, e := range ents {
		if target, _ := os.Readlink(filepath.Join(dir, e.Name())); target == lock {
			return len(ents), true
		}
	}
	return len(ents), false
}

// s3Export serves export id of root from an in-process S3 (gofakes3) as
// s3://every/pfx and returns its URL and a credentials file for it.
func s3Export(t *testing.T, root, id string) (string, string) {
	t.Helper()
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true, Credentials: aws.AnonymousCredentials{}})
	bucket := "every"
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(filepath.Join(root, id), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		key := "pfx/" + filepath.ToSlash(rel)
		_, err = c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "aws-credentials")
	if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id = k\naws_secret_access_key = s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, creds
}

// TestSyncEveryDecisions drives the loop with scripted runs: which
// statuses stop it, which it logs and goes on after, and what it returns.
// (A status 2 after the first run cannot be provoked through the command:
// the configuration is validated once, before it.)
func TestSyncEveryDecisions(t *testing.T) {
	failed := syncFailure(loggedError{errors.New("upstream down")})
	locked := &exitError{code: exitLocked, err: errors.New("another sync run holds the lock")}
	config := configError(errors.New("bad value"))
	cancelled := syncFailure(loggedError{context.Canceled})
	tests := []struct {
		name string
		// runs are the scripted runs' errors; the loop is signalled
		// during the run after the last (which succeeds), or during run
		// signalAt (1-based) when it is set.
		runs     []error
		signalAt int
		calls    int
		wantErr  error
		logs     []string
	}{
		{"config error at the first run stops", []error{config}, 0, 1, config, nil},
		{"config error at a later run goes on", []error{nil, config}, 0, 3, nil, []string{`"msg":"sync failed"`, `"status":2`}},
		{"failures and a held lock go on", []error{failed, locked, failed}, 0, 4, nil, []string{`"msg":"sync skipped"`, `"result":"locked"`, `"status":75`, `"status":1`}},
		{"signal during a run returns its error", []error{nil, cancelled}, 2, 2, cancelled, []string{"signal received during a run"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var logb bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logb, nil))
			calls := 0
			once := func(context.Context) (string, error) {
				calls++
				if calls == tc.signalAt || calls > len(tc.runs) {
					cancel()
				}
				if calls > len(tc.runs) {
					return mirrorsync.ResultUnchanged, nil
				}
				err := tc.runs[calls-1]
				r := mirrorsync.ResultFailed
				if err == locked {
					r = mirrorsync.ResultLocked
				}
				return r, err
			}
			err := syncEvery(ctx, time.Millisecond, logger, once, func(time.Duration) time.Duration { return 0 })
			if err != tc.wantErr {
				t.Errorf("returned %v, want %v", err, tc.wantErr)
			}
			if calls != tc.calls {
				t.Errorf("%d runs, want %d\n%s", calls, tc.calls, logb.String())
			}
			for _, want := range tc.logs {
				if !strings.Contains(logb.String(), want) {
					t.Errorf("log lacks %s:\n%s", want, logb.String())
				}
			}
		})
	}
}

// TestJitterBounds: the jitter is within [0, every/10], and not constant.
func TestJitterBounds(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 1000 {
		j := jitter(10 * time.Second)
		if j < 0 || j > time.Second {
			t.Fatalf("jitter(10s) = %v, outside [0, 1s]", j)
		}
		seen[j] = true
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct jitters in 1000", len(seen))
	}
}

// exportWriter returns a function that writes export number seed, signed
// with fixture.DerivedKey(keySeed), into root and marks it latest; it
// writes export 1 at once and returns it with the path of the key's
// public PEM.
func exportWriter(t *testing.T, root string, keySeed uint64, bundleSize int64) (write func(seed uint64) *fixture.Result, first *fixture.Result, pub string) {
	t.Helper()
	key := fixture.DerivedKey(keySeed)
	write = func(seed uint64) *fixture.Result {
		t.Helper()
		fx, err := fixture.Write(root, fixture.Options{Domains: []string{"primary"}, BundleSize: bundleSize,
			VEXSize: 2 << 10, Seed: seed, Key: key, SetLatest: true})
		if err != nil {
			t.Fatal(err)
		}
		return fx
	}
	first = write(1)
	pub = filepath.Join(t.TempDir(), "signing.pub.pem")
	if err := os.WriteFile(pub, first.PublicKeyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return write, first, pub
}

// TestSyncEveryFailureWaitsTheInterval: a run that fails at once (an
// upstream that refuses every request) is not retried at once: the loop
// schedules the next run an interval after the failed one started, so a
// permanently failing upstream costs one request per interval, not a busy
// loop. The decision is read from the "next sync run" line (its wait) and
// from the number of runs, with no clock involved: the interval is an hour.
func TestSyncEveryFailureWaitsTheInterval(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"failed", syncFailure(loggedError{errors.New("upstream down")})},
		{"locked", &exitError{code: exitLocked, err: errors.New("another sync run holds the lock")}},
		{"succeeded", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			lines := make(chan string, 16)
			logger := slog.New(slog.NewJSONHandler(lineWriter(lines), nil))
			calls := 0
			done := make(chan error, 1)
			go func() {
				done <- syncEvery(ctx, time.Hour, logger, func(context.Context) (string, error) {
					calls++
					return mirrorsync.ResultFailed, tc.err
				}, func(time.Duration) time.Duration { return 0 })
			}()
			deadline := time.After(30 * time.Second)
			for {
				var line string
				select {
				case line = <-lines:
				case <-deadline:
					t.Fatal("no \"next sync run\" line within 30s")
				}
				if !strings.Contains(line, `"msg":"next sync run"`) {
					continue
				}
				var r logRecord
				if err := json.Unmarshal([]byte(line), &r); err != nil {
					t.Fatal(err)
				}
				if wait := r.num("wait_s"); wait < 30*60 {
					t.Errorf("after a %s run the next is due in %d s, want about the interval (1h)", tc.name, wait)
				}
				break
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("signal while waiting: returned %v, want nil", err)
			}
			if calls != 1 {
				t.Errorf("%d runs, want 1 (the next is an hour away)", calls)
			}
		})
	}
}

// lineWriter sends each write (slog writes one line per record) to the
// channel, and drops it when the channel is full (a loop gone wrong must
// not block on its log).
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	select {
	case w <- string(p):
	default:
	}
	return len(p), nil
}

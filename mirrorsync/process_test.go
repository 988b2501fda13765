package mirrorsync_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stella-ops/stella-mirror/export"
	"github.com/stella-ops/stella-mirror/export/fixture"
	"github.com/stella-ops/stella-mirror/export/jws"
	"github.com/stella-ops/stella-mirror/origin/origintest"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// binary is the stella-mirror binary the process tests run: STELLA_MIRROR_BIN
// (set by `make test`), else one built by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testenv.MainWithBinary(m, &binary))
}

// pubKeyFile writes the test key's public half as PEM.
func pubKeyFile(t testing.TB) string {
	t.Helper()
	pem, err := jws.MarshalPublicKeyPEM(testKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "signing.pub.pem")
	if err := os.WriteFile(p, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncCmd returns the command syncing src into dst.
func syncCmd(t testing.TB, src, dst, pub string, extra ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"sync", "--source", src, "--dest", dst, "--public-key", pub}, extra...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	return cmd
}

// verifyServed checks that dst/latest names a complete export whose every
// digest and signature verifies.
func verifyServed(t testing.TB, dst string) string {
	t.Helper()
	id := latestOf(dst)
	dir := filepath.Join(dst, id)
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(export.IndexPath)))
	if err != nil {
		t.Fatalf("served export %q: %v", id, err)
	}
	ix, err := export.ParseIndex(data)
	if err != nil {
		t.Fatal(err)
	}
	keys := []jws.PublicKey{{Key: testKey.Public().(ed25519.PublicKey)}}
	check := func(rel, digest string, sig *export.SignatureRef) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if d, _, err := export.DigestFile(p); err != nil || d != digest {
			t.Fatalf("served export %s: %s: %s (%v), want %s", id, rel, d, err, digest)
		}
		if sig != nil {
			if _, err := jws.VerifyFile(filepath.Join(dir, filepath.FromSlash(sig.Path)), p, keys); err != nil {
				t.Fatalf("served export %s: %s: %v", id, sig.Path, err)
			}
		}
	}
	for _, d := range ix.Domains {
		check(d.Manifest.Path, d.Manifest.Digest, nil)
		check(d.Bundle.Path, d.Bundle.Digest, d.Bundle.Signature)
		var xi export.ExcititorIndex
		readJSON(t, filepath.Join(dir, filepath.FromSlash(export.ExcititorIndexPath(d.DomainID))), &xi)
		for _, e := range xi.Exports {
			check(export.ExcititorExportPath(d.DomainID, e.ExportKey), e.Digest, e.Signature)
		}
	}
	return id
}

func newTestOrigin(t testing.TB, root string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(origintest.New(t, root).Handler())
	t.Cleanup(srv.Close)
	return srv
}

// getServed fetches the primary bundle from a running origin and checks
// it against the manifest of the export it names.
func getServed(t testing.TB, client *http.Client, base, dst string) (string, error) {
	resp, err := client.Get(base + "/concelier/exports/mirror/primary/bundle.json")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d, %v", resp.StatusCode, err)
	}
	id := resp.Header.Get("X-Stella-Export-Id")
	data, err := os.ReadFile(filepath.Join(dst, id, filepath.FromSlash(export.ManifestPath("primary"))))
	if err != nil {
		return id, fmt.Errorf("export %s: %w", id, err)
	}
	m, err := export.ParseManifest(data)
	if err != nil {
		return id, err
	}
	if got := export.Digest(body); got != m.Bundle.Digest {
		return id, fmt.Errorf("bundle from %s hashes to %s, its manifest declares %s", id, got, m.Bundle.Digest)
	}
	return id, nil
}

// TestSIGKILLAtRandomPoints kills the sync binary at random moments in 20
// trials; after each kill the served export is complete and verified, and
// a normal run then publishes the new export.
func TestSIGKILLAtRandomPoints(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	pub := pubKeyFile(t)
	writeSource(t, src, 1)
	if out, err := syncCmd(t, src, dst, pub).CombinedOutput(); err != nil {
		t.Fatalf("initial sync: %v\n%s", err, out)
	}
	srv := newTestOrigin(t, dst)
	client := &http.Client{Timeout: 30 * time.Second}

	// Measure one full run to spread the kills over it.
	writeSource(t, src, 2)
	start := time.Now()
	if out, err := syncCmd(t, src, dst, pub).CombinedOutput(); err != nil {
		t.Fatalf("timing sync: %v\n%s", err, out)
	}
	span := time.Since(start)
	rng := rand.New(rand.NewPCG(42, uint64(time.Now().UnixNano())))
	killed := 0
	for trial := range 20 {
		fx := writeSource(t, src, uint64(trial+3))
		cmd := syncCmd(t, src, dst, pub)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rng.Int64N(int64(span) + 1))
		timer := time.AfterFunc(delay, func() { cmd.Process.Signal(syscall.SIGKILL) })
		err := cmd.Wait()
		timer.Stop()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() {
			killed++
		} else if err != nil {
			t.Fatalf("trial %d: sync failed without being killed: %v", trial, err)
		}
		verifyServed(t, dst)
		if _, err := getServed(t, client, srv.URL, dst); err != nil {
			t.Fatalf("trial %d (killed after %v): origin: %v", trial, delay, err)
		}
		if out, err := syncCmd(t, src, dst, pub).CombinedOutput(); err != nil {
			t.Fatalf("trial %d: run after the kill: %v\n%s", trial, err, out)
		}
		if id := verifyServed(t, dst); id != fx.ExportID {
			t.Fatalf("trial %d: served %s, want %s", trial, id, fx.ExportID)
		}
		if id, err := getServed(t, client, srv.URL, dst); err != nil || id != fx.ExportID {
			t.Fatalf("trial %d: origin serves %s (%v), want %s", trial, id, err, fx.ExportID)
		}
	}
	t.Logf("one run takes ~%v; %d of 20 runs were killed mid-run", span, killed)
	if killed == 0 {
		t.Errorf("no run was killed mid-run; the trial proved nothing")
	}
}

// TestConcurrentRunExitsLocked: while one run holds the lock (blocked on
// a slow upstream), a second exits 75 with a clear message.
func TestConcurrentRunExitsLocked(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	pub := pubKeyFile(t)
	writeSource(t, src, 1)
	o := newTestOrigin(t, src)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/bundle.json") {
			once.Do(func() { close(entered) })
			<-release
		}
		resp, err := http.Get(o.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer slow.Close()

	first := syncCmd(t, slow.URL, dst, pub)
	var firstOut bytes.Buffer
	first.Stderr = &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		first.Process.Kill()
		t.Fatalf("first run never reached the bundle: %s", firstOut.String())
	}
	out, err := syncCmd(t, src, dst, pub).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 75 {
		t.Errorf("second run: %v, want exit status 75\n%s", err, out)
	}
	if !strings.Contains(string(out), "another sync run holds the lock") {
		t.Errorf("second run's message: %s", out)
	}
	close(release)
	if err := first.Wait(); err != nil {
		t.Fatalf("first run: %v\n%s", err, firstOut.String())
	}
	verifyServed(t, dst)
}

func TestMetricsTextfile(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	pub := pubKeyFile(t)
	writeSource(t, src, 1)
	prom := filepath.Join(t.TempDir(), "sync.prom")
	read := func() map[string]float64 {
		t.Helper()
		f, err := os.Open(prom)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(f)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for name, mf := range mfs {
			for _, m := range mf.Metric {
				key := name
				for _, l := range m.Label {
					key += "{" + l.GetName() + "=" + l.GetValue() + "}"
				}
				out[key] = m.GetGauge().GetValue()
			}
		}
		return out
	}
	for i, want := range []struct {
		result     string
		downloaded bool
	}{{"published", true}, {"unchanged", false}} {
		if out, err := syncCmd(t, src, dst, pub, "--metrics-textfile", prom).CombinedOutput(); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out)
		}
		m := read()
		if m["stella_mirror_sync_last_result{result="+want.result+"}"] != 1 {
			t.Errorf("run %d: last_result %v", i, m)
		}
		if got := m["stella_mirror_sync_last_downloaded_bytes"] > 0; got != want.downloaded {
			t.Errorf("run %d: downloaded bytes %v", i, m["stella_mirror_sync_last_downloaded_bytes"])
		}
		if m["stella_mirror_sync_last_success_timestamp_seconds"] < float64(time.Now().Add(-time.Hour).Unix()) {
			t.Errorf("run %d: last success %v", i, m["stella_mirror_sync_last_success_timestamp_seconds"])
		}
	}
	// A failed run keeps the last success time and reports failed.
	if err := syncCmd(t, filepath.Join(src, "missing"), dst, pub, "--metrics-textfile", prom).Run(); err == nil {
		t.Fatal("sync of a missing source succeeded")
	}
	m := read()
	if m["stella_mirror_sync_last_result{result=failed}"] != 1 || m["stella_mirror_sync_last_success_timestamp_seconds"] == 0 {
		t.Errorf("after a failed run: %v", m)
	}
}

// TestOriginSwitchesConsistently: a running origin over the synced root
// answers every request from one complete export while syncs publish
// four new exports and then replace the newest in place (same id, one
// bundle changed, same size): every response is 200 and its bundle hashes
// to a digest that export id declared at some point.
func TestOriginSwitchesConsistently(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	var (
		mu      sync.Mutex
		allowed = map[string]map[string]bool{} // export id → bundle digests
		seen    = map[string]int{}
		digests = map[string]int{}           // bundle digest → responses
		first   = map[string]chan struct{}{} // bundle digest → closed when first served
	)
	allow := func(id, digest string) {
		mu.Lock()
		defer mu.Unlock()
		if allowed[id] == nil {
			allowed[id] = map[string]bool{}
		}
		allowed[id][digest] = true
		first[digest] = make(chan struct{})
	}
	// waitServed blocks until a client has received the bundle digest.
	waitServed := func(digest string) {
		t.Helper()
		mu.Lock()
		ch := first[digest]
		mu.Unlock()
		select {
		case <-ch:
		case <-time.After(20 * time.Second):
			t.Errorf("bundle %s was never served", digest)
		}
	}
	bundleDigest := func(fx *fixture.Result) string {
		for _, f := range fx.Files {
			if f.Path == export.BundlePath("primary") {
				return f.Digest
			}
		}
		t.Fatal("fixture has no primary bundle")
		return ""
	}
	fx := writeSource(t, src, 1)
	allow(fx.ExportID, bundleDigest(fx))
	opts := baseOptions(dst, newLocal(t, src))
	opts.Keep = 10
	mustRun(t, opts)
	srv := newTestOrigin(t, dst)
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}

	var (
		stop     atomic.Bool
		failures atomic.Int64
		wg       sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 5 {
			t.Errorf(format, args...)
		}
	}
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := 0; i < 100000 && !stop.Load() && failures.Load() == 0; i++ {
				resp, err := client.Get(srv.URL + "/concelier/exports/mirror/primary/bundle.json")
				if err != nil {
					fail("GET: %v", err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				id := resp.Header.Get("X-Stella-Export-Id")
				if err != nil || resp.StatusCode != http.StatusOK {
					fail("GET: status %d from %q, %v", resp.StatusCode, id, err)
					return
				}
				d := export.Digest(body)
				mu.Lock()
				ok := allowed[id][d]
				seen[id]++
				if digests[d]++; digests[d] == 1 && ok {
					close(first[d])
				}
				mu.Unlock()
				if !ok {
					fail("bundle from %s hashes to %s, which that export never declared", id, d)
				}
			}
		})
	}
	var last *fixture.Result
	for seed := uint64(2); seed <= 5; seed++ {
		last = writeSource(t, src, seed)
		allow(last.ExportID, bundleDigest(last))
		mustRun(t, opts)
		waitServed(bundleDigest(last))
	}
	// The newest export changes in place; the origin notices the replaced
	// directory (it re-checks its identity every second).
	changed := mutateBundle(t, src, last.ExportID, "primary")
	allow(last.ExportID, changed)
	if res := mustRun(t, opts); !res.Published {
		t.Fatalf("in-place change not published: %+v", res)
	}
	waitServed(changed)
	stop.Store(true)
	wg.Wait()
	t.Logf("responses per export: %v", seen)
	if len(seen) < 2 {
		t.Errorf("the origin never switched exports: %v", seen)
	}
	verifyServed(t, dst)
}

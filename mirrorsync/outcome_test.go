//go:build linux

package mirrorsync_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stella-ops/stella-mirror/internal/smallfs"
	"github.com/stella-ops/stella-mirror/mirrorsync"
)

// readProm parses a metrics textfile into name{label=value} → value.
func readProm(t testing.TB, path string) map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
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

// gatedUpstream serves an export root over HTTP and, while armed, holds
// every request for a bundle until released: a run can be caught mid-way.
type gatedUpstream struct {
	*httptest.Server
	mu      sync.Mutex
	entered chan struct{} // closed when a bundle request arrives; nil: not armed
	release chan struct{}
	once    *sync.Once
}

func newGatedUpstream(t *testing.T, root string) *gatedUpstream {
	o := newTestOrigin(t, root)
	g := &gatedUpstream{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		entered, release, once := g.entered, g.release, g.once
		g.mu.Unlock()
		if entered != nil && strings.HasSuffix(r.URL.Path, "/bundle.json") {
			once.Do(func() { close(entered) })
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
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
	t.Cleanup(g.Close)
	return g
}

// arm makes the next bundle request wait; it returns the channel closed
// when one arrives and the function that lets it go.
func (g *gatedUpstream) arm() (entered <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.entered, g.release, g.once = make(chan struct{}), make(chan struct{}), &sync.Once{}
	rel := g.release
	return g.entered, func() {
		g.mu.Lock()
		g.entered = nil
		g.mu.Unlock()
		close(rel)
	}
}

func waitEntered(t *testing.T, entered <-chan struct{}, cmd *exec.Cmd, out *bytes.Buffer) {
	t.Helper()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the run never reached a bundle: %s", out.String())
	}
}

// TestKilledRunIsReported: a run SIGKILLed mid-download leaves its marker;
// the next run warns "previous run was killed", writes result=killed to the
// textfile as soon as it holds the lock (before its own work), and its own
// result when it ends, with previous_run_killed 1. The run after that
// reports previous_run_killed 0.
func TestKilledRunIsReported(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	pub := pubKeyFile(t)
	prom := filepath.Join(t.TempDir(), "sync.prom")
	writeSource(t, src, 1)
	up := newGatedUpstream(t, src)
	if out, err := syncCmd(t, up.URL, dst, pub, "--metrics-textfile", prom).CombinedOutput(); err != nil {
		t.Fatalf("first sync: %v\n%s", err, out)
	}
	fx := writeSource(t, src, 2)

	entered, release := up.arm()
	victim := syncCmd(t, up.URL, dst, pub, "--metrics-textfile", prom)
	var victimOut bytes.Buffer
	victim.Stderr = &victimOut
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, entered, victim, &victimOut)
	victim.Process.Signal(syscall.SIGKILL)
	err := victim.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("victim was not killed: %v", err)
	}
	release()
	if _, err := os.Lstat(filepath.Join(dst, mirrorsync.RunningName)); err != nil {
		t.Fatalf("the killed run left no marker: %v", err)
	}
	if m := readProm(t, prom); m["stella_mirror_sync_last_result{result=published}"] != 1 {
		t.Fatalf("before the next run the textfile says %v", m)
	}

	entered, release = up.arm()
	next := syncCmd(t, up.URL, dst, pub, "--metrics-textfile", prom)
	var nextOut bytes.Buffer
	next.Stderr = &nextOut
	if err := next.Start(); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, entered, next, &nextOut)
	m := readProm(t, prom)
	release()
	if m["stella_mirror_sync_last_result{result=killed}"] != 1 || m["stella_mirror_sync_previous_run_killed"] != 1 {
		t.Errorf("while the next run works the textfile says %v", m)
	}
	if err := next.Wait(); err != nil {
		t.Fatalf("run after the kill: %v\n%s", err, nextOut.String())
	}
	if !strings.Contains(nextOut.String(), "previous run was killed") {
		t.Errorf("no warning about the killed run:\n%s", nextOut.String())
	}
	m = readProm(t, prom)
	if m["stella_mirror_sync_last_result{result=published}"] != 1 || m["stella_mirror_sync_previous_run_killed"] != 1 {
		t.Errorf("after the next run the textfile says %v", m)
	}
	if id := verifyServed(t, dst); id != fx.ExportID {
		t.Fatalf("served %s, want %s", id, fx.ExportID)
	}
	if _, err := os.Lstat(filepath.Join(dst, mirrorsync.RunningName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker still there after a finished run: %v", err)
	}
	if out, err := syncCmd(t, up.URL, dst, pub, "--metrics-textfile", prom).CombinedOutput(); err != nil {
		t.Fatalf("third run: %v\n%s", err, out)
	}
	if m := readProm(t, prom); m["stella_mirror_sync_last_result{result=unchanged}"] != 1 || m["stella_mirror_sync_previous_run_killed"] != 0 {
		t.Errorf("after a clean run the textfile says %v", m)
	}
}

// TestFullDiskOutcomes runs the binary on a file system without a free
// block: nothing new exits 0 and the textfile says unchanged with a fresh
// last success (it used to exit 1, unable to rewrite .sync-state.json); a
// textfile on the full file system itself is logged, exit still 0; a new
// export that cannot fit exits 1, result no_space, naming needed and free.
func TestFullDiskOutcomes(t *testing.T) {
	src, mnt := t.TempDir(), smallfs.Mount(t, 8<<20)
	dst := filepath.Join(mnt, "root")
	pub := pubKeyFile(t)
	prom := filepath.Join(t.TempDir(), "sync.prom")
	writeSource(t, src, 1)
	if out, err := syncCmd(t, src, dst, pub, "--metrics-textfile", prom).CombinedOutput(); err != nil {
		t.Fatalf("first sync: %v\n%s", err, out)
	}
	first := readProm(t, prom)["stella_mirror_sync_last_success_timestamp_seconds"]
	smallfs.Ballast(t, filepath.Join(mnt, "ballast"), 0)

	out, err := syncCmd(t, src, dst, pub, "--metrics-textfile", prom).CombinedOutput()
	if err != nil {
		t.Fatalf("nothing-new run on a full disk: %v\n%s", err, out)
	}
	m := readProm(t, prom)
	if m["stella_mirror_sync_last_result{result=unchanged}"] != 1 || m["stella_mirror_sync_last_success_timestamp_seconds"] <= first {
		t.Errorf("textfile after the nothing-new run: %v (first success %v)", m, first)
	}

	onFull := filepath.Join(mnt, "sync.prom")
	out, err = syncCmd(t, src, dst, pub, "--metrics-textfile", onFull).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "writing metrics textfile") {
		t.Errorf("textfile on the full disk: %v\n%s", err, out)
	}

	writeSource(t, src, 2)
	out, err = syncCmd(t, src, dst, pub, "--metrics-textfile", prom).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("new export on a full disk: %v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"no space left in " + dst, "it needs ", "free"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if m := readProm(t, prom); m["stella_mirror_sync_last_result{result=no_space}"] != 1 {
		t.Errorf("textfile after the failed run: %v", m)
	}
}

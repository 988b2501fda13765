package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/syncbuf"
)

// lockedBuffer collects a process's output for concurrent readers.
type lockedBuffer = syncbuf.Buffer

// proc is a stella-mirror subcommand running as its own process.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan error
	stopped        bool
}

// startProc runs bin with args and waits (polling, bounded: 60 s) until
// healthURL answers 200. The process is stopped when the test ends.
func startProc(t *testing.T, name, healthURL string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-p.done:
			p.stopped = true
			t.Fatalf("%s exited before it was ready (%v); stderr:\n%s", name, err, p.stderr.String())
		default:
		}
		if res, err := client.Get(healthURL); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s after 60s; stderr:\n%s", name, healthURL, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling an external process, bounded by the deadline
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 30 s).
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

// TestDemoGatewayCache is the cache's acceptance against the demo: the
// demo writes its data and configuration, then its origin and gateway run
// as separate processes (stella-mirror origin|gateway --config, the
// configs demo.json lists) so that the origin can be stopped alone. First
// request for a manifest → MISS, the next → HIT; with the origin stopped,
// cached bundles are still served (HIT or STALE) with the same bytes; the
// access log carries the same cache_status.
func TestDemoGatewayCache(t *testing.T) {
	requireTools(t, "curl", "sha256sum")
	dir := t.TempDir()
	d := startDemo(t, dir)
	if err := d.stop(t); err != nil {
		t.Fatalf("demo: %v", err)
	}
	s := d.state
	if s.Configs["origin"] == "" || s.Configs["gateway"] == "" {
		t.Fatalf("demo.json lists no configs: %+v", s.Configs)
	}
	origin := startProc(t, "origin", s.OriginAdmin+"/health/ready", "origin", "--config", s.Configs["origin"])
	gw := startProc(t, "gateway", s.GatewayAdmin+"/health/ready", "gateway", "--config", s.Configs["gateway"])

	prim := s.Sites["primary"]
	u, err := url.Parse(prim)
	if err != nil {
		t.Fatal(err)
	}
	pu := s.Users["primary"]
	env := []string{"CA=" + s.CA, "P=" + prim, "RP=" + u.Hostname() + ":" + u.Port() + ":127.0.0.1",
		"PU=" + pu.User + ":" + pu.Password, "W=" + t.TempDir()}
	// fetch prints "<http code> <X-Cache-Status> <sha256 of the body>".
	fetch := func(t *testing.T, path string) string {
		t.Helper()
		return sh(t, append(env, "PATH_="+path), `cd "$W"
			code=$(curl -sS --cacert "$CA" --resolve "$RP" -u "$PU" -D h.txt -o body -w '%{http_code}' "$P$PATH_")
			cs=$(tr -d '\r' < h.txt | awk -F': ' 'tolower($1)=="x-cache-status"{print $2}')
			echo "$code ${cs:-none} $(sha256sum body | cut -d' ' -f1)"`)
	}
	manifest := "/concelier/exports/mirror/primary/manifest.json"
	bundle := "/concelier/exports/mirror/primary/bundle.json"
	parse := func(t *testing.T, out string) (code, status, sum string) {
		t.Helper()
		f := strings.Fields(out)
		if len(f) != 3 {
			t.Fatalf("curl printed %q", out)
		}
		return f[0], f[1], f[2]
	}

	sums := map[string]string{}
	for _, path := range []string{manifest, bundle} {
		c1, s1, sum1 := parse(t, fetch(t, path))
		c2, s2, sum2 := parse(t, fetch(t, path))
		if c1 != "200" || s1 != "MISS" || c2 != "200" || s2 != "HIT" {
			t.Fatalf("%s: first %s %s, then %s %s; want 200 MISS, then 200 HIT", path, c1, s1, c2, s2)
		}
		if sum1 != sum2 {
			t.Fatalf("%s: the HIT served other bytes than the MISS", path)
		}
		sums[path] = sum1
	}

	origin.stop(t)
	if res, err := http.Get(s.Origin + "/health/live"); err == nil {
		res.Body.Close()
		t.Fatal("the origin still answers after it stopped")
	}
	for _, path := range []string{bundle, manifest} {
		code, status, sum := parse(t, fetch(t, path))
		if code != "200" || (status != "HIT" && status != "STALE") || sum != sums[path] {
			t.Fatalf("origin down, %s: %s %s (same bytes: %v); want 200 HIT/STALE with the cached bytes",
				path, code, status, sum == sums[path])
		}
	}
	// Not cached and the origin down: an error that still says MISS.
	if code, status, _ := parse(t, fetch(t, "/concelier/exports/mirror/primary/bundle.json.jws")); code != "502" || status != "MISS" {
		t.Fatalf("uncached object with the origin down: %s %s, want 502 MISS", code, status)
	}

	// The access log (stdout, flushed at exit) carries the same statuses.
	gw.stop(t)
	log := gw.stdout.String()
	for _, want := range []string{
		fmt.Sprintf(`"path":%q,"status":200`, manifest),
		`"cache_status":"MISS"`, `"cache_status":"HIT"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("gateway access log lacks %s:\n%s", want, log)
		}
	}
	if n := strings.Count(log, `"cache_status":"HIT"`); n < 4 {
		t.Errorf("access log has %d HIT lines, want at least 4", n)
	}
}

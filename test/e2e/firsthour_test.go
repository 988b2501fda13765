package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// demoDefaultPorts are the ports `make run` (stella-mirror demo without
// listen flags) asks for first: origin, origin admin, gateway, gateway admin.
var demoDefaultPorts = []int{8080, 9090, 8443, 9091}

// holdPorts listens on 127.0.0.1:port for every port that is free and
// returns the listeners (closed at cleanup); a port that is already taken by
// another process is taken all the same, which is what the test needs.
func holdPorts(t *testing.T, ports []int) map[int]bool {
	t.Helper()
	held := map[int]bool{}
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("occupying port %d: %v", p, err)
			}
			continue
		}
		t.Cleanup(func() { l.Close() })
		held[p] = true
	}
	return held
}

// startDemoBanner runs `stella-mirror demo` with args and returns it with
// the banner it printed (every line up to the origin's example).
func startDemoBanner(t *testing.T, dir string, args ...string) (*demoProc, []string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"demo", "--dir", dir, "--bundle-size", "1MiB"}, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &demoProc{cmd: cmd, done: make(chan error, 1)}
	bannerc := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		var lines []string
		complete := false
		for sc.Scan() {
			if complete {
				continue
			}
			lines = append(lines, sc.Text())
			if strings.HasPrefix(sc.Text(), "The origin directly") {
				complete = true
				bannerc <- lines
			}
		}
		if !complete {
			bannerc <- nil
		}
		io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { p.stop(t) })
	var banner []string
	select {
	case banner = <-bannerc:
		if banner == nil {
			t.Fatalf("demo exited before its banner; stderr:\n%s", stderr.String())
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("no demo banner after 90s; stderr:\n%s", stderr.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &p.state); err != nil {
		t.Fatalf("demo.json: %v", err)
	}
	return p, banner
}

// bannerCommands extracts every shell command the banner prints: the
// indented curl/T=/binary lines with their "\" continuations, the origin's
// example after "(no auth): ", and the purge command in parentheses.
func bannerCommands(banner []string) []string {
	var cmds []string
	purge := regexp.MustCompile(`\(purge: (curl .*)\)$`)
	for i := 0; i < len(banner); i++ {
		line := banner[i]
		trimmed := strings.TrimSpace(line)
		switch {
		case purge.MatchString(line):
			cmds = append(cmds, purge.FindStringSubmatch(line)[1])
		case strings.HasPrefix(line, "The origin directly (no auth): "):
			cmds = append(cmds, strings.TrimPrefix(line, "The origin directly (no auth): "))
		case strings.HasPrefix(line, "  curl ") || strings.HasPrefix(line, "  T=") || strings.HasPrefix(line, "  /"):
			c := trimmed
			for strings.HasSuffix(c, "\\") && i+1 < len(banner) {
				i++
				c = strings.TrimSuffix(c, "\\") + " " + strings.TrimSpace(banner[i])
			}
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// TestDemoDefaultPortsTaken is `make run` on a machine where 8080, 9090,
// 8443 and 9091 are all taken: the demo still comes up on free ports, says
// which moved, and every command its banner prints works as printed (curl
// through the gateway and to the origin, the purge, the verify chain, and
// `stella-mirror smoke` against the *.localhost site URL without
// --connect-to).
func TestDemoDefaultPortsTaken(t *testing.T) {
	requireTools(t, "curl", "jq", "bash")
	held := holdPorts(t, demoDefaultPorts)
	work := t.TempDir() // as a clone: demo-data/ and bin/stella-mirror
	dir := filepath.Join(work, "demo-data")
	p, banner := startDemoBanner(t, dir)
	text := strings.Join(banner, "\n")
	s := p.state
	for _, u := range []string{s.Origin, s.OriginAdmin, s.GatewayAdmin, s.Sites["primary"]} {
		for port := range held { // another process's port may be freed meanwhile
			if strings.HasSuffix(u, ":"+strconv.Itoa(port)) {
				t.Errorf("demo.json URL %s uses the taken port %d", u, port)
			}
		}
	}
	for port := range held {
		if !strings.Contains(text, "127.0.0.1:"+strconv.Itoa(port)+" was taken, using 127.0.0.1:") {
			t.Errorf("banner does not say that port %d moved:\n%s", port, text)
		}
	}
	cmds := bannerCommands(banner)
	var sawSmoke, sawVerify bool
	for _, c := range cmds {
		if strings.Contains(c, " smoke ") {
			sawSmoke = true
			if strings.Contains(c, "--connect-to") || !strings.Contains(c, s.Sites["primary"]) {
				t.Errorf("smoke command %q: want --base %s and no --connect-to", c, s.Sites["primary"])
			}
		}
		if strings.Contains(c, " verify ") {
			sawVerify = true
		}
	}
	if len(cmds) < 7 || !sawSmoke || !sawVerify {
		t.Fatalf("banner commands %q: want at least 7 with smoke and verify\n%s", cmds, text)
	}
	for _, c := range cmds {
		out := sh(t, nil, c)
		switch {
		case strings.Contains(c, " smoke "):
			if strings.Contains(out, "FAIL") || strings.Count(out, "PASS") < 6 {
				t.Errorf("smoke output:\n%s", out)
			}
		case strings.Contains(c, " verify "):
			if !strings.HasPrefix(out, "OK") {
				t.Errorf("verify output %q", out)
			}
		case strings.Contains(c, "purge"):
			// sh fails on a non-zero exit; curl -X POST without -f
			// would hide a 401, so look at the answer.
			if !strings.Contains(out, `"purged":`) {
				t.Errorf("purge answered %q, want {\"purged\":N}", out)
			}
		default:
			if out == "" {
				t.Errorf("%s printed nothing", c)
			}
		}
	}
	// The README's example that reads the ports from demo.json, run from
	// the clone's root.
	if err := os.MkdirAll(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(work, "bin", "stella-mirror")); err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(repoPath(t, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := readmeBlockAfter(t, string(readme), "so\ncommands can read the ports from it")
	out := sh(t, []string{"TMPDIR=" + t.TempDir()}, "cd "+work+" && "+block)
	if !strings.Contains(out, `"exportId"`) || !strings.Contains(out, "immutable") || !strings.Contains(out, "\nOK") {
		t.Errorf("README demo.json example: want index keys, the manifest's immutable Cache-Control and verify's OK:\n%s", out)
	}
	// The status pages the banner names answer too.
	for _, u := range []string{s.GatewayAdmin + "/status", s.OriginAdmin + "/status", s.GatewayAdmin + "/health/ready"} {
		sh(t, []string{"U=" + u}, `curl -fsS -o /dev/null "$U"`)
	}
}

// TestDemoPortBase: --port-base N puts the four listeners on N..N+3, and
// an explicitly given address that is taken fails naming its flag.
func TestDemoPortBase(t *testing.T) {
	base := freePortBase(t)
	p, _ := startDemoBanner(t, t.TempDir(), "--port-base", strconv.Itoa(base))
	want := []string{
		"http://127.0.0.1:" + strconv.Itoa(base), "http://127.0.0.1:" + strconv.Itoa(base+1),
		"https://mirror-primary.localhost:" + strconv.Itoa(base+2), "http://127.0.0.1:" + strconv.Itoa(base+3)}
	got := []string{p.state.Origin, p.state.OriginAdmin, p.state.Sites["primary"], p.state.GatewayAdmin}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("URLs %v, want %v", got, want)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("demo stop: %v", err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out, err := exec.Command(bin, "demo", "--dir", t.TempDir(), "--bundle-size", "1MiB",
		"--origin-listen", l.Addr().String(), "--origin-admin-listen", "127.0.0.1:0",
		"--gateway-listen", "127.0.0.1:0", "--gateway-admin-listen", "127.0.0.1:0").CombinedOutput()
	if err == nil {
		t.Fatalf("demo on a taken --origin-listen succeeded:\n%s", out)
	}
	for _, w := range []string{l.Addr().String(), "address already in use", "--origin-listen", "--port-base"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("error output lacks %q:\n%s", w, out)
		}
	}
}

// TestDemoPortBaseTaken: with --port-base N and one of N..N+3 taken, the
// demo fails naming the taken address and --port-base N (the flag the
// operator gave), not the per-listener flag it was never given.
func TestDemoPortBaseTaken(t *testing.T) {
	base := freePortBase(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+1)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out, err := exec.Command(bin, "demo", "--dir", t.TempDir(), "--bundle-size", "1MiB",
		"--port-base", strconv.Itoa(base)).CombinedOutput()
	if err == nil {
		t.Fatalf("demo with --port-base %d and %s taken succeeded:\n%s", base, l.Addr(), out)
	}
	for _, w := range []string{l.Addr().String(), "address already in use", "--port-base " + strconv.Itoa(base)} {
		if !strings.Contains(string(out), w) {
			t.Errorf("error output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(string(out), "set by --origin-admin-listen") {
		t.Errorf("error output blames --origin-admin-listen, which was not given:\n%s", out)
	}
}

// TestDemoGatewayPortTakenOnIPv6Loopback: *.localhost names resolve to
// 127.0.0.1 and ::1, and clients may try ::1 first (curl 8, browsers), so a
// default gateway port that another process holds on [::1] only counts as
// taken: the banner's https://mirror-primary.localhost:PORT must not lead to
// that process. The demo moves the gateway and says why.
func TestDemoGatewayPortTakenOnIPv6Loopback(t *testing.T) {
	l6, err := net.Listen("tcp6", "[::1]:8443")
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			t.Logf("[::1]:8443 is already held by another process; the check holds all the same")
		} else {
			testenv.Missing(t, "no IPv6 loopback to listen on: %v", err)
		}
	} else {
		defer l6.Close()
	}
	p, banner := startDemoBanner(t, t.TempDir())
	site := p.state.Sites["primary"]
	if strings.HasSuffix(site, ":8443") {
		t.Fatalf("site %s: the gateway kept 8443, which [::1]:8443 answers for *.localhost clients\n%s", site, strings.Join(banner, "\n"))
	}
	if text := strings.Join(banner, "\n"); !strings.Contains(text, "[::1]:8443") {
		t.Errorf("banner does not say why the gateway moved:\n%s", text)
	}
	// The port it took is free on [::1] (a client trying ::1 first is
	// refused and falls back to 127.0.0.1).
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(site, "https://"))
	if c, err := net.Listen("tcp6", net.JoinHostPort("::1", port)); err != nil {
		t.Errorf("the gateway's port %s is in use on [::1]: %v", port, err)
	} else {
		c.Close()
	}
}

// freePortBase finds N such that 127.0.0.1 ports N..N+3 are free right
// now (bounded: 50 tries).
func freePortBase(t *testing.T) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if base > 65532 {
			continue
		}
		ok := true
		for i := 0; i < 4; i++ {
			c, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i)))
			if err != nil {
				ok = false
				break
			}
			c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no four consecutive free ports in 50 tries")
	return 0
}

// readmeBlockAfter returns the first ```sh block after the text marker.
func readmeBlockAfter(t *testing.T, readme, marker string) string {
	t.Helper()
	i := strings.Index(readme, marker)
	if i < 0 {
		t.Fatalf("README lacks %q", marker)
	}
	rest := readme[i:]
	j := strings.Index(rest, "```sh\n")
	if j < 0 {
		t.Fatal("no sh block after the marker")
	}
	rest = rest[j+len("```sh\n"):]
	k := strings.Index(rest, "```")
	if k < 0 {
		t.Fatal("unterminated sh block")
	}
	return rest[:k]
}

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// repoRoot is the repository root, seen from test/e2e.
const repoRoot = "../.."

// composeTool is one way to run Compose: the docker CLI plugin
// (`docker compose`) or the standalone `docker-compose`.
type composeTool struct {
	name string
	argv []string
}

// composeTools lists the Compose implementations that answer here.
func composeTools(t *testing.T) []composeTool {
	t.Helper()
	var out []composeTool
	for _, c := range []composeTool{
		{"docker compose", []string{"docker", "compose"}},
		{"docker-compose", []string{"docker-compose"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := exec.CommandContext(ctx, c.argv[0], append(c.argv[1:], "version")...).Run()
		cancel()
		if err == nil {
			out = append(out, c)
		}
	}
	return out
}

// requireDocker skips the test, loudly, when no Docker engine answers
// (fails it under CI: testenv.Missing).
func requireDocker(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		testenv.Missing(t, "the compose deployment test needs Docker: no docker CLI on this host (apt-get install docker.io); compose/ and the image are NOT tested here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		testenv.Missing(t, "the compose deployment test needs a Docker engine: none answers (docker info: %v: %s); compose/ and the image are NOT tested here",
			err, bytes.TrimSpace(out))
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// run runs argv with env added, bounded by timeout, and returns stdout; it
// fails the test on a non-zero exit.
func run(t *testing.T, env []string, timeout time.Duration, argv ...string) string {
	t.Helper()
	out, err := tryRun(env, timeout, argv...)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return out
}

func tryRun(env []string, timeout time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// TestComposeDeployment is the acceptance path: build the scratch
// image (nothing pulled), lay out certificates, users and an export with the
// commands tls/README.md and secrets/README.md give, `compose up` the stack
// with the example env file, wait for health, check it with curl and
// `stella-mirror smoke` (from the host, and with --origin from a container on
// the internal network), run `validate` on the profile, rotate a user and
// the certificates without a restart, and `compose down -v`. The stack part
// runs once per Compose implementation installed.
func TestComposeDeployment(t *testing.T) {
	requireDocker(t)
	requireTools(t, "curl")
	tools := composeTools(t)
	if len(tools) == 0 {
		t.Fatal("a Docker engine answers but neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}

	// The image, from the binary under test, with a tag of its own.
	image := "stella-mirror:e2e-" + randomHex(t, 4)
	start := time.Now()
	run(t, nil, 5*time.Minute, filepath.Join(root, "compose", "build-image.sh"), bin, image, "e2e")
	t.Logf("image %s built in %.1fs", image, time.Since(start).Seconds())
	t.Cleanup(func() { _, _ = tryRun(nil, time.Minute, "docker", "rmi", "-f", image) })
	t.Run("image", func(t *testing.T) {
		got := strings.TrimSpace(run(t, nil, time.Minute, "docker", "image", "inspect", "--format",
			"{{.Config.User}}|{{json .Config.Healthcheck.Test}}|{{len .RootFS.Layers}}", image))
		parts := strings.Split(got, "|")
		// FROM scratch: only the Dockerfile's five COPY layers, no base image.
		if len(parts) != 3 || parts[0] != "65532:65532" || !strings.Contains(parts[1], `"/stella-mirror","healthcheck"`) || parts[2] != "5" {
			t.Fatalf("image config %q: want USER 65532:65532, a healthcheck HEALTHCHECK and 5 layers", got)
		}
		out := run(t, nil, time.Minute, "docker", "run", "--rm", "--read-only", image, "version")
		if !strings.HasPrefix(out, "stella-mirror ") {
			t.Fatalf("docker run %s version: %q", image, out)
		}
		// `docker compose exec gateway stella-mirror purge --all` (the
		// issue's and purge --help's command) finds the binary by name:
		// exec resolves it through the image's PATH.
		out = run(t, nil, time.Minute, "docker", "run", "--rm", "--read-only", "--entrypoint", "stella-mirror", image, "version")
		if !strings.HasPrefix(out, "stella-mirror ") {
			t.Fatalf("docker run --entrypoint stella-mirror %s version: %q", image, out)
		}
	})

	for _, tool := range tools {
		t.Run(strings.ReplaceAll(tool.name, " ", "-"), func(t *testing.T) {
			testComposeStack(t, tool, root, image)
		})
	}
}

// mustParseCurlDate parses the "expire date" curl -v prints.
func mustParseCurlDate(t *testing.T, v string) time.Time {
	t.Helper()
	for _, layout := range []string{"Jan  2 15:04:05 2006 MST", "Jan 2 15:04:05 2006 MST"} {
		if tm, err := time.Parse(layout, strings.TrimSpace(v)); err == nil {
			return tm
		}
	}
	t.Fatalf("curl date %q", v)
	return time.Time{}
}

// stack is one running compose project.
type stack struct {
	t       *testing.T
	tool    composeTool
	root    string
	project string
	env     []string
}

// compose runs the compose tool on the project with the example env file.
func (s *stack) compose(timeout time.Duration, args ...string) (string, error) {
	argv := append(append([]string{}, s.tool.argv...),
		"-p", s.project,
		"-f", filepath.Join(s.root, "compose", "docker-compose.mirror.yaml"),
		"--env-file", filepath.Join(s.root, "compose", "env", "mirror.env.example"))
	return tryRun(s.env, timeout, append(argv, args...)...)
}

func (s *stack) mustCompose(timeout time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.compose(timeout, args...)
	if err != nil {
		s.t.Fatalf("%s %s: %v", s.tool.name, strings.Join(args, " "), err)
	}
	return out
}

// container returns the id of service's container.
func (s *stack) container(service string) string {
	s.t.Helper()
	id := strings.TrimSpace(s.mustCompose(time.Minute, "ps", "-q", service))
	if id == "" {
		s.t.Fatalf("no container for service %s", service)
	}
	return id
}

func testComposeStack(t *testing.T, tool composeTool, root, image string) {
	work := t.TempDir()
	tlsDir, secretsDir, exportRoot := filepath.Join(work, "tls"), filepath.Join(work, "secrets"), filepath.Join(work, "exports")

	// Material, made with the documented commands.
	run(t, nil, time.Minute, bin, "fixture", "--out", exportRoot, "--bundle-size", "256KiB", "--vex-size", "64KiB")
	run(t, nil, time.Minute, bin, "dev-certs", "--out", tlsDir)
	if err := os.MkdirAll(secretsDir, 0o750); err != nil {
		t.Fatal(err)
	}
	users := map[string]string{"primary": "alice", "community": "carol"}
	for site, user := range users {
		run(t, nil, time.Minute, bin, "passwd", "--file", filepath.Join(secretsDir, site+".htpasswd"),
			"--user", user, "--generate", "24", "--password-out", filepath.Join(work, user+".password"))
	}
	// The admin token the example env enables (GATEWAY__ADMINTOKENFILE).
	if err := os.WriteFile(filepath.Join(secretsDir, "gateway-admin-token"), []byte(randomHex(t, 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	password := func(user string) string {
		b, err := os.ReadFile(filepath.Join(work, user+".password"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	// The containers run as MIRROR_UID:MIRROR_GID. As root, hand the files
	// the gateway reads to 65532 once, as tls/README.md and
	// secrets/README.md tell operators (later rewrites by passwd and
	// dev-certs keep the owner: the rotation subtests rely on it); otherwise
	// run the containers as ourselves.
	uid, gid := os.Getuid(), os.Getgid()
	if os.Geteuid() == 0 {
		uid, gid = 65532, 65532
		for _, pattern := range []string{"tls/*.crt", "tls/*.key", "secrets/*", "*.password"} {
			matches, _ := filepath.Glob(filepath.Join(work, pattern))
			for _, m := range matches {
				if err := os.Chown(m, uid, gid); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// t.TempDir is 0700; the mounted directories must be searchable by the
	// containers' user (Docker mounts them as root, so their parents need not).
	for _, d := range []string{tlsDir, secretsDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	httpsPort, httpPort := freeFixedPort(t), freeFixedPort(t)
	b := randomHex(t, 2)
	subnetA, _ := strconv.ParseUint(b[:2], 16, 8)
	subnetB, _ := strconv.ParseUint(b[2:], 16, 8)
	s := &stack{t: t, tool: tool, root: root, project: "smtest" + randomHex(t, 4), env: []string{
		"MIRROR_IMAGE=" + image,
		"MIRROR_BIND_ADDRESS=127.0.0.1",
		"MIRROR_HTTPS_PORT=" + strconv.Itoa(httpsPort),
		"MIRROR_HTTP_PORT=" + strconv.Itoa(httpPort),
		"MIRROR_EXPORT_ROOT=" + exportRoot,
		"MIRROR_TLS_DIR=" + tlsDir,
		"MIRROR_SECRETS_DIR=" + secretsDir,
		"MIRROR_UID=" + strconv.Itoa(uid),
		"MIRROR_GID=" + strconv.Itoa(gid),
		fmt.Sprintf("MIRROR_BACKEND_SUBNET=10.%d.%d.0/24", 200+subnetA%50, subnetB),
		fmt.Sprintf("MIRROR_GATEWAY_BACKEND_IP=10.%d.%d.10", 200+subnetA%50, subnetB),
		"MIRROR_HEALTHCHECK_INTERVAL=1s",
	}}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := s.compose(time.Minute, "logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", logs)
		}
		if out, err := s.compose(2*time.Minute, "down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
			t.Errorf("compose down -v: %v\n%s", err, out)
		}
	})

	if out, err := s.compose(time.Minute, "config", "-q"); err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
	if out, err := s.compose(time.Minute, "--profile", "sync", "config", "--services"); err != nil || !strings.Contains(out, "sync") {
		t.Fatalf("compose --profile sync config: %v\n%s", err, out)
	}
	start := time.Now()
	// `up -d` returns once the origin is healthy and the gateway created
	// (depends_on: service_healthy).
	s.mustCompose(3*time.Minute, "up", "-d")
	gw, origin := s.container("gateway"), s.container("origin")
	// Docker runs the health checks; poll their verdict with a deadline.
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := strings.TrimSpace(run(t, nil, time.Minute, "docker", "inspect", "--format", "{{.State.Health.Status}}", gw))
		if st == "healthy" {
			break
		}
		if st == "unhealthy" || time.Now().After(deadline) {
			t.Fatalf("gateway container is %s after %.0fs", st, time.Since(start).Seconds())
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%s: stack healthy %.1fs after `up -d`", tool.name, time.Since(start).Seconds())

	t.Run("containers hardened", func(t *testing.T) {
		for name, id := range map[string]string{"gateway": gw, "origin": origin} {
			got := strings.TrimSpace(run(t, nil, time.Minute, "docker", "inspect", "--format",
				"{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.State.Health.Status}} {{.HostConfig.RestartPolicy.Name}}", id))
			if want := fmt.Sprintf("%d:%d true healthy unless-stopped", uid, gid); got != want {
				t.Errorf("%s: user, read-only root, health, restart = %q", name, got)
			}
			mounts := run(t, nil, time.Minute, "docker", "inspect", "--format",
				`{{range .Mounts}}{{.Destination}}={{.RW}} {{end}}`, id)
			if !strings.Contains(mounts, "/run/secrets=false") {
				t.Errorf("%s: /run/secrets not mounted read-only: %s", name, mounts)
			}
			if name == "origin" && !strings.Contains(mounts, "/srv/stella-mirror/exports=false") {
				t.Errorf("origin: export root not mounted read-only: %s", mounts)
			}
		}
		if ports := strings.TrimSpace(run(t, nil, time.Minute, "docker", "inspect", "--format", "{{json .NetworkSettings.Ports}}", origin)); strings.Contains(ports, "HostPort") {
			t.Errorf("origin publishes a port: %s", ports)
		}
	})

	primary := fmt.Sprintf("https://mirror-primary.localhost:%d", httpsPort)
	community := fmt.Sprintf("https://mirror-community.localhost:%d", httpsPort)
	env := []string{
		"CA=" + filepath.Join(tlsDir, "ca.pem"),
		"P=" + primary, "C=" + community,
		fmt.Sprintf("RP=mirror-primary.localhost:%d:127.0.0.1", httpsPort),
		fmt.Sprintf("RC=mirror-community.localhost:%d:127.0.0.1", httpsPort),
		"PU=alice:" + password("alice"), "CU=carol:" + password("carol"),
		"HTTP=" + fmt.Sprintf("http://127.0.0.1:%d", httpPort),
	}
	curlCode := func(t *testing.T, args string) string {
		t.Helper()
		return sh(t, env, `curl -sS -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$CA" --resolve "$RP" --resolve "$RC" `+args)
	}
	t.Run("curl --cacert", func(t *testing.T) {
		for _, tt := range []struct{ name, args, want string }{
			{"no credentials", `"$P/concelier/exports/index.json"`, "401"},
			{"index", `-u "$PU" "$P/concelier/exports/index.json"`, "200"},
			{"bundle", `-u "$PU" "$P/concelier/exports/mirror/primary/bundle.json"`, "200"},
			{"excititor index", `-u "$CU" "$C/excititor/mirror/community/index"`, "200"},
			{"other domain", `-u "$PU" "$P/concelier/exports/mirror/community/bundle.json"`, "404"},
			{"other site's user", `-u "$PU" "$C/concelier/exports/index.json"`, "401"},
		} {
			if got := curlCode(t, tt.args); got != tt.want {
				t.Errorf("%s: HTTP %s, want %s", tt.name, got, tt.want)
			}
		}
		got := sh(t, env, `curl -sS -D - -o /dev/null --cacert "$CA" --resolve "$RP" "$P/concelier/exports/index.json" | tr -d '\r' | grep -i '^www-authenticate:'`)
		if !strings.Contains(got, `Basic realm="mirror-primary"`) {
			t.Errorf("401 challenge %q", got)
		}
		loc := sh(t, env, `curl -sS -D - -o /dev/null -H 'Host: mirror-primary.localhost' "$HTTP/concelier/exports/index.json" | tr -d '\r' | grep -i '^location:'`)
		if !strings.Contains(loc, "https://mirror-primary.localhost/concelier/exports/index.json") {
			t.Errorf("plain HTTP redirect %q", loc)
		}
	})
	t.Run("bundle verifies", func(t *testing.T) {
		dl := t.TempDir()
		sh(t, append(env, "W="+dl, "BIN="+bin, "PUB="+filepath.Join(exportRoot, "fixture-signing.pub.pem")), `cd "$W"
			curl -fsS --cacert "$CA" --resolve "$RP" -u "$PU" -o bundle.json "$P/concelier/exports/mirror/primary/bundle.json"
			curl -fsS --cacert "$CA" --resolve "$RP" -u "$PU" -o bundle.json.jws "$P/concelier/exports/mirror/primary/bundle.json.jws"
			"$BIN" verify --public-key "$PUB" bundle.json | grep -q '^OK'`)
	})
	t.Run("purge and status through compose exec", func(t *testing.T) {
		// The scratch image has no curl: the binary's own admin clients,
		// token and address from the container's environment.
		curlCode(t, `-u "$PU" "$P/concelier/exports/index.json"`) // something stored
		out, err := s.compose(time.Minute, "exec", "-T", "gateway", "/stella-mirror", "purge", "--all")
		if err != nil || !strings.Contains(out, "purged ") {
			t.Fatalf("compose exec gateway stella-mirror purge --all: %v\n%s", err, out)
		}
		got := sh(t, env, `curl -sS -D - -o /dev/null --cacert "$CA" --resolve "$RP" -u "$PU" "$P/concelier/exports/index.json" | tr -d '\r' | grep -i '^x-cache-status:'`)
		if !strings.Contains(got, "MISS") {
			t.Errorf("after purge: %q, want MISS", got)
		}
		if out, err := s.compose(time.Minute, "exec", "-T", "gateway", "/stella-mirror", "status"); err != nil || !strings.Contains(out, "{") {
			t.Errorf("compose exec gateway stella-mirror status: %v\n%s", err, out)
		}
	})
	t.Run("user rotation without restart", func(t *testing.T) {
		ht := filepath.Join(secretsDir, "primary.htpasswd")
		pwFile := filepath.Join(work, "bob.password")
		run(t, nil, time.Minute, bin, "passwd", "--file", ht, "--user", "bob", "--generate", "24", "--password-out", pwFile)
		bob, err := os.ReadFile(pwFile)
		if err != nil {
			t.Fatal(err)
		}
		// The gateway (another process) watches the directory: poll, bounded.
		sh(t, append(env, "BU=bob:"+strings.TrimSpace(string(bob))), `for i in $(seq 100); do
				c=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$CA" --resolve "$RP" -u "$BU" "$P/concelier/exports/index.json")
				[ "$c" = 200 ] && exit 0
				sleep 0.1
			done
			echo "new user still gets $c" >&2; exit 1`)
		started := strings.TrimSpace(run(t, nil, time.Minute, "docker", "inspect", "--format", "{{.RestartCount}} {{.State.StartedAt}}", gw))
		if !strings.HasPrefix(started, "0 ") {
			t.Errorf("gateway restarted: %s", started)
		}
	})
	t.Run("certificate rotation without restart", func(t *testing.T) {
		startDate := func() string {
			return sh(t, env, `curl -sS -v -o /dev/null --cacert "$CA" --resolve "$RP" -u "$PU" "$P/concelier/exports/index.json" 2>&1 |
				sed -n 's/^\* *start date: //p'`)
		}
		before := startDate()
		// dev-certs issues new site certificates (key first, then the
		// certificate); the gateway watches /etc/stella-mirror/tls.
		// The files keep their owner, so the gateway can read the new key.
		run(t, nil, time.Minute, bin, "dev-certs", "--out", tlsDir, "--days", "30")
		// A SIGHUP makes the reload immediate even where inotify is slow.
		s.mustCompose(time.Minute, "kill", "-s", "SIGHUP", "gateway")
		deadline := time.Now().Add(30 * time.Second)
		for {
			expire := sh(t, env, `curl -sS -v -o /dev/null --cacert "$CA" --resolve "$RP" -u "$PU" "$P/concelier/exports/index.json" 2>&1 |
				sed -n 's/^\* *expire date: //p'`)
			if expire != "" && time.Now().Add(31*24*time.Hour).After(mustParseCurlDate(t, expire)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway still serves the old certificate (expire date %s; start date before rotation %s)", expire, before)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if got := strings.TrimSpace(run(t, nil, time.Minute, "docker", "inspect", "--format", "{{.RestartCount}}", gw)); got != "0" {
			t.Errorf("gateway restarted %s times", got)
		}
	})
	t.Run("sync profile", func(t *testing.T) {
		// The example's SYNC__ keys load in the sync container (no upstream
		// is contacted by --check-config).
		pub, err := os.ReadFile(filepath.Join(exportRoot, "fixture-signing.pub.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(secretsDir, "signing.pub.pem"), pub, 0o644); err != nil {
			t.Fatal(err)
		}
		out := s.mustCompose(2*time.Minute, "--profile", "sync", "run", "--rm", "sync", "sync", "--check-config")
		if !strings.Contains(out, "configuration OK") {
			t.Fatalf("sync --check-config in the sync service: %q", out)
		}
	})
	t.Run("validate", func(t *testing.T) {
		// The profile validator on the compose file, the example env file
		// and the material laid out above (after the sync subtest added
		// signing.pub.pem), with this test's MIRROR_* overrides, as compose
		// ran it; then the same env file with explicit path mappings.
		// validate interpolates the compose file from its --env-file files
		// only (not from the process environment, as compose does), so this
		// test's MIRROR_* overrides go in a second env file after the example.
		overrides := filepath.Join(t.TempDir(), "overrides.env")
		if err := os.WriteFile(overrides, []byte(strings.Join(s.env, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for name, args := range map[string][]string{
			"compose-file": {"--compose-file", filepath.Join(root, "compose", "docker-compose.mirror.yaml"),
				"--env-file", filepath.Join(root, "compose", "env", "mirror.env.example"), "--env-file", overrides},
			"map": {"--env-file", filepath.Join(root, "compose", "env", "mirror.env.example"),
				"--map", "/run/secrets=" + secretsDir, "--map", "/etc/stella-mirror/tls=" + tlsDir,
				"--map", "/srv/stella-mirror/exports=" + exportRoot},
		} {
			out, err := tryRun(s.env, time.Minute, append([]string{bin, "validate"}, args...)...)
			if err != nil {
				t.Errorf("validate (%s): %v", name, err)
				continue
			}
			if !strings.Contains(out, "site primary") || !strings.Contains(out, exportRoot+" holds an active export") {
				t.Errorf("validate (%s) did not check this test's sites and export root:\n%s", name, out)
			}
		}
	})
	ca, pub := filepath.Join(tlsDir, "ca.pem"), filepath.Join(exportRoot, "fixture-signing.pub.pem")
	t.Run("smoke", func(t *testing.T) {
		for site, user := range users {
			out, err := tryRun(nil, 2*time.Minute, bin, "smoke",
				"--base", fmt.Sprintf("https://mirror-%s.localhost:%d", site, httpsPort),
				"--connect-to", fmt.Sprintf("127.0.0.1:%d", httpsPort),
				"--domain", site, "--user", user, "--password-file", filepath.Join(work, user+".password"),
				"--cacert", ca, "--public-key", pub, "--expect-cache")
			t.Logf("stella-mirror smoke (%s, from the host):\n%s", site, out)
			if err != nil {
				t.Errorf("smoke %s: %v", site, err)
			}
		}
	})
	t.Run("validate a key that does not match the export", func(t *testing.T) {
		// `fixture --seed 2` elsewhere made another signing key; copied as
		// sync's key, it no longer verifies the served export: validate
		// fails naming the setting, the key and the export.
		good := filepath.Join(secretsDir, "signing.pub.pem")
		keep, err := os.ReadFile(good)
		if err != nil {
			t.Fatal(err)
		}
		other := t.TempDir()
		run(t, nil, time.Minute, bin, "fixture", "--out", other, "--seed", "2", "--domains", "primary", "--bundle-size", "8KiB", "--vex-size", "2KiB")
		wrong, err := os.ReadFile(filepath.Join(other, "fixture-signing.pub.pem"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(good, wrong, 0o644)
		defer os.WriteFile(good, keep, 0o644)
		id, _ := os.Readlink(filepath.Join(exportRoot, "latest"))
		out, err := tryRun(s.env, time.Minute, bin, "validate", "--env-file", filepath.Join(root, "compose", "env", "mirror.env.example"),
			"--map", "/run/secrets="+secretsDir, "--map", "/etc/stella-mirror/tls="+tlsDir,
			"--map", "/srv/stella-mirror/exports="+exportRoot)
		if err == nil || !strings.Contains(out, "does not verify") || !strings.Contains(out, "SYNC__PUBLICKEYS__0") || id == "" || !strings.Contains(out, filepath.Base(id)) {
			t.Fatalf("validate with a key that does not match export %s: err %v\n%s", id, err, out)
		}
	})
	t.Run("smoke inside the backend network", func(t *testing.T) {
		// From a container on the internal network (not the gateway's bypass
		// address) the origin must refuse without a token: origin-auth runs.
		out, err := tryRun(nil, 2*time.Minute, "docker", "run", "--rm",
			"--network", s.project+"_backend", "--user", fmt.Sprintf("%d:%d", uid, gid), "--read-only",
			"-v", ca+":/check/ca.pem:ro", "-v", pub+":/check/signing.pub.pem:ro",
			"-v", filepath.Join(work, "alice.password")+":/check/password:ro",
			image, "smoke", "--base", "https://mirror-primary.localhost", "--connect-to", "gateway:443",
			"--origin", "http://origin:8080", "--domain", "primary", "--user", "alice",
			"--password-file", "/check/password", "--cacert", "/check/ca.pem", "--public-key", "/check/signing.pub.pem",
			"--expect-cache")
		t.Logf("stella-mirror smoke (backend network):\n%s", out)
		if err != nil {
			t.Fatalf("smoke: %v", err)
		}
		if !strings.Contains(out, "PASS origin-auth") {
			t.Errorf("origin-auth did not pass:\n%s", out)
		}
	})
	t.Run("origin outage logged", s.originOutage)
	// Last: it stops the stack. docs/operations.md "Stop and remove".
	t.Run("down keeps the cache volume, down -v removes it", func(t *testing.T) {
		volume := s.project + "_gateway-cache"
		hasVolume := func() bool {
			out, err := tryRun(nil, time.Minute, "docker", "volume", "ls", "-q", "--filter", "name="+volume)
			if err != nil {
				t.Fatalf("docker volume ls: %v\n%s", err, out)
			}
			for _, l := range strings.Fields(out) {
				if l == volume {
					return true
				}
			}
			return false
		}
		s.mustCompose(2*time.Minute, "down", "--timeout", "10")
		if !hasVolume() {
			t.Errorf("after down: volume %s is gone, the docs say down keeps it", volume)
		}
		s.mustCompose(2*time.Minute, "down", "-v", "--timeout", "10")
		if hasVolume() {
			t.Errorf("after down -v: volume %s is still there", volume)
		}
	})
}

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// bin is the stella-mirror binary under test.
var bin string

func TestMain(m *testing.M) {
	os.Exit(testenv.MainWithBinary(m, &bin))
}

// requireTools fails the test (or skips it outside CI) when a client the
// runbook uses is not installed.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, "%s is not installed (scripts/test-deps installs it)", tool)
		}
	}
}

// demoState mirrors the keys of demo.json that the tests use.
type demoState struct {
	Origin       string              `json:"origin"`
	OriginAdmin  string              `json:"originAdmin"`
	ExportRoots  map[string]string   `json:"exportRoots"`
	PublicKey    string              `json:"publicKey"`
	KeyID        string              `json:"keyId"`
	Domains      []string            `json:"domains"`
	ExportID     string              `json:"exportId"`
	Sites        map[string]string   `json:"sites"`
	GatewayAdmin string              `json:"gatewayAdmin"`
	CA           string              `json:"ca"`
	Users        map[string]demoUser `json:"users"`
	Configs      map[string]string   `json:"configs"`
}

// demoUser is one entry of demo.json's users.
type demoUser struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Htpasswd string `json:"htpasswd"`
}

// demoProc is a running `stella-mirror demo`.
type demoProc struct {
	cmd     *exec.Cmd
	state   demoState
	done    chan error
	stopped bool
	stopErr error
}

// startDemo runs the demo on ephemeral loopback ports in dir and returns once
// it has printed its banner (it prints after demo.json is written and every
// listener is bound).
func startDemo(t *testing.T, dir string, extra ...string) *demoProc {
	t.Helper()
	args := append([]string{"demo", "--dir", dir,
		"--origin-listen", "127.0.0.1:0", "--origin-admin-listen", "127.0.0.1:0",
		"--gateway-listen", "127.0.0.1:0", "--gateway-admin-listen", "127.0.0.1:0",
		"--bundle-size", "1MiB"}, extra...)
	cmd := exec.Command(bin, args...)
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
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), "demo is up") {
				seen = true
				up <- true
			}
		}
		if !seen {
			up <- false
		}
		io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { p.stop(t) })
	select {
	case ok := <-up:
		if !ok {
			t.Fatalf("demo exited before it was up; stderr:\n%s", stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("demo not up after 60s; stderr:\n%s", stderr.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &p.state); err != nil {
		t.Fatalf("demo.json: %v", err)
	}
	return p
}

// stop sends SIGINT (what Ctrl-C sends) and waits for a clean exit.
func (p *demoProc) stop(t *testing.T) error {
	t.Helper()
	if p.stopped {
		return p.stopErr
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case p.stopErr = <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.stopErr = fmt.Errorf("demo did not stop within 30s of SIGINT")
	}
	return p.stopErr
}

// sh runs a bash script with the given environment additions and returns its
// trimmed stdout, failing the test on a non-zero exit.
func sh(t *testing.T, env []string, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("script failed: %v\n--- script\n%s\n--- stderr\n%s\n--- stdout\n%s", err, script, errb.String(), out.String())
	}
	return strings.TrimSpace(out.String())
}

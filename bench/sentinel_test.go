//go:build linux

package bench

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// startSentinel starts a process whose name (comm) is "nginx" — a copy of
// sleep — standing for an nginx the tests did not start (the host's own).
// The test stops it itself at the end. It returns the process and a
// channel closed when it exits.
func startSentinel(t *testing.T) (*os.Process, <-chan struct{}) {
	t.Helper()
	sleep := testenv.Tool(t, "sleep", "coreutils")
	bin := filepath.Join(t.TempDir(), "nginx")
	src, err := os.Open(sleep)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	// Bounded: it ends by itself after 10 minutes if the test is killed.
	cmd := exec.Command(bin, "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm")
	if err != nil || strings.TrimSpace(string(comm)) != "nginx" {
		t.Fatalf("sentinel comm %q (%v), want nginx", comm, err)
	}
	return cmd.Process, done
}

// TestNginxSentinelSurvives: the tests' own nginx start and stop (the
// helper every nginx-running test here uses: its own prefix, its own
// process group, SIGTERM to that group only) leave another process named
// nginx alone — what `pkill -x nginx` or `systemctl stop nginx` would not.
// The static half, that no script or test runs such a command, is
// TestNothingStopsProcessesByName in test/hostsafety.
func TestNginxSentinelSurvives(t *testing.T) {
	bin := nginxBinary(t)
	sentinel, sentinelDone := startSentinel(t)
	prefix, cfg := writeNginxFixture(t)
	p, out, client := startNginx(t, bin, prefix)
	if err := WaitReady(context.Background(), client, "http://"+cfg.Listen+"/concelier/exports/index.json", p, 20*time.Millisecond, 10*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The test's nginx has exited (Stop waited for it): had it signalled
	// by name, the sentinel would have been hit by now.
	select {
	case <-sentinelDone:
		t.Fatal("the sentinel nginx process was stopped by the test's nginx start/stop")
	default:
	}
	if err := sentinel.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("sentinel: %v", err)
	}
}

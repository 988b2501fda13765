// Package rsynctest runs a real rsync daemon on 127.0.0.1 for tests of the
// rsync source (package rsyncsrc) and of the sync command.
package rsynctest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stella-ops/stella-mirror/internal/testenv"
)

// Options configure a daemon. The zero value serves the directory to anyone.
type Options struct {
	// User and Password, when User is set, require rsync's daemon
	// authentication for the module (clients pass RSYNC_PASSWORD).
	User, Password string
}

// Daemon is a running rsync daemon.
type Daemon struct {
	// URL is the module's URL: rsync://127.0.0.1:<port>/exports (with
	// user@ when Options.User is set).
	URL string
	// Port is the daemon's TCP port on 127.0.0.1.
	Port int
}

// Binary returns the rsync binary, skipping the test when rsync is not
// installed (failing it when the environment variable CI is set).
func Binary(t testing.TB) string {
	t.Helper()
	return testenv.Tool(t, "rsync", "rsync")
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listened on a
// moment ago (the kernel picked it for a listener the function closed).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs an rsync daemon exporting dir as module "exports" until the
// test ends, and waits until it answers.
func Start(t testing.TB, dir string, opts Options) *Daemon {
	t.Helper()
	bin := Binary(t)
	port := FreePort(t)
	cfgDir := t.TempDir()
	var conf strings.Builder
	fmt.Fprintf(&conf, "use chroot = no\nreverse lookup = no\nuid = %d\ngid = %d\npid file = %s\n[exports]\npath = %s\nread only = yes\n",
		os.Getuid(), os.Getgid(), filepath.Join(cfgDir, "pid"), dir)
	if opts.User != "" {
		secrets := filepath.Join(cfgDir, "secrets")
		if err := os.WriteFile(secrets, []byte(opts.User+":"+opts.Password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&conf, "auth users = %s\nsecrets file = %s\n", opts.User, secrets)
	}
	confPath := filepath.Join(cfgDir, "rsyncd.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--daemon", "--no-detach", "--config="+confPath, fmt.Sprintf("--port=%d", port),
		"--address=127.0.0.1", "--log-file="+filepath.Join(cfgDir, "log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	d := &Daemon{Port: port, URL: fmt.Sprintf("rsync://127.0.0.1:%d/exports", port)}
	if opts.User != "" {
		d.URL = fmt.Sprintf("rsync://%s@127.0.0.1:%d/exports", opts.User, port)
	}
	// Readiness: poll the daemon (an external process) with a deadline.
	deadline := time.Now().Add(10 * time.Second)
	for {
		probe := exec.Command(bin, "--list-only", d.URL+"/")
		probe.Env = append(os.Environ(), "RSYNC_PASSWORD="+opts.Password)
		if probe.Run() == nil {
			return d
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(cfgDir, "log"))
			t.Fatalf("rsync daemon not ready: %s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Processes lists the processes whose command line contains marker (a
// directory the test created), as "pid: command line". Tests use it to
// prove that no rsync they caused to start outlives the sync that started
// it; it only reads /proc.
func Processes(t testing.TB, marker string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var out []string
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue // gone, or a zombie
		}
		cmdline := strings.ReplaceAll(strings.TrimRight(string(raw), "\x00"), "\x00", " ")
		if strings.Contains(cmdline, marker) {
			out = append(out, e.Name()+": "+cmdline)
		}
	}
	return out
}

// WaitGone polls until no process's command line contains marker and
// fails the test when some still do after the deadline (a liveness bound
// for processes that must be killed, not a performance assertion).
func WaitGone(t testing.TB, marker string, deadline time.Duration) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		left := Processes(t, marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%d processes still running %s after %s:\n%s", len(left), marker, deadline, strings.Join(left, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

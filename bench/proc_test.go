//go:build linux

package bench

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z' && s[i+2] != 'X'
}

// startShell starts sh with a background child whose pid it prints, and
// returns the process and that grandchild's pid.
func startShell(t *testing.T, script string) (*Process, int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartProcess("sh", cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(time.Second) })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading grandchild pid: %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return p, child
}

// waitGone polls (bounded: at most 500 checks over 5s) until pid is gone.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for range 500 {
		if !alive(pid) {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("process %d still alive", pid)
		}
	}
	t.Fatalf("process %d still alive", pid)
}

func TestProcessStopKillsGroup(t *testing.T) {
	tests := []struct {
		name   string
		script string
		grace  time.Duration
	}{
		// sh and its child both die on SIGTERM to the group.
		{"sigterm", "sleep 300 & echo $!; wait", 5 * time.Second},
		// Both ignore SIGTERM (the disposition is inherited): SIGKILL after grace.
		{"sigkill after grace", `trap "" TERM; sleep 300 & echo $!; wait`, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, child := startShell(t, tt.script)
			if !alive(child) {
				t.Fatalf("grandchild %d not running before Stop", child)
			}
			if err := p.Stop(tt.grace); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.Done():
			default:
				t.Fatal("Stop returned but Done is not closed")
			}
			waitGone(t, child)
			if err := p.Stop(tt.grace); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}

func TestProcessGroupIsOwn(t *testing.T) {
	p, _ := startShell(t, "sleep 300 & echo $!; wait")
	pgid, err := syscall.Getpgid(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if pgid != p.Pid() {
		t.Errorf("child pgid %d, want its own pid %d", pgid, p.Pid())
	}
	if pgid == syscall.Getpgrp() {
		t.Error("child shares the test's process group: Ctrl-C would reach it directly")
	}
}

func TestStartProcessMissingBinary(t *testing.T) {
	_, err := StartProcess("ghost", exec.Command("/nonexistent/ghost"))
	if err == nil || !strings.Contains(err.Error(), "starting ghost") {
		t.Fatalf("err = %v, want starting ghost: …", err)
	}
}

func TestWaitReady(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "never", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)

	running := func(t *testing.T) *Process {
		p, _ := startShell(t, "sleep 300 & echo $!; wait")
		return p
	}
	exited := func(t *testing.T) *Process {
		p, err := StartProcess("true", exec.Command("/bin/sh", "-c", "exit 3"))
		if err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		return p
	}
	tests := []struct {
		name    string
		url     string
		proc    func(*testing.T) *Process
		timeout time.Duration
		want    string
	}{
		{"ready after retries", srv.URL, running, 10 * time.Second, ""},
		{"process exited", down.URL, exited, 10 * time.Second, "exited before it was ready (exit status 3): status 503"},
		{"timeout", down.URL, running, 200 * time.Millisecond, "not ready at " + down.URL + " within 200ms: status 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WaitReady(context.Background(), srv.Client(), tt.url, tt.proc(t), 10*time.Millisecond, tt.timeout)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if calls.Load() < 3 {
		t.Errorf("ready server probed %d times, want at least 3", calls.Load())
	}
}

func TestWaitReadyCancelled(t *testing.T) {
	p, _ := startShell(t, "sleep 300 & echo $!; wait")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := WaitReady(ctx, http.DefaultClient, "http://127.0.0.1:1/", p, 10*time.Millisecond, time.Minute)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "waiting for sh") {
		t.Fatalf("err = %v, want waiting for sh: context canceled", err)
	}
}

func TestFreeLoopbackAddr(t *testing.T) {
	addr, err := FreeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("addr %q, want 127.0.0.1:port", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("returned address is not bindable: %v", err)
	}
	ln.Close()
}

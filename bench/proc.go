//go:build unix

package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"syscall"
	"time"
)

// Process is a child process started in its own process group, so that
// stopping it also stops whatever it forked (nginx's workers) and a Ctrl-C
// in the terminal reaches only the parent, which then stops its children in
// order.
type Process struct {
	// Name labels the process in errors, e.g. "nginx".
	Name string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// StartProcess starts cmd in a new process group. cmd must not have been
// started; its SysProcAttr is replaced.
func StartProcess(name string, cmd *exec.Cmd) (*Process, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitErr returns how the process ended; call it after Done is closed.
func (p *Process) ExitErr() error {
	<-p.done
	return p.err
}

// CPUTime returns the user+system CPU time the process used (its own, not
// its children's); call it after Done is closed.
func (p *Process) CPUTime() time.Duration {
	<-p.done
	if p.cmd.ProcessState == nil {
		return 0
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// Stop sends SIGTERM to the process group, waits up to grace for the
// leader to exit, then SIGKILLs the group and waits up to 5 seconds more.
// A group member that outlived its leader is killed too. Stop is safe to
// call more than once and after the process has exited.
func (p *Process) Stop(grace time.Duration) error {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		}
	}
	// Workers whose master is gone, or a leader that ignored SIGTERM.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s (pgid %d): %w", p.Name, pgid, err)
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		return fmt.Errorf("stopping %s (pid %d): still running 5s after SIGKILL", p.Name, pgid)
	}
}

// FreeLoopbackAddr returns a 127.0.0.1 address with a port that was free a
// moment ago (the listener is closed again so a child can bind it).
func FreeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	return addr, nil
}

// WaitReady polls url every interval until it answers 200, p exits, or
// timeout passes. Polling a readiness endpoint is the synchronisation here;
// the number of attempts is bounded by timeout/interval.
func WaitReady(ctx context.Context, client *http.Client, url string, p *Process, interval, timeout time.Duration) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		err := probe(ctx, client, url)
		if err == nil {
			return nil
		}
		if last == nil || ctx.Err() == nil {
			last = err // keep the last answer, not the deadline cutting a probe short
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited before it was ready (%v): %w", p.Name, p.ExitErr(), last)
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("waiting for %s: %w", p.Name, parent.Err())
			}
			return fmt.Errorf("%s not ready at %s within %s: %w", p.Name, url, timeout, last)
		case <-tick.C:
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

package rsyncsrc

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// reaperShell runs every rsync: see reaperScript.
const reaperShell = "/bin/sh"

// reaperScript starts rsync ("$@") in the background and waits for it,
// passing on its exit status. The shell is started in a process group of
// its own with PR_SET_PDEATHSIG=SIGTERM, so when sync dies (even by
// SIGKILL) the kernel sends it SIGTERM and the trap kills the whole group
// with SIGKILL: rsync and the receiver it forks, which would otherwise keep
// writing into staging while the next run already holds the lock.
// (PR_SET_PDEATHSIG is not inherited across fork, so rsync's own child
// cannot be covered directly.)
const reaperScript = `trap 'kill -KILL 0' TERM HUP INT
"$@" </dev/null &
wait $!`

// command returns the command running bin with args under the reaper. A
// cancelled context kills the whole process group at once.
func command(ctx context.Context, bin string, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, reaperShell, append([]string{"-c", reaperScript, "stella-mirror-rsync", bin}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error {
		// The group leader is not reaped yet (Wait has not returned), so
		// its id still names this group only.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// lookPath is exec.LookPath (a variable for nothing but readability of New).
var lookPath = exec.LookPath

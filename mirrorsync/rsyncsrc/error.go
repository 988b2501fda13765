package rsyncsrc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Error is a failed rsync call. It carries rsync's exit status as data
// only: it has no ExitCode method and does not wrap *exec.ExitError, so a
// command never turns rsync's status into its own (sync exits 1).
type Error struct {
	// Op says what the call did, naming the rsync URL.
	Op string
	// Code is rsync's exit status; -1 when rsync was killed by a signal.
	Code int
	// Signal names the signal that killed rsync, if one did
	// ("9 (killed)").
	Signal string
	// Stderr is the end of rsync's standard error (at most stderrTail
	// bytes, the last stderrLines lines), with RSYNC_PASSWORD removed.
	Stderr string

	notExist bool
}

// Meaning returns what rsync's documentation says Code means.
func (e *Error) Meaning() string {
	if e.Code < 0 {
		return "killed by signal " + e.Signal
	}
	if m, ok := exitMeanings[e.Code]; ok {
		return m
	}
	return "undocumented exit status"
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Code < 0 {
		fmt.Fprintf(&b, "%s: rsync was killed by signal %s", e.Op, e.Signal)
	} else {
		fmt.Fprintf(&b, "%s: rsync exit status %d (%s)", e.Op, e.Code, e.Meaning())
	}
	if e.Stderr != "" {
		fmt.Fprintf(&b, ": %s", e.Stderr)
	}
	return b.String()
}

// Is reports a missing file or directory at the source as fs.ErrNotExist.
func (e *Error) Is(target error) bool { return target == fs.ErrNotExist && e.notExist }

// exitMeanings are rsync's documented exit values (rsync(1), EXIT VALUES).
var exitMeanings = map[int]string{
	1:  "syntax or usage error",
	2:  "protocol incompatibility",
	3:  "errors selecting input/output files, dirs",
	4:  "requested action not supported",
	5:  "error starting client-server protocol",
	6:  "daemon unable to append to log-file",
	10: "error in socket I/O",
	11: "error in file I/O",
	12: "error in rsync protocol data stream",
	13: "errors with program diagnostics",
	14: "error in IPC code",
	20: "received SIGUSR1 or SIGINT",
	21: "some error returned by waitpid()",
	22: "error allocating core memory buffers",
	23: "partial transfer due to error",
	24: "partial transfer due to vanished source files",
	25: "the --max-delete limit stopped deletions",
	30: "timeout in data send/receive",
	35: "timeout waiting for daemon connection",
	// From the shell that runs rsync (see proc.go), not from rsync.
	126: "the rsync binary cannot be executed",
	127: "the rsync binary was not found",
	255: "unexplained error (for host:path sources often ssh's own failure)",
}

// stderrTail and stderrLines bound the stderr an Error keeps.
const (
	stderrTail  = 4 << 10
	stderrLines = 6
)

// newError describes a failed call from its process state, the error
// exec returned and the captured end of stderr.
func newError(op string, ps *os.ProcessState, runErr error, stderr string) error {
	var ee *exec.ExitError
	if !errors.As(runErr, &ee) || ps == nil {
		// rsync did not run (or its output could not be read).
		return fmt.Errorf("%s: running rsync: %v", op, runErr)
	}
	e := &Error{Op: op, Code: ps.ExitCode(), Stderr: tidyStderr(stderr)}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Code, e.Signal = -1, signalName(ws.Signal())
	} else if e.Code > 128 && e.Code < 128+65 {
		// The reaper shell reports rsync killed by signal N as 128+N.
		e.Signal = signalName(syscall.Signal(e.Code - 128))
		e.Code = -1
	}
	e.notExist = e.Code == 23 && strings.Contains(stderr, "No such file or directory")
	return e
}

func signalName(s syscall.Signal) string { return fmt.Sprintf("%d (%s)", int(s), s) }

// tidyStderr keeps the last stderrLines non-empty lines, joined with "; ",
// without the daemon password.
func tidyStderr(s string) string {
	if pw := os.Getenv("RSYNC_PASSWORD"); pw != "" {
		s = strings.ReplaceAll(s, pw, "[RSYNC_PASSWORD]")
	}
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > stderrLines {
		lines = lines[len(lines)-stderrLines:]
	}
	return strings.Join(lines, "; ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// limitBuffer keeps what is written to it up to max bytes and fails the
// write after that.
type limitBuffer struct {
	max      int
	buf      []byte
	overflow bool
}

func (l *limitBuffer) Write(p []byte) (int, error) {
	if len(l.buf)+len(p) > l.max {
		l.overflow = true
		return 0, errors.New("output too large")
	}
	l.buf = append(l.buf, p...)
	return len(p), nil
}

func (l *limitBuffer) Bytes() []byte { return l.buf }
